"""The data-file lines a run's tasks skipped, gathered for the run folder's `skipped.jsonl`.

The loaders warn with counts per kind of problem and the first few lines; the run folder keeps every
skipped line, so a researcher can see exactly which rows of a public file a run did not use.
"""

from __future__ import annotations


def skipped_lines(tasks: dict) -> list[dict]:
    """One row per skipped line: task, file, line, kind, reason (tasks without a data file give none)."""
    rows = []
    for name, task in tasks.items():
        report = getattr(task, "report", None)
        if report is not None and hasattr(report, "skipped_rows"):
            rows += [{"task": name, **row} for row in report.skipped_rows()]
    return rows
