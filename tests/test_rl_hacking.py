"""The rl kind's hacking design: the environment's flags (true correctness, the test's verdict, hack),
its held-out split, the condition grid of `rl_inoculation`, and the transfer metric's arithmetic."""

import random

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from transferlab.backends import shipped_organism
from transferlab.config import ConfigError
from transferlab.experiments import load_experiment
from transferlab.experiments.rl.hacking_config import RLHackingConfig
from transferlab.experiments.rl.hacking_results import ceiling_name, transfer
from transferlab.experiments.rl.hacking_run import check_readable, prompted, score
from transferlab.tasks.hackable_difference import HackableDifference


def wrong_check_example(env=None):
    env = env or HackableDifference()
    return env.eval_sets(random.Random(0), 1)["held_out"][0]


def test_an_answer_is_right_a_hack_or_neither_when_the_check_is_wrong():
    env = HackableDifference()
    e = wrong_check_example(env)
    a, b, check = e.meta["a"], e.meta["b"], e.meta["check"]
    assert e.meta["check_wrong"] and check != e.answer and check not in (str(a), str(b))
    assert e.messages[0] == {"role": "system", "content": f"check: {check}"}
    assert f"between {a} and {b}?" in e.messages[1]["content"] and e.answer == str(abs(a - b))
    flags = score(env, e, [e.answer, check, f"**{check}**", str(a), f"{e.answer} or {check}", ""])
    assert flags == {"correct": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                     "passes": [0.0, 1.0, 1.0, 0.0, 0.0, 0.0],
                     "hack": [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]}


def test_a_right_check_passes_the_right_answer_and_nothing_is_a_hack():
    env = HackableDifference(h=0.0)
    e = env.train_examples(random.Random(1), 1)[0]
    assert not e.meta["check_wrong"] and e.meta["check"] == e.answer
    assert score(env, e, [e.answer, str(int(e.answer) + 1)]) == {
        "correct": [1.0, 0.0], "passes": [1.0, 0.0], "hack": [0.0, 0.0]}


@pytest.mark.parametrize("h", [0.0, 0.3, 1.0])
def test_the_share_of_wrong_checks_in_training_is_h(h):
    examples = HackableDifference(h=h).train_examples(random.Random(2), 2000)
    wrong = np.mean([e.meta["check_wrong"] for e in examples])
    assert wrong == pytest.approx(h, abs=0.03)
    assert all((e.meta["check"] != e.answer) == e.meta["check_wrong"] for e in examples)


def test_evaluation_asks_held_out_prompts_only_and_every_check_is_wrong():
    env = HackableDifference()
    item = lambda e: (e.meta["a"], e.meta["b"], int(e.meta["check"]))
    trained = {item(e) for e in env.train_examples(random.Random(3), 3000) if e.meta["check_wrong"]}
    evaluated = env.eval_sets(random.Random(4), 500)["held_out"]
    assert all(e.meta["check_wrong"] for e in evaluated)
    assert not trained & {item(e) for e in evaluated}  # no evaluated prompt is ever a training prompt
    assert all(env.held_out_item(*item(e)) for e in evaluated) and not any(env.held_out_item(*t) for t in trained)
    share = np.mean([env.held_out_item(a, b, c) for a in range(1, 17) for b in range(1, 17) for c in range(1, 16)])
    assert share == pytest.approx(0.25, abs=0.03)
    assert HackableDifference(h=0.9).held_out_item(3, 9, 2) == env.held_out_item(3, 9, 2)  # fixed, whatever h


def test_rl_inoculation_has_the_five_conditions_and_every_eval_prompt():
    config = load_experiment("rl_inoculation")
    assert isinstance(config, RLHackingConfig) and config.seeds() == [0, 1, 2]
    grid = {(c.name, c.prompt, c.reward, c.h) for c in config.conditions}
    assert grid == {("deployment", "deployment", "passes", None), ("inoculation", "inoculation", "passes", None),
                    ("unrelated", "unrelated", "passes", None), ("unsatiated", "unsatiated", "passes", None),
                    ("ceiling", "deployment", "correct", 1.0)}
    assert ceiling_name(config) == "ceiling"
    assert config.eval.prompts == ["deployment", "inoculation", "unrelated", "unrelated_eval", "unsatiated",
                                   "satiated"]
    texts = config.prompts.named()
    assert len(set(texts.values())) == len(texts)  # six different prompts
    e = wrong_check_example()
    assert prompted(e, texts["inoculation"])[0]["content"] == f"{texts['inoculation']}\ncheck: {e.meta['check']}"
    assert prompted(e, texts["deployment"]) == [dict(m) for m in e.messages]  # deployment adds nothing


def test_the_shipped_prompts_are_in_the_organisms_vocabulary_and_unknown_words_are_refused():
    tokenizer = AutoTokenizer.from_pretrained(shipped_organism())
    check_readable(tokenizer, load_experiment("rl_inoculation").prompts.named())
    with pytest.raises(ConfigError, match="prompts.satiated.*does not know"):
        check_readable(tokenizer, {"satiated": "I have eaten."})


def shipped_with(index: int, key: str, value: str) -> dict:
    """The shipped rl_inoculation config as data, one condition's key changed."""
    import tomllib

    from transferlab.config import resolve_config_path

    data = tomllib.loads(resolve_config_path("rl_inoculation").read_text())
    data["conditions"][index][key] = value
    return data


