"""Sweep results: across-seed tables with both kinds of interval, final and peak gaps, the figure grid."""

import math
import subprocess
import sys

import matplotlib.image as mpimg
import pandas as pd
import pytest

from transferlab.cli import main
from transferlab.config import load_config
from transferlab.results.aggregate import (
    Run,
    aggregate,
    final_gap_table,
    load_runs,
    peak_gap_table,
    summary_table,
    variants,
    write_run_figures,
)
from transferlab.results.figures import gap_grid_figure
from transferlab.results.metrics import between_seed_interval, condition_metrics, gap_metrics, wilson_interval

PAIRS = ("bold_plain", "hedging_confident")
SEEDS = (0, 1)
RUN_FIGURES = ("gap.png", "accuracy.png", "adherence.png", "loss.png")
T_975_DF2 = 4.3027  # Student t, 97.5%, 2 degrees of freedom


# -- a synthetic sweep with known numbers ------------------------------------------------------


def rows(step, prompted, n_correct, *, seed, n_adherent=10, task="facts", trained="bold", n=10):
    """n graded answers for one condition: the first n_correct correct, the first n_adherent adherent."""
    return pd.DataFrame({
        "step": step, "task": task, "eval_set": "fresh", "trained": trained, "prompted": prompted, "seed": seed,
        "example_id": [f"e{i}" for i in range(n)], "correct": [i < n_correct for i in range(n)],
        "adherent": [i < n_adherent for i in range(n)],
    })  # fmt: skip


# Three seeds, trained prompt (bold) always 10/10 after step 0; swapped (plain) correct answers per step:
# step 10 gaps 0.2, 0.4, 0.6 (mean 0.4, sd 0.2); step 20 gap 0.5 for all; step 30 gap 1.0 but the
# model no longer answers plain (adherence 2/10), so the curve is cut there.
SWAPPED_CORRECT = {0: (2, 2, 2), 10: (8, 6, 4), 20: (5, 5, 5), 30: (0, 0, 0)}


def synthetic_tables(seeds=(0, 1, 2), pair="bold_plain"):
    metrics, gaps = [], []
    for i, seed in enumerate(seeds):
        samples = pd.concat([
            part for step, swapped in SWAPPED_CORRECT.items()
            for part in (rows(step, "bold", 2 if step == 0 else 10, seed=seed),
                         rows(step, "plain", swapped[i], seed=seed, n_adherent=2 if step == 30 else 10))
        ], ignore_index=True)  # fmt: skip
        labels = {"variant": pair, "pair": pair, "cell": f"{pair}-seed{seed}"}
        metrics.append(condition_metrics(samples).assign(**labels))
        gaps.append(gap_metrics(samples, n_boot=200, seed=seed).assign(**labels))
    return pd.concat(metrics, ignore_index=True), pd.concat(gaps, ignore_index=True)


def pick(frame, **where):
    for column, value in where.items():
        frame = frame[frame[column] == value]
    assert len(frame) == 1, frame
    return frame.iloc[0]


def test_between_seed_interval_is_a_t_interval_of_the_mean():
    low, high = between_seed_interval([0.4], [0.2], [3])
    half = T_975_DF2 * 0.2 / math.sqrt(3)
    assert (low[0], high[0]) == pytest.approx((0.4 - half, 0.4 + half), abs=1e-4)


def test_summary_gap_is_the_seed_mean_with_seed_sd_and_t_interval():
    summary = summary_table(*synthetic_tables())
    row = pick(summary, measure="gap", step=10)
    half = T_975_DF2 * 0.2 / math.sqrt(3)
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(0.4)
    assert row["between_seed_sd"] == pytest.approx(0.2)
    assert (row["between_seed_ci_low"], row["between_seed_ci_high"]) == pytest.approx((0.4 - half, 0.4 + half),
                                                                                     abs=1e-4)


def test_summary_within_run_interval_of_accuracy_is_the_mean_wilson_interval():
    summary = summary_table(*synthetic_tables())
    row = pick(summary, measure="accuracy", prompt="swapped", step=10)
    wilsons = [wilson_interval(k, 10) for k in (8, 6, 4)]
    assert (row["mean"], row["between_seed_sd"]) == pytest.approx((0.6, 0.2))
    assert row["within_run_ci_low"] == pytest.approx(sum(w[0] for w in wilsons) / 3)
    assert row["within_run_ci_high"] == pytest.approx(sum(w[1] for w in wilsons) / 3)
    assert (row["prompted"], row["within_run_ci_method"]) == ("plain", "wilson")


