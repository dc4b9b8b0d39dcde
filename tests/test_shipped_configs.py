"""Every shipped config runs end to end through the CLI (tiny settings, micro organism); the
real-data configs run on the shared samples when `../shared` is present and skip otherwise."""

import subprocess
import sys
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


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_config_runs_end_to_end(name, micro_organism, tmp_path):
    if not name.endswith("_offline") and not SHARED.exists():
        pytest.skip("../shared/data is absent: the real-data configs need its samples")
    overrides = [f"model.name={micro_organism}", *TINY, *CONFIGS[name]]
    args = [a for o in overrides for a in ("--set", o)]
    result = subprocess.run([sys.executable, "-m", "transferlab.cli", "run", name, "--quiet",
                             "--out", str(tmp_path / "run"), *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    other = "chess" if name.startswith("chess") else "realtime_qa"
    assert set(metrics["task"]) == {"table_lookup", other}
    assert set(metrics["prompted"]) == {"bold", "plain"}
    assert sorted(set(metrics["step"])) == [0, 2]
