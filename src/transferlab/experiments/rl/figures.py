"""figures/rl.png: what the RL steps saw, from train_log.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from transferlab.experiments.rl.config import COMPONENTS
from transferlab.results.figures import plt, save_figure


def plot_rl(train_log: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Left: mean reward and each component per step. Middle: the share of groups all right, all
    wrong and mixed (only mixed groups teach). Right: KL to the starting weights and the entropy
    estimate (mean -log p of the sampled tokens)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    steps = train_log["step"]
    axes[0].plot(steps, train_log["reward"], color="black", lw=2, label="reward")
    for c in COMPONENTS:
        axes[0].plot(steps, train_log[f"reward_{c}"], lw=1, label=c)
    axes[0].set_title("reward per completion", fontsize=9)
    for share, colour in (("all_right", "tab:green"), ("all_wrong", "tab:red"), ("mixed", "tab:blue")):
        axes[1].plot(steps, train_log[share], color=colour, label=share.replace("_", " "))
    axes[1].set_title("share of groups (by the task's grader)", fontsize=9)
    axes[2].plot(steps, train_log["kl"], color="tab:purple", label="KL to the start")
    entropy = axes[2].twinx()
    entropy.plot(steps, train_log["entropy"], color="tab:grey", ls="--", label="entropy (nats/token)")
    axes[2].set_title("KL (nats/token) and entropy", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    entropy.legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
