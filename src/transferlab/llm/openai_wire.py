"""The OpenAI wire format `transferlab serve` speaks: what clients send, and the bodies they parse.

Two request shapes arrive: chat completions (`/v1/chat/completions`, what the openai SDK, our own
`ChatClient` and inspect with `responses_api=false` send) and a minimal Responses API
(`/v1/responses`, inspect's default path: text in, text out). Both become one `Generation`, which
the server answers through the backend's own `sample`. A field we cannot honour (tools, images,
logprobs, top_p, penalties, JSON output, reasoning, stored responses) is refused with
`Unsupported`, which names the field: silently ignoring it would hand the client a different
answer than it asked for. Fields that change nothing here (user, metadata, store, service_tier,
parallel_tool_calls, ...) are ignored, as OpenAI-compatible servers do.

Unlike OpenAI, temperature defaults to 0 (greedy): the server stands in for evaluation and judging,
where a reproducible answer is what callers want.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_CHOICES = 128  # n per request: one backend batch


class Unsupported(ValueError):
    """A request field this server cannot honour; `param` names it as OpenAI's error bodies do."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass
class Generation:
    """What one request asks of the model, whichever endpoint it came through."""

    messages: list[dict]  # roles system / user / assistant, content a string
    max_tokens: int | None = None
    temperature: float = 0.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


# ---------------------------------------------------------------- chat completions

class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, refusal, ...

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[Any] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    # accepted only where they ask for nothing we lack (see `_refuse_what_we_cannot_honour`)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None


def chat_generation(request: ChatCompletionRequest) -> Generation:
    _refuse_what_we_cannot_honour(request, _CHAT_REFUSALS)
    messages = []
    for i, m in enumerate(request.messages):
        if not _is_off(m.tool_calls):
            raise Unsupported(f"messages.{i}.tool_calls", f"messages.{i}.tool_calls: tool calls are not "
                                                          "supported; send text messages only")
        messages.append({"role": _role(m.role), "content": _text(m.content, f"messages.{i}.content", "text")})
    limits = [t for t in (request.max_tokens, request.max_completion_tokens) if t is not None]
    return Generation(messages, max_tokens=min(limits) if limits else None,  # both given: honour both
                      temperature=request.temperature or 0.0, n=request.n,
                      stop=_stops(request.stop), seed=request.seed)


def chat_completion_body(model: str, texts: list[str], reasons: list[str], usage: dict) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": reason}
                        for i, (text, reason) in enumerate(zip(texts, reasons))],
            "usage": usage}


def chat_completion_chunks(model: str, texts: list[str], reasons: list[str],
                           usage: dict | None) -> list[dict]:
    """The chunks of a streamed completion: per choice the role, the text a word at a time, and the
    finish reason; then, if asked (`stream_options.include_usage`), one chunk with the usage and no
    choices. The text is generated whole first (through `sample`, as every answer is), so a
    failure is an HTTP error, never a stream cut short."""
    stamp = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
             "created": int(time.time()), "model": model, "system_fingerprint": None}

    def chunk(index: int, delta: dict, reason: str | None = None) -> dict:
        return stamp | {"choices": [{"index": index, "delta": delta, "logprobs": None,
                                     "finish_reason": reason}]}

    chunks = []
    for i, (text, reason) in enumerate(zip(texts, reasons)):
        chunks.append(chunk(i, {"role": "assistant", "content": ""}))
        chunks += [chunk(i, {"content": piece}) for piece in re.findall(r"\s*\S+|\s+$", text)]
        chunks.append(chunk(i, {}, reason))
    if usage is not None:
        chunks.append(stamp | {"choices": [], "usage": usage})
    return chunks


# ---------------------------------------------------------------- responses

class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # store, metadata, user, truncation, service_tier, ...

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    stream: bool = False
    tools: list[Any] | None = None
    tool_choice: Any = None
    top_p: float | None = None
    top_logprobs: int | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    prompt: Any = None
    background: bool | None = None


def responses_generation(request: ResponsesRequest) -> Generation:
    _refuse_what_we_cannot_honour(request, _RESPONSES_REFUSALS)
    for name in request.include or ():
        if name != "reasoning.encrypted_content":  # no reasoning here, so there is none to include
            raise Unsupported("include", f"include: {name!r} is not supported; this server returns text only")
    messages = [{"role": "system", "content": request.instructions}] if request.instructions else []
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
    else:
        for i, item in enumerate(request.input):
            where = f"input.{i}"
            if item.get("type", "message") != "message" or "role" not in item:
                raise Unsupported(where, f"{where}: only message items are supported (got type "
                                         f"{item.get('type')!r}); tool calls and reasoning items are not")
            if item["role"] not in ("system", "developer", "user", "assistant"):
                raise Unsupported(f"{where}.role", f"{where}.role: {item['role']!r} is not supported; "
                                                   "use system, developer, user or assistant")
            content = _text(item.get("content"), f"{where}.content", "input_text", "output_text")
            messages.append({"role": _role(item["role"]), "content": content})
    if not messages:
        raise Unsupported("input", "input: empty; send a string or at least one message")
    return Generation(messages, max_tokens=request.max_output_tokens, temperature=request.temperature or 0.0)


