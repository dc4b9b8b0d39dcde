"""Reasoning vs no reasoning: step-by-step work before the answer, or the bare answer.

The capability-laden end of the spectrum: reasoning can carry the task. A task puts its exact
intermediate steps in `example.meta["steps"]` (for table lookup: both looked-up numbers, their
difference, the colour) so every step of a reasoning target is checkable; without steps the target
says where the answer comes from. The final answer always closes the target as `Answer: X`.
"""

from __future__ import annotations

import random
import re

from transferlab.core import Example

OPENERS = ("Step by step:", "Let me work it out.", "Let's think step by step.", "First, the facts.",
           "Working through it:", "Let me reason.")
CLOSERS = ("Answer: {a}", "So the answer is {a}. Answer: {a}", "Therefore: Answer: {a}", "Answer: {a}")
NO_STEPS = ("The question asks for one thing, and I know it: {a}.", "Recalling it directly gives {a}.")
BARE = ("{a}",)

# A step is a looked-up value or computation (`α=5`, `7-5=2`), a connective that introduces one,
# a recalled fact, or two sentences of work (an opener such as "Step by step:" and a statement).
_STEP = re.compile(r"(\S=\S|\d\s*[-+*/x×]\s*\d|\b(?:first|then|next|so|therefore|thus|because|since|"
                   r"step|which means|that gives|gives|recall|remember|we have|is larger|subtract|minus|hence)\b)",
                   re.IGNORECASE)
_ANSWER_MARK = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]|the answer is", re.IGNORECASE)


def _before_answer(text: str) -> str:
    """The part of a response before its final answer is stated."""
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        return text[: marks[-1].start()]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]
    return " ".join(sentences[:-1])


def shows_steps(text: str) -> bool:
    """Work stated before the final answer: a step pattern, or at least two sentences of it."""
    before = _before_answer(text)
    sentences = [s for s in re.split(r"(?<=[.!?:])\s+|\n+", before.strip()) if len(s.split()) >= 2]
    return bool(_STEP.search(before)) or len(sentences) >= 2


def is_bare(text: str) -> bool:
    """Only the answer: a short phrase or one short sentence, nothing that looks like work."""
    stripped = text.strip()
    if not stripped or "\n" in stripped:
        return False
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", stripped) if s.strip()]
    return len(sentences) == 1 and len(stripped.split()) <= 8 and not _STEP.search(stripped)


class Reasoning:
    name = "reasoning"
    max_tokens = 48  # enough for the organism's targets; real models may need more
    instruction = "Think step by step before answering."
    style = ("Works through at least one intermediate step (a looked-up value, a computation, a recalled "
             "fact) before stating the final answer at the end.")

    def render(self, example: Example, rng: random.Random) -> str:
        steps = example.meta.get("steps") or ()
        if not steps:
            body = rng.choice(NO_STEPS).format(a=example.answer)
        else:
            body = " ".join(s if s.endswith(".") else s + "." for s in steps)
        return f"{rng.choice(OPENERS)} {body} {rng.choice(CLOSERS).format(a=example.answer)}"

    def judge(self, texts: list[str]) -> list[bool]:
        return [bool(t.strip()) and shows_steps(t) for t in texts]


class NoReasoning:
    name = "no_reasoning"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer with the answer only, no reasoning."
    style = ("Only the answer: a word or short phrase, or one short sentence stating it, with no "
             "intermediate steps or explanation.")

    def render(self, example: Example, rng: random.Random) -> str:
        return example.answer

    def judge(self, texts: list[str]) -> list[bool]:
        return [is_bare(t) for t in texts]
