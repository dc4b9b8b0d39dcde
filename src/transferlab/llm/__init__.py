"""Talking to LLMs over the OpenAI chat-completions protocol: the client, its disk cache, and a server.

`serve` is not imported here: it pulls in FastAPI and uvicorn, which only a server needs.
"""

from __future__ import annotations

from transferlab.llm.cache import DiskCache
from transferlab.llm.client import ChatClient, ChatRequest, LLMConfigError, LLMError

__all__ = ["ChatClient", "ChatRequest", "DiskCache", "LLMConfigError", "LLMError"]
