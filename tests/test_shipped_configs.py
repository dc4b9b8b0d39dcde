"""Every shipped config runs end to end through the CLI (tiny settings, micro organism); the
real-data configs run on the shared samples when `../shared` is present and skip otherwise."""

import tomllib
from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = ["train.steps=2", "train.batch_size=4", "eval.every=2", "eval.n=4", "eval.n_boot=20", "model.threads=1"]
CONFIGS = {
    "chess_vs_table_lookup_offline": ["tasks.chess.sample_size=20"],
    "facts_vs_table_lookup_offline": ["tasks.realtime_qa.n_train=8", "tasks.realtime_qa.n_heldout=8"],
    "chess_vs_table_lookup": [f"tasks.chess.path={SHARED / 'lichess_puzzles_sample.csv'}",
                              "tasks.chess.sample_size=40"],
    "facts_vs_table_lookup": [f"tasks.realtime_qa.path={SHARED / 'realtimeqa_2024.jsonl'}",
                              "tasks.realtime_qa.n_train=8", "tasks.realtime_qa.n_heldout=8"],
}

EVAL_SETS = {"table_lookup": ("fresh",), "chess": ("fresh",), "realtime_qa": ("trained", "held_out")}


@pytest.fixture(scope="module")
def started(micro_organism, warm_cli, tmp_path_factory) -> dict:
    """`transferlab run <config>` for every config that can run here, all at once (forked from the
    warm CLI server, tests/warm_cli.py, one torch thread each): name -> (folder, process)."""
    root = tmp_path_factory.mktemp("shipped")
    processes = {}
    for name, extra in CONFIGS.items():
        if name.endswith("_offline") or SHARED.exists():
            args = [a for o in [f"model.name={micro_organism}", *TINY, *extra] for a in ("--set", o)]
            processes[name] = root / name, warm_cli.start(["-m", "transferlab.cli", "run", name, "--quiet",
                                                           "--out", str(root / name), *args])
    return processes


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_config_runs_end_to_end(name, started):
    if not name.endswith("_offline") and not SHARED.exists():
        pytest.skip("../shared/data is absent: the real-data configs need its samples")
    run, process = started[name]
    result = process.wait()
    assert result.returncode == 0, result.stderr
    metrics = pd.read_csv(run / "metrics.csv")
    samples = pd.read_json(run / "samples.jsonl", lines=True)
    other = "chess" if name.startswith("chess") else "realtime_qa"
    arms = {arm["task"]: arm["propensity"] for arm in tomllib.loads((run / "config.toml").read_text())["arms"]}
    assert set(arms) == {"table_lookup", other}

    # one metrics row per (step, task, eval set, prompted propensity), each over eval.n examples
    conditions = {(step, task, eval_set, prompted) for step in (0, 2) for task in arms
                  for eval_set in EVAL_SETS[task] for prompted in ("bold", "plain")}
    keys = ["step", "task", "eval_set", "prompted"]
    assert sorted(metrics[keys].itertuples(index=False, name=None)) == sorted(conditions)
    assert (metrics["n"] == 4).all() and len(samples) == 4 * len(conditions)
    assert (metrics["trained"] == metrics["task"].map(arms)).all()
    assert (metrics["is_trained"] == (metrics["prompted"] == metrics["trained"])).all()
    # accuracy and adherence are the samples' own, inside their Wilson intervals
    counted = samples.groupby(keys).agg(n=("correct", "size"), correct=("correct", "mean"),
                                        adherent=("adherent", "mean"))
    table = metrics.set_index(keys).sort_index()
    assert list(table.index) == list(counted.index) and (table["n"] == counted["n"]).all()
    assert table["accuracy"].to_numpy() == pytest.approx(counted["correct"].to_numpy())
    assert table["adherence"].to_numpy() == pytest.approx(counted["adherent"].to_numpy())
    for measure, low, high in (("accuracy", "acc_low", "acc_high"), ("adherence", "adh_low", "adh_high")):
        assert table[measure].between(0, 1).all()
        assert ((table[low] <= table[measure] + 1e-12) & (table[measure] <= table[high] + 1e-12)).all()
    gaps = pd.read_csv(run / "gaps.csv")
    assert sorted(gaps[["step", "task", "eval_set"]].itertuples(index=False, name=None)) == sorted(
        {c[:3] for c in conditions})
