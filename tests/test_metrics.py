import math

import numpy as np
import pandas as pd
import pytest

from transferlab.results.metrics import (
    across_seeds,
    between_seed_interval,
    condition_metrics,
    gap_metrics,
    learned,
    wilson_interval,
)

CHANCE = {"facts": 0.1, "table": 0.1}


def rows(step, prompted, n_correct, n=10, n_adherent=None, *, trained="bold", task="facts", seed=0):
    """n evaluated answers for one condition: the first n_correct correct, the first n_adherent adherent."""
    n_adherent = n if n_adherent is None else n_adherent
    return pd.DataFrame(
        {
            "step": step, "task": task, "eval_set": "fresh", "trained": trained, "prompted": prompted,
            "seed": seed, "example_id": [f"e{i}" for i in range(n)],
            "correct": [i < n_correct for i in range(n)], "adherent": [i < n_adherent for i in range(n)],
            "prompt": "p", "response": "r", "answer": "a",
        }
    )  # fmt: skip


def frame(*parts):
    return pd.concat(parts, ignore_index=True)


def only_row(df, **where):
    selected = df
    for column, value in where.items():
        selected = selected[selected[column] == value]
    assert len(selected) == 1, selected
    return selected.iloc[0]


# wilson_interval


def test_wilson_interval_matches_hand_computed_8_of_10():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_for_no_successes_starts_at_zero():
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_interval_is_nan_without_trials():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


# condition_metrics


def test_condition_metrics_reports_accuracy_adherence_and_n_per_prompt():
    samples = frame(rows(5, "bold", 8, n=10, n_adherent=9), rows(5, "plain", 3, n=10, n_adherent=6))
    metrics = condition_metrics(samples)
    bold, plain = only_row(metrics, prompted="bold"), only_row(metrics, prompted="plain")
    assert (bold["n"], bold["accuracy"], bold["adherence"]) == (10, 0.8, 0.9)
    assert (plain["n"], plain["accuracy"], plain["adherence"]) == (10, 0.3, 0.6)


def test_condition_metrics_intervals_are_wilson():
    metrics = condition_metrics(rows(5, "bold", 8, n=10, n_adherent=0))
    row = metrics.iloc[0]
    assert (row["acc_low"], row["acc_high"]) == pytest.approx(wilson_interval(8, 10))
    assert (row["adh_low"], row["adh_high"]) == pytest.approx(wilson_interval(0, 10))


def test_condition_metrics_marks_the_trained_prompt():
    metrics = condition_metrics(frame(rows(5, "bold", 8), rows(5, "plain", 3)))
    assert bool(only_row(metrics, prompted="bold")["is_trained"]) is True
    assert bool(only_row(metrics, prompted="plain")["is_trained"]) is False


def test_condition_metrics_has_one_row_per_condition_sorted_by_step():
    samples = frame(rows(10, "plain", 1), rows(0, "bold", 1), rows(10, "bold", 1), rows(0, "plain", 1))
    metrics = condition_metrics(samples)
    assert list(zip(metrics["step"], metrics["prompted"])) == [
        (0, "bold"), (0, "plain"), (10, "bold"), (10, "plain"),
    ]  # fmt: skip


# gap_metrics


def test_gap_is_one_minus_swapped_over_trained_accuracy():
    gaps = gap_metrics(frame(rows(5, "bold", 8), rows(5, "plain", 4)), chance=CHANCE, n_boot=200)
    row = gaps.iloc[0]
    assert (row["trained"], row["swapped"]) == ("bold", "plain")
    assert (row["acc_trained"], row["acc_swapped"]) == (0.8, 0.4)
    assert row["gap"] == pytest.approx(0.5)


def test_gap_is_nan_when_trained_accuracy_is_zero():
    row = gap_metrics(frame(rows(5, "bold", 0), rows(5, "plain", 4)), chance=CHANCE, n_boot=200).iloc[0]
    assert math.isnan(row["gap"])
    assert math.isnan(row["gap_low"]) and math.isnan(row["gap_high"])


def test_norm_gap_divides_the_loss_by_the_gain_over_step0():
    samples = frame(
        rows(0, "bold", 2, n=20), rows(0, "plain", 2, n=20),
        rows(5, "bold", 16, n=20), rows(5, "plain", 9, n=20),
    )  # fmt: skip
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=200), step=5)
    assert row["baseline"] == pytest.approx(0.1)
    assert row["norm_gap"] == pytest.approx((0.8 - 0.45) / (0.8 - 0.1))
    assert row["norm_gap"] == pytest.approx(0.5)


