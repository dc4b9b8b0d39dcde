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


def test_a_checkpoint_is_refused_with_a_clear_message_when_the_disk_is_full(tmp_path, monkeypatch):
    from collections import namedtuple

    import torch

    from transferlab.results import run_folder
    from transferlab.results.run_folder import RunFolder

    class Backend:
        model = torch.nn.Linear(1000, 1000)

        def save_state(self, path):  # pragma: no cover - must not be reached
            raise AssertionError("wrote a checkpoint on a full disk")

    folder = RunFolder(tmp_path / "run")
    folder.create("seed = 0\n")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 10**5, 10**5))
    with pytest.raises(OSError, match="not enough disk space for a checkpoint.*MiB needed, 0 MiB free"):
        folder.save_checkpoint(Backend())
    assert (tmp_path / "run" / "config.toml").exists()  # what was written before stays