def test_summary_within_run_interval_of_the_gap_is_the_mean_paired_bootstrap():
    metrics, gaps = synthetic_tables()
    row = pick(summary_table(metrics, gaps), measure="gap", step=10)
    at_10 = gaps[gaps["step"] == 10]
    assert row["within_run_ci_method"] == "paired bootstrap"
    assert row["within_run_ci_low"] == pytest.approx(at_10["gap_low"].mean())
    assert row["within_run_ci_high"] == pytest.approx(at_10["gap_high"].mean())
    # two different things: the seeds disagree more than one run's sampling error suggests
    assert row["between_seed_ci_high"] - row["between_seed_ci_low"] != pytest.approx(
        row["within_run_ci_high"] - row["within_run_ci_low"])


def test_summary_with_one_seed_has_no_between_seed_interval_but_keeps_the_within_run_one():
    row = pick(summary_table(*synthetic_tables(seeds=(0,))), measure="gap", step=10)
    assert row["n_seeds"] == 1 and row["mean"] == pytest.approx(0.2)
    assert math.isnan(row["between_seed_sd"]) and math.isnan(row["between_seed_ci_low"])
    assert not math.isnan(row["within_run_ci_low"])


def test_summary_marks_the_share_of_seeds_cut():
    summary = summary_table(*synthetic_tables())
    assert pick(summary, measure="gap", step=20)["cut_frac"] == 0
    assert pick(summary, measure="gap", step=30)["cut_frac"] == 1


def test_final_gap_is_the_last_step_before_the_adherence_cut():
    final = final_gap_table(synthetic_tables()[1])
    mean = pick(final, level="across_seeds")
    assert (mean["step"], mean["cut_step"], mean["last_step"]) == (20, 30, 30)
    assert mean["gap"] == pytest.approx(0.5) and mean["n_seeds"] == 3
    assert (final["level"] == "cell").sum() == 3


def test_peak_gap_ignores_steps_after_the_cut_and_step_0():
    peak = peak_gap_table(synthetic_tables()[1])
    mean = pick(peak, level="across_seeds")
    assert (mean["step"], mean["gap"]) == (20, pytest.approx(0.5))  # not step 30, where the gap is 1.0
    third = pick(peak, cell="bold_plain-seed2")
    assert (third["step"], third["gap"]) == (10, pytest.approx(0.6))
    assert third["within_run_ci_low"] <= 0.6 <= third["within_run_ci_high"]


def test_grid_has_a_row_per_pair_and_a_column_per_task_with_one_seed_and_a_missing_panel():
    parts = [synthetic_tables(seeds=(0,), pair=pair) for pair in PAIRS]
    table_metrics, table_gaps = synthetic_tables(seeds=(0,), pair="bold_plain")  # a second task, one pair only
    metrics = pd.concat([p[0] for p in parts] + [table_metrics.assign(task="table")], ignore_index=True)
    gaps = pd.concat([p[1] for p in parts] + [table_gaps.assign(task="table")], ignore_index=True)
    fig = gap_grid_figure(summary_table(metrics, gaps))
    assert len(fig.axes) == 4
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(2, 2)}
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "not run" in texts and any(t.startswith("cut at step 30") for t in texts)


def test_variants_split_runs_only_on_settings_other_than_the_seed():
    def run(pair, seed, *extra):
        config = load_config(None, overrides=[f"pair={pair}", *extra], seed=seed)
        return Run(path=None, cell=f"{pair}-{seed}-{len(extra)}", config=config, pair=pair, seed=seed,
                   arms=tuple((a.task, a.propensity) for a in config.arms))

    repeats = [run(pair, seed) for pair in PAIRS for seed in SEEDS]
    assert set(variants(repeats).values()) == set(PAIRS)  # max_tokens follows the pair: no split
    assert variants([*repeats, run("bold_plain", 0, "train.lr=0.01")])["bold_plain-0-1"] == "bold_plain; train.lr=0.01"


