"""What every task provides: examples to train on, examples to evaluate, and a grader."""

from __future__ import annotations

import random
from typing import Protocol

from transferlab.core import Example
from transferlab.evaluate.extract import answer_line, final_answer, mentions, normalise


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
    """The final answer, stripped of decoration, equals the example's answer (case-insensitive); or,
    where the task lists the candidate answers (`meta["candidates"]`), the final answer names the
    right one and no other (so "I think it is red, but I am not sure" grades as red)."""
    if normalise(example.answer) in (normalise(response), normalise(answer_line(response))):
        return True
    candidates = example.meta.get("candidates")
    if not candidates:
        return False
    said = final_answer(response)
    return mentions(said, example.answer) and not any(
        mentions(said, c) for c in candidates if c.lower() != example.answer.lower())
