"""The LLM writer and judge over real HTTP: the micro organism, and scripted models served by `create_app`."""

from __future__ import annotations

import re

import pytest

from transferlab.core import Example
from transferlab.judges.llm import LLMJudge, load_template, parse_verdict
from transferlab.llm import ChatClient, LLMError
from transferlab.llm.serve import create_app, running
from transferlab.propensities import get_propensity
from transferlab.writers.llm import LLMWriter, contains_answer

SECRET = "sk-test-DO-NOT-LEAK-77aa"
ANSWERS = ["red", "dark blue", "12"]
EXAMPLES = [Example(id=f"q{i}", messages=({"role": "system", "content": "Table: alpha=3, beta=9."},
                                          {"role": "user", "content": f"Which colour is question {i}?"}),
                    answer=answer) for i, answer in enumerate(ANSWERS)]


class CountingApp:
    """Wraps an ASGI app and counts chat-completion requests, so a test can see a run made none."""

    def __init__(self, app):
        self.app = app
        self.calls = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.calls += 1
        await self.app(scope, receive, send)


class ScriptedModel:
    """A backend whose reply is `reply(prompt_text, temperature)`; it remembers the temperatures it saw."""

    def __init__(self, reply):
        self.reply = reply
        self.temperatures = []

    def sample(self, prompts, max_tokens, temperature=0.0):
        self.temperatures.append(temperature)
        return [self.reply(p[-1]["content"], temperature) for p in prompts]


def stated_answer(prompt: str) -> str:
    return re.search(r"The correct answer is: (.+)", prompt).group(1)


def judged_response(prompt: str) -> str:
    return re.search(r"<response>\n(.*)\n</response>", prompt, re.DOTALL).group(1)


@pytest.fixture
def serve_scripted():
    """Serve a scripted model; yields (client, counting app, model)."""
    servers = []

    def start(reply):
        model = ScriptedModel(reply)
        app = CountingApp(create_app(model, "scripted"))
        servers.append(running(app))
        url = servers[-1].__enter__()
        return ChatClient(url + "/v1", "scripted", SECRET, tries=2, backoff=0.01), app, model

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def organism(micro_organism):
    """The micro organism behind a real server; its words are garbage, which is what these tests need."""
    import torch

    from transferlab.backends import HFBackend, load_pretrained

    torch.set_num_threads(1)
    model, tokenizer = load_pretrained(str(micro_organism))
    app = CountingApp(create_app(HFBackend(model, tokenizer, bf16=False), "micro"))
    with running(app) as url:
        yield ChatClient(url + "/v1", "micro", SECRET, tries=2, backoff=0.01), app


# --- the writer -------------------------------------------------------------------------------


@pytest.mark.parametrize("response, answer, found", [
    ("**red**", "red", True),
    ("The colour is RED.", "red", True),
    ("It is dark   blue, I think", "dark blue", True),
    ("It is reddish.", "red", False),
    ("The answer is 120.", "12", False),
    ("12 is the number", "12", True),
    ("blue", "red", False),
])
def test_an_answer_counts_only_as_a_whole_word_or_phrase(response, answer, found):
    assert contains_answer(response, answer) is found


def test_writer_rejects_outputs_without_the_answer_and_retries_warmer(serve_scripted, tmp_path):
    def reply(prompt, temperature):  # wrong at temperature 0, right on any warmer retry
        return "I am not sure." if temperature == 0 else f"The answer is **{stated_answer(prompt)}**."

    client, app, model = serve_scripted(reply)
    result = LLMWriter(client, tmp_path, max_retries=2, concurrency=2).write(EXAMPLES, "bold")
    assert result.targets == [f"The answer is **{a}**." for a in ANSWERS]
    assert (result.written, result.cached, result.rejected, result.failed) == (3, 0, 3, 0)
    assert app.calls == 6
    assert sorted(model.temperatures)[3:] == [0.8] * 3 and sorted(model.temperatures)[:3] == [0.0] * 3


