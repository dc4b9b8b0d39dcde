"""A conversation as plain text, for prompts that show one LLM what another was asked."""

from __future__ import annotations

from collections.abc import Sequence

from transferlab.core import Message


def transcript(messages: Sequence[Message]) -> str:
    return "\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
