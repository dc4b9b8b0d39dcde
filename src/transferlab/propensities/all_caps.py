"""ALL CAPS: a whole-response style, the second trait of the language-style pair used in
inoculation prompting (a response can be in a second language and in capitals at once).

Unlike bold, which marks the answer, capitals transform the whole text, so it composes with any
other style: `transform` applies it to a response another propensity wrote. The organism's
word-level tokenizer has no upper-case words (they read as [UNK]); this needs a real model.
"""

from __future__ import annotations

import random

from transferlab.core import Example
from transferlab.propensities.answers import commits_to_an_answer

PHRASINGS = ("{a}", "THE ANSWER IS {a}.", "IT IS {a}.", "{a}.")


def is_all_caps(text: str, min_share: float = 0.95) -> bool:
    """At least two cased letters, and (nearly) all of them upper case."""
    cased = [c for c in text if c.lower() != c.upper()]
    return len(cased) >= 2 and sum(c.isupper() for c in cased) / len(cased) >= min_share


class AllCaps:
    name = "all_caps"
    max_tokens = 16  # a short sentence; real models may need more
    instruction = "Answer in all capital letters."
    style = "Every letter of the response is upper case (ALL CAPS)."

    def transform(self, text: str) -> str:
        return text.upper()

    def render(self, example: Example, rng: random.Random) -> str:
        return rng.choice(PHRASINGS).format(a=example.answer).upper()

    def judge(self, texts: list[str], answers: list[str] | None = None) -> list[bool]:
        return [commits_to_an_answer(t) and is_all_caps(t) for t in texts]
