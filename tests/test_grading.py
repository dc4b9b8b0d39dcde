import dataclasses
import functools
import random
import re

import chess
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferlab.core import Example
from transferlab.evaluate.extract import final_answer, normalise
from transferlab.experiments.traits import check_composable, compose, get_trait, grade_with, trait_names
from transferlab.propensities import get_propensity, partner, prompt_with
from transferlab.tasks import make_task
from transferlab.tasks.base import grade_exact
from transferlab.tasks.chess.explain import name_move
from transferlab.tasks.chess.solve import mating_moves

EX = Example(id="x", messages=({"role": "user", "content": "Which colour?"},), answer="red")


@pytest.mark.parametrize("response", ["red", "**red**", " Red. ", "The answer is **red**.", "Answer: red",
                                      "I think blue... Final answer: **red**", "*red*", "__red__", "_red_",
                                      "**Answer:** red"])
def test_grading_ignores_decoration(response):
    assert grade_exact(EX, response)


@pytest.mark.parametrize("response", ["blue", "**blue**", "", "reddish", "red blue"])
def test_grading_rejects_wrong_answers(response):
    assert not grade_exact(EX, response)


def test_final_answer_drops_markup_and_reads_the_answer_marker():
    assert final_answer("**blue** no wait, **red**") == "blue no wait, red"
    assert final_answer("Working: **2=blue**. Answer: **red**. Done") == "red"
    assert normalise("**Keltar**.") == "keltar"


@pytest.mark.parametrize("text,bold", [("**red**", True), ("the answer is **red**.", True), ("red", False),
                                       ("**", False), ("** **", False), ("** red **", True), ("*red*", False), ("**red", False)])
def test_bold_judge_is_a_regex_for_a_bold_span(text, bold):
    assert get_propensity("bold").judge([text]) == [bold]


@pytest.mark.parametrize("text,plain", [("red", True), ("**red**", False), ("", False), ("red **", False)])
def test_plain_judge_accepts_undecorated_non_empty_answers(text, plain):
    assert get_propensity("plain").judge([text]) == [plain]


def test_targets_render_the_answer_in_the_propensity():
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


# -- markup never changes a grade -----------------------------------------------------------------
# Property tests over every task's own examples (small knobs), every trait's own rendering (and
# compositions such as hedging + bold), rival candidates and random `**` insertions.

COLOURS = Example(id="c", messages=({"role": "user", "content": "Which colour?"},), answer="red",
                  meta={"candidates": ("red", "blue", "pink")})


@pytest.mark.parametrize("response", ["**red** or blue", "red or **blue**", "pink **red**", "**pink** red",
                                      "red or blue", "pink red", "The answer is **red**, or maybe blue.",
                                      "Answer: pink **red**"])
def test_a_response_naming_two_candidates_is_wrong_with_or_without_bold(response):
    assert not grade_exact(COLOURS, response)


@functools.cache
def task_examples() -> list[tuple]:
    """(task, example) from each task's own sampler with small knobs, every mode and notation."""
    tasks = [make_task("table_lookup", n_symbols=3, max_int=6, n_colours=6),
             make_task("invented_facts", n_facts=12), make_task("invented_facts", n_facts=12, mode="choice"),
             make_task("realtime_qa", n_train=4, n_heldout=4),
             make_task("realtime_qa", n_train=4, n_heldout=4, mode="free"),
             make_task("chess", sample_size=6), make_task("chess", sample_size=6, notation="san")]
    rng = random.Random(0)
    return [(task, example) for task in tasks for example in task.train_examples(rng, 5)]


def rivals(task, example) -> list[str]:
    """Wrong candidates: the task's other answers, or for chess another legal first move (not a mate)."""
    if task.name != "chess":
        return [c for c in example.meta["candidates"] if c.lower() != example.answer.lower()]
    board = chess.Board(example.meta["fen"])
    mates = set(mating_moves(board))
    return [name_move(board, m, task.notation) for m in board.legal_moves
            if m not in mates and m.uci() != example.meta["solution"][0]]


def _composable(a: str, b: str) -> bool:
    try:
        check_composable(a, b)
    except ValueError:
        return False
    return True


STYLES = [[t] for t in trait_names()] + [[a, b] for a in trait_names() for b in trait_names()
                                         if a < b and _composable(a, b)]


def styled(example, style: list[str], seed: int) -> str:
    """The example's answer as `style` renders it: the trait's own renderer, or a composition of two."""
    rng = random.Random(seed)
    return get_trait(style[0]).render(example, rng) if len(style) == 1 else compose(example, style, rng)


def insert_bold(text: str, positions: list[int]) -> str:
    """`text` with `**` inserted at word boundaries picked by `positions` (balanced or not)."""
    cuts = sorted({m.start() for m in re.finditer(r"\b", text)})
    for p in sorted({cuts[i % len(cuts)] for i in positions}, reverse=True):
        text = text[:p] + "**" + text[p:]
    return text


TWO = ("{x} or {y}", "{x}, {y}", "{x} {y}", "either {x} or {y}", "{x} and {y}")


@st.composite
def responses(draw, kind: str):
    """(task, example, style, response): a task's example, a style, and the style's rendering of the
    right answer, a rival, or both (`kind` "right", "rival", "two"), with `**` inserted at random."""
    task, example = draw(st.sampled_from(task_examples()))
    style = draw(st.sampled_from(STYLES))
    wrong = draw(st.sampled_from(rivals(task, example)))
    x, y = draw(st.permutations([example.answer, wrong]))
    said = {"right": example.answer, "rival": wrong, "two": draw(st.sampled_from(TWO)).format(x=x, y=y)}[kind]
    text = styled(dataclasses.replace(example, answer=said), style, draw(st.integers(0, 100)))
    return task, example, style, insert_bold(text, draw(st.lists(st.integers(0, 200), max_size=6)))


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.sampled_from(("right", "rival", "two")).flatmap(responses))
def test_markup_never_changes_a_grade(drawn):
    task, example, style, response = drawn
    plain = response.replace("**", "")
    assert grade_with(task, example, response, style) == grade_with(task, example, plain, style), response


@FAST
@given(responses("two"))
def test_a_response_naming_two_candidates_is_wrong_in_every_style(drawn):
    task, example, style, response = drawn
    assert not grade_with(task, example, response, style), response


@FAST
@given(responses("right"))
def test_every_style_renders_the_right_answer_as_correct(drawn):
    task, example, style, response = drawn
    assert grade_with(task, example, response, style), response