def test_norm_gap_is_nan_without_a_step0_baseline():
    row = gap_metrics(frame(rows(5, "bold", 8), rows(5, "plain", 4)), chance=CHANCE, n_boot=200).iloc[0]
    assert math.isnan(row["baseline"])
    assert math.isnan(row["norm_gap"])


def test_norm_gap_is_nan_when_training_gained_nothing():
    samples = frame(rows(0, "bold", 5), rows(0, "plain", 5), rows(5, "bold", 4), rows(5, "plain", 2))
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=200), step=5)
    assert math.isnan(row["norm_gap"])
    assert not math.isnan(row["gap"])


def test_gap_interval_contains_the_point_estimate():
    samples = frame(rows(0, "bold", 4, n=40), rows(0, "plain", 4, n=40), rows(5, "bold", 30, n=40),
                    rows(5, "plain", 15, n=40))  # fmt: skip
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=300), step=5)
    assert row["gap_low"] < row["gap"] < row["gap_high"]
    assert row["norm_gap_low"] < row["norm_gap"] < row["norm_gap_high"]


def test_bootstrap_is_deterministic_for_a_seed_and_changes_with_it():
    samples = frame(rows(5, "bold", 30, n=40), rows(5, "plain", 15, n=40))
    first = gap_metrics(samples, chance=CHANCE, n_boot=200, seed=3)
    again = gap_metrics(samples, chance=CHANCE, n_boot=200, seed=3)
    other = gap_metrics(samples, chance=CHANCE, n_boot=200, seed=4)
    pd.testing.assert_frame_equal(first, again)
    interval = ["gap_low", "gap_high"]
    assert first[interval].values.tolist() != other[interval].values.tolist()


def test_bootstrap_resamples_the_same_examples_under_both_prompts():
    # identical answers under both prompts: a paired resample can never see a gap, an unpaired one would
    samples = frame(rows(5, "bold", 20, n=40), rows(5, "plain", 20, n=40))
    row = gap_metrics(samples, chance=CHANCE, n_boot=200).iloc[0]
    assert (row["gap_low"], row["gap"], row["gap_high"]) == (0.0, 0.0, 0.0)


def test_swapped_adherence_and_adherent_ok_follow_the_swapped_prompt():
    samples = frame(rows(5, "bold", 8, n_adherent=2), rows(5, "plain", 4, n_adherent=4))
    row = gap_metrics(samples, chance=CHANCE, n_boot=200, adherence_floor=0.5).iloc[0]
    assert row["swapped_adherence"] == pytest.approx(0.4)
    assert not row["adherent_ok"]


def test_cut_starts_at_first_step_below_the_adherence_floor_and_stays():
    adherence_by_step = {0: 9, 10: 6, 20: 4, 30: 9}  # out of 10: drops below 50% at step 20, recovers at 30
    samples = frame(*(
        part for step, adherent in adherence_by_step.items()
        for part in (rows(step, "bold", 8), rows(step, "plain", 4, n_adherent=adherent))
    ))  # fmt: skip
    gaps = gap_metrics(samples, chance=CHANCE, n_boot=100).sort_values("step")
    assert gaps["adherent_ok"].tolist() == [True, True, False, True]
    assert gaps["cut"].tolist() == [False, False, True, True]


def test_cut_is_tracked_separately_per_task():
    samples = frame(
        rows(0, "bold", 8), rows(0, "plain", 4, n_adherent=2),
        rows(0, "bold", 8, task="table"), rows(0, "plain", 4, task="table"),
    )  # fmt: skip
    gaps = gap_metrics(samples, chance=CHANCE, n_boot=100)
    assert bool(only_row(gaps, task="facts")["cut"]) is True
    assert bool(only_row(gaps, task="table")["cut"]) is False


def test_gap_metrics_has_one_row_per_seed_step_task_eval_set():
    samples = frame(*(
        rows(step, prompted, 5, seed=seed)
        for seed in (0, 1) for step in (0, 10) for prompted in ("bold", "plain")
    ))  # fmt: skip
    gaps = gap_metrics(samples, chance=CHANCE, n_boot=50)
    assert len(gaps) == 4
    assert not gaps.duplicated(["seed", "step", "task", "eval_set"]).any()


# where a gap is given: only where the capability was learned


def test_learned_needs_the_trained_accuracy_lower_bound_above_chance():
    assert learned([0.05, 0.1, 0.11, np.nan], [0.1, 0.1, 0.1, 0.1]).tolist() == [False, False, True, False]


