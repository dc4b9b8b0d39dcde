"""Figures for the transfer question: does accuracy learnt under one prompt survive the swapped one?

Agg backend so figures render on headless training machines.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from transferlab.results.metrics import across_seeds

GAP_COLOUR = "tab:red"
ACC_COLOUR = "tab:blue"
ADH_COLOUR = "black"
CUT_COLOUR = "grey"
PROMPT_COLOURS = {True: "tab:blue", False: "tab:orange"}  # keyed by is_trained
Y_LIMITS = (-0.2, 1.05)


def plot_gap(
    gaps: pd.DataFrame,
    path: str | Path,
    title: str | None = None,
    *,
    eval_set: str | None = None,
    cut_label: str = "adherence < 50%",
) -> Path:
    """The research figure: per task, the transfer gap over training steps.

    Next to the gap it shows the trained prompt's accuracy (a gap means little while there is
    nothing to transfer) and the swapped prompt's adherence (the gap means nothing once the model
    ignores the swapped prompt, so the curve is greyed from the first cut step). Several seeds are
    drawn as their mean, with a band covering both the between-seed spread and the mean bootstrap
    interval. `gaps` is `gap_metrics` output; each task uses `eval_set`, else its first eval_set.
    """
    panels = _panels(gaps, eval_set)
    fig, axes = _figure(len(panels), title)
    for ax, (task, chosen, rows) in zip(axes, panels):
        _draw_gap_panel(ax, across_seeds(rows).sort_values("step"), cut_label)
        first = rows.iloc[0]
        ax.set_title(f"{task} (trained: {first['trained']}, swapped: {first['swapped']})", fontsize=10)
        ax.set_ylabel(f"gap, accuracy, adherence ({chosen})" if ax is axes[0] else None)
    _legend_below(axes)
    return _save(fig, path)


def plot_accuracy(metrics: pd.DataFrame, path: str | Path, *, eval_set: str | None = None) -> Path:
    """Accuracy of every prompted condition over steps, with Wilson bands: the raw curves behind the gap.

    `metrics` is `condition_metrics` output; several seeds are averaged (accuracy and band bounds).
    """
    panels = _panels(metrics, eval_set)
    fig, axes = _figure(len(panels), None, ylim=(-0.02, 1.05))
    for ax, (task, chosen, rows) in zip(axes, panels):
        means = rows.groupby(["prompted", "is_trained", "step"])[["accuracy", "acc_low", "acc_high"]].mean()
        by_role = means.reset_index().sort_values("is_trained", ascending=False, kind="stable")
        for (is_trained, prompted), curve in by_role.groupby(["is_trained", "prompted"], sort=False):
            role = "trained" if is_trained else "swapped"
            colour = PROMPT_COLOURS[bool(is_trained)]
            label = f"{prompted} ({role})"
            ax.plot(curve["step"], curve["accuracy"], color=colour, marker="o", ms=3, label=label)
            ax.fill_between(curve["step"], curve["acc_low"], curve["acc_high"], color=colour, alpha=0.2, lw=0)
        ax.set_title(f"{task} ({chosen})", fontsize=10)
        ax.set_ylabel("accuracy" if ax is axes[0] else None)
        ax.legend(loc="best", fontsize=8, frameon=False)
    return _save(fig, path)


def _panels(frame: pd.DataFrame, eval_set: str | None) -> list[tuple[str, str, pd.DataFrame]]:
    """(task, eval_set, rows) per task in order of appearance; the given eval_set or the task's first."""
    panels = []
    for task in frame["task"].unique():
        rows = frame[frame["task"] == task]
        chosen = eval_set if eval_set is not None else rows["eval_set"].iloc[0]
        rows = rows[rows["eval_set"] == chosen]
        if len(rows):
            panels.append((task, chosen, rows))
    if not panels:
        raise ValueError(f"nothing to plot (eval_set={eval_set!r})")
    return panels


def _figure(n_panels: int, title: str | None, ylim: tuple[float, float] = Y_LIMITS):
    """One column per task on a shared y-axis."""
    fig, axes = plt.subplots(1, n_panels, figsize=(4.4 * n_panels, 3.8), sharey=True, squeeze=False)
    axes = list(axes[0])
    for ax in axes:
        ax.set_ylim(*ylim)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.25)
    if title:
        fig.suptitle(title)
    return fig, axes


def _draw_gap_panel(ax, summary: pd.DataFrame, cut_label: str) -> None:
    """Gap with its band up to the cut, greyed after it; trained accuracy and swapped adherence as context."""
    steps = summary["step"].to_numpy()
    gap = summary["gap_mean"].to_numpy()
    low, high = _band(summary)
    acc, adherence = summary["acc_trained_mean"], summary["swapped_adherence_mean"]
    ax.plot(steps, acc, color=ACC_COLOUR, alpha=0.35, lw=1.5, label="acc (trained prompt)")
    ax.plot(steps, adherence, color=ADH_COLOUR, ls=":", lw=1, label="swapped adherence")

    cut = summary["cut_any"].to_numpy(dtype=bool)
    kept = ~cut
    ax.fill_between(steps[kept], low[kept], high[kept], color=GAP_COLOUR, alpha=0.2, lw=0, label="gap band")
    ax.plot(steps[kept], gap[kept], color=GAP_COLOUR, lw=2, marker="o", ms=3, label="performance gap")
    if cut.any():
        first_cut = int(np.argmax(cut))
        after = slice(max(first_cut - 1, 0), None)  # join the grey part to the last kept point
        ax.plot(steps[after], gap[after], color=CUT_COLOUR, lw=1.2, ls="--", alpha=0.7, label="gap (cut)")
        ax.axvline(steps[first_cut], color=CUT_COLOUR, ls="--", lw=1)
        x = steps[first_cut]
        right_half = x > (steps.min() + steps.max()) / 2  # keep the text inside the panel
        ax.text(
            x, Y_LIMITS[0] + 0.03, f" {cut_label} " if right_half else f" {cut_label}",
            ha="right" if right_half else "left", va="bottom", color="dimgrey", fontsize=8,
        )


def _band(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Union of mean ± between-seed std and the mean bootstrap interval (std is nan for one seed)."""
    mean, std = summary["gap_mean"].to_numpy(), summary["gap_std"].to_numpy()
    low = np.fmin(mean - std, summary["gap_low_mean"].to_numpy())
    high = np.fmax(mean + std, summary["gap_high_mean"].to_numpy())
    return low, high


def _legend_below(axes) -> None:
    """One legend under the first panel, where it cannot hide a curve, naming what any panel draws."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    axes[0].legend(
        entries.values(), entries.keys(), loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=2, fontsize=8,
        frameon=False,
    )


def _save(fig, path: str | Path) -> Path:
    """Write a PNG (parents created), close the figure, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
