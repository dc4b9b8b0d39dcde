"""samples.jsonl readers: a torn last line (a killed run) is left out; damage elsewhere is named."""

import json

import pytest

from transferlab.results.samples_file import read_sample_rows


def test_a_torn_last_line_is_left_out_with_a_warning(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"step": 0}) + "\n" + json.dumps({"step": 1}) + "\n" + '{"step": 2, "tas')
    with pytest.warns(UserWarning, match="torn last line 3"):
        assert read_sample_rows(path) == [{"step": 0}, {"step": 1}]


def test_a_bad_line_in_the_middle_is_an_error_naming_it(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"step": 0}\n{"st\n{"step": 1}\n')
    with pytest.raises(ValueError, match="line 2: not a JSON row"):
        read_sample_rows(path)
