import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from transferlab.results.figures import (
    conditions_figure,
    gap_figure,
    plot_accuracy,
    plot_adherence,
    plot_gap,
    save_figure,
)
from transferlab.results.metrics import condition_metrics, gap_metrics

CHANCE = {"facts": 0.1, "table": 0.1}


def synthetic_samples(seeds=(0,), n=20):
    """Two tasks over four steps; facts loses swapped adherence at step 20 (a cut inside the curve)."""
    rng = np.random.default_rng(0)
    parts = []
    for seed in seeds:
        for step in (0, 10, 20, 30):
            for task, trained, swapped in (("facts", "bold", "plain"), ("table", "plain", "bold")):
                for prompted in (trained, swapped):
                    is_trained = prompted == trained
                    accuracy = 0.1 + (0.025 if is_trained else 0.01) * step
                    adherence = 0.9 if is_trained or task == "table" or step < 20 else 0.3
                    parts.append(pd.DataFrame({
                        "step": step, "task": task, "eval_set": "fresh", "trained": trained,
                        "prompted": prompted, "seed": seed, "example_id": [f"e{i}" for i in range(n)],
                        "correct": rng.random(n) < accuracy, "adherent": rng.random(n) < adherence,
                    }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_synthetic_gaps_contain_a_cut():
    gaps = gap_metrics(synthetic_samples(), chance=CHANCE, n_boot=50)
    assert gaps.loc[gaps["task"] == "facts", "cut"].tolist() == [False, False, True, True]


@pytest.fixture(autouse=True)
def close_figures():
    """Figures read back here are never saved, so close them after each test."""
    yield
    plt.close("all")


def line(ax, label):
    """The line an axes draws under `label` (the legend's name for it)."""
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def drawn_steps(ln) -> list[int]:
    """The x-values where a line has a finite y (matplotlib leaves nan out of the drawing)."""
    x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
    return x[np.isfinite(y)].astype(int).tolist()


def same_image(path, fig, tmp_path):
    """The PNG at `path` is `fig`, saved the way the figures module saves."""
    expected = save_figure(fig, tmp_path / "expected.png")
    return np.array_equal(mpimg.imread(path), mpimg.imread(expected))


def test_plot_gap_writes_the_gap_figure(tmp_path):
    gaps = gap_metrics(synthetic_samples((0, 1)), chance=CHANCE, n_boot=50)
    path = plot_gap(gaps, tmp_path / "nested" / "gap.png", title="synthetic")
    assert path == tmp_path / "nested" / "gap.png"
    assert_png(path)
    assert same_image(path, gap_figure(gaps, "synthetic"), tmp_path)


@pytest.mark.parametrize("seeds", [(0,), (0, 1)], ids=["one-seed", "two-seeds"])
def test_gap_line_has_points_only_where_the_capability_was_learned(seeds):
    gaps = gap_metrics(synthetic_samples(seeds), chance=CHANCE, n_boot=50)
    fig = gap_figure(gaps)
    for ax, task in zip(fig.axes, ("facts", "table")):
        rows = gaps[gaps["task"] == task]
        learned_steps = sorted(set(rows.loc[rows["learned"] & ~rows["cut"], "step"]))
        assert 0 not in learned_steps and learned_steps  # step 0 (10% vs chance 10%) is not learned
        assert drawn_steps(line(ax, "performance gap")) == learned_steps
        # the accuracy stays for every step, so the reader sees why the gap is missing at step 0
        assert drawn_steps(line(ax, "acc (trained prompt)")) == [0, 10, 20, 30]
        assert line(ax, "chance accuracy").get_ydata()[0] == pytest.approx(0.1)


def test_gap_panel_says_so_when_nothing_was_learned():
    gaps = gap_metrics(synthetic_samples(), chance={"facts": 0.1, "table": 0.99}, n_boot=50)
    fig = gap_figure(gaps)
    table_ax = fig.axes[1]
    assert drawn_steps(line(table_ax, "performance gap")) == []
    assert any("not above chance" in t.get_text() for t in table_ax.texts)
    assert drawn_steps(line(fig.axes[0], "performance gap"))


def test_gap_figure_accuracy_line_is_the_trained_accuracy_mean_over_seeds():
    samples = synthetic_samples((0, 1))
    gaps = gap_metrics(samples, chance=CHANCE, n_boot=50)
    metrics = condition_metrics(samples)
    trained = metrics[metrics["is_trained"] & (metrics["task"] == "facts")].groupby("step")["accuracy"].mean()
    assert line(gap_figure(gaps).axes[0], "acc (trained prompt)").get_ydata().tolist() == pytest.approx(
        trained.tolist())


def test_plot_accuracy_draws_every_condition_from_the_metrics(tmp_path):
    metrics = condition_metrics(synthetic_samples((0, 1)))
    path = plot_accuracy(metrics, tmp_path / "acc.png")
    assert path == tmp_path / "acc.png"
    assert_png(path)
    columns = ("accuracy", "acc_low", "acc_high")
    fig = conditions_figure(metrics, columns, "accuracy")
    assert same_image(path, fig, tmp_path)
    for ax, task, trained, swapped in zip(fig.axes, ("facts", "table"), ("bold", "plain"), ("plain", "bold")):
        rows = metrics[metrics["task"] == task]
        for prompted, role in ((trained, "trained"), (swapped, "swapped")):
            expected = rows[rows["prompted"] == prompted].groupby("step")["accuracy"].mean()
            drawn = line(ax, f"{prompted} ({role})")
            assert list(drawn.get_xdata()) == expected.index.tolist()
            assert list(drawn.get_ydata()) == pytest.approx(expected.tolist())


def test_plot_adherence_draws_the_floor_it_is_given(tmp_path):
    metrics = condition_metrics(synthetic_samples())
    for floor in (0.3, 0.7):
        fig = conditions_figure(metrics, ("adherence", "adh_low", "adh_high"), "adherence", floor=floor)
        assert line(fig.axes[0], f"floor {floor:.0%}").get_ydata()[0] == floor
    assert_png(plot_adherence(metrics, tmp_path / "adh.png", adherence_floor=0.3))


def test_plot_gap_rejects_an_eval_set_that_is_absent(tmp_path):
    gaps = gap_metrics(synthetic_samples(), chance=CHANCE, n_boot=50)
    with pytest.raises(ValueError):
        plot_gap(gaps, tmp_path / "gap.png", eval_set="paraphrase")
