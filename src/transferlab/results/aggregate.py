"""Many runs at once: a sweep folder's tables and research figure, and one run's own figures.

A sweep folder holds run folders (any folder with `config.toml` and `samples.jsonl`, such as
`cells/<cell-id>/`). Runs whose configs differ only in their seed repeat one *variant*, usually a
propensity pair. Every across-seed number comes with two intervals, kept in separate columns because
they answer different questions:

- `within_run_ci_low/high`: the sampling error of one run's evaluation (Wilson for accuracy and
  adherence, paired bootstrap over examples for the gap), averaged over seeds;
- `between_seed_sd` and `between_seed_ci_low/high`: the spread between runs (sample SD, and a 95%
  t-interval of the mean over seeds). It holds the training noise that no single run can show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.config import ConfigError, ExperimentConfig, load_config, make_tasks
from transferlab.results.figures import (
    conditions_figure,
    gap_figure,
    loss_figure,
    plot_gap_grid,
    save_figure,
)
from transferlab.results.metrics import (
    GAP_BOUNDS,
    NORM_GAP_BOUNDS,
    between_seed_interval,
    condition_metrics,
    gap_metrics,
)
from transferlab.results.off_task import off_task
from transferlab.results.run_folder import atomic_write
from transferlab.results.samples_file import read_sample_rows
from transferlab.tasks import TASKS

SAMPLE_COLUMNS = ["step", "seed", "task", "eval_set", "trained", "prompted", "example_id", "correct", "adherent",
                  "response"]
CURVE = ["variant", "pair", "task", "eval_set", "trained", "swapped"]  # one curve over steps, per cell or mean
# Settings that never make runs differ as experiments: they do not split seeds into variants.
NOT_VARIANT = {"name", "seed", "pair", "arms", "model.threads", "eval.batch_size", "llm.cache", "llm.concurrency"}


@dataclass(frozen=True)
class Run:
    """One run folder and what it ran."""

    path: Path
    cell: str  # the folder, relative to the folder it was found under
    config: ExperimentConfig
    pair: str
    seed: int
    arms: tuple[tuple[str, str], ...]  # (task, trained propensity)


@dataclass(frozen=True)
class RunTables:
    """One run's per-step tables, labelled with its cell, variant and pair."""

    metrics: pd.DataFrame  # condition_metrics
    gaps: pd.DataFrame  # gap_metrics
    primary: dict[str, str]  # task -> the eval set its figures show (the first the task defines)
    adherence_floor: float


def load_runs(directory: str | Path) -> list[Run]:
    """Every run folder under `directory` (itself included, so a single run folder works too)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give a run folder or a sweep folder")
    # attempts a sweep moved aside (interrupted/) are kept for inspection, never counted as results
    found = {p.parent for p in root.rglob("config.toml") if (p.parent / "samples.jsonl").is_file()
             and "interrupted" not in p.relative_to(root).parts}
    if not found:
        raise FileNotFoundError(f"no run folder (config.toml and samples.jsonl) under {root}")
    return [_load_run(folder, root) for folder in sorted(found)]


def _load_run(folder: Path, root: Path) -> Run:
    try:
        config = load_config(folder / "config.toml")
    except ConfigError as err:
        raise ConfigError(f"{folder}: {err}") from err
    cell = folder.name if folder == root else folder.relative_to(root).as_posix()
    arms = tuple((arm.task, arm.propensity) for arm in config.arms)
    return Run(folder, cell, config, config.pair_name(), config.seed, arms)


def read_samples(run: Run) -> pd.DataFrame:
    """The graded columns of samples.jsonl and the responses (prompts are left on disk)."""
    rows = read_sample_rows(run.path / "samples.jsonl")
    return pd.DataFrame([{k: row.get(k) for k in SAMPLE_COLUMNS} for row in rows], columns=SAMPLE_COLUMNS)


def variants(runs: list[Run]) -> dict[str, str]:
    """Cell -> variant label: the pair, plus every setting besides the seed that differs between runs of
    one pair, so that only true repeats are averaged together (settings that follow from the pair,
    such as `eval.max_tokens`, do not split a pair)."""
    settings = {run.cell: _settings(run.config) for run in runs}
    keys = sorted(set().union(*settings.values()) - NOT_VARIANT)
    varied = [k for k in keys if any(len({settings[r.cell].get(k) for r in runs if r.pair == run.pair}) > 1
                                     for run in runs)]
    arms_vary = any(len({r.arms for r in runs if r.pair == run.pair}) > 1 for run in runs)
    labels = {}
    for run in runs:
        extra = [f"{k}={settings[run.cell].get(k)}" for k in varied]
        if arms_vary:
            extra.insert(0, "arms=" + ",".join(f"{task}:{propensity}" for task, propensity in run.arms))
        labels[run.cell] = "; ".join([run.pair, *extra])
    return labels


def _settings(config: ExperimentConfig) -> dict[str, str]:
    """The config flattened to dotted keys with JSON values, comparable across runs."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = json.dumps(value, sort_keys=True)

    walk("", config.model_dump(mode="json"))
    for task, knobs in config.tasks.items():  # a knob that follows the seed (fact_seed) is the seed
        for key in getattr(TASKS.get(task), "follows_run_seed", ()):
            if knobs.get(key) == config.seed:
                flat.pop(f"tasks.{task}.{key}", None)
    return flat


