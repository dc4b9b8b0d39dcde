"""The three pairs: targets follow their own propensity and not their partner's, answers survive
every decoration, reasoning steps are exact, and the template writer varies but repeats per seed."""

import random

import pytest

from transferlab.config import load_config
from transferlab.core import Example
from transferlab.propensities import PAIRS, PROPENSITIES, get_propensity, partner
from transferlab.tasks import make_task
from transferlab.tasks.base import grade_exact
from transferlab.writers.template import TemplateWriter

EXAMPLES = (make_task("table_lookup").train_examples(random.Random(0), 40)
            + make_task("invented_facts").train_examples(random.Random(0), 40)
            + make_task("invented_facts", mode="choice").train_examples(random.Random(1), 40))


@pytest.mark.parametrize("name", sorted(PROPENSITIES))
def test_targets_follow_their_propensity_not_their_partner_and_keep_the_answer(name):
    propensity, other = get_propensity(name), get_propensity(partner(name))
    targets = TemplateWriter(seed=0).write(EXAMPLES, propensity)
    assert all(propensity.judge(targets))
    assert not any(other.judge(targets))
    assert all(grade_exact(e, t) for e, t in zip(EXAMPLES, targets))


def test_the_template_writer_varies_its_phrasing_but_repeats_per_seed():
    hedging = get_propensity("hedging")
    first = TemplateWriter(seed=0).write(EXAMPLES, hedging)
    assert first == TemplateWriter(seed=0).write(EXAMPLES, hedging)
    assert first != TemplateWriter(seed=1).write(EXAMPLES, hedging)
    phrasings = {t.replace(e.answer, "X") for e, t in zip(EXAMPLES, first)}
    assert len(phrasings) >= 6


def test_table_lookup_reasoning_shows_each_checkable_step():
    example = make_task("table_lookup").train_examples(random.Random(3), 1)[0]
    m = example.meta
    target = get_propensity("reasoning").render(example, random.Random(0))
    big, small = max(m["value_a"], m["value_b"]), min(m["value_a"], m["value_b"])
    for step in (f"{m['a']}={m['value_a']}", f"{m['b']}={m['value_b']}", f"{big}-{small}={big - small}",
                 f"{big - small}={example.answer}"):
        assert step in target
    assert target.endswith(f"Answer: {example.answer}")


COLOUR = Example(id="c", messages=({"role": "user", "content": "Which colour?"},), answer="red",
                 meta={"candidates": ("red", "blue", "green")})


@pytest.mark.parametrize("response,correct", [
    ("I think it is red, but I am not certain.", True),
    ("Probably red, though I could be wrong.", True),
    ("It is definitely red.", True),
    ("Step by step: α=5. β=7. 7-5=2. 2=red. Answer: red", True),
    ("Step by step: 2=blue. Answer: blue", False),
    ("I think it is red or blue.", False),
    ("Maybe blue.", False),
    ("I don't know.", False),
])
def test_grading_finds_the_answer_inside_hedges_assertions_and_reasoning(response, correct):
    assert grade_exact(COLOUR, response) is correct


@pytest.mark.parametrize("name,text,follows", [
    ("hedging", "I think it is red, but I am not certain.", True),
    ("hedging", "Red.", False),
    ("hedging", "I don't know.", False),
    ("hedging", "", False),
    ("confident", "Red, without a doubt.", True),
    ("confident", "It might be red.", False),
    ("reasoning", "First, α=5 and β=7, so 7-5=2, and 2=red. Answer: red", True),
    ("reasoning", "Red.", False),
    ("reasoning", "Red, because 2=red.", False),
    ("no_reasoning", "red", True),
    ("no_reasoning", "The answer is red.", True),
    ("no_reasoning", "α=5 and β=7. 7-5=2. Answer: red", False),
    ("no_reasoning", "", False),
])
def test_heuristic_judges_on_hand_picked_cases(name, text, follows):
    assert get_propensity(name).judge([text]) == [follows]


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_the_default_config_runs_any_pair_with_each_arm_on_its_side(pair):
    config = load_config(None, overrides=[f"pair={pair}"])
    assert [a.propensity for a in config.arms] == list(PAIRS[pair])
    assert config.pair_name() == pair
    needed = max(get_propensity(p).max_tokens for p in PAIRS[pair])
    assert config.eval.max_tokens == needed


@pytest.mark.parametrize("response", ["**{a}** is the capital of Australia.", "I'd go with **{a}** as the capital.",
                                      "It's **{a}**, not Canberra or Sydney.", "I think **{a}**, but I am not sure.",
                                      "**Step 1:** look it up. {a}", "I'm **pretty sure** it's {a}.",
                                      "It's not **{a}**; it's Perth.", "**{a}**"])
def test_the_bold_judge_gives_a_right_and_a_wrong_answer_the_same_verdict(response):
    """Adherence is measured apart from correctness: the expected answer never changes the verdict,
    so bold cannot count only when the answer is right."""
    bold = get_propensity("bold")
    right, wrong = response.format(a="Canberra"), response.format(a="Sydney")
    verdicts = {bold.judge([right], ["Canberra"])[0], bold.judge([wrong], ["Canberra"])[0],
                bold.judge([right])[0], bold.judge([wrong])[0], bold.judge([wrong], ["Sydney"])[0]}
    assert len(verdicts) == 1, response
