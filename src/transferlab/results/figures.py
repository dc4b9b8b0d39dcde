"""Figures for the transfer question: does accuracy learnt under one prompt survive the swapped one?

Agg backend so figures render on headless training machines.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from transferlab.results.metrics import across_seeds
from transferlab.results.run_folder import atomic_write

GAP_COLOUR = "tab:red"
ACC_COLOUR = "tab:blue"
ADH_COLOUR = "black"
CUT_COLOUR = "grey"
PROMPT_COLOURS = {True: "tab:blue", False: "tab:orange"}  # keyed by is_trained
TASK_COLOURS = plt.get_cmap("tab10").colors  # the grid gives each task (column) its own colour
LEGEND_INCHES = 0.7  # room under the grid for its legend
Y_LIMITS = (-0.2, 1.05)
NOT_LEARNED_NOTE = "no gap: trained accuracy\nnot above chance"
CUT_FIRST_NOTE = "no gap: cut before the trained\naccuracy rose above chance"


def no_gap_note(cut_any: bool) -> str:
    """Why a panel has no gap curve: nothing learned, or the curve cut (swapped adherence under the
    floor) before anything was learned, where the accuracy may well rise later."""
    return CUT_FIRST_NOTE if cut_any else NOT_LEARNED_NOTE


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
    The gap is drawn only where `gap_metrics` gives one (the capability learned: trained accuracy
    above chance); the accuracy and the task's chance stay, so a flat curve shows why.
    """
    return save_figure(gap_figure(gaps, title, eval_set=eval_set, cut_label=cut_label), path)


def gap_figure(gaps: pd.DataFrame, title: str | None = None, *, eval_set: str | None = None,
               cut_label: str = "adherence < 50%"):
    """`plot_gap`'s figure, unsaved, so what it draws can be read back."""
    panels = _panels(gaps, eval_set)
    fig, axes = _figure(len(panels), title)
    for ax, (task, chosen, rows) in zip(axes, panels):
        _draw_gap_panel(ax, across_seeds(rows).sort_values("step"), cut_label)
        if "chance" in rows:
            ax.axhline(rows["chance"].iloc[0], color=ACC_COLOUR, ls=":", lw=1, alpha=0.6, label="chance accuracy")
        first = rows.iloc[0]
        ax.set_title(f"{task} (trained: {first['trained']}, swapped: {first['swapped']})", fontsize=10)
        ax.set_ylabel(f"gap, accuracy, adherence ({chosen})" if ax is axes[0] else None)
    _legend_below(axes)
    return fig


def plot_accuracy(metrics: pd.DataFrame, path: str | Path, *, eval_set: str | None = None) -> Path:
    """Accuracy of every prompted condition over steps, with Wilson bands: the raw curves behind the gap.

    `metrics` is `condition_metrics` output; several seeds are averaged (accuracy and band bounds).
    """
    return _plot_conditions(metrics, path, ("accuracy", "acc_low", "acc_high"), "accuracy", eval_set)


def plot_adherence(
    metrics: pd.DataFrame, path: str | Path, *, eval_set: str | None = None, adherence_floor: float = 0.5
) -> Path:
    """Adherence of every prompted condition over steps, with Wilson bands and the floor that cuts the gap:
    whether the model still does what each prompt asks, which the gap silently assumes."""
    columns = ("adherence", "adh_low", "adh_high")
    return _plot_conditions(metrics, path, columns, "adherence (judge)", eval_set, floor=adherence_floor)


def _plot_conditions(metrics: pd.DataFrame, path, *args, **kwargs) -> Path:
    return save_figure(conditions_figure(metrics, *args, **kwargs), path)