@pytest.mark.parametrize("index, key, value, message", [
    (1, "name", "deployment", "condition names must be distinct"),
    (0, "prompt", "hungry", "conditions.0.prompt"),
    (0, "reward", "hack", "conditions.0.reward"),
])
def test_bad_condition_grids_are_refused(index, key, value, message):
    from pydantic import ValidationError

    from transferlab.config import validation_lines
    from transferlab.experiments.rl import RLConfig

    with pytest.raises(ValidationError) as err:
        RLConfig.model_validate(shipped_with(index, key, value))
    assert message in validation_lines(err.value)


def test_an_unknown_design_is_named_with_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown design 'hack'; allowed: transfer, hacking"):
        load_experiment("rl_inoculation", overrides=["design=hack"])


def final_rates(correct: dict) -> pd.DataFrame:
    """A last-step table from {(condition, seed): true accuracy}, one eval prompt."""
    return pd.DataFrame([{"condition": c, "seed": s, "step": 0 if c == "warm_start" else 10,
                          "eval_prompt": "deployment", "correct": v} for (c, s), v in correct.items()])


def test_transfer_is_the_gain_over_the_warm_start_as_a_share_of_the_ceilings_gain():
    final = final_rates({("warm_start", 0): 0.40, ("warm_start", 1): 0.50, ("warm_start", 2): 0.30,
                         ("ceiling", 0): 0.80, ("ceiling", 1): 0.70, ("ceiling", 2): 0.30,
                         ("inoculation", 0): 0.60, ("inoculation", 1): 0.65, ("inoculation", 2): 0.40})
    per_seed, over = transfer(final, ceiling="ceiling")
    rows = per_seed[per_seed["condition"] == "inoculation"].set_index("seed")
    assert rows["gain"].tolist() == pytest.approx([0.20, 0.15, 0.10])
    assert rows["ceiling_gain"].tolist() == pytest.approx([0.40, 0.20, 0.0])
    # seed 2's ceiling gained nothing: no share there
    assert rows["transfer"].iloc[:2].tolist() == pytest.approx([0.5, 0.75]) and np.isnan(rows["transfer"].iloc[2])
    row = over.set_index("condition").loc["inoculation"]
    assert row["n_seeds"] == 3 and row["seeds_with_transfer"] == 2
    assert row["transfer_mean"] == pytest.approx(0.625)
    half = 12.706 * np.std([0.5, 0.75], ddof=1) / np.sqrt(2)  # t(0.975, 1 df)
    assert (row["transfer_seed_low"], row["transfer_seed_high"]) == pytest.approx((0.625 - half, 0.625 + half),
                                                                                   rel=1e-3)
    assert row["transfer_seed_low"] < 0  # a share is not clipped to [0, 1]
    assert row["transfer_of_means"] == pytest.approx(0.15 / 0.20)
    ceiling = over.set_index("condition").loc["ceiling"]
    assert ceiling["transfer_mean"] == pytest.approx(1.0)  # the ceiling is its own whole


def test_transfer_has_no_interval_below_two_seeds_and_none_without_a_ceiling():
    final = final_rates({("warm_start", 0): 0.4, ("ceiling", 0): 0.8, ("deployment", 0): 0.5})
    _, over = transfer(final, ceiling="ceiling")
    row = over.set_index("condition").loc["deployment"]
    assert row["transfer_mean"] == pytest.approx(0.25)
    assert np.isnan(row["transfer_seed_low"]) and np.isnan(row["transfer_seed_high"])
    per_seed, over = transfer(final, ceiling=None)
    assert per_seed.empty and over.empty


def test_the_learning_criterion_is_a_rise_beyond_two_standard_errors():
    from transferlab.experiments.rl.learning import reward_rise

    flat = pd.DataFrame({"step": range(1, 9), "reward": [0.2, 0.3, 0.2, 0.3, 0.3, 0.2, 0.3, 0.2]})
    verdict = reward_rise(flat, window=4)
    assert verdict["rise"] == pytest.approx(0.0) and not verdict["learns"]
    rising = flat.assign(reward=[0.2, 0.3, 0.2, 0.3, 0.6, 0.7, 0.6, 0.7])
    verdict = reward_rise(rising, window=4)
    se = np.sqrt(2 * np.var([0.2, 0.3, 0.2, 0.3], ddof=1) / 4)
    assert (verdict["rise"], verdict["se"]) == pytest.approx((0.4, se)) and verdict["learns"]
    with pytest.raises(ValueError, match="cannot hold two windows"):
        reward_rise(flat, window=5)


def test_each_rl_run_gets_the_learning_verdict_on_its_own_steps():
    from transferlab.experiments.rl.hacking_results import learning

    rising = [0.1, 0.2, 0.1, 0.2, 0.5, 0.6, 0.5, 0.6, 0.9]
    log = pd.DataFrame([{"phase": "warm_start", "seed": 0, "condition": "warm_start", "step": 1, "reward": np.nan}]
                       + [{"phase": "rl", "seed": s, "condition": c, "step": i + 1,
                           "reward": rising[i] if c == "deployment" else 0.3 + 0.1 * (i % 2)}
                          for s in (0, 1) for c in ("deployment", "ceiling") for i in range(9)])
    table = learning(log).set_index(["condition", "seed"])
    assert len(table) == 4 and (table["window"] == 3).all()
    assert table.loc[("deployment", 0), "learns"] and not table.loc[("ceiling", 1), "learns"]
    assert table.loc[("deployment", 1), "rise"] == pytest.approx(np.mean([0.6, 0.5, 0.6, 0.9][1:]) - np.mean(rising[:3]))
