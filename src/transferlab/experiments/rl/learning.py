"""The learning criterion set before choosing any RL knob: the rollout reward rises beyond noise.

Over a run's RL steps (train_log.csv), compare the mean per-step reward of the last `window` steps
with that of the first `window`: the rise counts when it exceeds 1.96 standard errors of the
difference (Welch, from the spread of the per-step means). Knobs are chosen by this alone, never by
what the evaluations under the other prompt show.
"""

from __future__ import annotations

import math

import pandas as pd


def reward_rise(log: pd.DataFrame, window: int = 30, column: str = "reward") -> dict:
    """First and last windows' mean reward, their difference, its standard error and the verdict."""
    values = log.sort_values("step")[column].to_numpy(float)
    if len(values) < 2 * window:
        raise ValueError(f"{len(values)} steps cannot hold two windows of {window}: lower the window")
    first, last = values[:window], values[-window:]
    se = math.sqrt(first.var(ddof=1) / window + last.var(ddof=1) / window)
    rise = float(last.mean() - first.mean())
    return {"steps": len(values), "window": window, "first_mean": float(first.mean()),
            "last_mean": float(last.mean()), "rise": rise, "se": se, "learns": bool(rise > 1.96 * se)}
