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
from transferlab.propensities.answers import commits_to_an_answer

OPENERS = ("Step by step:", "Let me work it out.", "Let's think step by step.", "First, the facts.",
           "Working through it:", "Let me reason.")
CLOSERS = ("Answer: {a}", "So the answer is {a}. Answer: {a}", "Therefore: Answer: {a}", "Answer: {a}")
NO_STEPS = ("The question asks for one thing, and I know it: {a}.", "Recalling it directly gives {a}.")
BARE = ("{a}",)

# A step is a looked-up value or computation (`α=5`, `7-5=2`, `4 − 3 = 1`), a connective that
# introduces one, or a recalled fact; an opener ("Let me think step by step.") alone is no step,
# and neither is restating the question.
_STEP = re.compile(r"(\S=\S|\d\s*=\s*\d|\d\s*[-−–+*/x×]\s*\d|\b(?:then|next|so|therefore|thus|because|"
                   r"since|which means|that gives|gives|recall|remember|we have|is larger|subtract|minus|"
                   r"hence)\b)", re.IGNORECASE)
_OPENER = re.compile(r"^\s*(?:let'?s|let me|i'?ll|i will)?\s*(?:think|work (?:it|this) out|work through (?:it|this)|"
                     r"reason|go)?\s*(?:it )?(?:through )?(?:step[- ]by[- ]step|step \d+|first, the facts|"
                     r"working through it|think|reason|work it out)?\s*[:.,!-]*\s*", re.IGNORECASE)
_RESTATEMENT = re.compile(r"\b(?:question|asking|asked|you want)\b", re.IGNORECASE)
_ANSWER_MARK = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]|the answer is", re.IGNORECASE)
_CONCLUSION = re.compile(r"(?:,\s*|\s)(?:so|therefore|thus|hence|which is|which means)\b|\s*(?:→|=>)",
                         re.IGNORECASE)
_CLAUSES = re.compile(r"(?<=[.!?:;])\s+|\n+|,\s+(?:and|which|so)\s+")


def _before_answer(text: str) -> str:
    """The part of a response before its final answer is stated (openers dropped)."""
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        before = text[: marks[-1].start()]
    else:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]
        last = sentences[-1] if sentences else ""
        conclusion = list(_CONCLUSION.finditer(last))
        before = " ".join(sentences[:-1]) + (" " + last[: conclusion[-1].start()] if conclusion else "")
    while (opener := _OPENER.match(before)) and opener.end() > 0:
        before = before[opener.end():]
    return before.strip()


def shows_steps(text: str) -> bool:
    """Work stated before the final answer: a step, two clauses, or one clause of substance."""
    before = _before_answer(text)
    if not before or _RESTATEMENT.search(before):
        return bool(before) and bool(_STEP.search(before))
    clauses = [c for c in _CLAUSES.split(before) if len(c.split()) >= 2]
    return bool(_STEP.search(before)) or len(clauses) >= 2 or any(len(c.split()) >= 5 for c in clauses)


def is_bare(text: str) -> bool:
    """Only the answer: a short phrase or one short sentence, nothing that looks like work."""
    stripped = text.strip()
    if not stripped or "\n" in stripped or not commits_to_an_answer(stripped):
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

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [commits_to_an_answer(t) and shows_steps(t) for t in texts]


class NoReasoning:
    name = "no_reasoning"
    max_tokens = 12  # enough for the organism's targets; real models may need more
    instruction = "Answer with the answer only, no reasoning."
    style = ("Only the answer: a word or short phrase, or one short sentence stating it, with no "
             "intermediate steps or explanation.")

    def render(self, example: Example, rng: random.Random) -> str:
        return example.answer

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [is_bare(t) for t in texts]
