"""The persona pre-stage's effect on adherence: the main experiment's adherence and accuracy under
the trained and the swapped prompt, with the stage and without it, over training.

Tables: adherence.csv (per seed, Wilson 95%), adherence_summary.csv (over seeds: mean, spread,
between-seed t-interval, pooled Wilson), train_log.csv (the stage). Each main run keeps its own
folder (metrics.csv, gaps.csv, figures) under with_stage/ and without_stage/.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from transferlab.experiments.common import rates, read_jsonl, save, spread
from transferlab.experiments.report import write_kind_report
from transferlab.results.run_folder import RunFolder

MEASURES = ["adherent", "correct"]
KEYS = ["variant", "task", "eval_set", "role", "prompted"]
STYLE = {("with_stage", "trained"): ("tab:blue", "-"), ("with_stage", "swapped"): ("tab:orange", "-"),
         ("without_stage", "trained"): ("tab:blue", "--"), ("without_stage", "swapped"): ("tab:orange", "--")}


def read_runs(folder: RunFolder) -> pd.DataFrame:
    """Every main run's samples, with the variant (with or without the stage) as a column."""
    frames = []
    for variant in ("with_stage", "without_stage"):
        for run in sorted((folder.path / variant).glob("seed*")):
            if (run / "samples.jsonl").exists():
                frames.append(RunFolder(run).read_samples().assign(variant=variant))
    return pd.concat(frames, ignore_index=True)


def write_results(folder: RunFolder, config) -> None:
    samples = read_runs(folder)
    samples["role"] = (samples["prompted"] == samples["trained"]).map({True: "trained", False: "swapped"})
    per_seed = rates(samples, [*KEYS, "seed", "step"], MEASURES)
    summary = spread(per_seed, [*KEYS, "step"], MEASURES)
    folder.write_table(folder.path / "adherence.csv", per_seed)
    folder.write_table(folder.path / "adherence_summary.csv", summary)
    folder.write_table(folder.train_log, read_jsonl(folder.path / "train_log.jsonl"))
    primary = samples.groupby("task", sort=False)["eval_set"].first()  # each task's first eval set
    shown = summary[summary["eval_set"] == summary["task"].map(primary)]
    plot_adherence(shown, folder.figures / "persona_adherence.png",
                   title=f"{config.name}: main prompts = {config.main_prompt}; stage {config.stage.steps} steps")
    write_kind_report(folder.path)


def plot_adherence(summary, path: Path, title: str = "") -> Path:
    """Top row: adherence; bottom row: accuracy. One column per task (its primary eval set); solid:
    with the persona stage, dashed: without; blue: trained prompt, orange: swapped prompt; bands:
    pooled Wilson 95% (the spread between seeds is in adherence_summary.csv)."""
    tasks = list(dict.fromkeys(summary["task"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.8 * len(tasks), 6.6), sharey=True, squeeze=False)
    for c, task in enumerate(tasks):
        rows = summary[summary["task"] == task]
        for r, measure in enumerate(MEASURES):
            ax = axes[r, c]
            for (variant, role), curve in rows.groupby(["variant", "role"], sort=False):
                curve = curve.sort_values("step")
                colour, line = STYLE[(variant, role)]
                ax.fill_between(curve["step"], curve[f"{measure}_pooled_low"], curve[f"{measure}_pooled_high"],
                                color=colour, alpha=0.12, lw=0)
                ax.plot(curve["step"], curve[f"{measure}_mean"], color=colour, ls=line, marker="o", ms=3,
                        label=f"{role} prompt, {variant.replace('_', ' ')}")
            ax.set_ylim(-0.02, 1.05)
            ax.grid(alpha=0.25)
            prompts = rows.groupby("role")["prompted"].first()
            ax.set_title(f"{task} ({rows['eval_set'].iloc[0]}): {'adherence' if r == 0 else 'accuracy'}\n"
                         f"trained {prompts.get('trained')}, swapped {prompts.get('swapped')}", fontsize=9)
            ax.set_xlabel("main-experiment step")
    axes[0, 0].legend(fontsize=7, frameon=False, handlelength=3)
    n_seeds = int(summary["n_seeds"].max())
    fig.suptitle(f"{title}\nmean of {n_seeds} seed(s); bands: pooled Wilson 95%", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