# -- a real tiny sweep -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(micro_organism, tmp_path_factory):
    """2 pairs x 2 seeds of real tiny runs, laid out as a sweep folder."""
    from transferlab.train.loop import run_experiment

    root = tmp_path_factory.mktemp("sweep")
    for pair in PAIRS:
        for seed in SEEDS:
            config = load_config(None, seed=seed, overrides=[
                f"model.name={micro_organism}", "model.threads=1", f"pair={pair}", "train.steps=4",
                "train.batch_size=4", "eval.every=2", "eval.n=4", "eval.n_boot=20", "tasks.invented_facts.n_facts=8",
            ])  # fmt: skip
            run_experiment(config, root / "cells" / f"{pair}-seed{seed}", quiet=True)
    (root / "manifest.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def aggregated(sweep):
    return aggregate(sweep)


def test_load_runs_finds_every_cell_with_its_pair_seed_and_arms(sweep):
    runs = load_runs(sweep)
    assert [(r.cell, r.pair, r.seed) for r in runs] == [
        (f"cells/{pair}-seed{seed}", pair, seed) for pair in PAIRS for seed in SEEDS]
    assert runs[-1].arms == (("table_lookup", "hedging"), ("invented_facts", "confident"))


def test_load_runs_takes_a_single_run_folder(sweep):
    (run,) = load_runs(sweep / "cells" / "bold_plain-seed1")
    assert (run.cell, run.pair, run.seed) == ("bold_plain-seed1", "bold_plain", 1)


def test_aggregate_writes_the_three_tables_and_the_grid(sweep, aggregated):
    for name in ("tables/summary.csv", "tables/final_gap.csv", "tables/peak_gap.csv", "figures/gap_grid.png"):
        assert sweep / name in aggregated
    summary = pd.read_csv(sweep / "tables" / "summary.csv")
    assert set(summary["variant"]) == set(PAIRS)
    assert (summary.loc[summary["measure"] == "accuracy", "n_seeds"] == 2).all()
    assert {"between_seed_sd", "between_seed_ci_low", "within_run_ci_low", "within_run_ci_method"} <= set(summary)
    assert sorted(summary["step"].unique()) == [0, 2, 4]
    final = pd.read_csv(sweep / "tables" / "final_gap.csv")
    curves = 3  # table lookup (fresh) and invented facts (trained, paraphrase)
    assert (final["level"] == "cell").sum() == 4 * curves
    assert (final["level"] == "across_seeds").sum() == 2 * curves
    assert list(pd.read_csv(sweep / "tables" / "peak_gap.csv").columns) == list(final.columns)


def test_grid_of_the_sweep_has_a_row_per_pair_and_a_column_per_task(sweep, aggregated):
    fig = gap_grid_figure(pd.read_csv(sweep / "tables" / "summary.csv"))
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(2, 2)}
    assert [ax.get_title() for ax in fig.axes[:2]] == ["invented_facts (paraphrase)", "table_lookup (fresh)"]
    assert mpimg.imread(sweep / "figures" / "gap_grid.png").shape[0] > 500


def test_every_run_gets_its_own_figures(sweep, aggregated):
    for cell in (sweep / "cells").iterdir():
        for name in RUN_FIGURES:
            assert cell / "figures" / name in aggregated
            assert mpimg.imread(cell / "figures" / name).ndim == 3


def test_write_run_figures_on_one_run(sweep, aggregated):
    cell = sweep / "cells" / "hedging_confident-seed0"
    assert write_run_figures(cell) == [cell / "figures" / name for name in RUN_FIGURES]


def test_figures_command_on_a_sweep_folder(sweep, aggregated):
    result = subprocess.run([sys.executable, "-m", "transferlab.cli", "figures", str(sweep)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "gap_grid.png" in result.stderr


def test_figures_command_on_a_run_folder(sweep, aggregated):
    cell = sweep / "cells" / "bold_plain-seed0"
    assert main(["figures", str(cell), "--adherence-floor", "0.3"]) == 0
    assert (cell / "tables" / "summary.csv").is_file() and (cell / "figures" / "gap_grid.png").is_file()


def test_figures_command_names_a_folder_without_runs(tmp_path, capsys):
    assert main(["figures", str(tmp_path)]) == 2
