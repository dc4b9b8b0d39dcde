"""Live progress for a run: stage, step, loss, latest eval accuracies and time left (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    def __init__(self, total_steps: int, quiet: bool = False, completed: int = 0):
        self.console = Console(stderr=True, quiet=quiet)
        self.bar = Progress(
            TextColumn("[bold]{task.fields[stage]:<22}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self.task = self.bar.add_task("run", total=max(total_steps, 1), completed=completed,
                                      stage="starting", loss="-")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def stage(self, name: str) -> None:
        self.bar.update(self.task, stage=name)

    def step(self, step: int, loss: float) -> None:
        self.bar.update(self.task, completed=step, loss=f"{loss:.3f}")

    def accuracies(self, scores: dict[tuple[str, str], float]) -> None:
        """Print one line per evaluation so the history stays on screen above the bar."""
        done = int(self.bar.tasks[0].completed)
        text = "  ".join(f"{task}[{prompted}] {acc:.2f}" for (task, prompted), acc in sorted(scores.items()))
        self.bar.console.print(f"step {done:>5} acc  {text}", highlight=False, soft_wrap=True, markup=False)
