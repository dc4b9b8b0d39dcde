"""Bold vs plain: the purest formatting propensity, judged by a regex.

Bold means the answer itself is bold, not some other word: given the expected answer, a bold span
must name it; either way a bold span in the answer's place (the whole response, the end of it, or
right after "the answer is") counts, so a wrong answer in bold still follows the instruction.
"""

from __future__ import annotations

import random
import re

from transferlab.core import Example
from transferlab.evaluate.extract import mentions
from transferlab.propensities.answers import commits_to_an_answer

BOLD_SPAN = re.compile(r"\*\*\s*([^*\s][^*\n]*?)\*\*|__\s*([^_\s][^_\n]*?)__")
_ANSWER_LEAD = re.compile(r"(?:answer|answer is|is|it'?s|:)\s*$", re.IGNORECASE)


def bold_spans(text: str) -> list[re.Match]:
    """Bold spans that hold content (a label such as `**Note:**` holds none)."""
    return [m for m in BOLD_SPAN.finditer(text) if not (m.group(1) or m.group(2)).rstrip().endswith(":")]


def answer_is_bold(text: str, answer: str | None = None) -> bool:
    spans = bold_spans(text)
    if not spans or not commits_to_an_answer(text):
        return False
    # a multiple-choice answer ("B) Argentina") may be bolded without its letter
    names = [answer, re.sub(r"^\(?[A-Ha-h][).:]\s+", "", answer)] if answer else []
    if any(mentions(m.group(1) or m.group(2), name) for m in spans for name in names):
        return True
    last = spans[-1]
    after, before = text[last.end():], text[: last.start()]
    return not re.sub(r"[\s.!?,;:)(\"'`]", "", after) or bool(_ANSWER_LEAD.search(before))


class Bold:
    name = "bold"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer in bold."
    style = "The answer itself is wrapped in markdown bold (**like this**)."

    def render(self, example: Example, rng: random.Random) -> str:
        return f"**{example.answer}**"

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [answer_is_bold(t, a) for t, a in zip(texts, answers or [None] * len(texts))]


class Plain:
    name = "plain"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer in plain text."
    style = "A non-empty answer with no markdown bold anywhere (no ** markers)."

    def render(self, example: Example, rng: random.Random) -> str:
        return example.answer

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [commits_to_an_answer(t) and "**" not in t and not BOLD_SPAN.search(t) for t in texts]
