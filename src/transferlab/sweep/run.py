"""Drive a sweep: plan every cell (skip / fresh / resume / restart), run the rest on an executor, keep the
manifest current, and aggregate once every cell has had its turn.

A rerun of the same sweep into the same folder picks up where the last one stopped: finished cells
are skipped, unfinished ones are moved aside and run again. A failed cell does not stop the sweep.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from transferlab.sweep.cell import RESTART, SKIP, CellJob, is_finished, move_aside, plan_cell
from transferlab.sweep.executors import make_executor
from transferlab.sweep.manifest import Manifest, cell_folder, now
from transferlab.sweep.progress import SweepProgress
from transferlab.sweep.spec import Sweep, SweepError

AGGREGATE_MODULE = "transferlab.results.aggregate"


@dataclass
class SweepResult:
    out: Path
    ran: list[str] = field(default_factory=list)       # cells run (and finished) by this call
    skipped: list[str] = field(default_factory=list)   # cells already finished before it
    failed: dict[str, str] = field(default_factory=dict)  # cell -> error
    aggregated: bool | None = None  # None: no aggregate step was available or nothing to aggregate
    wall_s: float = 0.0
    cells: list[dict] = field(default_factory=list)  # the manifest's cell entries at the end

    @property
    def ok(self) -> bool:
        return not self.failed and self.aggregated is not False


def plan_sweep(sweep: Sweep, out: str | Path) -> list[tuple[str, str, list[str]]]:
    """(cell, what a run would do with it, overrides) for every cell; changes nothing."""
    return [(cell.id, plan_cell(cell_folder(Path(out), cell)), cell.overrides) for cell in sweep.cells]


@contextlib.contextmanager
def sweep_lock(out: Path):
    """One driver per sweep folder: a second one would move aside the cells the first is running."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".sweep.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise SweepError(f"another sweep is running in {out}; wait for it or use another --out") from err
        yield


def run_sweep(sweep: Sweep, out: str | Path, *, executor: str | None = None, workers: int | None = None,
              quiet: bool = False) -> SweepResult:
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be at least 1, got {workers}")
    out = Path(out).resolve()
    started = time.time()
    result = SweepResult(out)
    with sweep_lock(out):
        manifest = Manifest.for_sweep(sweep, out)
        todo = prepare_cells(sweep, out, manifest, result)
        manifest.save()
        kind = executor or sweep.executor.kind
        if todo:
            run_cells(sweep, out, todo, manifest, result, kind, workers or sweep.executor.workers, quiet)
        result.aggregated = aggregate_hook(out, manifest, quiet)
        result.cells = manifest.data["cells"]
    result.wall_s = round(time.time() - started, 2)
    return result


def prepare_cells(sweep: Sweep, out: Path, manifest: Manifest, result: SweepResult) -> list:
    """Mark finished cells done and skip them; move unfinished folders aside; the rest is to do."""
    todo = []
    for cell in sweep.cells:
        folder = cell_folder(out, cell)
        action = plan_cell(folder)
        entry = manifest.cells[cell.id]
        if action == SKIP:
            result.skipped.append(cell.id)
            entry.update(state="done", error=None)
            continue
        if action == RESTART:
            moved = move_aside(folder, out)
            entry["moved_aside"] = [*entry["moved_aside"], {
                "path": str(moved.relative_to(out)), "state": entry["state"], "error": entry["error"],
                "moved_at": now()}]
        entry.update(state="pending", error=None, wall_s=None, started_at=None, finished_at=None)
        todo.append(cell)
    return todo


def run_cells(sweep: Sweep, out: Path, todo: list, manifest: Manifest, result: SweepResult, kind: str,
              workers: int | None, quiet: bool) -> None:
    pool = make_executor(kind, sweep.executor, workers)
    pending = deque(todo)
    running: set[str] = set()
    progress = SweepProgress(total=len(sweep.cells), already_done=len(result.skipped), slots=pool.slots,
                             quiet=quiet)
    progress.console.print(f"sweep [bold]{escape(sweep.name)}[/bold]: {len(todo)} of {len(sweep.cells)} cells to run, "
                           f"{pool.slots} at once ({kind}, {sweep.executor.threads_per_cell} thread(s) each) "
                           f"-> {out}", highlight=False)
    try:
        with progress:
            while pending or running:
                while pending and len(running) < pool.slots:
                    cell = pending.popleft()
                    manifest.update(cell.id, state="running", started_at=now())
                    pool.submit(job_for(sweep, out, cell))
                    running.add(cell.id)
                    progress.cell_started(cell.id)
                for job, outcome in pool.wait(timeout=0.5):
                    running.discard(job.id)
                    record(job, outcome, manifest, result)
                    progress.cell_finished(job.id, job.id not in result.failed, outcome["wall_s"],
                                           result.failed.get(job.id))
                progress.refresh()
    except BaseException:
        for cell_id in running:  # stopped by hand (Ctrl-C) or by a crash of the driver itself
            manifest.update(cell_id, state="failed", error="interrupted: the sweep was stopped while it ran",
                            finished_at=now())
        raise
    finally:
        pool.close()


def job_for(sweep: Sweep, out: Path, cell) -> CellJob:
    return CellJob(id=cell.id, base=str(sweep.base) if sweep.base else None, overrides=cell.overrides,
                   threads=sweep.executor.threads_per_cell, folder=str(cell_folder(out, cell)), cwd=os.getcwd())


def record(job: CellJob, outcome: dict, manifest: Manifest, result: SweepResult) -> None:
    error = outcome["error"]
    if outcome["ok"] and not is_finished(Path(job.folder)):
        error = "the run ended without writing its final metrics (metrics.csv, gaps.csv)"
    state = "failed" if error else "done"
    manifest.update(job.id, state=state, error=error, wall_s=outcome["wall_s"], finished_at=now())
    if error:
        result.failed[job.id] = error
    else:
        result.ran.append(job.id)


def aggregate_hook(out: Path, manifest: Manifest, quiet: bool) -> bool | None:
    """Call `transferlab.results.aggregate.aggregate(sweep_dir)` when that module exists.

    Imported lazily: the aggregate step is written separately and may not be installed yet."""
    console = Console(stderr=True, quiet=quiet)
    say = partial(console.print, highlight=False, soft_wrap=True, markup=False)
    if not manifest.counts()["done"]:
        say("no finished cell: nothing to aggregate")
        return None
    try:
        module = importlib.import_module(AGGREGATE_MODULE)
    except ModuleNotFoundError as err:
        if err.name != AGGREGATE_MODULE:
            raise
        say(f"note: {AGGREGATE_MODULE} is not available: skipped aggregating the sweep")
        return None
    aggregate = getattr(module, "aggregate", None)
    if aggregate is None:
        say(f"note: {AGGREGATE_MODULE} has no aggregate(sweep_dir): skipped aggregating the sweep")
        return None
    try:
        written = aggregate(out)
    except Exception as err:  # noqa: BLE001 - the cells are done; report and let the exit code say it
        Console(stderr=True).print(f"error: aggregating {out} failed: {type(err).__name__}: {err} (the cells "
                                   "are finished; rerun the sweep to aggregate again)", highlight=False,
                                   soft_wrap=True, markup=False)
        return False
    say(f"aggregated the sweep: {len(written or [])} tables and figures written under {out}")
    return True