def run_tables(run: Run, variant: str | None = None, adherence_floor: float | None = None) -> RunTables | None:
    """Condition metrics and gaps recomputed from the samples; None for a run not yet evaluated."""
    samples = read_samples(run)
    if samples.empty:
        return None
    floor = run.config.eval.adherence_floor if adherence_floor is None else adherence_floor
    labels = {"variant": variant or run.pair, "pair": run.pair, "cell": run.cell}
    tasks = make_tasks(run.config)
    chance = {name: task.chance() for name, task in tasks.items()}
    samples["off_task"] = off_task(samples, tasks)
    metrics = condition_metrics(samples).assign(chance=lambda m: m["task"].map(chance), **labels)
    gaps = gap_metrics(samples, chance=chance, n_boot=run.config.eval.n_boot, seed=run.seed, adherence_floor=floor)
    primary = samples.groupby("task", sort=False)["eval_set"].first().to_dict()
    return RunTables(metrics, gaps.assign(**labels), primary, floor)


# -- across seeds ------------------------------------------------------------------------------

SUMMARY_COLUMNS = [
    *CURVE, "step", "measure", "prompt", "prompted", "n_seeds", "n_runs", "mean",
    "between_seed_sd", "between_seed_ci_low", "between_seed_ci_high",
    "within_run_ci_low", "within_run_ci_high", "within_run_ci_method", "n_examples", "cut_frac",
]  # fmt: skip


def summary_table(metrics: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, task, eval set, step, measure, prompt): the mean over seeds and both intervals.

    Measures: `accuracy`, `adherence` and (where the metrics have it) `off_task` per prompt (`trained`
    or `swapped`, the propensity in `prompted`); `gap` and `norm_gap` (prompt `swapped/trained`).
    The mean gap is the mean of the seeds' gaps. `n_seeds` counts the seeds the mean covers (a gap is empty where the capability was
    not learned), `n_runs` the seeds evaluated; `cut_frac` is the share of seeds whose curve is cut at
    that step. The between-seed interval needs two seeds and stays inside the measure's range.
    """
    per_run = pd.concat([_condition_rows(metrics, gaps), _gap_rows(gaps)], ignore_index=True)
    out = (
        per_run.groupby([*CURVE, "step", "measure", "prompt", "prompted"], sort=True, dropna=False)
        .agg(n_seeds=("value", "count"), n_runs=("seed", "nunique"), mean=("value", "mean"),
             between_seed_sd=("value", "std"), within_run_ci_low=("within_low", "mean"),
             within_run_ci_high=("within_high", "mean"), within_run_ci_method=("method", "first"),
             n_examples=("n", "mean"), cut_frac=("cut", "mean"))
        .reset_index()
    )  # fmt: skip
    out["between_seed_ci_low"], out["between_seed_ci_high"] = np.nan, np.nan
    for measure, bounds in MEASURE_BOUNDS.items():
        rows = out["measure"] == measure
        low, high = between_seed_interval(out.loc[rows, "mean"], out.loc[rows, "between_seed_sd"],
                                          out.loc[rows, "n_seeds"], bounds)
        out.loc[rows, "between_seed_ci_low"], out.loc[rows, "between_seed_ci_high"] = low, high
    return out[SUMMARY_COLUMNS]


MEASURE_BOUNDS = {"accuracy": (0.0, 1.0), "adherence": (0.0, 1.0), "off_task": (0.0, 1.0), "gap": GAP_BOUNDS,
                  "norm_gap": NORM_GAP_BOUNDS}


def _condition_rows(metrics: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and adherence per run as long rows, with the curve's swapped propensity and cut."""
    curve = ["cell", "task", "eval_set"]
    swapped = gaps[[*curve, "swapped"]].drop_duplicates(curve)
    cut = gaps[[*curve, "step", "cut"]]
    base = metrics.merge(swapped, on=curve, how="left").merge(cut, on=[*curve, "step"], how="left")
    shared = {k: base[k] for k in [*CURVE, "cell", "seed", "step", "prompted", "n"]}
    shared |= {"prompt": np.where(base["is_trained"], "trained", "swapped"), "cut": base["cut"].astype(float)}
    measures = [("accuracy", "accuracy", "acc_low", "acc_high"), ("adherence", "adherence", "adh_low", "adh_high")]
    if "off_task" in base:
        measures.append(("off_task", "off_task", "off_task_low", "off_task_high"))
    return pd.concat([
        pd.DataFrame({**shared, "measure": measure, "value": base[value], "within_low": base[low],
                      "within_high": base[high], "method": "wilson"})
        for measure, value, low, high in measures
    ], ignore_index=True)  # fmt: skip


