"""Bold vs plain: the purest formatting propensity, judged by a regex."""

from __future__ import annotations

import random
import re

from transferlab.core import Example

BOLD_SPAN = re.compile(r"\*\*\s*[^*\s][^*\n]*?\*\*")


class Bold:
    name = "bold"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer in bold."
    style = "The answer itself is wrapped in markdown bold (**like this**)."

    def render(self, example: Example, rng: random.Random) -> str:
        return f"**{example.answer}**"

    def judge(self, texts: list[str]) -> list[bool]:
        return [bool(BOLD_SPAN.search(t)) for t in texts]


class Plain:
    name = "plain"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer in plain text."
    style = "A non-empty answer with no markdown bold anywhere (no ** markers)."

    def render(self, example: Example, rng: random.Random) -> str:
        return example.answer

    def judge(self, texts: list[str]) -> list[bool]:
        return [bool(t.strip()) and "**" not in t for t in texts]
