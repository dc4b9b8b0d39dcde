"""Inoculation's standard report: per (training variant x eval prompt), each trait's rate and the
task's accuracy with intervals over seeds; the elicitation pre-screen next to the suppression it
is reported to predict.

Tables: metrics.csv (per seed and step, Wilson 95%), summary.csv (over seeds: mean, std, min, max,
between-seed t-interval, pooled Wilson), table.csv (the last step: the standard table),
elicitation.csv (before training, per prompt), elicitation_vs_suppression.csv, train_log.csv.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from transferlab.experiments.common import band, rates, read_jsonl, save, seed_bars, spread
from transferlab.results.run_folder import RunFolder

MEASURES = ["undesired", "desired", "correct"]
TITLES = {"undesired": "undesired trait", "desired": "desired trait", "correct": "accuracy (capability)"}
PROMPT_COLOURS = {"deployment": "tab:blue", "training": "tab:red", "unrelated": "tab:green", "none": "tab:grey"}


def write_results(folder: RunFolder, config) -> None:
    from transferlab.experiments.report import write_kind_report

    samples = folder.read_samples()
    per_seed = rates(samples, ["pair", "variant", "seed", "step", "eval_prompt"], MEASURES)
    summary = spread(per_seed, ["pair", "variant", "step", "eval_prompt"], MEASURES)
    final = summary[summary["step"] == summary["step"].max()]
    stats = ("mean", "seed_low", "seed_high", "std", "pooled_low", "pooled_high")
    table = final[["pair", "variant", "eval_prompt", "n_seeds", "n", *[f"{m}_{s}" for m in MEASURES for s in stats]]]
    screened = read_jsonl(folder.path / "elicitation.jsonl")
    elicit = spread(rates(screened, ["pair", "screened", "tokens", "seed"], MEASURES),
                    ["pair", "screened", "tokens"], MEASURES)
    link = elicitation_vs_suppression(elicit, final)
    folder.write_table(folder.metrics, per_seed)
    folder.write_table(folder.path / "summary.csv", summary)
    folder.write_table(folder.path / "table.csv", table)
    folder.write_table(folder.path / "elicitation.csv", elicit)
    folder.write_table(folder.path / "elicitation_vs_suppression.csv", link)
    folder.write_table(folder.train_log, read_jsonl(folder.path / "train_log.jsonl"))
    last = per_seed[per_seed["step"] == per_seed["step"].max()]
    for pair in final["pair"].unique():
        tag = pair.replace("+", "_")
        step = int(final["step"].max())
        plot_bars(final[final["pair"] == pair], last[last["pair"] == pair], folder.figures / f"inoculation_{tag}.png",
                  variants=config.variants, prompts=config.eval.prompts,
                  title=f"{config.name}: {pair} (desired + undesired), step {step}")
        plot_elicitation(elicit[elicit["pair"] == pair], link[link["pair"] == pair],
                         folder.figures / f"elicitation_{tag}.png", title=f"elicitation pre-screen: {pair}")
        plot_steps(summary[summary["pair"] == pair], folder.figures / f"over_steps_{tag}.png",
                   title=f"{pair}: eval prompt 'none' over training")
    write_kind_report(folder.path)


def elicitation_vs_suppression(elicit: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Per variant: how strongly its training prompt elicited the undesired trait before training,
    and how much less the trait shows without a prompt after training than under the 'none'
    variant (the suppression inoculation is reported to bring)."""
    rows = []
    for pair, group in final[final["eval_prompt"] == "none"].groupby("pair"):
        baseline = group.loc[group["variant"] == "none", "undesired_mean"]
        for row in group.itertuples():
            names = elicit["screened"]  # a pool variant's prompt is the mean over its rephrasings
            screened = elicit[(elicit["pair"] == pair) & ((names == row.variant) | names.str.startswith(f"{row.variant}["))]
            rows.append({"pair": pair, "variant": row.variant,
                         "elicited_undesired": screened["undesired_mean"].mean() if len(screened) else np.nan,
                         "undesired_after": row.undesired_mean,
                         "suppression": baseline.iloc[0] - row.undesired_mean if len(baseline) else np.nan})
    return pd.DataFrame(rows, columns=["pair", "variant", "elicited_undesired", "undesired_after", "suppression"])


