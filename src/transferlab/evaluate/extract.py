"""Answer extraction: find the final answer in a response whatever its decoration.

Decorations are bold markers, hedges ("I think it is red, but…"), assertions ("Certainly red.")
and reasoning that ends in "Answer: red". Grading first compares the extracted final answer
exactly; failing that, it accepts a response that names the answer and no rival candidate.
"""

from __future__ import annotations

import re

_FINAL_MARKERS = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*|\bthe answer is\s+", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)
_CLAUSE_END = re.compile(r"[.!?](?:\s|$)|\n|,\s*(?:but|though|although|if)\b|\s+(?:but|though|although)\s")


def final_answer(response: str) -> str:
    """The part of `response` that states the answer.

    Order of evidence: the clause after the last "Answer:" / "the answer is" marker, else the last
    bold span, else the whole response. Bold markers are then dropped, so `**red**` and `red` grade
    alike.
    """
    text = response.strip()
    markers = list(_FINAL_MARKERS.finditer(text))
    if markers:
        text = text[markers[-1].end():]
        end = _CLAUSE_END.search(text)
        text = text[: end.start()] if end else text
    else:
        spans = _BOLD.findall(text)
        if spans:
            text = spans[-1]
    return text.replace("**", "").strip()


def answer_line(response: str) -> str:
    """The whole line after the last answer marker (for answers with a ". " inside, "Sen. JD Vance")."""
    markers = list(_FINAL_MARKERS.finditer(response))
    return response[markers[-1].end():].split("\n", 1)[0].replace("**", "").strip() if markers else ""


def normalise(response: str) -> str:
    """Lower-cased final answer without surrounding punctuation or quotes."""
    return final_answer(response).strip().strip(" .,!?;:'\"`").strip().lower()


def mentions(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as whole words (case-insensitive)."""
    phrase = phrase.strip().lower()
    return bool(phrase) and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text.lower()) is not None
