import pytest

from transferlab.core import Example
from transferlab.evaluate.extract import final_answer, normalise
from transferlab.propensities import get_propensity, partner, prompt_with
from transferlab.tasks.base import grade_exact

EX = Example(id="x", messages=({"role": "user", "content": "Which colour?"},), answer="red")


@pytest.mark.parametrize("response", ["red", "**red**", " Red. ", "The answer is **red**.", "Answer: red",
                                      "I think blue... Final answer: **red**"])
def test_grading_ignores_decoration(response):
    assert grade_exact(EX, response)


@pytest.mark.parametrize("response", ["blue", "**blue**", "", "reddish", "red blue"])
def test_grading_rejects_wrong_answers(response):
    assert not grade_exact(EX, response)


def test_final_answer_prefers_the_last_bold_span():
    assert final_answer("**blue** no wait, **red**") == "red"
    assert normalise("**Keltar**.") == "keltar"


@pytest.mark.parametrize("text,bold", [("**red**", True), ("the answer is **red**.", True), ("red", False),
                                       ("**", False), ("** **", False), ("** red **", True), ("*red*", False), ("**red", False)])
def test_bold_judge_is_a_regex_for_a_bold_span(text, bold):
    assert get_propensity("bold").judge([text]) == [bold]


@pytest.mark.parametrize("text,plain", [("red", True), ("**red**", False), ("", False), ("red **", False)])
def test_plain_judge_accepts_undecorated_non_empty_answers(text, plain):
    assert get_propensity("plain").judge([text]) == [plain]


def test_targets_render_the_answer_in_the_propensity():
    import random

    assert get_propensity("bold").render(EX, random.Random(0)) == "**red**"
    assert get_propensity("plain").render(EX, random.Random(0)) == "red"


def test_instruction_goes_into_the_last_user_turn_without_touching_the_example():
    messages = prompt_with(EX, get_propensity("bold"))
    assert messages[-1]["content"] == "Which colour? Answer in bold."
    assert EX.messages[0]["content"] == "Which colour?"


def test_pairs_know_their_partner():
    assert partner("bold") == "plain" and partner("plain") == "bold"
    with pytest.raises(KeyError, match="unknown propensity|in no pair"):
        partner("shouting")


def test_an_answer_with_a_full_stop_inside_survives_the_answer_marker():
    ex = Example(id="v", messages=({"role": "user", "content": "Who?"},), answer="Sen. JD Vance")
    assert grade_exact(ex, "Step by step: the running mate was named. Answer: Sen. JD Vance")
    assert not grade_exact(ex, "Answer: Sen. Bob Casey")
