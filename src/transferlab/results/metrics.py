"""Metrics over evaluated samples: accuracy per condition, and the transfer gap between prompts.

The research question is whether a capability learnt under one propensity (the *trained* prompt)
survives when the eval prompt asks for the other one (the *swapped* prompt). `gap_metrics` answers
it per run and step with paired bootstrap intervals; `across_seeds` sets the spread between runs
next to those within-run intervals, so neither is mistaken for the other.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

RUN_KEYS = ["seed", "step", "task", "eval_set"]
CURVE_KEYS = ["seed", "task", "eval_set"]  # one curve over steps
PERCENTILES = (2.5, 97.5)  # 95% percentile bootstrap


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion; unlike the normal one it stays inside [0, 1] at 0/n."""
    low, high = wilson_arrays(np.asarray(successes, dtype=float), np.asarray(n, dtype=float), z)
    return float(low), float(high)


def wilson_arrays(successes: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson interval; nan where n == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = successes / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def condition_metrics(samples: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and adherence per (seed, step, task, eval_set, prompted), with Wilson 95% intervals.

    One row per evaluated condition: the raw curves every other result is built from. Where the
    samples carry an `off_task` flag (`results.off_task`), its share and interval are added too.
    """
    keys = ["seed", "step", "task", "eval_set", "trained", "prompted"]
    has_off_task = "off_task" in samples
    counted = samples.assign(correct=samples["correct"].astype(int), adherent=samples["adherent"].astype(int),
                             off_task=samples["off_task"].astype(int) if has_off_task else 0)
    out = (
        counted.groupby(keys, sort=True)
        .agg(n=("correct", "size"), n_correct=("correct", "sum"), n_adherent=("adherent", "sum"),
             n_off_task=("off_task", "sum"))
        .reset_index()
    )
    n = out["n"].to_numpy(dtype=float)
    out["is_trained"] = out["prompted"] == out["trained"]
    out["accuracy"] = out["n_correct"] / out["n"]
    out["acc_low"], out["acc_high"] = wilson_arrays(out["n_correct"].to_numpy(dtype=float), n)
    out["adherence"] = out["n_adherent"] / out["n"]
    out["adh_low"], out["adh_high"] = wilson_arrays(out["n_adherent"].to_numpy(dtype=float), n)
    intervals = ["accuracy", "acc_low", "acc_high", "adherence", "adh_low", "adh_high"]
    if has_off_task:
        out["off_task"] = out["n_off_task"] / out["n"]
        out["off_task_low"], out["off_task_high"] = wilson_arrays(out["n_off_task"].to_numpy(dtype=float), n)
        intervals += ["off_task", "off_task_low", "off_task_high"]
    return out[[*keys, "is_trained", "n", *intervals]].sort_values([*RUN_KEYS, "prompted"], ignore_index=True)


def learned(acc_trained_low, chance):
    """The one rule for where a gap means anything: the trained prompt's accuracy is above the task's
    chance with 95% confidence (its Wilson lower bound exceeds chance). Below that there is no
    capability to transfer, and 1 - swapped/trained is a ratio of two noises. Vectorised; nan is False."""
    low, chance = np.asarray(acc_trained_low, float), np.asarray(chance, float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(low) | np.isnan(chance), False, low > chance)


def gap_metrics(
    samples: pd.DataFrame, *, chance: Mapping[str, float], n_boot: int = 1000, seed: int = 0,
    adherence_floor: float = 0.5,
) -> pd.DataFrame:
    """Transfer gap per (seed, step, task, eval_set): how much accuracy is lost under the swapped prompt.

    `gap` = 1 - acc_swapped / acc_trained (0: full transfer, 1: none). `norm_gap` measures the same
    loss against what training added over the step-0 baseline, so a task the model half-knew
    before training is not credited with transfer it never needed. Intervals are 95% percentile
    bootstraps over example ids, paired across the two prompts and the step-0 baseline (the same
    examples are evaluated at every step). `cut` marks every step from the first one where the model
    stops following the swapped prompt: past it, the swapped accuracy no longer measures the
    swapped propensity.

    A gap is only given where the capability was `learned` (`chance` maps each task to its chance
    accuracy); elsewhere gap and norm_gap are empty and `gap_missing` says why (`not_learned`,
    `no_swapped_prompt`). `norm_gap` is also empty, `norm_gap_missing` saying why, without a step-0
    baseline (`no_baseline`) or where the interval of its denominator, the gain over the baseline,
    includes 0 (`gain_includes_0`).
    """
    missing = sorted(set(samples["task"]) - set(chance))
    if missing:
        raise ValueError(f"no chance accuracy for task(s) {missing}: pass chance={{task: accuracy}} for every task")
    per_example = _per_example(samples)
    baselines = _baselines(per_example)
    rows = [
        _gap_row(key, group, baselines.get((key[0], key[2], key[3])), n_boot, seed, chance[key[2]])
        for key, group in per_example.groupby(RUN_KEYS, sort=True)
    ]
    gaps = pd.DataFrame(rows, columns=_GAP_COLUMNS[:-2])
    return _add_cut(gaps, adherence_floor)


_GAP_COLUMNS = [
    *RUN_KEYS, "trained", "swapped", "n",
    "acc_trained", "acc_trained_low", "acc_trained_high", "acc_swapped", "chance", "learned",
    "gap", "gap_low", "gap_high", "gap_missing", "baseline", "gain_low", "gain_high",
    "norm_gap", "norm_gap_low", "norm_gap_high", "norm_gap_missing",
    "swapped_adherence", "adherent_ok", "cut",
]  # fmt: skip


def _per_example(samples: pd.DataFrame) -> pd.DataFrame:
    """Counts per example id, so repeated samples of one id resample together as one unit."""
    keys = RUN_KEYS + ["trained", "prompted", "example_id"]
    out = (
        samples.assign(correct=samples["correct"].astype(int), adherent=samples["adherent"].astype(int))
        .groupby(keys, sort=True)
        .agg(n_rows=("correct", "size"), n_correct=("correct", "sum"), n_adherent=("adherent", "sum"))
        .reset_index()
    )
    return out.assign(correct=out["n_correct"] / out["n_rows"])


def _baselines(per_example: pd.DataFrame) -> dict[tuple, tuple[float, pd.Series]]:
    """Step-0 accuracy under the trained prompt and its per-example values (by example id), by
    (seed, task, eval_set)."""
    step0 = per_example[(per_example["step"] == 0) & (per_example["prompted"] == per_example["trained"])]
    return {
        key: (_ratio(group, "n_correct"), group.set_index("example_id")["correct"])
        for key, group in step0.groupby(CURVE_KEYS, sort=True)
    }


def _swapped(prompted: pd.Series, trained: str) -> str | None:
    """The one prompted propensity other than the trained one; None when only the trained was evaluated."""
    others = sorted(set(prompted) - {trained})
    if len(others) > 1:
        raise ValueError(f"expected one swapped propensity next to {trained!r}, found {others}")
    return others[0] if others else None


def _gap_row(key: tuple, group: pd.DataFrame, base: tuple | None, n_boot: int, seed: int, chance: float) -> list:
    """Point estimates and paired bootstrap intervals for one (seed, step, task, eval_set)."""
    if group["trained"].nunique() != 1:
        raise ValueError(f"{key}: several trained propensities {sorted(group['trained'].unique())}")
    trained = group["trained"].iloc[0]
    swapped = _swapped(group["prompted"], trained)
    t_rows, s_rows = group[group["prompted"] == trained], group[group["prompted"] == swapped]
    acc_t, acc_s = _ratio(t_rows, "n_correct"), _ratio(s_rows, "n_correct")
    baseline, base_values = base if base is not None else (np.nan, pd.Series(dtype=float))
    acc_ci = wilson_interval(int(t_rows["n_correct"].sum()), int(t_rows["n_rows"].sum()))
    is_learned = bool(learned(acc_ci[0], chance))

    wide = group.pivot(index="example_id", columns="prompted", values="correct")
    paired = wide[[trained, swapped]].dropna() if swapped else wide.iloc[:0, :0]
    rng = _row_rng(seed, key)
    t_boot, s_boot, base_boot = _paired_resample(paired.to_numpy().T, base_values, paired.index, n_boot, rng)
    gain_low, gain_high = _interval(t_boot - base_boot, acc_t - baseline)

    gap_missing = "no_swapped_prompt" if swapped is None else "" if is_learned else "not_learned"
    norm_missing = gap_missing or ("no_baseline" if np.isnan(baseline) else
                                   "gain_includes_0" if not gain_low > 0 else "")
    gap = float(_gap(acc_t, acc_s)) if not gap_missing else np.nan
    norm_gap = float(_norm_gap(acc_t, acc_s, baseline)) if not norm_missing else np.nan
    return [
        *key, trained, swapped, paired.shape[0],
        acc_t, *acc_ci, acc_s, chance, is_learned,
        gap, *_interval(_gap(t_boot, s_boot), gap), gap_missing,
        baseline, gain_low, gain_high,
        norm_gap, *_interval(_norm_gap(t_boot, s_boot, base_boot), norm_gap), norm_missing,
        _ratio(s_rows, "n_adherent"),
    ]  # fmt: skip


def _row_rng(seed: int, key: tuple) -> np.random.Generator:
    """A stream per row, so a row's interval does not change when other rows are added or dropped."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


def _ratio(rows: pd.DataFrame, count: str) -> float:
    """Pooled proportion over rows of per-example counts; nan when there are none."""
    n = rows["n_rows"].sum()
    return float(rows[count].sum() / n) if n else np.nan


def _gap(acc_trained, acc_swapped):
    """1 - swapped/trained; nan where trained accuracy is 0 (a bootstrap replicate with nothing to transfer)."""
    acc_trained, acc_swapped = np.asarray(acc_trained, float), np.asarray(acc_swapped, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(acc_trained > 0, 1 - acc_swapped / acc_trained, np.nan)


def _norm_gap(acc_trained, acc_swapped, baseline):
    """Loss under the swapped prompt as a share of the gain over baseline; nan where a replicate gained nothing."""
    acc_trained, acc_swapped = np.asarray(acc_trained, float), np.asarray(acc_swapped, float)
    gain = acc_trained - np.asarray(baseline, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gain > 0, (acc_trained - acc_swapped) / gain, np.nan)


def _paired_resample(
    pairs: np.ndarray, baseline: pd.Series, ids: pd.Index, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Bootstrap means of both prompts and of the step-0 baseline from one index matrix, so each
    replicate uses the same examples in all three (the eval set is fixed over steps). Where some
    pair was not evaluated at step 0, the baseline is resampled on its own."""
    n = pairs.shape[1]
    if n == 0:
        return np.full(n_boot, np.nan), np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    idx = rng.integers(0, n, size=(n_boot, n))
    t_boot, s_boot = pairs[0][idx].mean(axis=1), pairs[1][idx].mean(axis=1)
    if len(baseline) == 0:
        return t_boot, s_boot, np.full(n_boot, np.nan)
    if ids.isin(baseline.index).all():
        return t_boot, s_boot, baseline.reindex(ids).to_numpy()[idx].mean(axis=1)
    values = baseline.to_numpy()
    return t_boot, s_boot, values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)


def _interval(boot: np.ndarray, point: float) -> tuple[float, float]:
    """nan-aware percentile interval; nan when the point estimate itself is undefined."""
    if np.isnan(point) or np.isnan(boot).all():
        return np.nan, np.nan
    low, high = np.nanpercentile(boot, PERCENTILES)
    return float(low), float(high)


def _add_cut(gaps: pd.DataFrame, adherence_floor: float) -> pd.DataFrame:
    """Flag adherence per row, and cut each curve from the first step where it falls below the floor."""
    gaps = gaps.sort_values(RUN_KEYS, ignore_index=True)
    gaps["adherent_ok"] = gaps["swapped_adherence"] >= adherence_floor
    below = gaps["swapped_adherence"] < adherence_floor  # nan (no swapped prompt) does not cut
    by_step = gaps.assign(below=below).sort_values(CURVE_KEYS + ["step"])
    gaps["cut"] = by_step.groupby(CURVE_KEYS, sort=False)["below"].cummax().reindex(gaps.index)
    return gaps[_GAP_COLUMNS]


def across_seeds(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per (step, task, eval_set): the mean over seeds, the spread between seeds, and the mean
    within-run interval half-width, so run-to-run variance is read next to sampling error.

    Done for gap, norm_gap and acc_trained. `*_std` is the sample std (ddof=1, nan for one seed).
    `cut_any` is True where any seed's curve is cut, `cut_frac` the share of seeds cut.
    """
    aggs: dict[str, tuple[str, str]] = {
        "trained": ("trained", "first"),
        "swapped": ("swapped", "first"),
        "n_seeds": ("seed", "nunique"),
    }
    halfwidths = {}
    for metric in ("gap", "norm_gap", "acc_trained"):
        halfwidths[f"{metric}_halfwidth"] = (gaps[f"{metric}_high"] - gaps[f"{metric}_low"]) / 2
        aggs |= _spread_aggs(metric)
    aggs |= {
        "swapped_adherence_mean": ("swapped_adherence", "mean"),
        "cut_any": ("cut", "any"),
        "cut_frac": ("cut", "mean"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # std of one seed
        out = gaps.assign(**halfwidths).groupby(["step", "task", "eval_set"], sort=True).agg(**aggs)
    return out.reset_index()


def _spread_aggs(metric: str) -> dict[str, tuple[str, str]]:
    """Named aggregations: mean, between-seed std/min/max, mean bootstrap bounds and half-width."""
    return {
        f"{metric}_mean": (metric, "mean"),
        f"{metric}_std": (metric, "std"),
        f"{metric}_min": (metric, "min"),
        f"{metric}_max": (metric, "max"),
        f"{metric}_low_mean": (f"{metric}_low", "mean"),
        f"{metric}_high_mean": (f"{metric}_high", "mean"),
        f"{metric}_halfwidth_mean": (f"{metric}_halfwidth", "mean"),
    }


# 97.5% quantiles of Student's t for 1..30 degrees of freedom (no scipy here); past 30 the
# Cornish-Fisher expansion around the normal quantile is good to 1e-4.
_T975 = (
    np.nan, 12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959964


def t_quantile_975(df) -> np.ndarray:
    """Two-sided 95% Student-t quantile per degrees of freedom; nan for df < 1."""
    df = np.asarray(df, dtype=float)
    z = _Z975
    with np.errstate(divide="ignore", invalid="ignore"):
        far = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    near = np.asarray(_T975)[np.clip(np.nan_to_num(df), 0, 30).astype(int)]
    return np.where(df < 1, np.nan, np.where(df > 30, far, near))


def between_seed_interval(
    mean, sd, n_seeds, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """95% t-interval for a mean over `n_seeds` runs from their sample std: what another set of seeds
    would likely give. Clipped to the measure's range `bounds` (a rate's [0, 1] by default; the gap's
    is (-inf, 1]). nan below two seeds, where the spread between runs is unknown."""
    mean, sd, n = (np.asarray(x, dtype=float) for x in (mean, sd, n_seeds))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(n >= 2, t_quantile_975(n - 1) * sd / np.sqrt(n), np.nan)
    return np.clip(mean - half, *bounds), np.clip(mean + half, *bounds)


GAP_BOUNDS = (-np.inf, 1.0)  # 1 - swapped/trained: at most 1 (nothing kept), unbounded below
NORM_GAP_BOUNDS = (-np.inf, np.inf)  # a share of the gain: neither side is bounded