def response_body(model: str, request: ResponsesRequest, text: str, reason: str, usage: dict) -> dict:
    """A Response object as the openai SDK types it: one assistant message of output text."""
    now = int(time.time())
    incomplete = reason == "length"
    return {
        "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": now,
        "completed_at": None if incomplete else now,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None, "model": model, "instructions": request.instructions,
        "metadata": request.metadata or {}, "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature or 0.0, "top_p": 1.0, "parallel_tool_calls": False,
        "tool_choice": "auto", "tools": [], "store": False, "background": False,
        "previous_response_id": None, "reasoning": None, "truncation": "disabled",
        "text": {"format": {"type": "text"}},
        "output": [{"type": "message", "id": f"msg_{uuid.uuid4().hex}", "role": "assistant",
                    "status": "incomplete" if incomplete else "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}],
        "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                  "total_tokens": usage["total_tokens"],
                  "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 0}},
    }


# ---------------------------------------------------------------- shared checks

def _is_off(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


# (field, is this value harmless?, why we refuse any other value: the error reads "field: why")
_TEXT_ONLY = "not supported (this server returns text only); leave it out"
_NO_TOOLS = ("tool_choice", lambda v: v in (None, "none", "auto"),
             "not supported without tools; leave it out")
_CHAT_REFUSALS = [
    ("tools", _is_off, _TEXT_ONLY),
    _NO_TOOLS,
    ("functions", _is_off, _TEXT_ONLY),
    ("function_call", lambda v: v in (None, "none", "auto"), "not supported without functions; leave it out"),
    ("logprobs", _is_off, "not supported; send false or leave it out"),
    ("top_logprobs", lambda v: v in (None, 0), "not supported (no logprobs); leave it out"),
    ("top_p", lambda v: v in (None, 1, 1.0),
     "below 1 is not supported (sampling uses the whole distribution); send 1 or leave it out"),
    ("presence_penalty", lambda v: not v, "not supported; send 0 or leave it out"),
    ("frequency_penalty", lambda v: not v, "not supported; send 0 or leave it out"),
    ("logit_bias", _is_off, "not supported; leave it out"),
    ("response_format", lambda v: _is_off(v) or v.get("type") == "text",
     "only {'type': 'text'} is supported (no JSON mode)"),
    ("modalities", lambda v: v in (None, ["text"]), "only ['text'] is supported"),
    ("audio", _is_off, _TEXT_ONLY),
    ("prediction", _is_off, "predicted outputs are not supported; leave it out"),
    ("reasoning_effort", lambda v: v in (None, "none"), "this model does not reason; leave it out"),
]
_RESPONSES_REFUSALS = [
    ("stream", lambda v: not v,
     "true is not supported on /v1/responses (/v1/chat/completions streams); send false"),
    ("tools", _is_off, _TEXT_ONLY),
    _NO_TOOLS,
    ("top_p", lambda v: v in (None, 1, 1.0), "below 1 is not supported; send 1 or leave it out"),
    ("top_logprobs", lambda v: v in (None, 0), "not supported (no logprobs); leave it out"),
    ("reasoning", _is_off, "this model does not reason; leave it out"),
    ("text", lambda v: _is_off(v) or _is_off(v.get("format")) or v["format"].get("type") == "text",
     "only format {'type': 'text'} is supported (no structured output)"),
    ("previous_response_id", _is_off,
     "not supported: this server stores no responses; send the whole conversation as input"),
    ("conversation", _is_off, "not supported: this server stores nothing; send the whole conversation"),
    ("prompt", _is_off, "prompt templates are not supported; send input"),
    ("background", lambda v: not v, "true is not supported; leave it out"),
]


def _refuse_what_we_cannot_honour(request: BaseModel, refusals: list) -> None:
    for name, harmless, why in refusals:
        if not harmless(getattr(request, name)):
            raise Unsupported(name, f"{name}: {why}")


def _role(role: str) -> str:
    return "system" if role == "developer" else role  # `developer` is the newer name for system


def _text(content: Any, where: str, *text_types: str) -> str:
    """A message's text: a string, or a list of text parts joined by newlines; anything else refused."""
    if isinstance(content, str):
        return content
    if content is None:
        raise Unsupported(where, f"{where}: missing; send the message's text")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind not in text_types or not isinstance(part.get("text"), str):
            raise Unsupported(f"{where}.{j}", f"{where}.{j}: {kind!r} parts are not supported; this model "
                                              f"reads text only ({' or '.join(text_types)} parts)")
        parts.append(part["text"])
    return "\n".join(parts)


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    if any(s == "" for s in stops):
        raise Unsupported("stop", "stop: an empty stop sequence would end every answer at once; remove it")
    return stops
