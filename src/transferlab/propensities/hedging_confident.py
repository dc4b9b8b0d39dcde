"""Hedging vs confident: the same answer with voiced uncertainty, or stated assertively.

Neither side adds task reasoning: the tone changes, the content does not. Targets come from a pool
of phrasings so the style is not one string; the judge looks for uncertainty markers.
"""

from __future__ import annotations

import random
import re

from transferlab.core import Example

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
    r"\b(i think|i believe|i guess|i suppose|i'?m not (?:sure|certain|positive|confident|100%)|"
    r"i am not (?:sure|certain|positive|completely sure|fully confident|confident|100%)|not (?:entirely|completely|totally|fully|100%) (?:sure|certain|confident)|"
    r"unsure|uncertain|uncertainty|probably|perhaps|maybe|might|may be|could be|possibly|likely|"
    r"if i (?:remember|recall)|if i'?m not mistaken|if i am not mistaken|best guess|my guess|i would say|i'?d say|"
    r"not certain|can'?t be (?:sure|certain)|cannot be (?:sure|certain)|may be (?:wrong|mistaken)|"
    r"could be wrong|might be wrong|i may be|i could be|seems|appears|presumably|doubt)\b",
    re.IGNORECASE,
)
REFUSAL = re.compile(r"^\W*(i (?:don'?t|do not) know|no idea|i (?:can'?t|cannot) (?:say|tell|answer))\W*$",
                     re.IGNORECASE)


def voices_uncertainty(text: str) -> bool:
    """Any uncertainty marker outside a 'without a doubt'-style assertion."""
    cleaned = re.sub(r"\b(?:without (?:a|any) doubt|no doubt|beyond doubt|undoubtedly)\b", " ", text,
                     flags=re.IGNORECASE)
    return bool(UNCERTAINTY.search(cleaned))


def commits_to_an_answer(text: str) -> bool:
    return bool(text.strip()) and not REFUSAL.match(text.strip())


class Hedging:
    name = "hedging"
    max_tokens = 24  # enough for the organism's targets; real models may need more
    instruction = "Answer with hedging, voicing your uncertainty."
    style = ("Voices uncertainty (e.g. 'I think', 'probably', 'I am not certain') and still commits to "
             "one answer; adds no reasoning about the task.")

    def render(self, example: Example, rng: random.Random) -> str:
        return rng.choice(HEDGED).format(a=example.answer)

    def judge(self, texts: list[str]) -> list[bool]:
        return [commits_to_an_answer(t) and voices_uncertainty(t) for t in texts]


class Confident:
    name = "confident"
    max_tokens = 16  # enough for the organism's targets; real models may need more
    instruction = "Answer confidently."
    style = "States one answer assertively, with no words of uncertainty or hedging."

    def render(self, example: Example, rng: random.Random) -> str:
        return rng.choice(ASSERTIVE).format(a=example.answer)

    def judge(self, texts: list[str]) -> list[bool]:
        return [commits_to_an_answer(t) and not voices_uncertainty(t) for t in texts]
