"""`transferlab serve`: the OpenAI chat-completions protocol over a real uvicorn server on loopback."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from transferlab.llm import ChatClient
from transferlab.llm.serve import create_app, running

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def organism_url(organism_backend):
    with running(create_app(organism_backend, "organism")) as url:
        yield url


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=30)


def test_completion_has_the_openai_shape(organism_url):
    response = post(organism_url, {"model": "organism", "messages": HELLO, "max_tokens": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "organism"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_greedy_completion_is_what_the_backend_samples(organism_url, organism_backend):
    messages = [{"role": "user", "content": "What colour is alpha?"}]
    expected = organism_backend.sample([messages], max_tokens=6, temperature=0.0)[0]
    assert ChatClient(organism_url + "/v1", "organism", "local").complete(messages, max_tokens=6) == expected


def test_models_lists_the_served_model(organism_url):
    body = httpx.get(organism_url + "/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["organism"]


def test_max_tokens_past_the_context_is_capped_not_an_error(organism_url):
    response = post(organism_url, {"model": "organism", "messages": HELLO, "max_tokens": 100_000})
    assert response.status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"model": "organism", "messages": []}, "messages"),
    ({"model": "organism", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": "organism", "messages": HELLO, "temperature": -1}, "temperature"),
    ({"model": "organism", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"messages": HELLO}, "model"),
    ({"model": "organism", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
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
    assert error["code"] == "model_not_found" and "organism" in error["message"]


TABLE = {"role": "system", "content": "Table 1: α=5, β=7, γ=2"}
QUESTION = [TABLE, {"role": "user", "content": "Which number goes with β? Answer in bold."}]


def greedy(backend, messages=QUESTION, max_tokens=8) -> str:
    text = backend.sample([messages], max_tokens=max_tokens, temperature=0.0)[0]
    assert text.strip(), "the organism answered nothing, so comparing answers would prove nothing"
    return text


def test_the_developer_role_is_read_as_system(organism_url, organism_backend):
    developer = [{"role": "developer", "content": TABLE["content"]}, QUESTION[1]]
    body = post(organism_url, {"model": "organism", "messages": developer, "max_tokens": 8}).json()
    assert body["choices"][0]["message"]["content"] == greedy(organism_backend)
    assert greedy(organism_backend) != greedy(organism_backend, QUESTION[1:])  # the table is read


def test_null_tools_and_text_parts_are_accepted(organism_url, organism_backend):
    parts = [TABLE, {"role": "user", "content": [{"type": "text", "text": QUESTION[1]["content"]}]}]
    body = post(organism_url, {"model": "organism", "messages": parts, "max_tokens": 8, "tools": None,
                               "tool_choice": None, "logprobs": False, "top_p": 1, "user": "me"}).json()
    assert body["choices"][0]["message"]["content"] == greedy(organism_backend)


def test_max_completion_tokens_limits_the_answer_as_max_tokens_does(organism_url, organism_backend):
    body = post(organism_url, {"model": "organism", "messages": QUESTION, "max_completion_tokens": 2}).json()
    assert body["choices"][0]["message"]["content"] == greedy(organism_backend, max_tokens=2)
    assert body["choices"][0]["finish_reason"] == "length"


def test_stop_cuts_the_answer_before_the_stop_sequence(organism_url, organism_backend):
    ask = "Which number goes with β? Think step by step before answering."
    reasoning = [TABLE, {"role": "user", "content": ask}]
    full = greedy(organism_backend, reasoning, max_tokens=24)
    assert "Answer:" in full, full
    body = post(organism_url, {"model": "organism", "messages": reasoning, "max_tokens": 24,
                               "stop": ["Answer:", "never said"]}).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == full[:full.index("Answer:")]
    assert choice["finish_reason"] == "stop"


def test_a_stream_is_server_sent_chunks_that_add_up_to_the_answer_and_end_with_done(organism_url,
                                                                                   organism_backend):
    body = {"model": "organism", "messages": QUESTION, "max_tokens": 8, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", organism_url + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == greedy(organism_backend)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_n_choices_under_greedy_decoding_are_equal(organism_url, organism_backend):
    body = post(organism_url, {"model": "organism", "messages": QUESTION, "max_tokens": 8, "n": 3}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in body["choices"]] == [greedy(organism_backend)] * 3


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"top_p": 0.5}, "top_p"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stop": [""]}, "stop"),
    ({"n": 0}, "n"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content.0"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
     "messages.0.tool_calls"),
    ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "1"}]}, "messages.0.role"),
])
def test_what_the_server_cannot_honour_gets_400_naming_the_field(organism_url, extra, param):
    response = post(organism_url, {"model": "organism", "messages": HELLO} | extra)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param.split(".")[0] in error["message"]


def responses(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/responses", json={"model": "organism"} | body, timeout=30)


def test_responses_turn_instructions_and_input_items_into_the_chat_the_backend_samples(organism_url,
                                                                                     organism_backend):
    items = [{"type": "message", "role": "developer",
              "content": [{"type": "input_text", "text": TABLE["content"]}]},
             {"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": QUESTION[1]["content"]}]}]
    as_items = responses(organism_url, {"input": items, "max_output_tokens": 8, "store": False,
                                        "include": ["reasoning.encrypted_content"]}).json()
    as_text = responses(organism_url, {"instructions": TABLE["content"], "input": QUESTION[1]["content"],
                                       "max_output_tokens": 8}).json()
    for body in (as_items, as_text):
        assert body["object"] == "response" and body["id"].startswith("resp_")
        [message] = body["output"]
        assert message["content"][0]["text"] == greedy(organism_backend)
        assert body["usage"]["input_tokens"] > 0


def test_responses_at_max_output_tokens_are_incomplete(organism_url):
    body = responses(organism_url, {"input": QUESTION[1]["content"], "max_output_tokens": 1}).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("body, param", [
    ({"input": "hi", "stream": True}, "stream"),
    ({"input": "hi", "reasoning": {"effort": "low", "summary": "auto"}}, "reasoning"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "hi", "text": {"format": {"type": "json_object"}}}, "text"),
    ({"input": "hi", "include": ["message.output_text.logprobs"]}, "include"),
    ({"input": [{"type": "function_call", "call_id": "1", "name": "f", "arguments": "{}"}]}, "input.0"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input.0.content.0"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
])
def test_responses_refuse_what_they_cannot_honour_naming_the_field(organism_url, body, param):
    response = responses(organism_url, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


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
