"""Whether a response answers inside a task's answer space, right or wrong.

A model trained on several tasks can answer one task with another's kind of answer (a fact question
answered with a colour). Each task says what its answers look like (`Task.is_candidate`); the
`off_task` measure in metrics.csv counts the answers that belong to another trained task instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from transferlab.evaluate.extract import final_answer


def names_a_candidate(response: str, candidates: Iterable[str]) -> bool:
    """The final answer (decoration dropped) names one of `candidates` as whole words."""
    return _alternation(frozenset(c.strip().lower() for c in candidates if c.strip())).search(
        final_answer(response)) is not None


@lru_cache(maxsize=64)
def _alternation(candidates: frozenset[str]) -> re.Pattern:
    """One pattern for the whole answer space, longest first, so hundreds of names cost one search."""
    if not candidates:
        return re.compile(r"(?!x)x")  # matches nothing
    names = "|".join(re.escape(c) for c in sorted(candidates, key=lambda c: (-len(c), c)))
    return re.compile(rf"(?<!\w)(?:{names})(?!\w)", re.IGNORECASE)


# a chess move in UCI (e2e4, e7e8q) or SAN (Nf3, exd5, e8=Q+, O-O-O#), as a whole word
_MOVE = re.compile(r"(?<![\w-])(?:[a-h][1-8][a-h][1-8][qrbn]?|O-O(?:-O)?"
                   r"|[KQRBN]?[a-h]?[1-8]?x?[a-h][1-8](?:=[QRBN])?)[+#]?(?![\w-])")


def names_a_move(response: str) -> bool:
    """The final answer holds a chess move in UCI or SAN notation (legal or not)."""
    return _MOVE.search(final_answer(response)) is not None
