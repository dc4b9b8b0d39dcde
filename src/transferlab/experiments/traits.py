"""Traits for the experiment kinds: every propensity, plus the language-style pair (a second
language, ALL CAPS), and targets that show two traits at once.

Registered here rather than in `transferlab.propensities` so the seed experiment's registry (and
its pairs) stays as it is; `get_trait` falls back to it for every other name.

Two traits compose when at most one of them frames the whole response (hedging, reasoning, a
second language…): bold then marks the answer inside that frame, ALL CAPS transforms the result.
"""

from __future__ import annotations

import random
import re

from transferlab.core import Example
from transferlab.propensities import PAIRS, PROPENSITIES
from transferlab.propensities.all_caps import AllCaps
from transferlab.propensities.second_language import Spanish, translate

NEW_TRAITS: dict[str, type] = {AllCaps.name: AllCaps, Spanish.name: Spanish}
ANSWER_MARKS = {"bold": lambda answer: f"**{answer}**"}  # traits that mark the answer, not the whole text


def trait_names() -> list[str]:
    return sorted({*PROPENSITIES, *NEW_TRAITS})


def get_trait(name: str):
    cls = NEW_TRAITS.get(name) or PROPENSITIES.get(name)
    if cls is None:
        raise KeyError(f"unknown trait {name!r}; allowed: {', '.join(trait_names())}")
    return cls()


def known_trait(name: str) -> str:
    """Pydantic validator body: the name, or a ValueError listing the allowed ones."""
    if name not in trait_names():
        raise ValueError(f"unknown trait {name!r}; allowed: {', '.join(trait_names())}")
    return name


def _opposites(a: str, b: str) -> bool:
    return any({a, b} == set(pair) for pair in PAIRS.values())


def check_composable(first: str, second: str) -> None:
    """Raise (saying what to pick instead) when one target cannot show both traits."""
    if first == second or _opposites(first, second):
        raise ValueError(f"traits {first!r} and {second!r} contradict each other; pick two traits a "
                         f"response can show at once (e.g. hedging and bold, spanish and all_caps)")
    frames = [t for t in (first, second) if t not in ANSWER_MARKS and not hasattr(get_trait(t), "transform")]
    if len(frames) > 1:
        raise ValueError(f"traits {first!r} and {second!r} both shape the whole response, so templates "
                         f"cannot show both; pair one of them with an answer mark ({', '.join(ANSWER_MARKS)}) "
                         f"or a transform (all_caps)")


def compose(example: Example, traits: list[str], rng: random.Random) -> str:
    """A target showing every trait: the framing trait's text (plain answer when none frames it),
    the answer marked (bold), then whole-text transforms (ALL CAPS)."""
    objs = {t: get_trait(t) for t in traits}
    marks = [t for t in traits if t in ANSWER_MARKS]
    transforms = [o for o in objs.values() if hasattr(o, "transform")]
    frames = [o for t, o in objs.items() if t not in marks and not hasattr(o, "transform")]
    text = frames[0].render(example, rng) if frames else example.answer
    for mark in marks:
        text = mark_answer(text, example.answer, ANSWER_MARKS[mark])
    for transform in transforms:
        text = transform.transform(text)
    return text


def mark_answer(text: str, answer: str, mark) -> str:
    """Wrap the last mention of the answer (or its translation) in `mark`."""
    for word in dict.fromkeys([answer, translate(answer)]):
        hits = list(re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE))
        if hits:
            last = hits[-1]
            return text[: last.start()] + mark(last.group(0)) + text[last.end():]
    return text + " " + mark(answer)


def grade_with(task, example: Example, response: str, traits: list[str]) -> bool:
    """The task's grade after undoing traits that change the answer's words (a second language)."""
    for name in traits:
        trait = get_trait(name)
        if hasattr(trait, "normalise"):
            response = trait.normalise(response)
    return task.grade(example, response)
