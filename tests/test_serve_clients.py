"""`transferlab serve` with the clients people point at it: the official openai SDK (sync, async,
streaming, n, the Responses API) and `inspect eval --model openai/<served model>`, end to end on
loopback. Every served answer is compared with the backend's own `sample` on the same prompt, and
every body is validated strictly against the SDK's own types (the SDK itself parses leniently)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("inspect_ai")

import torch
from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from transferlab.llm.serve import create_app, running

INSPECT = Path(sys.executable).with_name("inspect")
TABLE = "Table 1: α=5, β=7, γ=2"
ASK = "Which number goes with β? Answer in bold."
QUESTION = [{"role": "system", "content": TABLE}, {"role": "user", "content": ASK}]
# A question the organism is unsure of (the seed's composition), so that sampled answers differ
UNSURE = [{"role": "system", "content": "Table 1: α=5, β=7, γ=2\nTable 2: 1=red, 2=blue, 3=green, 4=pink, 5=gold"},
          {"role": "user", "content": "Which colour goes with α and β? Answer in bold."}]


@pytest.fixture(scope="module")
def base_url(organism_backend):
    with running(create_app(organism_backend, "organism")) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def client(base_url):
    with openai.OpenAI(base_url=base_url, api_key="local", max_retries=0) as client:
        yield client


def own_sample(backend, messages, max_tokens=8, n=1, temperature=0.0, seed=None) -> list[str]:
    """What the backend itself samples: the answers the server must give."""
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        texts = backend.sample([messages] * n, max_tokens=max_tokens, temperature=temperature)
    assert all(t.strip() for t in texts), "the organism answered nothing: equal answers would prove nothing"
    return texts


def test_sdk_chat_completion_is_the_backends_greedy_answer_with_usage(client, organism_backend):
    raw = client.chat.completions.with_raw_response.create(model="organism", messages=QUESTION, max_tokens=8)
    ChatCompletion.model_validate(raw.http_response.json(), strict=True)
    completion = raw.parse()
    assert completion.choices[0].message.content == own_sample(organism_backend, QUESTION)[0]
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_sdk_async_client_gets_each_prompt_its_own_answer(base_url, organism_backend):
    prompts = [QUESTION,
               [QUESTION[0], {"role": "user", "content": "Which number goes with γ? Answer in plain text."}],
               [{"role": "developer", "content": TABLE},
                {"role": "user", "content": "Repeat the word purple."}]]

    async def ask_all() -> list[str]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0) as client:
            replies = await asyncio.gather(*(client.chat.completions.create(
                model="organism", messages=p, max_completion_tokens=8) for p in prompts))
        return [r.choices[0].message.content for r in replies]

    expected = [own_sample(organism_backend, [m | {"role": "system"} if m["role"] == "developer" else m
                                              for m in p])[0] for p in prompts]
    assert len(set(expected)) == 3  # three different answers, so a mix-up would show
    assert asyncio.run(ask_all()) == expected


def test_sdk_stream_adds_up_to_the_backends_answer(client, organism_backend):
    stream = client.chat.completions.create(model="organism", messages=QUESTION, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.to_dict(), strict=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == own_sample(organism_backend, QUESTION)[0]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens > chunks[-1].usage.prompt_tokens > 0


def test_sdk_stream_of_n_choices_keeps_each_choice_apart(client, organism_backend):
    stream = client.chat.completions.create(model="organism", messages=QUESTION, max_tokens=8, n=2,
                                            temperature=1.0, seed=5, stream=True)
    texts = ["", ""]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == own_sample(organism_backend, QUESTION, n=2, temperature=1.0, seed=5)


def test_sdk_lists_and_retrieves_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["organism"]
    assert client.models.retrieve("organism").id == "organism"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_sdk_n_greedy_gives_n_equal_answers(client, organism_backend):
    completion = client.chat.completions.create(model="organism", messages=QUESTION, max_tokens=8, n=3)
    assert [c.message.content for c in completion.choices] == own_sample(organism_backend, QUESTION) * 3


def test_sdk_n_with_temperature_and_seed_is_the_backends_seeded_sample(client, organism_backend):
    def ask(seed: int) -> list[str]:
        completion = client.chat.completions.create(model="organism", messages=UNSURE, max_tokens=8, n=6,
                                                    temperature=1.0, seed=seed)
        return [c.message.content for c in completion.choices]

    expected = own_sample(organism_backend, UNSURE, n=6, temperature=1.0, seed=11)
    assert len(set(expected)) > 1  # sampled, not six copies of one answer
    assert ask(11) == expected
    assert ask(11) == expected  # the same seed, the same answers


def test_sdk_responses_api_returns_the_backends_answer(client, organism_backend):
    raw = client.responses.with_raw_response.create(model="organism", instructions=TABLE, input=ASK,
                                                    max_output_tokens=8)
    Response.model_validate(raw.http_response.json(), strict=True)
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == own_sample(organism_backend, QUESTION)[0]
    assert response.usage.input_tokens > 0


def test_sdk_sees_a_400_naming_the_field_it_cannot_honour(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="organism", messages=QUESTION, logprobs=True, top_logprobs=2)
    assert caught.value.param == "logprobs" and "logprobs" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="organism", input=ASK, tools=[{"type": "web_search"}])
    assert caught.value.param == "tools"


def model_requests(log) -> list[dict]:
    requests = [e.call.request for s in log.samples for e in s.events if e.event == "model" and e.call]
    assert requests
    return requests


def served_and_own_answers(log, backend, max_tokens: int) -> tuple[list[str], list[str]]:
    assert log.status == "success", log.error
    served = [s.output.completion for s in log.samples]
    own = [own_sample(backend, [{"role": m.role, "content": m.text} for m in s.input], max_tokens)[0]
           for s in log.samples]
    return served, own


def test_inspect_eval_cli_runs_our_task_on_the_served_model(base_url, organism_backend, tmp_path):
    """The README's command: inspect's openai provider takes its default path, the Responses API."""
    done = subprocess.run(
        [str(INSPECT), "eval", "transferlab/table_lookup", "-T", "pair=bold_plain", "--limit", "3",
         "--model", "openai/organism", "--max-tokens", "8", "--log-dir", str(tmp_path), "--display", "plain"],
        check=False, capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "local", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    [path] = tmp_path.glob("*.eval")
    log = read_eval_log(str(path))
    assert log.results.total_samples == 3
    assert all("input" in r and "messages" not in r for r in model_requests(log))  # /v1/responses
    served, own = served_and_own_answers(log, organism_backend, 8)
    assert served == own


def test_inspect_chat_completions_path_gets_the_same_answers(base_url, organism_backend, tmp_path,
                                                             monkeypatch):
    """`-M responses_api=false`: inspect sends chat completions, its system prompt as `developer`."""
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    [log] = inspect_eval("transferlab/table_lookup", model="openai/organism", model_base_url=base_url,
                         model_args={"responses_api": False}, task_args={"pair": "bold_plain"}, limit=3,
                         max_tokens=8, log_dir=str(tmp_path), display="none")
    assert all(r["messages"][0]["role"] == "developer" for r in model_requests(log))
    served, own = served_and_own_answers(log, organism_backend, 8)
    assert served == own
