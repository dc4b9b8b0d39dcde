import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from transferlab.results.figures import plot_accuracy, plot_gap
from transferlab.results.metrics import condition_metrics, gap_metrics


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
    gaps = gap_metrics(synthetic_samples(), n_boot=50)
    assert gaps.loc[gaps["task"] == "facts", "cut"].tolist() == [False, False, True, True]


@pytest.mark.parametrize("seeds", [(0,), (0, 1)], ids=["one-seed", "two-seeds"])
def test_plot_gap_writes_a_png(tmp_path, seeds):
    gaps = gap_metrics(synthetic_samples(seeds), n_boot=50)
    path = plot_gap(gaps, tmp_path / "nested" / "gap.png", title="synthetic")
    assert path == tmp_path / "nested" / "gap.png"
    assert_png(path)


def test_plot_accuracy_writes_a_png(tmp_path):
    path = plot_accuracy(condition_metrics(synthetic_samples((0, 1))), tmp_path / "acc.png")
    assert path == tmp_path / "acc.png"
    assert_png(path)


def test_plot_gap_rejects_an_eval_set_that_is_absent(tmp_path):
    gaps = gap_metrics(synthetic_samples(), n_boot=50)
    with pytest.raises(ValueError):
        plot_gap(gaps, tmp_path / "gap.png", eval_set="paraphrase")
