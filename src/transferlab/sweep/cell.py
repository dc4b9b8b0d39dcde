"""One cell of a sweep: decide what to do with its run folder, and run it in a worker process.

`run_cell` is what a worker (a local process or a Ray task) executes: it takes plain values and
returns a plain dict, never raises, and sends the run's own output to the cell's log file.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

# A run folder is finished once it holds its final tables (written by `write_results`).
FINAL_FILES = ("metrics.csv", "gaps.csv")
LOG_NAME = "cell.log"

SKIP, FRESH, RESTART, RESUME = "skip", "fresh", "restart", "resume"


def is_finished(folder: Path) -> bool:
    return all((folder / name).exists() for name in FINAL_FILES)


def plan_cell(folder: Path) -> str:
    """What to do with a cell's run folder: SKIP it (finished), run it FRESH (no folder yet), RESUME
    it (an interrupted run with a checkpoint goes on from there), or RESTART it (an attempt that
    stopped before its first checkpoint is moved aside, its log kept, and the cell runs from scratch)."""
    if is_finished(folder):
        return SKIP
    if not folder.exists():
        return FRESH
    checkpoints = folder / "checkpoints"
    return RESUME if any((checkpoints / name).exists() for name in ("latest", ".latest.old")) else RESTART


def move_aside(folder: Path, sweep_dir: Path) -> Path:
    """Keep an unfinished attempt (never delete results): `<sweep>/interrupted/<id>-<timestamp>/`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = sweep_dir / "interrupted" / f"{folder.name}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = sweep_dir / "interrupted" / f"{folder.name}-{stamp}-{n}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(target))
    return target


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell; plain values, so it pickles to any process."""
    id: str
    base: str | None        # the base config path; None: the shipped default
    overrides: list[str]
    threads: int            # torch threads (model.threads)
    folder: str             # the run folder (absolute)
    cwd: str                # relative paths in the config (a model folder, the LLM cache) start here


@contextlib.contextmanager
def output_to(log: Path):
    """Send this process's stdout and stderr (Python's and C's) to `log`, then restore them."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_cell(job: CellJob) -> dict:
    """Run one cell; return {"ok", "error", "wall_s"}. The traceback of a failure is in the log."""
    from transferlab.config import load_config
    from transferlab.train.loop import run_experiment

    started = time.time()
    folder = Path(job.folder)
    os.chdir(job.cwd)
    with output_to(folder / LOG_NAME):
        try:
            config = load_config(job.base, overrides=[*job.overrides, f"model.threads={job.threads}"])
            run_experiment(config, folder, quiet=True)
        except Exception as err:  # noqa: BLE001 - a failed cell is reported, the sweep goes on
            traceback.print_exc()
            message = f"{type(err).__name__}: {err}"
            return {"ok": False, "error": message[:2000], "wall_s": round(time.time() - started, 2)}
        except KeyboardInterrupt:
            traceback.print_exc()  # into the log, not over the driver's display
            raise
    return {"ok": True, "error": None, "wall_s": round(time.time() - started, 2)}


def child_main(job: CellJob, conn) -> None:
    """Entry point of a local worker process: run the cell, send its outcome back on `conn`."""
    sent = threading.Event()
    threading.Thread(target=exit_with_driver, args=(conn, sent), daemon=True).start()
    try:
        outcome = run_cell(job)
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C reaches every process; the driver records the cell as interrupted
    sent.set()
    conn.send(outcome)
    conn.close()


def exit_with_driver(conn, sent: threading.Event) -> None:
    """End this worker when the sweep driver dies, so that no orphan goes on writing into a folder
    that the next run of the sweep moves aside. The driver holds the only read end of `conn`; once
    it is gone, polling our write end reports an error."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLERR)
    poller.poll()
    if not sent.is_set():
        os._exit(1)
