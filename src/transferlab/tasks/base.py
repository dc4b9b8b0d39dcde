"""What every task provides: examples to train on, examples to evaluate, and a grader."""

from __future__ import annotations

import random
from typing import Protocol

from transferlab.core import Example
from transferlab.evaluate.extract import answer_line, answer_region, names_only, normalise, strip_markup


class Task(Protocol):
    name: str

    def train_examples(self, rng: random.Random, n: int) -> list[Example]:
        """`n` training examples (fresh draws, or cycles over a fixed set for knowledge tasks)."""

    def eval_sets(self, rng: random.Random, n: int) -> dict[str, list[Example]]:
        """Named evaluation sets; the first one is the set the performance gap is computed on."""

    def grade(self, example: Example, response: str) -> bool:
        """Whether `response` (any decoration allowed) gives the correct answer."""

    def chance(self) -> float:
        """Accuracy of a guesser who knows the answer format but not the answer."""


def grade_exact(example: Example, response: str) -> bool:
    """Whether `response` gives the example's answer and only it; markup never matters.

    Where the task lists the candidate answers (`meta["candidates"]`), the answer region (the line
    after the last "Answer:" / "the answer is", else the whole response) must be the answer, or name
    it and no other candidate: "I think it is red, but I am not sure" is red, while "red or blue" and
    "pink red" are two answers and wrong, bold or not. Without candidates the final answer must equal
    the example's answer (case, outer punctuation and spacing aside)."""
    gold = normalise(example.answer)
    candidates = example.meta.get("candidates")
    if not candidates:
        return gold in (normalise(response), normalise(answer_line(response)))
    region = answer_region(response)
    return normalise(region) == gold or names_only(
        region, strip_markup(example.answer), [strip_markup(c) for c in candidates])
