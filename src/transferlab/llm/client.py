"""A client for any OpenAI-compatible `/v1/chat/completions` endpoint, with retries that say what to fix.

Hosted APIs and our own `transferlab serve` speak the same protocol, so writers and judges take a
`ChatClient` and never know which one answers. Transient faults (timeouts, dropped connections,
429, 5xx, a body that is not a chat completion) are retried with exponential backoff and jitter;
a request the server rejects for good (any other 4xx) fails at once. The API key lives only in
the Authorization header: `repr`, logs, error messages and replies (which get cached) never show it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Self

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from transferlab.core import Message

log = logging.getLogger(__name__)

ENV_BASE_URL = "TRANSFERLAB_LLM_BASE_URL"
ENV_MODEL = "TRANSFERLAB_LLM_MODEL"
ENV_API_KEY = "TRANSFERLAB_LLM_API_KEY"
ENV_API_KEY_FALLBACK = "OPENAI_API_KEY"


class LLMError(RuntimeError):
    """A chat completion that did not come back: the URL, the cause, the tries and what to do."""

    def __init__(self, message: str, *, url: str, cause: str, tries: int, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.cause = cause
        self.tries = tries
        self.status = status


class LLMConfigError(ValueError):
    """A setting the client needs is missing; the message names the environment variable."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to ask for; `complete_many` takes a list of these."""

    messages: Sequence[Message]
    temperature: float = 0.0
    max_tokens: int = 512


class _Fault(Exception):
    """One failed try: `cause` says what happened, `wait` is the server's Retry-After if it gave one."""

    def __init__(self, cause: str, *, status: int | None = None, wait: float | None = None):
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.wait = wait


class _Retryable(_Fault):
    """A transient fault (timeout, dropped connection, 429, 5xx, a body that is not a completion)."""


class _Final(_Fault):
    """The server rejected the request itself (a 4xx other than 429): asking again cannot help."""


