"""What a person watching a sweep sees (rich): cells done / running / failed, the cells running now,
time elapsed and left; a line per finished cell; the cell list of a dry run; the closing summary."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SweepProgress:
    def __init__(self, total: int, already_done: int, slots: int, quiet: bool = False):
        self.console = Console(stderr=True, quiet=quiet)
        self.slots = slots
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=self.console, transient=False)
        self.main = self.bar.add_task("sweep", total=total, completed=already_done, counts="", left="")
        self.total = total
        self.counts = {"done": already_done, "running": 0, "failed": 0}
        self.started: dict[str, tuple[float, int]] = {}  # running cell -> (start time, its bar)
        self.walls: list[float] = []
        self.pending = total - already_done

    def __enter__(self):
        self.bar.__enter__()
        self.refresh()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def cell_started(self, cell_id: str) -> None:
        self.pending -= 1
        self.counts["running"] += 1
        row = self.bar.add_task(f"  {cell_id}", total=None, counts="", left="")
        self.started[cell_id] = (time.time(), row)
        self.refresh()

    def cell_finished(self, cell_id: str, ok: bool, wall_s: float | None, error: str | None = None) -> None:
        began, row = self.started.pop(cell_id)
        self.bar.remove_task(row)
        self.counts["running"] -= 1
        self.counts["done" if ok else "failed"] += 1
        self.bar.advance(self.main)
        if ok:
            self.walls.append(wall_s or time.time() - began)
            self.console.print(f"[green]done[/green]   {cell_id}  ({duration(wall_s)})", highlight=False)
        else:
            self.console.print(f"[red]failed[/red] {cell_id}: {error}", highlight=False, soft_wrap=True)
        self.refresh()

    def refresh(self) -> None:
        c = self.counts
        finished = c["done"] + c["failed"]
        self.bar.update(self.main, counts=f"{finished}/{self.total}  done {c['done']}  running {c['running']}  "
                        f"failed {c['failed']}",
                        left=f"left ~{duration(self.time_left())}")

    def time_left(self) -> float | None:
        """Mean wall time of the cells finished so far, spread over the slots."""
        if not self.walls:
            return None
        mean = sum(self.walls) / len(self.walls)
        now = time.time()
        running = sum(max(mean - (now - began), 0.0) for began, _ in self.started.values())
        return (mean * self.pending + running) / max(self.slots, 1)


def cells_table(plan: list[tuple[str, str, list[str]]], title: str) -> Table:
    """A dry run: each cell, what would happen to it, and its overrides."""
    table = Table(title=title, title_justify="left")
    table.add_column("cell", no_wrap=True)
    table.add_column("plan")
    table.add_column("overrides", overflow="fold")
    words = {"skip": "skip (finished)", "fresh": "run", "resume": "resume from its checkpoint",
             "restart": "rerun (unfinished folder moved aside)"}
    for cell_id, action, overrides in plan:
        table.add_row(cell_id, words.get(action, action), " ".join(overrides))
    return table


def summary_table(cells: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("cell", no_wrap=True)
    for column in ("state", "wall", "error"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "failed": "red", "running": "yellow", "pending": "dim"}
    for entry in cells:
        state = entry["state"]
        table.add_row(entry["id"], f"[{colours[state]}]{state}[/]", duration(entry.get("wall_s")),
                      entry.get("error") or "")
    return table
