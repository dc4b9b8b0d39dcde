"""Registry of tasks: a new task is one module plus one line here."""

from __future__ import annotations

from transferlab.tasks.base import Task
from transferlab.tasks.chess_puzzles import ChessPuzzles
from transferlab.tasks.invented_facts import InventedFacts
from transferlab.tasks.realtime_qa import RealtimeQA
from transferlab.tasks.table_lookup import TableLookup

TASKS: dict[str, type] = {"table_lookup": TableLookup, "invented_facts": InventedFacts,
                          "realtime_qa": RealtimeQA, "chess": ChessPuzzles}


def make_task(name: str, **knobs) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name](**knobs)


__all__ = ["TASKS", "Task", "make_task"]