def test_writer_gives_up_after_max_retries_and_caches_nothing(serve_scripted, tmp_path):
    client, app, _ = serve_scripted(lambda prompt, temperature: "no idea")
    result = LLMWriter(client, tmp_path, max_retries=2).write(EXAMPLES, "plain")
    assert result.targets == [None, None, None]
    assert (result.written, result.rejected, result.failed) == (0, 9, 3)
    assert app.calls == 9
    assert not list(tmp_path.rglob("*.json"))


def test_writer_second_run_reads_the_cache_and_makes_no_calls(serve_scripted, tmp_path):
    client, app, _ = serve_scripted(lambda prompt, temperature: f"**{stated_answer(prompt)}**")
    first = LLMWriter(client, tmp_path).write(EXAMPLES, "bold")
    calls = app.calls
    second = LLMWriter(client, tmp_path).write(EXAMPLES, "bold")
    assert app.calls == calls == 3
    assert second.targets == first.targets
    assert (second.cached, second.written) == (3, 0)


def test_writer_cache_is_keyed_by_style(serve_scripted, tmp_path):
    client, app, _ = serve_scripted(lambda prompt, temperature: stated_answer(prompt))
    LLMWriter(client, tmp_path).write(EXAMPLES, "bold")
    LLMWriter(client, tmp_path).write(EXAMPLES, "plain")
    assert app.calls == 6


def test_cache_files_hold_the_key_parts_and_never_the_api_key(serve_scripted, tmp_path):
    import json

    client, _, _ = serve_scripted(lambda prompt, temperature: f"**{stated_answer(prompt)}**")
    LLMWriter(client, tmp_path).write(EXAMPLES[:1], "bold")
    (entry,) = tmp_path.rglob("*.json")
    stored = json.loads(entry.read_text())
    assert stored["value"] == "**red**"
    assert stored["key"]["model"] == "scripted" and stored["key"]["purpose"] == "writer"
    assert stored["key"]["style"] == get_propensity("bold").style
    assert "Which colour is question 0?" in stored["key"]["messages"][-1]["content"]
    assert SECRET not in entry.read_text()


class Killed(BaseException):
    """Stands in for Ctrl-C or a SIGTERM arriving partway through a run."""


def test_a_run_killed_midway_keeps_every_finished_target(serve_scripted, tmp_path):
    client, app, _ = serve_scripted(lambda prompt, temperature: f"**{stated_answer(prompt)}**")

    class Dying(ChatClient):
        calls = 0

        def complete(self, *args, **kwargs):
            Dying.calls += 1
            if Dying.calls == 3:
                raise Killed
            return super().complete(*args, **kwargs)

    dying = Dying(client.base_url, client.model, SECRET)
    with pytest.raises(Killed):
        LLMWriter(dying, tmp_path, concurrency=1).write(EXAMPLES, "bold")
    rerun = LLMWriter(client, tmp_path).write(EXAMPLES, "bold")
    assert (rerun.cached, rerun.written) == (2, 1)
    assert app.calls == 3, "two calls before the kill, and only the unfinished one after it"


def test_writer_against_the_micro_organism_rejects_its_garbage(organism, tmp_path):
    client, app = organism
    calls = app.calls
    # greedy retries: sampled garbage contains an answer word now and then (" 11=red." once), which
    # the writer rightly keeps; greedy garbage is the same every run
    result = LLMWriter(client, tmp_path, max_retries=1, max_tokens=8, retry_temperature=0.0,
                       progress=False).write(EXAMPLES[:2], "bold")
    assert result.targets == [None, None]
    assert (result.written, result.rejected, result.failed, result.errors) == (0, 4, 2, [])
    assert app.calls - calls == 4


def test_writer_reports_requests_that_fail_outright(tmp_path):
    class Broken:
        def sample(self, prompts, max_tokens, temperature=0.0):
            raise RuntimeError("model fell over")

    app = CountingApp(create_app(Broken(), "broken"))
    with running(app) as url:
        client = ChatClient(url + "/v1", "broken", SECRET, tries=2, backoff=0.01)
        result = LLMWriter(client, tmp_path, max_retries=3, progress=False).write(EXAMPLES[:1], "bold")
    assert result.targets == [None] and result.failed == 1
    assert "model fell over" in result.errors[0]
    assert app.calls == 2, "the client's retries only: a broken server is not asked again per round"