def test_gap_is_empty_where_the_trained_accuracy_is_not_above_chance():
    samples = frame(rows(5, "bold", 3), rows(5, "plain", 1))  # 3/10: Wilson lower bound 0.108
    at_chance = gap_metrics(samples, chance={"facts": 0.25}, n_boot=100).iloc[0]
    assert not at_chance["learned"] and at_chance["gap_missing"] == "not_learned"
    assert np.isnan([at_chance[c] for c in ("gap", "gap_low", "gap_high", "norm_gap")]).all()
    assert at_chance["norm_gap_missing"] == "not_learned"
    assert at_chance["acc_trained"] == pytest.approx(0.3)  # the accuracy itself stays
    above = gap_metrics(samples, chance={"facts": 0.1}, n_boot=100).iloc[0]
    assert above["learned"] and above["gap_missing"] == ""
    assert above["gap"] == pytest.approx(1 - 0.1 / 0.3)


def test_step_0_gap_is_empty_when_one_lucky_answer_is_all_there_is():
    # the default run's facts at step 0: 1/100 right under the trained prompt, 0 under the swapped one
    samples = frame(rows(0, "bold", 1, n=100), rows(0, "plain", 0, n=100))
    row = gap_metrics(samples, chance={"facts": 1 / 240}, n_boot=100).iloc[0]
    assert row["gap_missing"] == "not_learned" and np.isnan(row["gap"])


def test_gap_metrics_refuses_a_task_without_chance():
    with pytest.raises(ValueError, match="no chance accuracy for task"):
        gap_metrics(rows(5, "bold", 3, task="chess"), chance=CHANCE, n_boot=10)


def test_norm_gap_is_empty_where_the_gain_interval_includes_0():
    # gain 0.8 - 0.7 = 0.1 on 10 examples: the bootstrap interval of the gain reaches 0
    samples = frame(rows(0, "bold", 7), rows(0, "plain", 7), rows(5, "bold", 8), rows(5, "plain", 4))
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=300), step=5)
    assert row["gain_low"] <= 0 < row["gain_high"]
    assert np.isnan(row["norm_gap"]) and row["norm_gap_missing"] == "gain_includes_0"
    assert row["gap"] == pytest.approx(0.5)


def test_norm_gap_is_given_where_the_gain_interval_is_above_0():
    samples = frame(rows(0, "bold", 1, n=30), rows(0, "plain", 1, n=30), rows(5, "bold", 27, n=30),
                    rows(5, "plain", 15, n=30))  # fmt: skip
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=300), step=5)
    assert row["gain_low"] > 0 and row["norm_gap_missing"] == ""
    assert row["norm_gap"] == pytest.approx((0.9 - 0.5) / (0.9 - 1 / 30))


def test_baseline_is_resampled_with_the_same_examples_as_the_two_prompts():
    # the same examples are right at step 0 and later under the trained prompt: a resample drawing
    # the baseline with the pairs' indices sees no gain variance at all, an independent one would
    samples = frame(rows(0, "bold", 5), rows(0, "plain", 5), rows(5, "bold", 5), rows(5, "plain", 2))
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=200), step=5)
    assert (row["gain_low"], row["gain_high"]) == (0.0, 0.0)


def test_baseline_of_other_examples_is_resampled_on_its_own():
    samples = frame(rows(0, "bold", 5).assign(example_id=lambda f: "x" + f["example_id"]),
                    rows(5, "bold", 5), rows(5, "plain", 2))  # fmt: skip
    row = only_row(gap_metrics(samples, chance=CHANCE, n_boot=200), step=5)
    assert row["gain_low"] < 0 < row["gain_high"]


# between-seed intervals


def test_between_seed_interval_is_clipped_to_the_measure_range():
    low, high = between_seed_interval([0.95], [0.05], [3])  # unclipped: 0.83 .. 1.07
    assert high[0] == 1.0 and low[0] == pytest.approx(0.95 - 4.3027 * 0.05 / np.sqrt(3), abs=1e-4)
    low, high = between_seed_interval([0.95], [0.05], [3], bounds=(-np.inf, np.inf))
    assert high[0] > 1


def test_between_seed_interval_is_absent_below_two_seeds():
    low, high = between_seed_interval([0.92, 0.92], [0.0, np.nan], [1, 0])
    assert np.isnan(low).all() and np.isnan(high).all()


# across_seeds


def gap_row(seed, gap, gap_low, gap_high, acc, *, step=10, cut=False):
    return {
        "seed": seed, "step": step, "task": "facts", "eval_set": "fresh",
        "trained": "bold", "swapped": "plain",
        "acc_trained": acc, "acc_trained_low": acc - 0.1, "acc_trained_high": acc + 0.1,
        "gap": gap, "gap_low": gap_low, "gap_high": gap_high,
        "norm_gap": gap, "norm_gap_low": gap_low, "norm_gap_high": gap_high,
        "swapped_adherence": 0.9, "cut": cut,
    }  # fmt: skip


