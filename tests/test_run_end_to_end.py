"""The whole vertical slice through the real CLI, on a micro organism."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM

from transferlab.config import load_config, make_tasks
from transferlab.results.off_task import off_task


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transferlab.cli", *args], capture_output=True, text=True, check=False,
                          timeout=300)


def run_warm(warm_cli, *args: str) -> subprocess.CompletedProcess:
    """The same command forked from the warm CLI server (tests/warm_cli.py): for the refusals, which
    would spend nearly all their time importing; the complete run above starts Python afresh."""
    return warm_cli.run(["-m", "transferlab.cli", *args])


def test_run_writes_a_complete_run_folder(micro_organism, tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "--out", str(out), "--seed", "3", "--set", f"model.name={micro_organism}",
                     "--set", "model.threads=1", "--set", "train.steps=6", "--set", "train.batch_size=8",
                     "--set", "eval.every=3", "--set", "eval.n=6", "--set", "eval.n_boot=50",
                     "--set", "tasks.invented_facts.n_facts=12")
    assert result.returncode == 0, result.stderr

    config = load_config(out / "config.toml")
    assert config.seed == 3 and config.train.steps == 6 and config.tasks["table_lookup"]["max_int"] == 16
    assert config.tasks["table_lookup"]["variant"] == "difference" and (out / "replay.json").exists()

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    # evaluations at steps 0, 3, 6; table lookup: 6 fresh x 2 prompts; facts: 6 trained + 6 paraphrased x 2
    assert sorted({s["step"] for s in samples}) == [0, 3, 6]
    assert len(samples) == 3 * (6 * 2 + 12 * 2)
    assert {s["prompted"] for s in samples if s["task"] == "table_lookup"} == {"bold", "plain"}
    assert all(isinstance(s["correct"], bool) and isinstance(s["adherent"], bool) for s in samples)

    assert config.tasks["invented_facts"]["fact_seed"] == 3  # follows the run's seed, written out

    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 3 * 6  # steps x (table: 2 conditions, facts: 2 sets x 2 conditions)
    assert {"accuracy", "acc_low", "acc_high", "n", "adherence", "chance"} <= set(metrics.columns)
    # the difference rung's chance: the commonest difference's share (0.134 with integers 1..16)
    assert metrics.loc[metrics.task == "table_lookup", "chance"].iloc[0] == pytest.approx(0.1335)
    graded = pd.DataFrame(samples).groupby(["step", "task", "eval_set", "prompted"])[["correct", "adherent"]].mean()
    by_condition = metrics.set_index(["step", "task", "eval_set", "prompted"])
    assert by_condition["accuracy"].to_dict() == pytest.approx(graded["correct"].to_dict())
    assert by_condition["adherence"].to_dict() == pytest.approx(graded["adherent"].to_dict())
    answers = pd.DataFrame(samples)
    answers["off_task"] = off_task(answers, make_tasks(config))  # answers in the other task's answer space
    shares = answers.groupby(["step", "task", "eval_set", "prompted"])["off_task"].mean()
    assert by_condition["off_task"].to_dict() == pytest.approx(shares.to_dict())

    gaps = pd.read_csv(out / "gaps.csv")
    assert {"gap", "gap_low", "gap_high", "norm_gap", "cut", "learned", "gap_missing"} <= set(gaps.columns)
    assert len(gaps) == 3 * 3  # steps x (table fresh, facts trained, facts paraphrase)
    for row in gaps.itertuples():  # every gap follows from metrics.csv, and only where learned
        condition = by_condition.loc[(row.step, row.task, row.eval_set)]
        trained, swapped = condition.loc[row.trained], condition.loc[row.swapped]
        assert (row.acc_trained, row.acc_swapped) == pytest.approx((trained["accuracy"], swapped["accuracy"]))
        assert row.learned == (trained["acc_low"] > trained["chance"])
        if row.learned:
            assert row.gap == pytest.approx(1 - swapped["accuracy"] / trained["accuracy"])
            assert row.gap_low <= row.gap <= row.gap_high
        else:
            assert math.isnan(row.gap) and math.isnan(row.norm_gap) and row.gap_missing == "not_learned"
        assert row.swapped_adherence == pytest.approx(swapped["adherence"])

    log = pd.read_csv(out / "train_log.csv")
    assert list(log["step"]) == [1, 2, 3, 4, 5, 6] and log["loss"].notna().all()
    assert (out / "figures" / "gap.png").stat().st_size > 10_000
    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "latest")


def test_run_refuses_a_bad_config_before_any_work(warm_cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[arms]]\ntask = "table_lookup"\npropensity = "italic"\n')
    result = run_warm(warm_cli, "run", str(bad), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "unknown propensity 'italic'; allowed: bold, confident, hedging, no_reasoning, plain, reasoning" in result.stderr
    assert not (tmp_path / "run").exists()


def test_run_names_an_unknown_model(warm_cli, tmp_path):
    result = run_warm(warm_cli, "run", "--out", str(tmp_path / "run"), "--set", "model.name=/nowhere/model")
    assert result.returncode == 2 and "cannot load model '/nowhere/model'" in result.stderr
