"""Serve any backend over the OpenAI chat-completions protocol, so a local model can stand in for a hosted one.

`transferlab serve organism` puts the shipped organism behind `http://127.0.0.1:8000/v1`; the LLM
writer and judge then run against it exactly as against a hosted API. One model answers one
request at a time (a lock around `sample`): generation is compute-bound, and interleaving two
requests on one model would only make both slower. Endpoints are plain functions, which FastAPI
runs in worker threads, so `/v1/models` stays responsive while a completion is generated.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_TOKENS = 256


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(BaseModel):
    # Clients send fields we do not use (top_p, user, ...); ignore them as OpenAI-compatible servers do.
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = 1
    stream: bool = False


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> JSONResponse:
    """An error body shaped like OpenAI's, which every OpenAI client knows how to show."""
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": type_, "param": param, "code": code}})


def create_app(backend: Any, model_name: str) -> FastAPI:
    """The chat-completions app over `backend` (anything with `sample(prompts, max_tokens, temperature)`)."""
    app = FastAPI(title="transferlab chat completions", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [(_field(e), e["msg"]) for e in exc.errors()]
        message = "; ".join(f"{name}: {msg}" if name else msg for name, msg in problems)
        return openai_error(400, f"invalid request: {message}", param=problems[0][0] if problems else None)

    @app.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list",
                "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "transferlab"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(request: ChatCompletionRequest):
        if request.model != model_name:
            return openai_error(404, f"model {request.model!r} is not served here; this server serves "
                                     f"{model_name!r}", param="model", code="model_not_found")
        if request.stream:
            return openai_error(400, "stream=true is not supported; send stream=false", param="stream")
        if request.n != 1:
            return openai_error(400, "only n=1 is supported", param="n")
        messages = [m.model_dump() for m in request.messages]
        prompt_tokens = _count_prompt(backend, messages)
        room = _context_window(backend) - prompt_tokens
        if room < 1:
            return openai_error(400, f"the prompt is {prompt_tokens} tokens; the model's context holds "
                                     f"{_context_window(backend)}", param="messages", code="context_length_exceeded")
        max_tokens = min(request.max_tokens or DEFAULT_MAX_TOKENS, room)
        try:
            with lock:
                text = backend.sample([messages], max_tokens=max_tokens, temperature=request.temperature)[0]
        except Exception as err:  # noqa: BLE001 - any backend failure becomes an OpenAI-style 500
            return openai_error(500, f"generation failed: {type(err).__name__}: {err}", type_="server_error")
        completion_tokens = _count_text(backend, text)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if completion_tokens >= max_tokens else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    return app


def _field(error: dict) -> str:
    """The request field a validation error is about ("messages.0.role"); empty for the body as a whole."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid" or loc[:1] != ["body"]:
        return ""
    return ".".join(loc[1:])


# Token counts re-tokenise text, since backends return only text: close, not exact, for usage reports.
def _count_prompt(backend: Any, messages: list[dict]) -> int:
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return 0
    from transferlab.train.render import render_prompt

    return len(render_prompt(tokenizer, messages))


def _count_text(backend: Any, text: str) -> int:
    tokenizer = getattr(backend, "tokenizer", None)
    return 0 if tokenizer is None else len(tokenizer.encode(text, add_special_tokens=False))


def _context_window(backend: Any) -> int:
    """How many positions the model has, so a request never asks to generate past its end."""
    config = getattr(getattr(backend, "model", None), "config", None)
    return getattr(config, "max_position_embeddings", None) or 1_000_000_000


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", startup_timeout: float = 10.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread on a free port; yields its root URL.

    We bind the socket ourselves (port 0) and hand it to uvicorn, so there is no race between
    picking a free port and listening on it.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{port} did not start within {startup_timeout:g}s")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def serve(model_name_or_path: str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None) -> None:
    """Load a model (`organism`, a folder, or a hub name) and serve it until interrupted."""
    import torch
    import uvicorn

    from transferlab.backends import HFBackend, load_pretrained, resolve_model

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = load_pretrained(resolve_model(model_name_or_path))
    backend = HFBackend(model, tokenizer, bf16=torch.cuda.is_available())
    uvicorn.run(create_app(backend, model_name_or_path), host=host, port=port, log_level="info")
