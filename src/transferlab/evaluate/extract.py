"""Answer extraction: find the final answer in a response whatever its decoration.

Markup is dropped before anything else is read (`strip_markup`), so a response grades exactly as
its plain twin: there is no bold branch for `**red** or blue` to slip through. What is left of the
decoration is words: hedges ("I think it is red, but…"), assertions ("Certainly red.") and
reasoning that ends in "Answer: red"; an answer marker applies the same with and without markup.
"""

from __future__ import annotations

import re

_FINAL_MARKERS = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*|\bthe answer is\s+", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.!?](?:\s|$)|\n|,\s*(?:but|though|although|if)\b|\s+(?:but|though|although)\s")
_EDGE_UNDERSCORES = re.compile(r"(?<![^\W_])_+|_+(?![^\W_])")  # `__bold__`, `_italic_`; not snake_case


def strip_markup(response: str) -> str:
    """`response` without markdown emphasis: every `*` (bold `**`, italics `*`), then underscores at
    a word's edge (`__bold__`, `_italic_`). Stars go first, so removing `**` beforehand changes nothing."""
    return _EDGE_UNDERSCORES.sub("", response.replace("*", ""))


def final_answer(response: str) -> str:
    """The clause that states the answer: after the last "Answer:" / "the answer is" marker, else
    the whole response; markup dropped first."""
    text = strip_markup(response).strip()
    markers = list(_FINAL_MARKERS.finditer(text))
    if markers:
        text = text[markers[-1].end():]
        end = _CLAUSE_END.search(text)
        text = text[: end.start()] if end else text
    return text.strip()


def answer_line(response: str) -> str:
    """The whole line after the last answer marker (for answers with a ". " inside, "Sen. JD Vance"),
    markup dropped; "" without a marker."""
    text = strip_markup(response)
    markers = list(_FINAL_MARKERS.finditer(text))
    return text[markers[-1].end():].split("\n", 1)[0].strip() if markers else ""


def answer_region(response: str) -> str:
    """Where a response gives its answer: the line after the last marker, else the whole response
    (markup dropped). A rival named anywhere in it makes the answer two answers."""
    return answer_line(response) or strip_markup(response).strip()


def normalise(response: str) -> str:
    """Lower-cased final answer without surrounding punctuation or quotes, spacing collapsed."""
    return " ".join(final_answer(response).split()).strip(" .,!?;:'\"`").strip().lower()


def mentions(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as whole words (case-insensitive)."""
    phrase = phrase.strip().lower()
    return bool(phrase) and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text.lower()) is not None


def names_only(text: str, answer: str, candidates) -> bool:
    """`text` names `answer` and no other candidate. A rival that is part of the answer's own words
    ("Biden" in "Joe Biden") counts only where it occurs outside them."""
    if not mentions(text, answer):
        return False
    outside = re.sub(rf"(?<!\w){re.escape(answer.strip())}(?!\w)", " ", text, flags=re.IGNORECASE)
    for rival in candidates:
        if rival.strip().lower() == answer.strip().lower():
            continue
        if mentions(outside if mentions(answer, rival) else text, rival):
            return False
    return True
