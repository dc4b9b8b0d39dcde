"""Copy what backs a sweep's claims into docs/: its tables and grid figure, and per cell the resolved
config, metrics, gaps, train log and a few sampled answers (samples.jsonl itself is too large to ship).

Usage: python scripts/ship_sweep.py SWEEP_DIR DEST_DIR [--answers 5]

DEST_DIR gets tables/*.csv, gap_grid.png, and cells/<cell>/{config.toml, metrics.csv, gaps.csv,
train_log.csv, gap.png, answers.csv}; answers.csv holds the first N answers of every condition at the cell's
last evaluation (the same rows a reader would see first in the report's sample browser).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from transferlab.results.samples_file import read_sample_rows

CELL_FILES = ("config.toml", "metrics.csv", "gaps.csv", "train_log.csv", "figures/gap.png")
ANSWER_COLUMNS = ["step", "task", "eval_set", "trained", "prompted", "example_id", "answer", "response", "correct",
                  "adherent"]


def answers(samples: Path, n: int) -> pd.DataFrame:
    """The first n answers of each condition at the last evaluated step."""
    frame = pd.DataFrame(read_sample_rows(samples))
    last = frame[frame["step"] == frame["step"].max()]
    keep = [c for c in ANSWER_COLUMNS if c in last.columns]
    return last.groupby(["task", "eval_set", "prompted"], sort=True).head(n)[keep]


def ship(sweep: Path, dest: Path, n: int) -> list[Path]:
    written = []
    (dest / "tables").mkdir(parents=True, exist_ok=True)
    for table in sorted((sweep / "tables").glob("*.csv")):
        written.append(Path(shutil.copy2(table, dest / "tables" / table.name)))
    grid = sweep / "figures" / "gap_grid.png"
    if grid.exists():
        written.append(Path(shutil.copy2(grid, dest / "gap_grid.png")))
    for cell in sorted(p for p in (sweep / "cells").iterdir() if (p / "samples.jsonl").exists()):
        out = dest / "cells" / cell.name
        out.mkdir(parents=True, exist_ok=True)
        for name in CELL_FILES:
            if (cell / name).exists():
                written.append(Path(shutil.copy2(cell / name, out / Path(name).name)))
        answers(cell / "samples.jsonl", n).to_csv(out / "answers.csv", index=False)
        written.append(out / "answers.csv")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--answers", type=int, default=5, help="answers per condition at the last step")
    args = parser.parse_args()
    for path in ship(args.sweep, args.dest, args.answers):
        print(path)


if __name__ == "__main__":
    main()
