"""Sweep results: across-seed tables with both kinds of interval, final and peak gaps, the figure grid."""

import math

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
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
    run_figures,
    run_tables,
    summary_table,
    variants,
    write_run_figures,
)
from transferlab.results.figures import gap_grid_figure
from transferlab.results.metrics import (
    GAP_BOUNDS,
    between_seed_interval,
    condition_metrics,
    gap_metrics,
    wilson_interval,
)

PAIRS = ("bold_plain", "hedging_confident")
SEEDS = (0, 1)
RUN_FIGURES = ("gap.png", "accuracy.png", "adherence.png", "loss.png")
T_975_DF2 = 4.3027  # Student t, 97.5%, 2 degrees of freedom
CHANCE = {"facts": 0.1}


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
        gaps.append(gap_metrics(samples, chance=CHANCE, n_boot=200, seed=seed).assign(**labels))
    return pd.concat(metrics, ignore_index=True), pd.concat(gaps, ignore_index=True)


def pick(frame, **where):
    for column, value in where.items():
        frame = frame[frame[column] == value]
    assert len(frame) == 1, frame
    return frame.iloc[0]


def test_between_seed_interval_is_a_t_interval_of_the_mean():
    low, high = between_seed_interval([0.4], [0.2], [3], GAP_BOUNDS)
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


def test_summary_counts_the_seeds_a_gap_mean_covers():
    metrics, gaps = synthetic_tables()
    summary = summary_table(metrics, gaps)
    step0 = pick(summary, measure="gap", step=0)  # 2/10 right under the trained prompt: not above chance
    assert (step0["n_seeds"], step0["n_runs"]) == (0, 3) and math.isnan(step0["mean"])
    assert math.isnan(step0["between_seed_ci_low"])
    # seed 2 no longer learned at step 20: the mean covers the other two
    gaps.loc[(gaps["seed"] == 2) & (gaps["step"] == 20), ["gap", "learned"]] = (float("nan"), False)
    row = pick(summary_table(metrics, gaps), measure="gap", step=20)
    assert (row["n_seeds"], row["n_runs"], row["mean"]) == (2, 3, pytest.approx(0.5))


def test_final_gap_never_picks_an_empty_row():
    gaps = synthetic_tables()[1]
    gaps.loc[(gaps["seed"] == 2) & (gaps["step"] == 20), ["gap", "learned"]] = (float("nan"), False)
    final = final_gap_table(gaps)
    third = pick(final, cell="bold_plain-seed2")
    assert (third["step"], third["gap"]) == (10, pytest.approx(0.6))  # its last step with a gap
    mean = pick(final, level="across_seeds")
    assert (mean["step"], mean["n_seeds"], mean["n_runs"]) == (20, 2, 3)
    gaps["gap"] = float("nan")  # nothing learned anywhere: no step is picked, none is made up
    nothing = final_gap_table(gaps)
    assert nothing["step"].isna().all() and nothing["gap"].isna().all() and (nothing["n_seeds"] == 0).all()


def test_summary_between_seed_interval_of_a_rate_stays_inside_0_1():
    metrics, gaps = synthetic_tables()
    row = pick(summary_table(metrics, gaps), measure="accuracy", prompt="swapped", step=10)  # 0.6, sd 0.2
    assert row["between_seed_ci_low"] == pytest.approx(0.6 - T_975_DF2 * 0.2 / math.sqrt(3), abs=1e-4)
    assert row["between_seed_ci_high"] == 1.0  # unclipped: 1.097


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
def sweep(micro_organism, warm_cli, tmp_path_factory):
    """2 pairs x 2 seeds of real tiny runs, laid out as a sweep folder: `transferlab run` four times at
    once, forked from the warm CLI server (tests/warm_cli.py), one torch thread each."""
    root = tmp_path_factory.mktemp("sweep")
    started = []
    for pair in PAIRS:
        for seed in SEEDS:
            overrides = [f"model.name={micro_organism}", "model.threads=1", f"pair={pair}", "train.steps=4",
                         "train.batch_size=4", "eval.every=2", "eval.n=4", "eval.n_boot=20",
                         "tasks.invented_facts.n_facts=8"]
            started.append(warm_cli.start(["-m", "transferlab.cli", "run", "--quiet", "--seed", str(seed),
                                           "--out", str(root / "cells" / f"{pair}-seed{seed}"),
                                           *[a for o in overrides for a in ("--set", o)]]))
    for process in started:
        result = process.wait()
        assert result.returncode == 0, result.stderr
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


def drawn_steps(ax, label) -> list[int]:
    """Steps where the line labelled `label` has a finite value (nan is not drawn)."""
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    return x[np.isfinite(y)].astype(int).tolist()


def line_values(ax, label) -> list[float]:
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return list(line.get_ydata())


