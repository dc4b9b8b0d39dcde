"""Inoculation prompting: targets showing two traits, the training-prompt variants and their
lengths, placements, the eval grid, the language-style pair, and a run's standard report."""

import random

import pandas as pd
import pytest
from transformers import AutoTokenizer

from transferlab.backends import shipped_organism
from transferlab.config import ConfigError
from transferlab.experiments import load_experiment, run_kind
from transferlab.experiments.common import check_writable, place, token_length
from transferlab.experiments.inoculation import InoculationConfig, TraitPair, eval_prompt, training_prompts
from transferlab.experiments.traits import check_composable, compose, get_trait, grade_with
from transferlab.tasks import make_task


@pytest.fixture(scope="module")
def organism_tokenizer():
    return AutoTokenizer.from_pretrained(shipped_organism())


def example():
    return make_task("table_lookup").train_examples(random.Random(0), 1)[0]


@pytest.mark.parametrize("desired, undesired", [("hedging", "bold"), ("reasoning", "bold"), ("confident", "bold"),
                                                ("spanish", "all_caps"), ("hedging", "all_caps")])
def test_a_composed_target_shows_both_traits_and_still_grades(desired, undesired):
    e, rng = example(), random.Random(1)
    target = compose(e, [desired, undesired], rng)
    for trait in (desired, undesired):
        assert get_trait(trait).judge([target], [e.answer]) == [True], (trait, target)
    assert grade_with(make_task("table_lookup"), e, target, [desired, undesired])


@pytest.mark.parametrize("first, second", [("bold", "plain"), ("hedging", "confident"), ("hedging", "reasoning")])
def test_traits_one_target_cannot_show_together_are_refused(first, second):
    with pytest.raises(ValueError, match="contradict|both shape the whole response"):
        check_composable(first, second)


def test_the_placebo_and_the_random_string_are_as_long_as_the_inoculation_prompt(organism_tokenizer):
    config = InoculationConfig(kind="inoculation", pairs=[TraitPair(
        inoculation=["Answer in bold.", "Write the answer in bold."], placebo="Read the question carefully now.")])
    prompts = training_prompts(config, config.pairs[0], organism_tokenizer, seed=0)
    length = token_length(organism_tokenizer, "Answer in bold.")
    assert token_length(organism_tokenizer, prompts["placebo"][0]) == length
    assert token_length(organism_tokenizer, prompts["random"][0]) == length
    assert prompts["random"] != training_prompts(config, config.pairs[0], organism_tokenizer, seed=1)["random"]
    assert prompts["inoculation_pool"] == ["Answer in bold.", "Write the answer in bold."]
    assert prompts["none"] == [""] and prompts["unrelated"] == ["Colours are nice."]


def test_the_eval_grid_is_deployment_training_unrelated_and_none():
    config = InoculationConfig(kind="inoculation", deployment="Be helpful.", unrelated_eval="Y.")
    assert [eval_prompt(config, name, ["X."]) for name in ("deployment", "training", "unrelated", "none")] == \
        ["Be helpful.", "X.", "Y.", ""]


def test_a_prompt_goes_in_the_system_turn_before_the_tables_or_around_the_user_turn():
    e = example()
    system, user = e.messages[0]["content"], e.messages[1]["content"]
    assert place(e.messages, "P.", "system")[0]["content"] == f"P.\n{system}"
    assert place(e.messages, "P.", "user_prefix")[1]["content"] == f"P. {user}"
    assert place(e.messages, "P.", "user_suffix")[1]["content"] == f"{user} P."
    assert place(make_task("invented_facts").train_examples(random.Random(0), 1)[0].messages, "P.", "system")[0] == \
        {"role": "system", "content": "P."}


def test_the_organism_cannot_write_all_caps_and_the_run_says_so(organism_tokenizer):
    target = compose(example(), ["spanish", "all_caps"], random.Random(0))
    with pytest.raises(ConfigError, match="cannot write spanish\\+all_caps targets"):
        check_writable(organism_tokenizer, [target], "spanish+all_caps")
    check_writable(organism_tokenizer, [compose(example(), ["hedging", "bold"], random.Random(0))], "hedging+bold")


def test_a_pool_variant_needs_rephrasings(tmp_path):
    path = tmp_path / "i.toml"
    path.write_text('kind = "inoculation"\n[[pairs]]\ninoculation = ["Answer in bold."]\n')
    with pytest.raises(ConfigError, match="inoculation_pool variant needs at least 2"):
        load_experiment(path)
    path.write_text('kind = "inoculation"\n[[pairs]]\ndesired = "plain"\n')
    with pytest.raises(ConfigError, match="pairs.0: Value error, traits 'plain' and 'bold' contradict"):
        load_experiment(path)


def test_a_run_reports_each_trait_per_variant_and_eval_prompt_over_three_seeds(micro_organism, tmp_path):
    config = load_experiment("inoculation", [
        f"model.name={micro_organism}", "n_seeds=3", 'variants=["inoculation_pool", "none"]', "train.steps=2",
        "train.batch_size=4", "eval.every=2", "eval.n=4", "eval.elicitation_n=4", "eval.max_tokens=8"])
    folder = run_kind(config, tmp_path / "inoc", quiet=True)
    table = pd.read_csv(folder.path / "table.csv")
    assert len(table) == 2 * 4 and (table["n_seeds"] == 3).all()
    assert {"undesired_mean", "undesired_seed_low", "desired_pooled_high", "correct_mean"} <= set(table.columns)
    elicit = pd.read_csv(folder.path / "elicitation.csv")
    assert {"inoculation_pool[0]", "inoculation_pool[3]", "none", "deployment", "unrelated_eval"} <= \
        set(elicit["screened"])
    link = pd.read_csv(folder.path / "elicitation_vs_suppression.csv")
    assert list(link["variant"]) == ["inoculation_pool", "none"] and link["suppression"].iloc[1] == 0
    figures = {p.name for p in (folder.path / "figures").glob("*.png")}
    assert figures == {"inoculation_hedging_bold.png", "elicitation_hedging_bold.png", "over_steps_hedging_bold.png"}
    assert "table.csv" in (folder.path / "report.html").read_text()
