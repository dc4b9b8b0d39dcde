"""The hacking design's tables and figure, from samples.jsonl and train_log.jsonl.

    metrics.csv     per (condition, seed, step, eval prompt): hack rate and true accuracy, Wilson 95%
    before_rl.csv   the warm-start's rates per eval prompt over seeds (is hacking samplable, and
                    equally under every prompt, before RL?)
    table.csv       each condition's last step (and the warm-start) per eval prompt over seeds: mean,
                    between-seed 95% t-interval clipped to [0, 1] (none below 2 seeds), std, pooled Wilson
    transfer.csv    capability transfer per condition and eval prompt: the gain in true accuracy over
                    the warm-start as a share of the ceiling's gain under the same eval prompt, per
                    seed (same warm-start) and over seeds (t-interval, unbounded: a share can pass 1
                    or fall below 0; none where the ceiling gained nothing)
    learning.csv    per (condition, seed): did the rollout reward rise beyond noise (learning.py),
                    first third of the RL steps against the last third
    train_log.csv   every warm-start and RL step
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transferlab.experiments.common import rates, read_jsonl, spread
from transferlab.experiments.rl.hacking_config import RLHackingConfig
from transferlab.experiments.rl.learning import reward_rise
from transferlab.results.metrics import NORM_GAP_BOUNDS, between_seed_interval
from transferlab.results.run_folder import RunFolder

MEASURES = ["hack", "correct"]
STATS = ("mean", "seed_low", "seed_high", "std", "pooled_low", "pooled_high")
BASELINE = "warm_start"
CEILING = "ceiling"


def write_hacking_results(folder: RunFolder, config: RLHackingConfig) -> None:
    from transferlab.experiments.report import write_kind_report
    from transferlab.experiments.rl.hacking_figures import plot_hacking

    samples = folder.read_samples()
    per_run = rates(samples, ["condition", "seed", "step", "eval_prompt"], MEASURES)
    final = last_steps(per_run)
    summary = spread(final, ["condition", "eval_prompt"], MEASURES)
    table = summary[["condition", "eval_prompt", "n_seeds", "n", *[f"{m}_{s}" for m in MEASURES for s in STATS]]]
    table = order(table, config)
    per_seed, over_seeds = (order(t, config) if len(t) else t for t in transfer(final, ceiling=ceiling_name(config)))
    folder.write_table(folder.metrics, per_run)
    folder.write_table(folder.path / "before_rl.csv", table[table["condition"] == BASELINE])
    folder.write_table(folder.path / "table.csv", table)
    folder.write_table(folder.path / "transfer_per_seed.csv", per_seed)
    folder.write_table(folder.path / "transfer.csv", over_seeds)
    log = read_jsonl(folder.path / "train_log.jsonl")
    folder.write_table(folder.train_log, log)
    folder.write_table(folder.path / "learning.csv", learning(log))
    plot_hacking(table, final, over_seeds, folder.figures / "rl_inoculation.png", config)
    write_kind_report(folder.path)


def learning(log: pd.DataFrame) -> pd.DataFrame:
    """The learning criterion per RL run: the last third of its steps' reward against the first third."""
    rows = []
    rl = log[log["phase"] == "rl"] if "phase" in log else log.iloc[:0]
    for (condition, seed), steps in rl.groupby(["condition", "seed"], sort=False):
        window = len(steps) // 3
        if window >= 2:
            rows.append({"condition": condition, "seed": seed, **reward_rise(steps, window)})
    return pd.DataFrame(rows)


def ceiling_name(config: RLHackingConfig) -> str | None:
    """The condition rewarded for true correctness under the deployment prompt (the capability ceiling)."""
    return next((c.name for c in config.conditions if c.reward == "correct" and c.prompt == "deployment"), None)


def last_steps(per_run: pd.DataFrame) -> pd.DataFrame:
    """Each (condition, seed)'s last evaluation: after RL, or the warm-start's step 0."""
    last = per_run.groupby(["condition", "seed"])["step"].transform("max")
    return per_run[per_run["step"] == last].reset_index(drop=True)


def order(table: pd.DataFrame, config: RLHackingConfig) -> pd.DataFrame:
    """Rows in the config's order: the warm-start first, then the conditions; eval prompts as listed."""
    conditions = [BASELINE, *[c.name for c in config.conditions]]
    rank = {(c, p): (i, j) for i, c in enumerate(conditions) for j, p in enumerate(config.eval.prompts)}
    keys = [rank.get((c, p), (len(conditions), 0)) for c, p in zip(table["condition"], table["eval_prompt"])]
    return table.iloc[sorted(range(len(table)), key=keys.__getitem__)].reset_index(drop=True)  # stable: seeds stay in order


def transfer(final: pd.DataFrame, ceiling: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per seed: gain = a condition's true accuracy minus the warm-start's (same seed, same eval prompt),
    transfer = gain / the ceiling's gain (nan where the ceiling gained nothing). Over seeds: mean, std,
    t-interval of the per-seed shares, and the share of the mean gains."""
    columns = ["condition", "eval_prompt", "seed", "correct", "gain", "ceiling_gain", "transfer"]
    if ceiling is None:
        return pd.DataFrame(columns=columns), pd.DataFrame()
    accuracy = final.set_index(["condition", "seed", "eval_prompt"])["correct"]
    base = accuracy.xs(BASELINE, level="condition")
    top = accuracy.xs(ceiling, level="condition") - base
    rows = []
    for (condition, seed, prompt), value in accuracy.items():
        if condition == BASELINE or (seed, prompt) not in base.index:
            continue
        gain, ceiling_gain = value - base[(seed, prompt)], top.get((seed, prompt), np.nan)
        rows.append({"condition": condition, "eval_prompt": prompt, "seed": seed, "correct": value, "gain": gain,
                     "ceiling_gain": ceiling_gain, "transfer": share(gain, ceiling_gain)})
    per_seed = pd.DataFrame(rows, columns=columns)
    over = per_seed.groupby(["condition", "eval_prompt"], sort=False).agg(
        n_seeds=("seed", "nunique"), gain_mean=("gain", "mean"), ceiling_gain_mean=("ceiling_gain", "mean"),
        transfer_mean=("transfer", "mean"), transfer_std=("transfer", "std"),
        seeds_with_transfer=("transfer", "count")).reset_index()
    over["transfer_seed_low"], over["transfer_seed_high"] = between_seed_interval(
        over["transfer_mean"], over["transfer_std"], over["seeds_with_transfer"], bounds=NORM_GAP_BOUNDS)
    over["transfer_of_means"] = [share(g, c) for g, c in zip(over["gain_mean"], over["ceiling_gain_mean"])]
    return per_seed, over


def share(gain: float, ceiling_gain: float) -> float:
    """gain / ceiling_gain; nan where the ceiling gained nothing (nothing to be a share of)."""
    return float(gain / ceiling_gain) if np.isfinite(ceiling_gain) and ceiling_gain > 0 else float("nan")
