"""A panel without a gap says why: nothing learned, or the curve cut before anything was learned
(the default sweep's reasoning/facts panel said "not above chance" beside a trained accuracy of 1.0)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_figures import synthetic_samples

from transferlab.results.figures import _draw_grid_panel, gap_figure
from transferlab.results.metrics import gap_metrics


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def notes(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_run_figure_says_the_cut_came_first():
    # facts: swapped adherence falls at step 20; with chance 0.5 its accuracy is above chance only at 30
    gaps = gap_metrics(synthetic_samples(), chance={"facts": 0.5, "table": 0.1}, n_boot=50)
    facts = gaps[gaps["task"] == "facts"]
    assert not facts.loc[~facts["cut"], "learned"].any() and facts.loc[facts["cut"], "learned"].any()
    fig = gap_figure(gaps)
    assert "cut before" in notes(fig.axes[0]) and "not above chance" not in notes(fig.axes[0])


def test_run_figure_without_a_cut_says_nothing_was_learned():
    gaps = gap_metrics(synthetic_samples(), chance={"facts": 0.1, "table": 0.99}, n_boot=50)
    fig = gap_figure(gaps)
    assert "not above chance" in notes(fig.axes[1]) and "cut before" not in notes(fig.axes[1])


def grid_rows(cut_frac: list[float]) -> pd.DataFrame:
    steps = [0, 250, 500]
    nan = [np.nan] * 3
    gap = pd.DataFrame({"measure": "gap", "prompt": "swapped/trained", "step": steps, "mean": nan,
                        "cut_frac": cut_frac, "within_run_ci_low": nan, "within_run_ci_high": nan,
                        "between_seed_ci_low": nan, "between_seed_ci_high": nan})
    acc = pd.DataFrame({"measure": "accuracy", "prompt": "trained", "step": steps, "mean": [0.0, 0.9, 1.0],
                        "cut_frac": cut_frac})
    return pd.concat([gap, acc], ignore_index=True)


@pytest.mark.parametrize(("cut_frac", "expected", "absent"), [
    ([0.0, 1.0, 1.0], "cut before", "not above chance"),
    ([0.0, 0.0, 0.0], "not above chance", "cut before"),
], ids=["cut-first", "never-learned"])
def test_grid_panel_says_why_there_is_no_gap(cut_frac, expected, absent):
    _fig, ax = plt.subplots()
    _draw_grid_panel(ax, grid_rows(cut_frac), "tab:blue", 0.5)
    assert expected in notes(ax) and absent not in notes(ax)