def test_every_run_gets_its_own_figures(sweep, aggregated):
    for cell in sorted((sweep / "cells").iterdir()):
        for name in RUN_FIGURES:
            assert cell / "figures" / name in aggregated
            assert mpimg.imread(cell / "figures" / name).ndim == 3
        (run,) = load_runs(cell)
        figures = run_figures(run, run_tables(run))
        assert list(figures) == list(RUN_FIGURES)
        metrics, gaps = pd.read_csv(cell / "metrics.csv"), pd.read_csv(cell / "gaps.csv")
        gap_axes, acc_axes = figures["gap.png"].axes, figures["accuracy.png"].axes
        assert len(gap_axes) == len(acc_axes) == 2
        for gap_ax, acc_ax in zip(gap_axes, acc_axes):
            task = gap_ax.get_title().split(" ")[0]
            eval_set = {"table_lookup": "fresh", "invented_facts": "trained"}[task]  # each task's first set
            assert acc_ax.get_title() == f"{task} ({eval_set})"
            curve = gaps[(gaps["task"] == task) & (gaps["eval_set"] == eval_set)].sort_values("step")
            # the gap is drawn exactly where gaps.csv has one (learned, before the cut): never where not_learned
            assert drawn_steps(gap_ax, "performance gap") == curve.loc[curve["gap"].notna() & ~curve["cut"], "step"].tolist()
            assert set(curve.loc[curve["gap"].isna(), "gap_missing"]) <= {"not_learned", "no_swapped_prompt"}
            # the faint accuracy line and the accuracy figure are the run's own metrics.csv
            conditions = metrics[(metrics["task"] == task) & (metrics["eval_set"] == eval_set)].sort_values("step")
            trained = conditions[conditions["is_trained"]]
            assert line_values(gap_ax, "acc (trained prompt)") == pytest.approx(trained["accuracy"].tolist())
            prompted = trained["prompted"].iloc[0]
            assert line_values(acc_ax, f"{prompted} (trained)") == pytest.approx(trained["accuracy"].tolist())
        log = pd.read_csv(cell / "train_log.csv")
        (loss_line, *_) = figures["loss.png"].axes[0].get_lines()
        assert list(loss_line.get_ydata()) == pytest.approx(log["loss"].tolist())
        plt.close("all")


def test_aggregate_recomputes_each_runs_own_gaps(sweep, aggregated):
    (run,) = load_runs(sweep / "cells" / "hedging_confident-seed1")
    written = pd.read_csv(run.path / "gaps.csv")
    recomputed = run_tables(run).gaps[written.columns]
    pd.testing.assert_frame_equal(recomputed.reset_index(drop=True), written, check_dtype=False)


def test_write_run_figures_on_one_run(sweep, aggregated):
    cell = sweep / "cells" / "hedging_confident-seed0"
    before = {name: (cell / "figures" / name).stat().st_mtime_ns for name in RUN_FIGURES}
    assert write_run_figures(cell) == [cell / "figures" / name for name in RUN_FIGURES]
    assert all((cell / "figures" / name).stat().st_mtime_ns > before[name] for name in RUN_FIGURES)


def expected_cut_steps(cell, floor: float) -> dict[tuple[str, str], float]:
    """Per (task, eval_set): the first step whose swapped adherence is under `floor`, straight from
    samples.jsonl (nan: never)."""
    samples = pd.read_json(cell / "samples.jsonl", lines=True)
    swapped = samples[samples["prompted"] != samples["trained"]]
    adherence = swapped.groupby(["task", "eval_set", "step"])["adherent"].mean().reset_index()
    below = adherence[adherence["adherent"] < floor]
    return {key: below.loc[(below["task"] == key[0]) & (below["eval_set"] == key[1]), "step"].min()
            for key in adherence.groupby(["task", "eval_set"]).groups}


def test_figures_command_on_a_sweep_folder(sweep, aggregated, warm_cli):
    before = (sweep / "tables" / "summary.csv").stat().st_mtime_ns
    result = warm_cli.run(["-m", "transferlab.cli", "figures", str(sweep)], timeout=120)  # forked warm
    assert result.returncode == 0, result.stderr
    assert "gap_grid.png" in result.stderr
    assert (sweep / "tables" / "summary.csv").stat().st_mtime_ns > before
    summary = pd.read_csv(sweep / "tables" / "summary.csv")
    gap_rows = summary[summary["measure"] == "gap"]
    assert (gap_rows["n_runs"] == 2).all()
    for row in gap_rows.itertuples():  # a mean covers exactly the seeds whose gaps.csv has a gap there
        have = 0
        for seed in SEEDS:
            gaps = pd.read_csv(sweep / "cells" / f"{row.pair}-seed{seed}" / "gaps.csv")
            at = gaps[(gaps["task"] == row.task) & (gaps["eval_set"] == row.eval_set) & (gaps["step"] == row.step)]
            have += int(at["gap"].notna().iloc[0])
        assert row.n_seeds == have


def test_figures_command_on_a_run_folder(sweep, aggregated):
    cell = sweep / "cells" / "bold_plain-seed0"
    cuts = {}
    for floor in (0.0, 1.0):
        assert main(["figures", str(cell), "--adherence-floor", str(floor)]) == 0
        assert (cell / "tables" / "summary.csv").is_file() and (cell / "figures" / "gap_grid.png").is_file()
        final = pd.read_csv(cell / "tables" / "final_gap.csv")
        cuts[floor] = {(r.task, r.eval_set): r.cut_step for r in final[final["level"] == "cell"].itertuples()}
        expected = expected_cut_steps(cell, floor)
        assert cuts[floor] == pytest.approx(expected, nan_ok=True)
    assert all(math.isnan(step) for step in cuts[0.0].values())  # nothing is under a floor of 0
    assert cuts[0.0] != pytest.approx(cuts[1.0], nan_ok=True)  # the floor moves the cut
    (run,) = load_runs(cell)
    for floor in (0.3, 0.8):  # and the figures draw the floor they are given
        adherence = run_figures(run, run_tables(run, adherence_floor=floor))["adherence.png"]
        assert line_values(adherence.axes[0], f"floor {floor:.0%}")[0] == floor
        plt.close("all")


def test_figures_command_names_a_folder_without_runs(tmp_path, capsys):
    assert main(["figures", str(tmp_path)]) == 2
