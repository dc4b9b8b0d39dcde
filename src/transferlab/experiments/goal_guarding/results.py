"""Goal guarding's tables and figures: the rate of the initial vs the alternate behaviour on eval
prompts over stage 2, per cell, with sampling intervals and the spread between seeds side by side.

Tables: metrics.csv (per seed: rates with Wilson 95% intervals), summary.csv (over seeds: mean, std,
min, max, between-seed t-interval, mean Wilson half-width, pooled Wilson), final.csv (the last
step on eval prompts), instil.csv (before and after stage 1), train_log.csv.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from transferlab.experiments.common import band, rates, read_jsonl, save, spread
from transferlab.results.run_folder import RunFolder

MEASURES = ["initial", "alternate", "correct"]
CELL_KEYS = ["cell", "lr", "targets", "mix"]
MIX_COLOURS = plt.get_cmap("tab10").colors


def write_results(folder: RunFolder, config) -> None:
    from transferlab.experiments.report import write_kind_report

    samples = folder.read_samples()
    per_seed = rates(samples, [*CELL_KEYS, "seed", "step", "side"], MEASURES)
    summary = spread(per_seed, [*CELL_KEYS, "step", "side"], MEASURES)
    last = summary.groupby("cell")["step"].transform("max")
    final = summary[(summary["step"] == last) & (summary["side"] == "eval")]
    instilled = read_jsonl(folder.path / "instil.jsonl")
    instil = spread(rates(instilled, ["cell", "seed", "side"], MEASURES), ["cell", "side"], MEASURES)
    folder.write_table(folder.metrics, per_seed)
    folder.write_table(folder.path / "summary.csv", summary)
    folder.write_table(folder.path / "final.csv", final)
    folder.write_table(folder.path / "instil.csv", instil)
    log = folder.path / "train_log.jsonl"
    if log.exists():
        folder.write_table(folder.train_log, read_jsonl(log))
    s = config.setting
    what = f"initial = {s.initial} on eval prompts, alternate = {s.alternate} ({s.style} style)"
    plot_over_steps(summary, folder.figures / "goal_guarding.png", title=f"{config.name}: {what}")
    plot_final_by_lr(final, per_seed, folder.figures / "final_by_lr.png", title=f"{config.name}: end of stage 2")
    write_kind_report(folder.path)


def plot_over_steps(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Rows: target policy; columns: learning rate. Initial behaviour (solid) and alternate (dashed)
    on eval prompts over stage 2, one colour per mixing ratio; band: the between-seed 95% t-interval
    (the pooled Wilson interval with one seed); grey dotted: accuracy on eval prompts."""
    rows = summary[summary["side"] == "eval"]
    targets, lrs, mixes = (list(dict.fromkeys(rows[k])) for k in ("targets", "lr", "mix"))
    fig, axes = plt.subplots(len(targets), len(lrs), figsize=(max(7.5, 4.2 * len(lrs)), 3.3 * len(targets) + 1.2),
                             sharey=True, squeeze=False)
    for (r, target), (c, lr) in ((a, b) for a in enumerate(targets) for b in enumerate(lrs)):
        ax = axes[r, c]
        for k, mix in enumerate(mixes):
            curve = rows[(rows["targets"] == target) & (rows["lr"] == lr) & (rows["mix"] == mix)].sort_values("step")
            if curve.empty:
                continue
            colour = MIX_COLOURS[k % len(MIX_COLOURS)]
            low, high = band(curve, "initial")
            ax.fill_between(curve["step"], low, high, color=colour, alpha=0.12, lw=0)
            ax.fill_between(curve["step"], curve["initial_pooled_low"], curve["initial_pooled_high"], color=colour,
                            alpha=0.3, lw=0)
            ax.plot(curve["step"], curve["initial_mean"], color=colour, marker="o", ms=3,
                    label=f"initial, off/on {mix}")
            ax.plot(curve["step"], curve["alternate_mean"], color=colour, ls="--", label=f"alternate, off/on {mix}")
            if k == 0:
                ax.plot(curve["step"], curve["correct_mean"], color="grey", ls=":", label="accuracy")
        ax.set_title(f"{target}, lr {lr:g}", fontsize=10)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.25)
        if r == len(targets) - 1:
            ax.set_xlabel("stage-2 step")
        if c == 0:
            ax.set_ylabel("rate on eval prompts")
    n_seeds = int(rows["n_seeds"].max())
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, frameon=False, loc="lower center", ncol=min(len(labels), 5))
    fig.suptitle(f"{title}\nmean of {n_seeds} seed(s); around the initial rate: light band 95% between-seed "
                 f"t-interval, dark band pooled Wilson 95% (sampling)", fontsize=9)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    return save(fig, path)


def plot_final_by_lr(final: pd.DataFrame, per_seed: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Removal against learning rate: the initial behaviour's rate on eval prompts at the last step,
    per target policy and mixing ratio; error bars between seeds, dots for each seed."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    last = per_seed[(per_seed["side"] == "eval")]
    last = last[last["step"] == last.groupby("cell")["step"].transform("max")]
    for k, ((target, mix), rows) in enumerate(final.groupby(["targets", "mix"], sort=False)):
        rows = rows.sort_values("lr")
        colour = MIX_COLOURS[k % len(MIX_COLOURS)]
        low, high = band(rows, "initial")
        mean = rows["initial_mean"].to_numpy(float)
        shift = 1 + 0.04 * (k - 0.5)  # side by side, so error bars at one lr do not hide each other
        ax.errorbar(rows["lr"] * shift, mean, yerr=[mean - low, high - mean], color=colour, marker="o", capsize=3,
                    label=f"{target}, off/on {mix}")
        dots = last[(last["targets"] == target) & (last["mix"] == mix)]
        ax.scatter(dots["lr"] * shift, dots["initial"], color=colour, s=10, alpha=0.5)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("stage-2 learning rate")
    ax.set_ylabel("initial behaviour on eval prompts (last step)")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"{title}\nerror bars: 95% between-seed t-interval; dots: seeds", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
