"""Answers that belong to another trained task: a fact question answered with a colour.

Under a prompt that, in training, only ever came with another task, a model may answer in that
task's answer space instead of its own. The gap then measures a confusion of tasks rather than a
loss of the capability; `off_task` in metrics.csv shows it next to the accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def off_task(samples: pd.DataFrame, tasks: Mapping[str, object]) -> pd.Series:
    """Per sample: its response is a candidate answer of another of `tasks` (`Task.is_candidate`) and
    not one of its own task's (two tasks sharing an answer space never count as off task)."""
    if samples.empty:
        return pd.Series(dtype=bool, index=samples.index)
    missing = sorted(set(samples["task"]) - set(tasks))
    if missing:
        raise ValueError(f"off_task needs every sampled task; missing {missing}")
    flags = {}
    for task, response in samples[["task", "response"]].drop_duplicates().itertuples(index=False):
        own = tasks[task].is_candidate(response)
        flags[task, response] = not own and any(other.is_candidate(response) for name, other in tasks.items()
                                                if name != task)
    keys = zip(samples["task"], samples["response"])
    return pd.Series([flags[key] for key in keys], index=samples.index, dtype=bool)
