"""`transferlab serve`: the OpenAI chat-completions protocol over a real uvicorn server on loopback."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from transferlab.llm import ChatClient
from transferlab.llm.serve import create_app, running

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def organism_backend(micro_organism):
    import torch

    from transferlab.backends import HFBackend, load_pretrained

    torch.set_num_threads(1)
    model, tokenizer = load_pretrained(str(micro_organism))
    return HFBackend(model, tokenizer, bf16=False)


@pytest.fixture(scope="module")
def organism_url(organism_backend):
    with running(create_app(organism_backend, "micro")) as url:
        yield url


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=30)


def test_completion_has_the_openai_shape(organism_url):
    response = post(organism_url, {"model": "micro", "messages": HELLO, "max_tokens": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "micro"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_greedy_completion_is_what_the_backend_samples(organism_url, organism_backend):
    messages = [{"role": "user", "content": "What colour is alpha?"}]
    expected = organism_backend.sample([messages], max_tokens=6, temperature=0.0)[0]
    assert ChatClient(organism_url + "/v1", "micro", "local").complete(messages, max_tokens=6) == expected


def test_models_lists_the_served_model(organism_url):
    body = httpx.get(organism_url + "/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["micro"]


def test_max_tokens_past_the_context_is_capped_not_an_error(organism_url):
    assert post(organism_url, {"model": "micro", "messages": HELLO, "max_tokens": 100_000}).status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"model": "micro", "messages": []}, "messages"),
    ({"model": "micro", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": "micro", "messages": HELLO, "temperature": -1}, "temperature"),
    ({"model": "micro", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"messages": HELLO}, "model"),
])
def test_invalid_requests_get_400_with_an_openai_error_body(organism_url, body, param):
    response = post(organism_url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param.split(".")[0] in error["message"]


def test_a_body_that_is_not_json_gets_400(organism_url):
    response = httpx.post(organism_url + "/v1/chat/completions", content=b"{oops",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_an_unknown_model_is_404_model_not_found(organism_url):
    response = post(organism_url, {"model": "gpt-9", "messages": HELLO})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and "micro" in error["message"]


def test_streaming_is_refused_with_a_clear_message(organism_url):
    response = post(organism_url, {"model": "micro", "messages": HELLO, "stream": True})
    assert response.status_code == 400 and "stream" in response.json()["error"]["message"]


class SlowBackend:
    """Records how many `sample` calls overlap, to show the server lets one through at a time."""

    def __init__(self):
        self.active = 0
        self.most_active = 0
        self.guard = threading.Lock()

    def sample(self, prompts, max_tokens, temperature=0.0):
        with self.guard:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(0.05)
        with self.guard:
            self.active -= 1
        return ["ok"] * len(prompts)


def test_concurrent_requests_reach_the_model_one_at_a_time():
    backend = SlowBackend()
    with running(create_app(backend, "slow")) as url:
        replies = ChatClient(url + "/v1", "slow", "local").complete_many([HELLO] * 6, concurrency=6, progress=False)
    assert replies == ["ok"] * 6
    assert backend.most_active == 1


class BrokenBackend:
    def sample(self, prompts, max_tokens, temperature=0.0):
        raise RuntimeError("CUDA out of memory")


def test_a_failing_backend_gives_500_with_the_cause():
    with running(create_app(BrokenBackend(), "broken")) as url:
        response = post(url, {"model": "broken", "messages": HELLO})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "CUDA out of memory" in response.json()["error"]["message"]


def test_cli_has_a_serve_subcommand():
    from transferlab.cli import cmd_serve, parser

    args = parser().parse_args(["serve", "organism", "--port", "9001", "--threads", "2"])
    assert args.func is cmd_serve
    assert (args.model, args.host, args.port, args.threads) == ("organism", "127.0.0.1", 9001, 2)
