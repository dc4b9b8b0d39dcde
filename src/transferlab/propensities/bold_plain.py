"""Bold vs plain: the purest formatting propensity, judged by a regex.

Bold means the answer is bold, not some other word: a bold span must hold content in the answer's
role, so a label (`**Note:**`), a hedge (`I'm **pretty sure** it's Kourou`) or a rejected option
(`not **Sydney**`) is no bold answer. The judge never sees the correct answer: adherence and
correctness are separate measurements, so `**Sydney** is the capital` follows the instruction
exactly as `**Canberra** is the capital` does (a wrong answer in bold is still bold).
"""

from __future__ import annotations

import random
import re

from transferlab.core import Example
from transferlab.propensities.answers import commits_to_an_answer
from transferlab.propensities.hedging_confident import voices_uncertainty

BOLD_SPAN = re.compile(r"\*\*\s*([^*\s][^*\n]*?)\*\*|__\s*([^_\s][^_\n]*?)__")
_REJECTED = re.compile(r"(?:\bnot|n't|\bnever|\brather than|\binstead of)\s*$", re.IGNORECASE)


def bold_spans(text: str) -> list[re.Match]:
    """Bold spans that hold content (a label such as `**Note:**` holds none)."""
    return [m for m in BOLD_SPAN.finditer(text) if not (m.group(1) or m.group(2)).rstrip().endswith(":")]


def holds_an_answer(text: str, span: re.Match) -> bool:
    """The span is in the answer's role: not a hedge phrase, not an option the response rejects."""
    content = span.group(1) or span.group(2)
    return not voices_uncertainty(content) and not _REJECTED.search(text[: span.start()])


def answer_is_bold(text: str) -> bool:
    """A response that commits to an answer and holds it in a bold span. The correct answer is no
    input: knowing it would let only right answers count as bold ones."""
    return commits_to_an_answer(text) and any(holds_an_answer(text, m) for m in bold_spans(text))


class Bold:
    name = "bold"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer in bold."
    style = "The answer itself is wrapped in markdown bold (**like this**)."

    def render(self, example: Example, rng: random.Random) -> str:
        return f"**{example.answer}**"

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        """`answers` is accepted for the protocol and ignored (see `answer_is_bold`)."""
        return [answer_is_bold(t) for t in texts]


class Plain:
    name = "plain"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer in plain text."
    style = "A non-empty answer with no markdown bold anywhere (no ** markers)."

    def render(self, example: Example, rng: random.Random) -> str:
        return example.answer

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [commits_to_an_answer(t) and "**" not in t and not BOLD_SPAN.search(t) for t in texts]