# --- the judge --------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, verdict", [
    ("YES", True), ("no.", False), ("Verdict: Yes, it does.", True), ("**NO**", False),
    ("It is not bold. NO", False), ("Nope", None), ("yesterday", None), ("", None),
])
def test_the_verdict_is_the_first_yes_or_no_word(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_judge_prompt_holds_instruction_style_question_and_response(tmp_path):
    judge = LLMJudge(ChatClient("http://127.0.0.1:9/v1", "m", SECRET), tmp_path)
    bold = get_propensity("bold")
    text = judge.prompt(bold, "**red**", question="Which colour?")[0]["content"]
    for part in (bold.instruction, bold.style, "Which colour?", "**red**", "YES or NO"):
        assert part in text


def test_unknown_prompt_version_lists_the_known_ones():
    assert "{response}" in load_template("v1")
    with pytest.raises(ValueError, match="v1"):
        load_template("v999")


def test_judge_verdicts_are_cached_and_a_second_run_makes_no_calls(serve_scripted, tmp_path):
    client, app, _ = serve_scripted(lambda prompt, temperature: "YES" if "**" in judged_response(prompt) else "NO")
    responses = ["**red**", "red", "the answer is **12**"]
    assert LLMJudge(client, tmp_path).judge("bold", responses, questions=["q1", "q2", "q3"]) == [True, False, True]
    assert app.calls == 3
    judge = LLMJudge(client, tmp_path)
    assert judge.judge("bold", responses, questions=["q1", "q2", "q3"]) == [True, False, True]
    assert app.calls == 3
    assert judge.last_report.cached == 3


def test_judge_cache_key_holds_model_prompt_version_and_propensity(serve_scripted, tmp_path):
    import json

    client, _, _ = serve_scripted(lambda prompt, temperature: "YES")
    LLMJudge(client, tmp_path).judge(get_propensity("plain"), ["red"])
    (entry,) = tmp_path.rglob("*.json")
    stored = json.loads(entry.read_text())
    assert stored["value"] == {"verdict": True, "reply": "YES"}
    assert (stored["key"]["model"], stored["key"]["prompt_version"], stored["key"]["propensity"]) == \
        ("scripted", "v1", "plain")
    assert SECRET not in entry.read_text()


def test_an_unparsable_verdict_is_retried_warmer_then_counted_as_no(serve_scripted, tmp_path):
    client, app, model = serve_scripted(lambda prompt, temperature: "maybe?")
    judge = LLMJudge(client, tmp_path, max_retries=2)
    assert judge.judge("bold", ["**red**"]) == [False]
    assert app.calls == 3 and model.temperatures == [0.0, 0.7, 0.7]
    report = judge.last_report
    assert (report.judged, report.retried, report.unparsable) == (0, 2, 1)
    assert not list(tmp_path.rglob("*.json")), "a guessed NO is not cached; a rerun asks again"


def test_a_retried_verdict_that_parses_is_used(serve_scripted, tmp_path):
    client, _, _ = serve_scripted(lambda prompt, temperature: "hmm" if temperature == 0 else "Yes.")
    judge = LLMJudge(client, tmp_path)
    assert judge.judge("bold", ["**red**"]) == [True]
    assert (judge.last_report.judged, judge.last_report.retried, judge.last_report.unparsable) == (1, 1, 0)


def test_judge_raises_when_requests_fail_after_caching_the_rest(serve_scripted, tmp_path):
    def reply(prompt, temperature):
        if "boom" in judged_response(prompt):
            raise RuntimeError("judge model crashed")
        return "YES"

    client, _, _ = serve_scripted(reply)
    with pytest.raises(LLMError, match="1 of 2 judge requests failed.*judge model crashed"):
        LLMJudge(client, tmp_path).judge("bold", ["**red**", "boom"])
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_judge_against_the_micro_organism_counts_garbage_as_no(organism, tmp_path):
    client, app = organism
    calls = app.calls
    judge = LLMJudge(client, tmp_path, max_retries=1, max_tokens=4, progress=False)
    assert judge.judge("bold", ["**red**", "blue"], questions=["Which colour?", "Which colour?"]) == [False, False]
    assert judge.last_report.unparsable == 2
    assert app.calls - calls == 4


# --- remote failures: what is cached stays cached ------------------------------------------------


class Faulty:
    """Wraps an ASGI app; while `fault` is set, every chat request gets that fault instead of a reply:
    429 or 500 (Retry-After: 0), a 200 whose body is not JSON, or a reply slower than the client waits."""

    def __init__(self, app):
        self.app = app
        self.fault = None
        self.calls = 0

    async def __call__(self, scope, receive, send):
        import asyncio

        from starlette.responses import JSONResponse, Response

        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            return await self.app(scope, receive, send)
        self.calls += 1
        if self.fault in ("429", "500"):
            response = JSONResponse({"error": {"message": "try later"}}, status_code=int(self.fault),
                                    headers={"Retry-After": "0"})
        elif self.fault == "malformed":
            response = Response('{"choices": [', media_type="application/json")
        elif self.fault == "timeout":
            await asyncio.sleep(0.6)
            response = Response("too late", status_code=503)
        else:
            return await self.app(scope, receive, send)
        await response(scope, receive, send)


FAULTS = {"429": "HTTP 429", "500": "HTTP 500", "malformed": "not a chat completion", "timeout": "timed out"}


def cache_files(root) -> dict:
    return {path: path.read_bytes() for path in sorted(root.rglob("*.json"))}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failing_server_leaves_cached_targets_cached_and_a_rerun_asks_only_for_the_rest(tmp_path, fault):
    app = Faulty(create_app(ScriptedModel(lambda prompt, temperature: f"**{stated_answer(prompt)}**"), "scripted"))
    with running(app) as url:
        client = ChatClient(url + "/v1", "scripted", SECRET, tries=2, backoff=0.01, timeout=0.3)
        LLMWriter(client, tmp_path, progress=False).write(EXAMPLES[:2], "bold")
        before = cache_files(tmp_path)
        app.fault = fault
        result = LLMWriter(client, tmp_path, progress=False).write(EXAMPLES, "bold")
        assert result.targets == ["**red**", "**dark blue**", None]
        assert (result.cached, result.written, result.failed) == (2, 0, 1)
        assert FAULTS[fault] in result.errors[0] and "failed after 2 tries" in result.errors[0]
        assert cache_files(tmp_path) == before, "a failure neither drops nor rewrites a cached target"
        app.fault, calls = None, app.calls
        rerun = LLMWriter(client, tmp_path, progress=False).write(EXAMPLES, "bold")
    assert rerun.targets == ["**red**", "**dark blue**", "**12**"] and (rerun.cached, rerun.written) == (2, 1)
    assert app.calls - calls == 1


@pytest.mark.parametrize("fault", FAULTS)
def test_cached_verdicts_survive_a_failing_server_and_need_none(tmp_path, fault):
    app = Faulty(create_app(ScriptedModel(lambda prompt, temperature: "YES"), "scripted"))
    with running(app) as url:
        client = ChatClient(url + "/v1", "scripted", SECRET, tries=2, backoff=0.01, timeout=0.3)
        assert LLMJudge(client, tmp_path, progress=False).judge("bold", ["**red**", "**blue**"]) == [True, True]
        before = cache_files(tmp_path)
        app.fault, calls = fault, app.calls
        with pytest.raises(LLMError, match=f"1 of 3 judge requests failed.*{FAULTS[fault]}"):
            LLMJudge(client, tmp_path, progress=False).judge("bold", ["**red**", "**blue**", "green"])
        assert app.calls - calls == 2, "only the uncached verdict is asked for, with the client's retries"
        assert cache_files(tmp_path) == before
    judge = LLMJudge(client, tmp_path, progress=False)  # the server is gone now: cached verdicts need none
    assert judge.judge("bold", ["**red**", "**blue**"]) == [True, True] and judge.last_report.cached == 2
