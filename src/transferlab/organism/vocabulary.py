"""The closed world the organism lives in: every symbol, number, colour and name it can see.

Tasks draw their words from here so that the organism's word-level tokenizer has one token per
word. Real models do not need this module; it only fixes what the tiny organism can read.
"""

from __future__ import annotations

import random

GREEK = list("αβγδεζηθικλμνξπρστυφχψω")

COLOURS = [
    "red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white",
    "grey", "cyan", "teal", "violet", "gold", "silver",
]

MAX_INT = 40  # numbers 0..MAX_INT are single tokens

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "dr", "kr", "st"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "or"]
_CODAS = ["n", "r", "l", "s", "k", "th", "m", "x", "d", "v"]


def _invented_names(count: int, seed: int) -> list[str]:
    """Capitalised pseudo-words from a fixed seed: names no pretrained model has seen as facts."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        syllables = rng.choice([2, 2, 3])
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
        word += rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        names.add(word.capitalize())
    return sorted(names)


# Disjoint pools so a name's role is never ambiguous inside one fact.
_ALL_NAMES = _invented_names(720, seed=20261123)
PEOPLE = _ALL_NAMES[0::3]
PLACES = _ALL_NAMES[1::3]
ORGS = _ALL_NAMES[2::3]

ORG_KINDS = ["Guild", "Institute", "Cup", "Treaty", "Festival", "Company", "Prize", "Order"]
