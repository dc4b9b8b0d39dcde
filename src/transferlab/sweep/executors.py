"""Where cells run: `local` (one process per cell on this machine) or `ray` (one Ray task per cell).

An executor has `slots` (cells it runs at once), `submit(job)`, `wait(timeout)` -> finished
(job, outcome) pairs, and `close()`, which stops what still runs. The sweep driver does the rest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing.connection import wait as wait_for

from transferlab.sweep.cell import CellJob, child_main, run_cell
from transferlab.sweep.spec import ExecutorSettings


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """One fresh process per cell, `cores // threads_per_cell` at once: cells with one torch thread
    each use a small machine better than one cell with all of its threads.

    Processes fork from a server that has already imported torch and transformers (forkserver with
    preload), so a cell starts in a moment, yet no cell inherits another's state."""

    def __init__(self, threads_per_cell: int, workers: int | None = None):
        self.slots = workers or max(1, machine_cores() // threads_per_cell)
        self.context = mp.get_context("forkserver")
        self.context.set_forkserver_preload(["transferlab.train.loop", "transferlab.sweep.cell"])
        self.running: dict = {}  # sentinel -> (job, process, connection)

    def submit(self, job: CellJob) -> None:
        receive, send = self.context.Pipe(duplex=False)
        process = self.context.Process(target=child_main, args=(job, send), name=f"cell {job.id}")
        process.start()
        send.close()
        self.running[process.sentinel] = (job, process, receive)

    def wait(self, timeout: float) -> list[tuple[CellJob, dict]]:
        finished = []
        for sentinel in wait_for(list(self.running), timeout=timeout):
            job, process, receive = self.running.pop(sentinel)
            outcome = receive.recv() if receive.poll() else None
            process.join()
            receive.close()
            if outcome is None:
                outcome = {"ok": False, "wall_s": None,
                           "error": f"the cell's process died (exit code {process.exitcode}); see its cell.log"}
            finished.append((job, outcome))
        return finished

    def close(self) -> None:
        for job, process, receive in self.running.values():
            process.terminate()
            process.join(timeout=10)
            receive.close()
        self.running.clear()


class RayExecutor:
    """One Ray task per cell with the sweep file's `num_cpus` / `num_gpus`; each task in a fresh
    worker process (max_calls=1). Uses the Ray already initialised in this process, else connects to
    `address` (or $RAY_ADDRESS), else starts a local Ray. On a cluster, the sweep folder must be on a
    file system every node sees."""

    def __init__(self, settings: ExecutorSettings, workers: int | None = None):
        import ray

        self.ray = ray
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            ray.init(address=settings.ray.address, log_to_driver=False)
        num_cpus = settings.ray.num_cpus or settings.threads_per_cell
        num_gpus = settings.ray.num_gpus
        self.remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_calls=1)(run_cell)
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1) // num_cpus] + ([resources.get("GPU", 0) // num_gpus] if num_gpus else [])
        self.slots = workers or max(1, int(min(fits)))
        self.running: dict = {}  # object ref -> job

    def submit(self, job: CellJob) -> None:
        self.running[self.remote.remote(job)] = job

    def wait(self, timeout: float) -> list[tuple[CellJob, dict]]:
        if not self.running:
            return []
        refs = list(self.running)
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        finished = []
        for ref in ready:
            job = self.running.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a crashed worker or lost node fails this cell only
                outcome = {"ok": False, "wall_s": None, "error": f"ray: {type(err).__name__}: {err}"[:2000]}
            finished.append((job, outcome))
        return finished

    def close(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        self.running.clear()
        if self.started_ray:
            self.ray.shutdown()


def make_executor(kind: str, settings: ExecutorSettings, workers: int | None = None):
    if kind == "local":
        return LocalExecutor(settings.threads_per_cell, workers)
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as err:
            raise RuntimeError("the ray executor needs Ray: pip install 'transferlab[ray]'") from err
        return RayExecutor(settings, workers)
    raise ValueError(f"unknown executor {kind!r}; allowed: local, ray")
