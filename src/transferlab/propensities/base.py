"""What a propensity is: an instruction for the prompt, a target renderer, and an adherence judge."""

from __future__ import annotations

import random
from typing import Protocol

from transferlab.core import Example, Message


class Propensity(Protocol):
    name: str
    instruction: str  # appended to the prompt's last user turn
    style: str  # what a response must do to show this propensity: the spec for writers and judges
    max_tokens: int  # tokens an answer in this style needs (the organism's word-level tokens)

    def render(self, example: Example, rng: random.Random) -> str:
        """The training target: the example's answer shown with this propensity."""

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        """Whether each response shows this propensity. `answers` (the expected answers) are offered
        to every judge, and no shipped judge reads them: adherence is measured apart from correctness,
        so a judge that knew the right answer could credit the style of right answers only."""


def prompt_with(example: Example, propensity: Propensity) -> list[Message]:
    """The example's messages with the propensity instruction appended to the last user turn."""
    messages = [dict(m) for m in example.messages]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last_user]["content"] += " " + propensity.instruction
    return messages
