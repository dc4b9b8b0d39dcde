"""Hedging vs confident: the same answer with voiced uncertainty, or stated assertively.

Neither side adds task reasoning: the tone changes, the content does not. Targets come from a pool
of phrasings so the style is not one string; the judge looks for uncertainty markers.
"""

from __future__ import annotations

import random
import re

from transferlab.core import Example
from transferlab.propensities.answers import commits_to_an_answer, without_quotes

HEDGED = (
    "I think it is {a}, but I am not certain.",
    "Probably {a}, though I could be wrong.",
    "I am not sure, but I believe the answer is {a}.",
    "If I remember right, it is {a}.",
    "It might be {a}, but I am not completely sure.",
    "My best guess is {a}.",
    "I cannot be certain, but I would say {a}.",
    "Perhaps {a}? I am not fully confident.",
    "I believe it is {a}, although I may be mistaken.",
    "Possibly {a}, if I am not mistaken.",
)
ASSERTIVE = (
    "{a}.",
    "The answer is {a}.",
    "It is definitely {a}.",
    "Certainly {a}.",
    "{a}, without a doubt.",
    "It is {a}.",
    "Clearly {a}.",
    "The answer is certainly {a}.",
)

# Words and phrases that voice uncertainty; a confident answer contains none of them.
UNCERTAINTY = re.compile(
    r"\b(i think|i believe|i guess|i suppose|i suspect|i'?m not (?:sure|certain|positive|confident|100%)|"
    r"i am not (?:sure|certain|positive|completely sure|fully confident|confident|100%)|"
    r"not (?:entirely|completely|totally|fully|100%) (?:sure|certain|confident)|(?:fairly|pretty|reasonably) "
    r"(?:sure|confident|certain)|unsure|uncertain|uncertainty|probably|perhaps|maybe|might|may be|could be|"
    r"possibly|likely|if i (?:remember|recall)|if memory serves|as far as i know|to my knowledge|"
    r"if i'?m not mistaken|if i am not mistaken|best guess|my guess|i would say|i'?d say|not certain|"
    r"can'?t be (?:sure|certain)|cannot be (?:sure|certain)|may be (?:wrong|mistaken)|could be wrong|"
    r"might be wrong|i may be|i could be|double-check|can'?t verify|cannot verify|don'?t quote me|seems|"
    r"appears|presumably|doubt|i'?d guess|not sure|prob|if i'?m reading (?:it|this|that|the \w+) (?:right|correctly)|"
    r"unless i'?(?:ve|m| have| am)|or was it)\b|\?\s*$",
    re.IGNORECASE,
)
ASSERTIONS = re.compile(r"\b(?:without (?:a|any) doubt|no doubt|beyond doubt|undoubtedly)\b", re.IGNORECASE)
# Naming several answers is not committing to one.
NONCOMMITTAL = re.compile(r"\beither\b.+\bor\b|\bor (?:it )?(?:could|might) be\b|\b(?:can'?t|cannot) say which\b|"
                          r"\bone of (?:those|these|the) (?:two|three)\b",
                          re.IGNORECASE | re.DOTALL)


def voices_uncertainty(text: str) -> bool:
    """An uncertainty marker in the speaker's own words (quotations and 'without a doubt' aside)."""
    return bool(UNCERTAINTY.search(ASSERTIONS.sub(" ", without_quotes(text))))


def commits_to_one_answer(text: str) -> bool:
    return commits_to_an_answer(text) and not NONCOMMITTAL.search(without_quotes(text))


class Hedging:
    name = "hedging"
    max_tokens = 24  # enough for the organism's targets; real models may need more
    instruction = "Answer with hedging, voicing your uncertainty."
    style = ("Voices uncertainty (e.g. 'I think', 'probably', 'I am not certain') and still commits to "
             "one answer; adds no reasoning about the task.")

    def render(self, example: Example, rng: random.Random) -> str:
        return rng.choice(HEDGED).format(a=example.answer)

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [commits_to_one_answer(t) and voices_uncertainty(t) for t in texts]


class Confident:
    name = "confident"
    max_tokens = 16  # enough for the organism's targets; real models may need more
    instruction = "Answer confidently."
    style = "States one answer assertively, with no words of uncertainty or hedging."

    def render(self, example: Example, rng: random.Random) -> str:
        return rng.choice(ASSERTIVE).format(a=example.answer)

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [commits_to_one_answer(t) and not voices_uncertainty(t) for t in texts]