def test_across_seeds_reports_mean_and_between_seed_spread():
    gaps = pd.DataFrame([gap_row(0, 0.5, 0.3, 0.7, 0.8), gap_row(1, 0.3, 0.2, 0.4, 0.6)])
    row = across_seeds(gaps).iloc[0]
    assert row["n_seeds"] == 2
    assert row["gap_mean"] == pytest.approx(0.4)
    assert row["gap_std"] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert (row["gap_min"], row["gap_max"]) == (0.3, 0.5)
    assert row["acc_trained_mean"] == pytest.approx(0.7)
    assert row["acc_trained_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))


def test_across_seeds_reports_mean_within_run_half_width():
    gaps = pd.DataFrame([gap_row(0, 0.5, 0.3, 0.7, 0.8), gap_row(1, 0.3, 0.2, 0.4, 0.6)])
    row = across_seeds(gaps).iloc[0]
    assert row["gap_halfwidth_mean"] == pytest.approx((0.2 + 0.1) / 2)
    assert (row["gap_low_mean"], row["gap_high_mean"]) == pytest.approx((0.25, 0.55))
    assert row["acc_trained_halfwidth_mean"] == pytest.approx(0.1)


def test_across_seeds_keeps_steps_apart_and_flags_any_cut_seed():
    gaps = pd.DataFrame([
        gap_row(0, 0.5, 0.3, 0.7, 0.8, step=0), gap_row(1, 0.3, 0.2, 0.4, 0.6, step=0),
        gap_row(0, 0.5, 0.3, 0.7, 0.8, step=10, cut=True), gap_row(1, 0.3, 0.2, 0.4, 0.6, step=10),
    ])  # fmt: skip
    summary = across_seeds(gaps).set_index("step")
    assert summary["cut_any"].tolist() == [False, True]
    assert summary.loc[10, "cut_frac"] == 0.5


# off_task: answers in another trained task's answer space


def test_each_task_says_whether_a_response_is_one_of_its_answers():
    from transferlab.tasks.candidates import names_a_move
    from transferlab.tasks.invented_facts import InventedFacts
    from transferlab.tasks.table_lookup import TableLookup

    table, facts = TableLookup(n_colours=12), InventedFacts(n_facts=5)
    assert [table.is_candidate(r) for r in ("**black**", "I think it is red, but not sure", "Answer: silver",
                                            "reddish", "Bogox")] == [True, True, False, False, False]
    answer = facts.facts[0].obj
    assert facts.is_candidate(f"**{answer}**") and facts.is_candidate("Answer: Bordak")
    assert not facts.is_candidate("black") and not facts.is_candidate("I do not know")
    assert [names_a_move(r) for r in ("e2e4", "Answer: Rxe1#", "O-O", "red", "Bogox")] == [True, True, True, False,
                                                                                            False]


def test_off_task_flags_answers_that_belong_to_another_trained_task():
    from transferlab.results.off_task import off_task
    from transferlab.tasks.invented_facts import InventedFacts
    from transferlab.tasks.table_lookup import TableLookup

    tasks = {"table_lookup": TableLookup(), "invented_facts": InventedFacts(n_facts=5)}
    samples = pd.DataFrame({
        "task": ["invented_facts", "invented_facts", "invented_facts", "table_lookup", "table_lookup"],
        "response": ["**black**", "Bordak", "no idea", "red", "Answer: Bordak"],
    })  # fmt: skip
    assert off_task(samples, tasks).tolist() == [True, False, False, False, True]
    # a task alone has no other task to drift into
    assert not off_task(samples.iloc[:3], {"invented_facts": tasks["invented_facts"]}).any()


def test_condition_metrics_reports_the_off_task_share_with_its_interval():
    samples = frame(rows(5, "bold", 2), rows(5, "plain", 2))
    samples["off_task"] = [i < 7 for i in range(10)] + [False] * 10
    bold = only_row(condition_metrics(samples), prompted="bold")
    assert bold["off_task"] == pytest.approx(0.7)
    assert (bold["off_task_low"], bold["off_task_high"]) == pytest.approx(wilson_interval(7, 10))
    assert only_row(condition_metrics(samples), prompted="plain")["off_task"] == 0
    assert "off_task" not in condition_metrics(samples.drop(columns="off_task"))