def _gap_rows(gaps: pd.DataFrame) -> pd.DataFrame:
    """Gap and normalised gap per run as long rows."""
    shared = {k: gaps[k] for k in [*CURVE, "cell", "seed", "step", "n"]}
    shared |= {"prompt": "swapped/trained", "prompted": gaps["swapped"], "cut": gaps["cut"].astype(float)}
    return pd.concat([
        pd.DataFrame({**shared, "measure": measure, "value": gaps[measure], "within_low": gaps[f"{measure}_low"],
                      "within_high": gaps[f"{measure}_high"], "method": "paired bootstrap"})
        for measure in ("gap", "norm_gap")
    ], ignore_index=True)  # fmt: skip


# -- final and peak gap ------------------------------------------------------------------------

GAP_PICK_COLUMNS = [
    "level", *CURVE, "cell", "seed", "n_seeds", "n_runs", "step", "last_step", "cut_step", "gap",
    "between_seed_sd", "between_seed_ci_low", "between_seed_ci_high", "within_run_ci_low", "within_run_ci_high",
    "norm_gap", "acc_trained", "acc_swapped", "swapped_adherence",
]  # fmt: skip


def gap_curves(gaps: pd.DataFrame) -> pd.DataFrame:
    """Each cell's gap curve (level `cell`) and each variant's mean curve (level `across_seeds`) in one
    schema. The mean curve is cut from the first step where any seed's curve is cut; `n_seeds` counts
    the seeds with a gap (the capability learned), `n_runs` those evaluated."""
    cells = gaps.assign(
        level="cell", n_seeds=gaps["gap"].notna().astype(int), n_runs=1, between_seed_sd=np.nan,
        between_seed_ci_low=np.nan,
        between_seed_ci_high=np.nan, within_run_ci_low=gaps["gap_low"], within_run_ci_high=gaps["gap_high"])
    means = (
        gaps.groupby([*CURVE, "step"], sort=True, dropna=False)
        .agg(n_seeds=("gap", "count"), n_runs=("seed", "nunique"), gap=("gap", "mean"),
             between_seed_sd=("gap", "std"),
             within_run_ci_low=("gap_low", "mean"), within_run_ci_high=("gap_high", "mean"),
             norm_gap=("norm_gap", "mean"), acc_trained=("acc_trained", "mean"),
             acc_swapped=("acc_swapped", "mean"), swapped_adherence=("swapped_adherence", "mean"),
             cut=("cut", "any"))
        .reset_index()
        .assign(level="across_seeds", cell="", seed=np.nan)
    )  # fmt: skip
    means["between_seed_ci_low"], means["between_seed_ci_high"] = between_seed_interval(
        means["gap"], means["between_seed_sd"], means["n_seeds"], GAP_BOUNDS)
    columns = [c for c in GAP_PICK_COLUMNS if c not in ("last_step", "cut_step")] + ["cut"]
    return pd.concat([means[columns], cells[columns]], ignore_index=True)


def final_gap_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """The gap at the last step before the adherence cut (after step 0) where there is one (the
    capability learned), per cell and across seeds; an empty row is never picked."""

    def last(kept: pd.DataFrame):
        defined = kept[kept["gap"].notna()]
        return defined.iloc[-1] if len(defined) else None

    return _pick(gap_curves(gaps), last)


def peak_gap_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """The largest gap before the adherence cut (after step 0; the earliest step on ties), per cell and
    across seeds: a gap that opens and closes again during training shows here, not in the final gap."""

    def peak(kept: pd.DataFrame):
        defined = kept[kept["gap"].notna()]
        return defined.loc[defined["gap"].idxmax()] if len(defined) else None

    return _pick(gap_curves(gaps), peak)


