"""The chat client against real servers on loopback: a working one, and ones that fail on purpose."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from transferlab.llm import ChatClient, ChatRequest, LLMConfigError, LLMError
from transferlab.llm.serve import create_app, running

SECRET = "sk-test-DO-NOT-LEAK-4c1d"
HELLO = [{"role": "user", "content": "hello"}]


def completion(content: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}]}


def fault_app(script: list[str], slow_seconds: float = 0.6) -> FastAPI:
    """A chat endpoint that answers request n with fault script[n] (the last one repeats).

    Faults: 429 (with Retry-After: 1), 500, malformed (200 with a body that is not JSON), empty
    (200 with JSON that is not a completion), slow (sleeps past the client's timeout), 400, 401,
    echo (a 401 that echoes the Authorization header back, as a careless server might), ok.
    """
    app = FastAPI()
    app.state.calls = 0
    app.state.auth = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        fault = script[min(app.state.calls, len(script) - 1)]
        app.state.calls += 1
        app.state.auth.append(request.headers.get("authorization"))
        if fault == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "1"})
        if fault == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if fault == "malformed":
            return Response('{"choices": [', media_type="application/json")
        if fault == "empty":
            return JSONResponse({"object": "chat.completion"})
        if fault == "slow":
            await asyncio.sleep(slow_seconds)
            return JSONResponse(completion("too late"))
        if fault == "400":
            return JSONResponse({"error": {"message": "messages: bad role"}}, status_code=400)
        if fault == "401":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        if fault == "echo":
            return JSONResponse({"error": {"message": f"bad key in {request.headers.get('authorization')}"}},
                                status_code=401)
        return JSONResponse(completion("recovered"))

    return app


def fast_client(url: str, **options) -> ChatClient:
    settings = {"tries": 4, "backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0, "seed": 0} | options
    return ChatClient(url + "/v1", "m", SECRET, **settings)


class EchoBackend:
    """Replies with the last user turn upper-cased, so a test can tell which request a reply answers."""

    def sample(self, prompts, max_tokens, temperature=0.0):
        return [p[-1]["content"].upper() for p in prompts]


def test_complete_returns_the_organisms_own_greedy_answer(organism_backend):
    table = {"role": "system", "content": "Table 1: α=5, β=7, γ=2"}
    prompts = [[table, {"role": "user", "content": f"Which number goes with {s}? Answer in bold."}]
               for s in "αβγ"]
    expected = organism_backend.sample(prompts, max_tokens=8, temperature=0.0)
    assert len(set(expected)) == 3  # a different answer per prompt, so a wrong or mixed-up reply shows
    with (running(create_app(organism_backend, "organism")) as url,
          ChatClient(url + "/v1", "organism", SECRET) as client):
        replies = [client.complete(p, max_tokens=8) for p in prompts]
    assert replies == expected


def test_complete_many_keeps_request_order_under_concurrency():
    with running(create_app(EchoBackend(), "m")) as url:
        client = fast_client(url)
        requests = [ChatRequest([{"role": "user", "content": f"q{i}"}]) for i in range(12)]
        replies = client.complete_many(requests, concurrency=4, progress=False)
    assert replies == [f"Q{i}" for i in range(12)]


def test_complete_many_accepts_plain_message_lists_and_reports_each_result():
    seen = []
    with running(create_app(EchoBackend(), "m")) as url:
        replies = fast_client(url).complete_many([HELLO, HELLO], progress=False,
                                                 on_result=lambda i, r: seen.append((i, r)))
    assert replies == ["HELLO", "HELLO"]
    assert sorted(seen) == [(0, "HELLO"), (1, "HELLO")]


def test_client_recovers_from_429_then_500_then_malformed_json():
    app = fault_app(["429", "500", "malformed", "empty", "ok"])
    with running(app) as url:
        start = time.monotonic()
        reply = fast_client(url, tries=5).complete(HELLO)
        elapsed = time.monotonic() - start
    assert reply == "recovered"
    assert app.state.calls == 5
    assert elapsed >= 1.0, "Retry-After: 1 must be honoured, not replaced by the short backoff"


def test_client_recovers_from_a_timeout():
    app = fault_app(["slow", "ok"])
    with running(app) as url:
        assert fast_client(url, timeout=0.2).complete(HELLO) == "recovered"
    assert app.state.calls == 2


def test_persistent_server_errors_raise_llm_error_naming_url_status_tries_and_fix():
    app = fault_app(["500"])
    with running(app) as url, pytest.raises(LLMError) as caught:
        fast_client(url, tries=3).complete(HELLO)
    message = str(caught.value)
    assert f"{url}/v1/chat/completions" in message
    assert "HTTP 500" in message and "after 3 tries" in message and "Fix:" in message
    assert caught.value.status == 500 and caught.value.tries == 3
    assert app.state.calls == 3


def test_persistent_timeouts_raise_llm_error_that_suggests_a_longer_timeout():
    app = fault_app(["slow"], slow_seconds=0.5)
    with (running(app) as url,
          pytest.raises(LLMError, match=r"after 2 tries: timed out after 0.2s.*raise timeout")):
        fast_client(url, tries=2, timeout=0.2).complete(HELLO)
    assert app.state.calls == 2


def test_persistent_malformed_bodies_raise_llm_error_pointing_at_the_base_url():
    app = fault_app(["malformed"])
    with (running(app) as url,
          pytest.raises(LLMError, match="not a chat completion.*Fix: the endpoint does not speak OpenAI")):
        fast_client(url, tries=2).complete(HELLO)


def test_client_errors_other_than_429_are_not_retried():
    app = fault_app(["400", "ok"])
    with running(app) as url, pytest.raises(LLMError, match="HTTP 400.*bad role") as caught:
        fast_client(url).complete(HELLO)
    assert caught.value.tries == 1 and app.state.calls == 1


def test_a_client_error_after_a_retried_fault_counts_every_try():
    app = fault_app(["500", "400", "ok"])
    with running(app) as url, pytest.raises(LLMError, match="after 2 tries: HTTP 400") as caught:
        fast_client(url).complete(HELLO)
    assert caught.value.tries == 2 and app.state.calls == 2


def test_a_rejected_key_names_the_api_key_variable():
    with running(fault_app(["401"])) as url, pytest.raises(LLMError, match="TRANSFERLAB_LLM_API_KEY"):
        fast_client(url).complete(HELLO)


def test_nothing_listening_raises_llm_error_saying_how_to_start_a_server():
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LLMError, match="after 2 tries: connection failed.*transferlab serve"):
        ChatClient(f"http://127.0.0.1:{port}/v1", "m", SECRET, tries=2, backoff=0.01).complete(HELLO)


def test_complete_many_returns_the_error_in_place_of_a_failed_request():
    app = fault_app(["ok", "400"])
    with running(app) as url:
        replies = fast_client(url).complete_many([HELLO, HELLO], concurrency=1, progress=False)
    assert replies[0] == "recovered"
    assert isinstance(replies[1], LLMError)


def test_api_key_is_sent_but_never_shown_in_repr_logs_errors_or_output(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    app = fault_app(["500", "echo"])
    with running(app) as url:
        client = fast_client(url, tries=2)
        with pytest.raises(LLMError) as caught:
            client.complete(HELLO)
        results = client.complete_many([HELLO], progress=True)
    assert app.state.auth[0] == f"Bearer {SECRET}", "the key must reach the server"
    assert "bad key in" in str(caught.value), "the server's echo is in the message, with the key blanked"
    shown = [repr(client), str(caught.value), caught.value.cause, str(results[0]), caplog.text,
             *capfd.readouterr()]
    assert "retrying" in caplog.text, "retries are logged, so this test looks at real log lines"
    for text in shown:
        assert SECRET not in text


def test_from_env_reads_the_three_variables_with_the_openai_key_as_fallback():
    client = ChatClient.from_env({"TRANSFERLAB_LLM_BASE_URL": "http://h:1/v1/", "TRANSFERLAB_LLM_MODEL": "gpt",
                                  "OPENAI_API_KEY": SECRET})
    assert client.url == "http://h:1/v1/chat/completions"
    assert client.model == "gpt"
    assert SECRET not in repr(client)


@pytest.mark.parametrize("missing", ["TRANSFERLAB_LLM_BASE_URL", "TRANSFERLAB_LLM_MODEL", "TRANSFERLAB_LLM_API_KEY"])
def test_from_env_names_the_missing_variable(missing):
    env = {"TRANSFERLAB_LLM_BASE_URL": "http://h:1/v1", "TRANSFERLAB_LLM_MODEL": "gpt",
           "TRANSFERLAB_LLM_API_KEY": SECRET}
    del env[missing]
    with pytest.raises(LLMConfigError, match=missing):
        ChatClient.from_env(env)