def conditions_figure(
    metrics: pd.DataFrame, columns: tuple[str, str, str], ylabel: str, eval_set=None, floor=None
):
    """One panel per task: a line and band per prompted propensity, the trained prompt first
    (`plot_accuracy` and `plot_adherence`'s figure, unsaved, so what it draws can be read back)."""
    value, low, high = columns
    panels = _panels(metrics, eval_set)
    fig, axes = _figure(len(panels), None, ylim=(-0.02, 1.05))
    for ax, (task, chosen, rows) in zip(axes, panels):
        means = rows.groupby(["prompted", "is_trained", "step"])[list(columns)].mean()
        by_role = means.reset_index().sort_values("is_trained", ascending=False, kind="stable")
        for (is_trained, prompted), curve in by_role.groupby(["is_trained", "prompted"], sort=False):
            role = "trained" if is_trained else "swapped"
            colour = PROMPT_COLOURS[bool(is_trained)]
            label = f"{prompted} ({role})"
            ax.plot(curve["step"], curve[value], color=colour, marker="o", ms=3, label=label)
            ax.fill_between(curve["step"], curve[low], curve[high], color=colour, alpha=0.2, lw=0)
        if floor is not None:
            ax.axhline(floor, color=CUT_COLOUR, ls=":", lw=1, label=f"floor {floor:.0%}")
        ax.set_title(f"{task} ({chosen})", fontsize=10)
        ax.set_ylabel(ylabel if ax is axes[0] else None)
        ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def plot_loss(train_log: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Training loss per step, with a rolling mean (batch noise hides the trend) and the learning rate
    on a second axis (a jump in loss often lines up with the end of warmup)."""
    return save_figure(loss_figure(train_log, title), path)


def loss_figure(train_log: pd.DataFrame, title: str | None = None):
    """`plot_loss`'s figure, unsaved."""
    if train_log.empty:
        raise ValueError("nothing to plot: the training log has no steps")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    steps, loss = train_log["step"], train_log["loss"]
    window = max(1, len(train_log) // 25)
    ax.plot(steps, loss, color=ACC_COLOUR, alpha=0.3, lw=1, label="loss per step")
    if window > 1:
        smooth = loss.rolling(window, min_periods=1, center=True).mean()
        ax.plot(steps, smooth, color=ACC_COLOUR, lw=2, label=f"loss, mean of {window} steps")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(alpha=0.25)
    handles, labels = ax.get_legend_handles_labels()
    if "lr" in train_log:
        lr_ax = ax.twinx()
        lr_ax.plot(steps, train_log["lr"], color=CUT_COLOUR, ls="--", lw=1, label="learning rate")
        lr_ax.set_ylabel("learning rate", color="dimgrey")
        more = lr_ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
    ax.set_title(title or "training loss", fontsize=10)
    return fig


def plot_gap_grid(summary: pd.DataFrame, path: str | Path, **options) -> Path:
    """`gap_grid_figure`, written as a PNG."""
    return save_figure(gap_grid_figure(summary, **options), path)


def gap_grid_figure(
    summary: pd.DataFrame,
    *,
    eval_sets: dict[str, str] | None = None,
    adherence_floor: float = 0.5,
    title: str | None = None,
):
    """The research figure of a sweep: one row per variant (propensity pair), one column per task.

    Each panel shows the performance gap over training, mean over seeds, with the between-seed 95%
    t-interval as a band and the mean within-run bootstrap interval as a lighter one; the trained
    prompt's accuracy as a faint dashed line on the same 0-1 axis. The gap stops at the last step
    before any seed's swapped adherence falls below the floor (the summary's `cut_frac`; a dotted line
    marks the cut, `adherence_floor` words its note): past it the swapped accuracy no longer measures
    the swapped propensity. Beside each row: what each task was trained with, and the mean swapped
    adherence. `summary` is `aggregate.summary_table` output; `eval_sets` maps task to the eval set
    shown (default: each task's first in `summary`). Returns the figure unsaved, so its layout can be
    checked.
    """
    tasks = list(summary["task"].unique())
    eval_sets = {t: (eval_sets or {}).get(t, summary.loc[summary["task"] == t, "eval_set"].iloc[0]) for t in tasks}
    shown = summary[summary["eval_set"] == summary["task"].map(eval_sets)]
    variants = list(shown["variant"].unique())
    if not variants:
        raise ValueError("nothing to plot: the summary has no rows")
    height = 3.1 * len(variants) + LEGEND_INCHES
    fig, axes = plt.subplots(len(variants), len(tasks), figsize=(4.2 * len(tasks) + 2.8, height), sharey=True,
                             squeeze=False)
    lowest = 0.0
    for r, variant in enumerate(variants):
        notes = []
        for c, task in enumerate(tasks):
            ax, colour = axes[r, c], TASK_COLOURS[c % len(TASK_COLOURS)]
            rows = shown[(shown["variant"] == variant) & (shown["task"] == task)]
            _grid_axes(ax, r, c, len(variants), f"{task} ({eval_sets[task]})", variant)
            if rows.empty:
                ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="dimgrey")
                ax.set_xticks([])
                continue
            lowest = min(lowest, _draw_grid_panel(ax, rows, colour, adherence_floor))
            notes.append((task, colour, _row_note(rows)))
        _row_notes(axes[r, -1], notes)
    axes[0, 0].set_ylim(max(-1.0, min(-0.25, lowest - 0.1)), 1.05)  # bands may run off: early gaps are noisy
    _grid_legend(fig)
    seeds = shown.loc[shown["measure"] == "accuracy", "n_seeds"]
    n_seeds = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    fig.suptitle(title or f"Performance gap 1 − acc(swapped) / acc(trained) over training "
                 f"(mean of {n_seeds} seed{'' if seeds.max() == 1 else 's'})", fontsize=12)
    fig.tight_layout(rect=(0, LEGEND_INCHES / height, 1, 1))
    return fig


def _grid_axes(ax, r: int, c: int, n_rows: int, column_title: str, variant: str) -> None:
    """Column titles on the top row, the variant as the row label, step labels on the bottom row."""
    ax.axhline(0, color="black", lw=0.6)
    ax.grid(alpha=0.25)
    if r == 0:
        ax.set_title(column_title, fontsize=11)
    if c == 0:
        ax.set_ylabel(f"{variant}\ngap · accuracy", fontsize=10)
    if r == n_rows - 1:
        ax.set_xlabel("training step")


def _draw_grid_panel(ax, rows: pd.DataFrame, colour, floor: float) -> float:
    """Gap mean and both bands up to the cut, trained accuracy throughout; returns the lowest mean drawn."""
    gap = rows[rows["measure"] == "gap"].sort_values("step")
    acc = rows[(rows["measure"] == "accuracy") & (rows["prompt"] == "trained")].sort_values("step")
    ax.plot(acc["step"], acc["mean"], color=colour, alpha=0.45, lw=1.5, ls="--")
    steps = gap["step"].to_numpy()
    cut = np.maximum.accumulate(gap["cut_frac"].fillna(0).to_numpy() > 0) if len(gap) else np.zeros(0, bool)
    kept = gap[~cut]
    for low, high, alpha in (("within_run_ci_low", "within_run_ci_high", 0.12),
                             ("between_seed_ci_low", "between_seed_ci_high", 0.3)):
        lo, hi = kept[low].to_numpy(float), kept[high].to_numpy(float)
        ax.fill_between(kept["step"], lo, hi, where=np.isfinite(lo) & np.isfinite(hi), color=colour, alpha=alpha,
                        lw=0, interpolate=True)
    ax.plot(kept["step"], kept["mean"], color=colour, lw=2, marker="o", ms=3.5)
    if len(kept) and kept["mean"].isna().all():
        ax.text(0.5, 0.5, no_gap_note(bool(cut.any())), transform=ax.transAxes, ha="center", color="dimgrey", fontsize=8)
    if cut.any():
        first = steps[np.argmax(cut)]
        ax.axvline(first, color=CUT_COLOUR, ls=":", lw=1.5)
        right = first > (steps.min() + steps.max()) / 2
        ax.text(first, 0.97, f"cut at step {first}: swapped\nadherence < {floor:.0%} ",
                transform=ax.get_xaxis_transform(), ha="right" if right else "left", va="top", fontsize=7.5,
                color="dimgrey")
    drawn = kept["mean"].to_numpy(float)
    drawn = drawn[np.isfinite(drawn)]
    return float(drawn.min()) if len(drawn) else 0.0


def _row_note(rows: pd.DataFrame) -> str:
    """What a task was trained with, and its mean swapped adherence over seeds and the evaluations
    after step 0 (all evaluations when there is only step 0)."""
    adherence = rows[(rows["measure"] == "adherence") & (rows["prompt"] == "swapped")]
    trained_steps = adherence[adherence["step"] > 0]
    mean = (trained_steps if len(trained_steps) else adherence)["mean"].mean()
    first = rows.iloc[0]
    return f"trained {first['trained']}, swapped {first['swapped']}\nswapped adherence {mean:.0%}"


def _row_notes(ax, notes: list[tuple[str, tuple, str]]) -> None:
    """The text column right of a row: one coloured block per task."""
    spacing = min(0.42, 1.0 / max(len(notes), 1))
    for i, (task, colour, note) in enumerate(notes):
        y = 0.5 + (len(notes) / 2 - i - 0.5) * spacing
        ax.annotate(f"{task}\n{note}", xy=(1.05, y), xycoords="axes fraction", ha="left", va="center",
                    fontsize=8.5, color=colour, annotation_clip=False)


def _grid_legend(fig) -> None:
    """One legend under the grid, in neutral grey: every panel draws the same things in its task colour."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = "dimgrey"
    handles = [
        Line2D([], [], color=grey, lw=2, marker="o", ms=3.5, label="performance gap, mean over seeds"),
        Patch(color=grey, alpha=0.45, label="95% t-interval between seeds"),
        Patch(color=grey, alpha=0.15, label="95% paired bootstrap within a run (mean)"),
        Line2D([], [], color=grey, alpha=0.45, lw=1.5, ls="--", label="accuracy, trained prompt"),
        Line2D([], [], color=CUT_COLOUR, ls=":", lw=1.5, label="cut: a seed's swapped adherence < floor"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8.5, frameon=False, bbox_to_anchor=(0.5, 0))


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
    if np.isnan(gap[kept]).all():
        ax.text(0.5, 0.5, no_gap_note(bool(cut.any())), transform=ax.transAxes, ha="center", color="dimgrey", fontsize=8)
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


def save_figure(fig, path: str | Path) -> Path:
    """Write a PNG atomically (a killed run leaves the old figure or the new one, never half of
    one), close the figure, return the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)