def _pick(curves: pd.DataFrame, choose) -> pd.DataFrame:
    """One row per curve: the row `choose` picks among its steps after 0 and before the cut (nan if none)."""
    rows = []
    for _, curve in curves.groupby(["level", *CURVE, "cell"], sort=False, dropna=False):
        curve = curve.sort_values("step")
        cut_steps = curve.loc[curve["cut"].astype(bool), "step"]
        chosen = choose(curve[~curve["cut"].astype(bool) & (curve["step"] > 0)])
        row = chosen.to_dict() if chosen is not None else {
            **curve.iloc[0][["level", *CURVE, "cell", "seed"]], "n_seeds": 0, "n_runs": curve["n_runs"].max()}
        row |= {"last_step": curve["step"].max(), "cut_step": cut_steps.min() if len(cut_steps) else np.nan}
        rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=GAP_PICK_COLUMNS)
    counts = ["seed", "n_seeds", "n_runs", "step", "last_step", "cut_step"]
    out[counts] = out[counts].astype("Float64").astype("Int64")  # nan where no step qualifies
    return out.sort_values([*CURVE, "level", "cell"], ignore_index=True, na_position="first")


# -- writing -----------------------------------------------------------------------------------


def aggregate(sweep_dir: str | Path, *, adherence_floor: float | None = None, run_figures: bool = True) -> list[Path]:
    """Tables and figures of a sweep (or of a single run folder): the hook the sweep runner calls last.

    Writes `tables/summary.csv`, `tables/final_gap.csv`, `tables/peak_gap.csv` and
    `figures/gap_grid.png` in `sweep_dir`, and each run's own figures (`write_run_figures`).
    Runs with no samples yet are skipped. `adherence_floor` overrides the runs' own cut threshold.
    Returns the paths written.
    """
    root = Path(sweep_dir)
    runs = load_runs(root)
    labels = variants(runs)
    tables = {run.cell: run_tables(run, labels[run.cell], adherence_floor) for run in runs}
    done = [run for run in runs if tables[run.cell] is not None]
    if not done:
        raise ValueError(f"no run under {root} has evaluated samples yet")
    metrics = pd.concat([tables[run.cell].metrics for run in done], ignore_index=True)
    gaps = pd.concat([tables[run.cell].gaps for run in done], ignore_index=True)
    summary = summary_table(metrics, gaps)
    written = [
        _write_csv(root / "tables" / "summary.csv", summary),
        _write_csv(root / "tables" / "final_gap.csv", final_gap_table(gaps)),
        _write_csv(root / "tables" / "peak_gap.csv", peak_gap_table(gaps)),
    ]
    primary = {task: s for run in reversed(done) for task, s in tables[run.cell].primary.items()}
    floor = tables[done[0].cell].adherence_floor
    written.append(plot_gap_grid(summary, root / "figures" / "gap_grid.png", eval_sets=primary,
                                 adherence_floor=floor))
    if run_figures:
        for run in done:
            written += _run_figures(run, tables[run.cell])
    return written


def write_run_figures(run_dir: str | Path, *, adherence_floor: float | None = None) -> list[Path]:
    """One run's figures in `<run>/figures/`: gap.png, accuracy.png, adherence.png and loss.png."""
    path = Path(run_dir)
    if not (path / "config.toml").is_file() or not (path / "samples.jsonl").is_file():
        raise FileNotFoundError(f"{path} is not a run folder (it needs config.toml and samples.jsonl)")
    run = _load_run(path, path)
    tables = run_tables(run, adherence_floor=adherence_floor)
    if tables is None:
        raise ValueError(f"{path}: no evaluated samples yet")
    return _run_figures(run, tables)


def _run_figures(run: Run, tables: RunTables) -> list[Path]:
    return [save_figure(fig, run.path / "figures" / name) for name, fig in run_figures(run, tables).items()]


def run_figures(run: Run, tables: RunTables) -> dict:
    """The per-run figures by file name, unsaved, each on every task's primary eval set: gap.png,
    accuracy.png, adherence.png, and loss.png where the run has a training log."""
    metrics, gaps = _primary_rows(tables.metrics, tables.primary), _primary_rows(tables.gaps, tables.primary)
    floor = tables.adherence_floor
    figures = {
        "gap.png": gap_figure(gaps, f"{run.config.name}, {run.pair} (seed {run.seed})",
                              cut_label=f"adherence < {floor:.0%}"),
        "accuracy.png": conditions_figure(metrics, ("accuracy", "acc_low", "acc_high"), "accuracy"),
        "adherence.png": conditions_figure(metrics, ("adherence", "adh_low", "adh_high"), "adherence (judge)",
                                           floor=floor),
    }
    log_path = run.path / "train_log.csv"
    log = pd.read_csv(log_path) if log_path.is_file() else pd.DataFrame()
    if not log.empty:
        figures["loss.png"] = loss_figure(log, title=f"training loss, {run.pair} (seed {run.seed})")
    return figures


def _primary_rows(frame: pd.DataFrame, primary: dict[str, str]) -> pd.DataFrame:
    return frame[frame["eval_set"] == frame["task"].map(primary)]


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    atomic_write(path, frame.to_csv(index=False))
    return path
