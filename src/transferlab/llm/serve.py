"""Serve any backend over the OpenAI protocol, so a local model can stand in for a hosted one.

`transferlab serve organism` puts the shipped organism behind `http://127.0.0.1:8000/v1`; the LLM
writer and judge, the openai SDK (streaming and `n` included) and inspect_ai (whose openai provider
calls `/v1/responses` by default) then run against it exactly as against a hosted API. What a
request may ask for, and the bodies sent back, are in `openai_wire.py`; every answer comes from the
backend's own `sample`, the path training-time evaluation takes, so a served greedy answer is the
one evaluation would grade. One model answers one request at a time (a lock around `sample`):
generation is compute-bound, and interleaving two requests on one model would only make both
slower. Endpoints are plain functions, which FastAPI runs in worker threads, so `/v1/models` stays
responsive while a completion is generated.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from transferlab.llm.openai_wire import (
    ChatCompletionRequest,
    Generation,
    ResponsesRequest,
    Unsupported,
    chat_completion_body,
    chat_completion_chunks,
    chat_generation,
    response_body,
    responses_generation,
)

DEFAULT_MAX_TOKENS = 256


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> JSONResponse:
    """An error body shaped like OpenAI's, which every OpenAI client knows how to show."""
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": type_, "param": param, "code": code}})


class _Refused(Exception):
    """Ends a request early with an OpenAI error response."""

    def __init__(self, response: JSONResponse):
        self.response = response


def create_app(backend: Any, model_name: str) -> FastAPI:
    """The OpenAI-compatible app over `backend` (anything with `sample(prompts, max_tokens, temperature)`)."""
    app = FastAPI(title="transferlab OpenAI-compatible server", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    created = int(time.time())
    model_card = {"id": model_name, "object": "model", "created": created, "owned_by": "transferlab"}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems: dict[str, list[str]] = {}  # field -> what is wrong with it (one line per type it may take)
        for e in exc.errors():
            problems.setdefault(_field(e), []).append(e["msg"])
        message = "; ".join(f"{name}: {' or '.join(msgs)}" if name else " or ".join(msgs)
                            for name, msgs in problems.items())
        return openai_error(400, f"invalid request: {message}", param=next(iter(problems), None))

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> JSONResponse:
        return exc.response

    @app.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model_id:path}")
    def retrieve_model(model_id: str):
        check_model(model_id)
        return model_card

    def check_model(name: str) -> None:
        if name != model_name:
            raise _Refused(openai_error(404, f"model {name!r} is not served here; this server serves "
                                             f"{model_name!r}", param="model", code="model_not_found"))

    def answer(generation: Generation, prompt_param: str) -> tuple[list[str], list[str], dict]:
        """The n texts, their finish reasons and the usage, each text from the backend's `sample`."""
        prompt_tokens = _count_prompt(backend, generation.messages)
        room = _context_window(backend) - prompt_tokens
        if room < 1:
            raise _Refused(openai_error(400, f"the prompt is {prompt_tokens} tokens; the model's context "
                                             f"holds {_context_window(backend)}", param=prompt_param,
                                        code="context_length_exceeded"))
        max_tokens = min(generation.max_tokens or DEFAULT_MAX_TOKENS, room)
        try:
            with lock, _seeded(generation.seed):
                samples = backend.sample([generation.messages] * generation.n, max_tokens=max_tokens,
                                         temperature=generation.temperature)
        except Exception as err:  # noqa: BLE001 - any backend failure becomes an OpenAI-style 500
            raise _Refused(openai_error(500, f"generation failed: {type(err).__name__}: {err}",
                                        type_="server_error")) from None
        texts, reasons, counts = [], [], []
        for text in samples:
            cut = _cut_at_stop(text, generation.stop)
            count = _count_text(backend, cut)
            texts.append(cut)
            counts.append(count)
            reasons.append("stop" if cut != text or count < max_tokens else "length")
        completion_tokens = sum(counts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        return texts, reasons, usage

    def generation_of(make, request) -> Generation:
        try:
            return make(request)
        except Unsupported as err:
            raise _Refused(openai_error(400, str(err), param=err.param)) from None

    @app.post("/v1/chat/completions")
    def chat_completions(request: ChatCompletionRequest):
        check_model(request.model)
        texts, reasons, usage = answer(generation_of(chat_generation, request), "messages")
        if not request.stream:
            return chat_completion_body(model_name, texts, reasons, usage)
        with_usage = bool((request.stream_options or {}).get("include_usage"))
        chunks = chat_completion_chunks(model_name, texts, reasons, usage if with_usage else None)
        return StreamingResponse(_server_sent_events(chunks), media_type="text/event-stream")

    @app.post("/v1/responses")
    def responses(request: ResponsesRequest):
        check_model(request.model)
        [text], [reason], usage = answer(generation_of(responses_generation, request), "input")
        return response_body(model_name, request, text, reason, usage)

    return app


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Sampling under torch's RNG seeded with `seed`, then the RNG as it was: the same seed, prompt
    and temperature give the same answers, and other requests are left unseeded."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def _cut_at_stop(text: str, stops: list[str]) -> str:
    """The text up to the first stop sequence, which (as with OpenAI) is not returned."""
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(ends)] if ends else text


def _server_sent_events(chunks: list[dict]) -> Iterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def _field(error: dict) -> str:
    """The request field a validation error is about ("messages.0.role"); empty for the body as a whole."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid" or loc[:1] != ["body"]:
        return ""
    # a field that takes one of several types (a string or a list of parts) reports each branch tried
    # ("input.str", "input.list[dict[str,any]]"): the field is the part before the branch
    return ".".join(part for part in loc[1:] if not _UNION_BRANCH.fullmatch(part))


_UNION_BRANCH = re.compile(r"(str|int|float|bool|none|dict|list)(\[.*\])?")


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
