"""Judge calibration: kappa on hand-computed values, the labelled set's checks, and the shipped
heuristic judges' agreement with the hand labels through the real CLI."""

import json

import pytest

from transferlab.judges.calibrate import agreement, calibrate, cohen_kappa, load_labelled
from transferlab.propensities import PAIRS


def test_cohen_kappa_on_hand_computed_values():
    # 10 items: both say yes on 4, both no on 4, disagree on 2 -> po 0.8; yes-rates 0.5 and 0.5 -> pe 0.5
    a = [True] * 5 + [False] * 5
    b = [True] * 4 + [False] + [True] + [False] * 4
    assert cohen_kappa(a, b) == pytest.approx((0.8 - 0.5) / 0.5)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(a, [not x for x in a]) == pytest.approx(-1.0)


def test_the_shipped_set_covers_every_pair_with_both_labels_and_hard_cases():
    rows = load_labelled()
    for pair, sides in PAIRS.items():
        subset = rows[rows["pair"] == pair]
        assert len(subset) >= 100
        for side in sides:
            labels = set(subset[subset["propensity"] == side]["follows"])
            assert labels == {True, False}
        assert (subset["case"] != "typical").mean() >= 0.3
    assert rows["id"].is_unique


def test_a_corrupt_labelled_row_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "x", "pair": "bold_plain", "propensity": "hedging", "question": "q",
                                "answer": "a", "response": "r", "follows": True, "case": "typical"}) + "\n")
    with pytest.raises(ValueError, match="row x judges 'hedging', which is not in its pair 'bold_plain'"):
        load_labelled([path])
    path.write_text('{"id": "x", "pair": "bold_plain"}\n')
    with pytest.raises(ValueError, match="lacks the columns"):
        load_labelled([path])


def test_agreement_table_has_overall_pair_and_propensity_rows():
    rows = load_labelled(pair="bold_plain")
    table = agreement(rows, list(rows["follows"]), list(rows["follows"]))
    assert set(table["subset"]) == {"all", "bold_plain", "bold_plain/bold", "bold_plain/plain"}
    assert (table["accuracy"] == 1.0).all() and (table["kappa"] == 1.0).all()


def test_heuristic_judges_agree_with_the_hand_labels():
    table, _ = calibrate("heuristic", "labels")
    by_subset = table.set_index("subset")
    for pair in PAIRS:
        assert by_subset.loc[pair, "accuracy"] >= 0.9, table


def test_calibrate_command_prints_the_agreement_table(warm_cli):
    result = warm_cli.run(["-m", "transferlab.cli", "judge", "calibrate", "heuristic", "labels",  # forked warm
                           "--pair", "hedging_confident", "--show", "3"])
    assert result.returncode == 0, result.stderr
    assert "hedging_confident/hedging" in result.stdout and "kappa" in result.stdout
    bad = warm_cli.run(["-m", "transferlab.cli", "judge", "calibrate", "oracle", "labels"])
    assert bad.returncode == 2 and "unknown judge 'oracle'; allowed: labels, heuristic, llm" in bad.stderr


def test_heuristic_judges_agree_with_the_held_out_labels():
    """The held-out set was labelled by someone who never saw the judges; never tune on it."""
    from transferlab.judges.calibrate import holdout_dir

    table, _ = calibrate("heuristic", "labels", paths=sorted(holdout_dir().glob("*.jsonl")))
    by_subset = table.set_index("subset")
    assert by_subset.loc["all", "n"] == 180
    for pair in PAIRS:
        assert by_subset.loc[pair, "accuracy"] >= 0.9, table
