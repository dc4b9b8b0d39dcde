"""figures/rl_inoculation.png: hack rate and true accuracy per condition under every eval prompt,
and capability transfer under the deployment prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.experiments.common import seed_bars
from transferlab.experiments.rl.hacking_results import BASELINE
from transferlab.results.figures import plt, save_figure

TITLES = {"hack": "hack rate (answers the wrong check)", "correct": "true accuracy"}


def plot_hacking(table: pd.DataFrame, final: pd.DataFrame, transfer: pd.DataFrame, path: str | Path,
                 config) -> Path:
    """Top two panels: groups = the warm-start and each condition, bars = eval prompts; whiskers: 95%
    between-seed t-interval (pooled Wilson with one seed); dots: seeds. Bottom: transfer under the
    deployment prompt per condition (mean of the seeds' shares), whiskers: between-seed t-interval."""
    conditions = [BASELINE, *[c.name for c in config.conditions]]
    prompts = list(config.eval.prompts)
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 1.6 * len(conditions)), 10))
    width = 0.8 / len(prompts)
    colours = plt.get_cmap("tab10").colors
    for ax, measure in zip(axes[:2], ("hack", "correct")):
        for j, prompt in enumerate(prompts):
            rows = table[table["eval_prompt"] == prompt].set_index("condition").reindex(conditions)
            x = np.arange(len(conditions)) + (j - (len(prompts) - 1) / 2) * width
            seed_bars(ax, x, rows, final[final["eval_prompt"] == prompt], measure, "condition", conditions, width,
                      colour=colours[j % 10], alpha=0.8, label=f"eval: {prompt}", dot_size=5)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(TITLES[measure])
        ax.set_xticks(np.arange(len(conditions)), [f"train: {c}" for c in conditions], fontsize=8)
        ax.grid(axis="y", alpha=0.25)
    axes[0].legend(fontsize=7, ncol=min(len(prompts), 6), frameon=False, loc="upper center",
                   bbox_to_anchor=(0.5, 1.2))
    plot_transfer(axes[2], transfer, [c for c in conditions if c != BASELINE])
    n_seeds = int(table["n_seeds"].min()) if len(table) else 0
    fig.suptitle(f"{config.name}: h = {config.env.h}, {config.train.steps} RL steps, {n_seeds} seed(s); "
                 f"bars: mean, whiskers: 95% between-seed t-interval, dots: seeds", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_transfer(ax, transfer: pd.DataFrame, conditions: list[str]) -> None:
    rows = transfer[transfer["eval_prompt"] == "deployment"].set_index("condition").reindex(conditions) \
        if len(transfer) else pd.DataFrame(index=conditions, columns=["transfer_mean", "transfer_seed_low",
                                                                      "transfer_seed_high"])
    x = np.arange(len(conditions))
    mean = rows["transfer_mean"].to_numpy(float)
    low, high = rows["transfer_seed_low"].to_numpy(float), rows["transfer_seed_high"].to_numpy(float)
    ax.bar(x, np.nan_to_num(mean), 0.5, color="tab:purple", alpha=0.7)
    shown = np.isfinite(low) & np.isfinite(high)
    ax.errorbar(x[shown], mean[shown], yerr=[mean[shown] - low[shown], high[shown] - mean[shown]], fmt="none",
                ecolor="black", capsize=3, lw=0.8)
    for i in np.flatnonzero(~np.isfinite(mean)):
        ax.text(x[i], 0.02, "n/a: the ceiling\ngained nothing", ha="center", va="bottom", fontsize=7)
    ax.axhline(0, color="black", lw=0.6)
    ax.axhline(1, color="grey", lw=0.6, ls="--")
    ax.set_xticks(x, [f"train: {c}" for c in conditions], fontsize=8)
    ax.set_ylabel("capability transfer\n(gain / ceiling's gain,\neval: deployment)")
    ax.grid(axis="y", alpha=0.25)
