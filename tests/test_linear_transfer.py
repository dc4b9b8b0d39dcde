"""The linear-regression companion of goal guarding: what training on train prompts does to the
eval-only direction, and the command that draws it."""

import numpy as np

from transferlab.experiments.linear_transfer import expected, linear_transfer_main, simulate


def test_without_noise_training_on_train_prompts_keeps_the_initial_behaviour_exactly():
    # train prompts never show the eval-only direction, so no gradient reaches it
    share = simulate(0.1, 200, noise=0.0)
    assert np.allclose(share, 1.0)


def test_input_noise_removes_it_faster_at_higher_learning_rates():
    slow, fast = simulate(0.01, 200, noise=0.3)[-1], simulate(0.1, 200, noise=0.3)[-1]
    assert 0.5 < slow < 0.95
    assert fast < 0.1


def test_removal_follows_the_closed_form_in_expectation():
    runs = np.mean([simulate(0.03, 100, noise=0.3, seed=s) for s in range(20)], axis=0)
    assert np.max(np.abs(runs - expected(0.03, 100, noise=0.3))) < 0.03


def test_on_policy_targets_leave_the_initial_behaviour_in_place():
    assert np.allclose(simulate(0.3, 100, noise=0.3, targets="on_policy"), 1.0)


def test_train_prompts_that_overlap_the_eval_direction_remove_it_without_noise():
    assert simulate(0.05, 200, noise=0.0, overlap=0.5)[-1] < 0.05


def test_the_command_writes_a_png_and_a_csv(tmp_path):
    out = tmp_path / "fig.png"
    assert linear_transfer_main(["--out", str(out), "--steps", "20", "--lrs", "0.01,0.1", "--repeats", "2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "fig.csv").read_text().splitlines()
    assert table[0].startswith("lr,step,mean,min,max,expected")
    assert len(table) > 2 * 21
