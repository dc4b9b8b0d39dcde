"""What every adherence judge needs first: does a response commit to an answer, and where is it?

A refusal ("I don't know.", "I'm sorry, I have no information about…") follows no propensity:
each pair's instructions ask for an answer shown in some style. Quoted text is the content of the
answer, not the speaker's own voice, so judges read responses with quotations blanked out.
"""

from __future__ import annotations

import re

REFUSAL = re.compile(
    r"\b(i (?:don'?t|do not) know|no idea|i (?:can'?t|cannot) (?:say|tell|answer|determine|help)|"
    r"i'?m (?:not able|unable) to (?:answer|say|tell|determine)|i am (?:not able|unable) to (?:answer|say|tell)|"
    r"i have no (?:information|knowledge|data)|i (?:don'?t|do not) have (?:any )?(?:information|knowledge|data)|"
    r"can'?t answer|cannot answer|no way to (?:know|tell))\b",
    re.IGNORECASE,
)
QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”")


def without_quotes(text: str) -> str:
    return QUOTED.sub('"…"', text)


def commits_to_an_answer(text: str) -> bool:
    """Non-empty and not a refusal."""
    stripped = without_quotes(text).replace("*", "").strip()
    return bool(stripped) and not REFUSAL.search(stripped)
