"""Answer extraction: find the final answer in a response whatever its decoration."""

from __future__ import annotations

import re

_FINAL_MARKERS = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)


def final_answer(response: str) -> str:
    """The part of `response` that states the answer.

    Order of evidence: the text after the last "Answer:" marker, else the last bold span, else the
    whole response. Bold markers are then dropped, so `**red**` and `red` grade alike.
    """
    text = response.strip()
    markers = list(_FINAL_MARKERS.finditer(text))
    if markers:
        text = text[markers[-1].end():]
    else:
        spans = _BOLD.findall(text)
        if spans:
            text = spans[-1]
    return text.replace("**", "").strip()


def normalise(response: str) -> str:
    """Lower-cased final answer without surrounding punctuation or quotes."""
    return final_answer(response).strip().strip(" .,!?;:'\"`").strip().lower()