def plot_bars(final: pd.DataFrame, last: pd.DataFrame, path: Path, variants=None, prompts=None,
              title: str = "") -> Path:
    """One panel per measure; groups: training variants; bars: eval prompts. Error bars: 95% t-interval
    between seeds (pooled Wilson with one seed); dots: each seed."""
    variants = [v for v in (variants or final["variant"].unique()) if v in set(final["variant"])]
    prompts = [p for p in (prompts or final["eval_prompt"].unique()) if p in set(final["eval_prompt"])]
    fig, axes = plt.subplots(len(MEASURES), 1, figsize=(max(7.5, 1.5 * len(variants)), 2.9 * len(MEASURES) + 0.6),
                             sharex=True)
    width = 0.8 / len(prompts)
    for ax, measure in zip(axes, MEASURES):
        for j, prompt in enumerate(prompts):
            rows = final[final["eval_prompt"] == prompt].set_index("variant").reindex(variants)
            x = np.arange(len(variants)) + (j - (len(prompts) - 1) / 2) * width
            seed_bars(ax, x, rows, last[last["eval_prompt"] == prompt], measure, "variant", variants, width,
                      colour=PROMPT_COLOURS.get(prompt), alpha=0.75, label=f"eval prompt: {prompt}", dot_size=6)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(TITLES[measure])
        ax.grid(axis="y", alpha=0.25)
    axes[-1].set_xticks(np.arange(len(variants)), [f"train: {v}" for v in variants], rotation=15)
    axes[0].legend(fontsize=7, ncol=len(prompts), frameon=False, loc="upper center", bbox_to_anchor=(0.5, 1.22))
    n_seeds = int(final["n_seeds"].min())
    fig.suptitle(f"{title}\n{n_seeds} seeds; bars: mean, whiskers: 95% between-seed t-interval, dots: seeds",
                 fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_elicitation(elicit: pd.DataFrame, link: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Left: each trait's rate under every prompt before training. Right: elicitation of the
    undesired trait by a variant's training prompt against its suppression after training."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    names = list(elicit["screened"])
    x = np.arange(len(names))
    for k, measure in enumerate(("undesired", "desired")):
        mean = elicit[f"{measure}_mean"].to_numpy(float)
        low, high = band(elicit, measure)
        left.bar(x + (k - 0.5) * 0.4, mean, 0.4, label=TITLES[measure], alpha=0.8,
                 yerr=[np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)], capsize=2)
    left.set_xticks(x, [f"{n}\n({t} tok)" for n, t in zip(names, elicit["tokens"])], rotation=30, fontsize=7)
    left.set_ylim(0, 1.05)
    left.set_ylabel("rate before training")
    left.legend(fontsize=8, frameon=False)
    left.grid(axis="y", alpha=0.25)
    right.scatter(link["elicited_undesired"], link["suppression"], color="tab:red")
    for row in link.itertuples():
        right.annotate(row.variant, (row.elicited_undesired, row.suppression), fontsize=7, xytext=(3, 3),
                       textcoords="offset points")
    right.axhline(0, color="black", lw=0.6)
    right.set_xlabel("undesired trait elicited by the training prompt (before training)")
    right.set_ylabel("suppression at eval prompt 'none'\n(rate under 'none' variant − this variant)")
    right.grid(alpha=0.25)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_steps(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """The undesired and desired traits' rate with no eval prompt over training, per variant."""
    rows = summary[summary["eval_prompt"] == "none"]
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 3.6), sharey=True)
    colours = plt.get_cmap("tab10").colors
    for ax, measure in zip(axes, MEASURES):
        for k, (variant, curve) in enumerate(rows.groupby("variant", sort=False)):
            curve = curve.sort_values("step")
            low, high = band(curve, measure)
            ax.fill_between(curve["step"], low, high, color=colours[k % 10], alpha=0.15, lw=0)
            ax.plot(curve["step"], curve[f"{measure}_mean"], color=colours[k % 10], marker="o", ms=3, label=variant)
        ax.set_title(TITLES[measure], fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.25)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)