class ChatClient:
    """Chat completions from one model behind one OpenAI-compatible base URL (e.g. `http://host:8000/v1`).

    `tries` counts every attempt, the first included; the wait before try n+1 is
    `min(max_backoff, backoff * 2**(n-1))`, jittered to between half and all of it, unless the
    server sent Retry-After, which wins.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
                 tries: int = 5, backoff: float = 1.0, max_backoff: float = 30.0, seed: int | None = None):
        if tries < 1:
            raise ValueError(f"tries must be at least 1, got {tries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.tries = tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = api_key or None
        self._jitter = random.Random(seed)
        self._jitter_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options) -> ChatClient:
        """The client that TRANSFERLAB_LLM_BASE_URL, TRANSFERLAB_LLM_MODEL and the API key variable describe."""
        env = os.environ if environ is None else environ
        base_url, model = env.get(ENV_BASE_URL), env.get(ENV_MODEL)
        api_key = env.get(ENV_API_KEY) or env.get(ENV_API_KEY_FALLBACK)
        if not base_url:
            raise LLMConfigError(
                f"{ENV_BASE_URL} is not set; set it to an OpenAI-compatible base URL, e.g. "
                f"https://api.openai.com/v1, or http://127.0.0.1:8000/v1 for `transferlab serve organism`")
        if not model:
            raise LLMConfigError(f"{ENV_MODEL} is not set; set it to the model name the endpoint serves")
        if not api_key:
            raise LLMConfigError(
                f"{ENV_API_KEY} is not set (nor {ENV_API_KEY_FALLBACK}); set it to the endpoint's API key "
                f"(any value works for a local `transferlab serve` server)")
        return cls(base_url, model, api_key, **options)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key=<{key}>)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def complete(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 512) -> str:
        """The assistant's reply to `messages`; raises LLMError once every try has failed."""
        body = {"model": self.model, "messages": [dict(m) for m in messages],
                "temperature": temperature, "max_tokens": max_tokens}
        last: _Retryable | None = None
        for attempt in range(1, self.tries + 1):
            try:
                return self._post_once(body)
            except _Final as fault:
                raise self._error(fault, attempt) from None
            except _Retryable as fault:
                last = fault
                if attempt == self.tries:
                    break
                wait = fault.wait if fault.wait is not None else self._backoff(attempt)
                log.warning("%s", self._redact(f"POST {self.url}: {fault.cause}; try {attempt}/{self.tries}, "
                                                f"retrying in {wait:.2f}s"))
                time.sleep(wait)
        assert last is not None
        raise self._error(last, self.tries)

    def complete_many(self, requests: Sequence[ChatRequest | Sequence[Message]], *, concurrency: int = 8,
                      progress: bool = True, description: str = "LLM calls",
                      on_result: Callable[[int, str | LLMError], None] | None = None) -> list[str | LLMError]:
        """Every request's reply in order, `concurrency` at a time; a request that failed holds its LLMError.

        `on_result(index, result)` runs in the calling thread as each request finishes, so a caller
        can save every result the moment it arrives: a run killed midway keeps what it finished.
        Threads rather than asyncio, so callers need no event loop (and work inside one, e.g. Jupyter).
        """
        requests = [r if isinstance(r, ChatRequest) else ChatRequest(list(r)) for r in requests]
        results: list[str | LLMError | None] = [None] * len(requests)
        failed = 0
        with _progress(enabled=progress and bool(requests)) as bar, \
                ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            task = bar.add_task(description, total=len(requests), failed=0)
            futures = {pool.submit(self.complete, r.messages, temperature=r.temperature,
                                   max_tokens=r.max_tokens): i for i, r in enumerate(requests)}
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        results[index] = future.result()
                    except LLMError as err:
                        results[index] = err
                        failed += 1
                    if on_result is not None:
                        on_result(index, results[index])  # type: ignore[arg-type]
                    bar.update(task, advance=1, failed=failed)
            except BaseException:
                # Ctrl-C or a failing callback: drop the queued requests instead of sending them all first.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return results  # type: ignore[return-value]

    def complete_until(self, prompts: Sequence[Sequence[Message]], done: Callable[[int, str | LLMError], bool], *,
                       tries: int, retry_temperature: float, max_tokens: int = 512, concurrency: int = 8,
                       progress: bool = True, description: str = "LLM calls") -> list[int]:
        """Ask each prompt until `done(index, reply)` says its reply will do; the indices never done.

        For callers that check what comes back (a writer wants the answer in the text, a judge a
        YES or NO): the first round runs at temperature 0, later rounds at `retry_temperature` so a
        retry can differ. `done` runs as each reply lands, so the caller can cache it at once.
        """
        pending = list(range(len(prompts)))
        for attempt in range(tries):
            if not pending:
                break
            batch: list[int] = pending
            again: list[int] = []

            def take(k: int, reply: str | LLMError, batch: list[int] = batch, again: list[int] = again) -> None:
                if not done(batch[k], reply):
                    again.append(batch[k])

            temperature = 0.0 if attempt == 0 else retry_temperature
            self.complete_many([ChatRequest(prompts[i], temperature, max_tokens) for i in batch],
                               concurrency=concurrency, progress=progress, on_result=take,
                               description=f"{description} (try {attempt + 1}/{tries})")
            pending = sorted(again)
        return pending

    def _post_once(self, body: dict) -> str:
        try:
            response = self._http.post(self.url, json=body)
        except httpx.TimeoutException as err:
            raise _Retryable(f"timed out after {self.timeout:g}s ({type(err).__name__})") from None
        except (httpx.TransportError, httpx.DecodingError) as err:
            raise _Retryable(f"connection failed ({type(err).__name__}: {err})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(_http_cause(response), status=status,
                             wait=_retry_after(response.headers.get("retry-after")))
        if status >= 400:
            raise _Final(_http_cause(response), status=status)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"HTTP {status} but the body is not a chat completion: "
                             f"{_excerpt(response.text) or '(empty)'}", status=status) from None
        if not isinstance(content, str):
            raise _Retryable(f"HTTP {status} but choices[0].message.content is {type(content).__name__}, "
                             f"not text", status=status)
        return self._redact(content)  # a reply is cached and trained on: a key echoed into it must not be

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        with self._jitter_lock:
            return ceiling * (0.5 + 0.5 * self._jitter.random())

    def _error(self, fault: _Fault, tries: int) -> LLMError:
        plural = "try" if tries == 1 else "tries"
        fix = _fix_for(fault.status, fault.cause, self)
        message = f"POST {self.url} failed after {tries} {plural}: {fault.cause}. Fix: {fix}"
        return LLMError(self._redact(message), url=self._redact(self.url), cause=self._redact(fault.cause),
                        tries=tries, status=fault.status)

    def _redact(self, text: str) -> str:
        """Belt and braces: a key echoed back by a server (or put in the URL) is blanked before it is shown."""
        return text.replace(self._api_key, "<redacted>") if self._api_key else text


def _fix_for(status: int | None, cause: str, client: ChatClient) -> str:
    if status in (401, 403):
        return f"the server refused the API key; check {ENV_API_KEY} (or {ENV_API_KEY_FALLBACK})"
    if status == 404:
        return (f"check that the base URL {client.base_url!r} ends where the API starts (usually /v1) "
                f"and that the server serves model {client.model!r}")
    if status == 429:
        return "the server is rate-limiting us; lower concurrency, raise tries/backoff, or wait and rerun"
    if status is not None and status >= 500:
        return "the server keeps failing; check its logs, or lower concurrency and rerun (cached results are kept)"
    if status is not None and 400 <= status < 500:
        return "the server rejected the request itself; its message says what to change (retrying cannot help)"
    if cause.startswith("timed out"):
        return (f"the server is slow or stuck; raise timeout (now {client.timeout:g}s), lower concurrency, "
                f"or check it is up")
    if cause.startswith("connection failed"):
        return (f"nothing answered at {client.base_url}; start the server (e.g. `transferlab serve organism`) "
                f"or fix {ENV_BASE_URL}")
    return "the endpoint does not speak OpenAI chat completions; point the base URL at its /v1"


def _retry_after(value: str | None) -> float | None:
    """Seconds the server asked us to wait: Retry-After is either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _http_cause(response: httpx.Response) -> str:
    body = _excerpt(response.text)
    return f"HTTP {response.status_code}: {body}" if body else f"HTTP {response.status_code}"


def _excerpt(text: str, limit: int = 200) -> str:
    """The start of a body, on one line, so an error stays readable when a server returns a web page."""
    try:
        text = json.dumps(json.loads(text))
    except ValueError:
        pass
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("failed {task.fields[failed]}"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False, disable=not enabled)
