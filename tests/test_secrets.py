"""API keys never reach a run folder, the LLM cache, a log, the report or the console.

Two real runs through the CLI, with the llm writer and judge, against an endpoint that echoes the
Authorization header back in every way a careless server could: in a 429, a 500 and a non-JSON body
while the writer starts, inside a writer's reply, and in the 500 that every judge request gets during
the first run (which therefore fails). The second run finds the writer's targets in the cache and
finishes; then the report is written. Every byte the runs left behind is searched for both keys,
with a search that is first shown to find a key planted on purpose.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import subprocess
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from starlette.responses import JSONResponse, Response
from test_run_with_llm_writer_and_judge import ScriptedLLM

from transferlab.llm import ChatClient
from transferlab.llm.serve import create_app, running

KEY = "sk-transferlab-" + secrets.token_hex(16)  # random per test session: found only if it leaked
FALLBACK_KEY = "sk-openai-" + secrets.token_hex(16)  # set too, though the TRANSFERLAB key wins
CLI = ("import logging, sys; logging.basicConfig(filename=sys.argv[1], level=logging.DEBUG, force=True); "
       "from transferlab.cli import main; sys.exit(main(sys.argv[2:]))")  # every library's log, to a file


def holding(secret: str, roots: list[Path]) -> list[Path]:
    """The files under `roots` (files or folders) whose bytes hold `secret`: as UTF-8 or UTF-16 text, or
    base64 at any of its three alignments."""
    raw = secret.encode()
    needles = [raw, secret.encode("utf-16-le")]
    needles += [base64.b64encode(b"\0" * pad + raw)[4 if pad else 0:-4] for pad in range(3)]
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return [p for p in files if any(needle in p.read_bytes() for needle in needles)]


class Echoing:
    """The scripted endpoint behind a server that echoes the Authorization header back."""

    def __init__(self, app):
        self.app = app
        self.judge_down = True
        self.calls: Counter = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        text = json.loads(body)["messages"][-1]["content"]
        kind = "writer" if "The correct answer is:" in text else "judge"
        self.calls[kind] += 1
        n, again = self.calls[kind], {"Retry-After": "0"}
        if kind == "writer" and n == 1:
            response = JSONResponse({"error": {"message": f"rate limited: {auth}"}}, 429, headers=again)
        elif kind == "writer" and n == 2 or kind == "judge" and self.judge_down:
            response = JSONResponse({"error": {"message": f"upstream failed for {auth}"}}, 500, headers=again)
        elif kind == "writer" and n == 3:
            response = Response(f"<html>proxy error for {auth}</html>", media_type="text/html")
        elif kind == "writer" and n == 4:
            answer = re.search(r"The correct answer is: (.+)", text).group(1)
            reply = f"I think it is {answer}, but I am not certain. (Sent with {auth}.)"
            response = JSONResponse({"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]})
        else:
            async def replay():
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send)
        await response(scope, receive, send)


@pytest.fixture(scope="module")
def leftovers(micro_organism, warm_cli, tmp_path_factory):
    """Run twice (the judge down, then up), write the report; everything the runs left, and the counts."""
    root = tmp_path_factory.mktemp("secrets")
    server = Echoing(create_app(ScriptedLLM(), "scripted"))
    with running(server) as url:
        env = {**os.environ, "TRANSFERLAB_LLM_BASE_URL": url + "/v1", "TRANSFERLAB_LLM_MODEL": "scripted",
               "TRANSFERLAB_LLM_API_KEY": KEY, "OPENAI_API_KEY": FALLBACK_KEY}

        def run(name: str) -> subprocess.CompletedProcess:
            result = warm_cli.run(  # a process of its own, forked warm (tests/warm_cli.py)
                ["-c", CLI, str(root / f"{name}.log"), "run", "--quiet", "--out", str(root / name),
                 "--set", f"model.name={micro_organism}", "--set", "model.threads=1",
                 "--set", "pair=hedging_confident", "--set", "train.writer=llm", "--set", "train.writer_pool=8",
                 "--set", "eval.judge=llm", "--set", f"llm.cache={root / 'cache'}", "--set", "train.steps=2",
                 "--set", "train.batch_size=4", "--set", "eval.every=2", "--set", "eval.n=4",
                 "--set", "eval.n_boot=20", "--set", "tasks.invented_facts.n_facts=8",
                 "--set", "tasks.invented_facts.paraphrases=false"], env=env)
            (root / f"{name}.stdout").write_text(result.stdout)
            (root / f"{name}.stderr").write_text(result.stderr)
            return result

        first = run("first")
        first_calls = Counter(server.calls)
        server.judge_down = False
        second = run("second")
    out, err = io.StringIO(), io.StringIO()
    from transferlab.cli import main

    with redirect_stdout(out), redirect_stderr(err):
        report_code = main(["report", str(root / "second")])
    (root / "report.stdout").write_text(out.getvalue() + err.getvalue())
    return {"root": root, "first": first, "second": second, "report_code": report_code,
            "first_calls": first_calls, "second_calls": server.calls - first_calls}


def test_a_run_whose_judge_keeps_failing_stops_with_one_clear_error_and_no_metrics(leftovers):
    first, root = leftovers["first"], leftovers["root"]
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert first.returncode == 2 and len(errors) == 1, first.stderr
    assert re.search(r"judge requests failed .* POST http://127\.0\.0\.1:\d+/v1/chat/completions failed after 5 "
                     r"tries: HTTP 500: .*<redacted>.*Fix: the server keeps failing", errors[0]), errors[0]
    assert "Traceback" not in first.stderr
    assert (root / "first" / "config.toml").exists() and not (root / "first" / "metrics.csv").exists()


def test_the_rerun_takes_every_target_from_the_cache_the_failed_run_filled(leftovers):
    second, root = leftovers["second"], leftovers["root"]
    assert second.returncode == 0, second.stderr
    assert leftovers["first_calls"]["writer"] >= 16 + 3 and leftovers["second_calls"]["writer"] == 0
    writer = [json.loads(line) for line in (root / "second" / "writer.jsonl").read_text().splitlines()]
    assert [(w["cached"], w["written"], w["failed"]) for w in writer] == [(8, 0, 0), (8, 0, 0)]


def test_no_api_key_reaches_a_run_folder_the_cache_a_log_the_report_or_the_console(leftovers):
    root = leftovers["root"]
    assert leftovers["report_code"] == 0 and (root / "second" / "report.html").exists()
    searched = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for needed in ("first/config.toml", "second/samples.jsonl", "second/writer.jsonl", "second/metrics.csv",
                   "second/report.html", "first.log", "second.log", "first.stderr", "second.stderr",
                   "report.stdout"):
        assert needed in searched, f"{needed} was not written, so a search of it would prove nothing"
    assert sum(p.startswith("cache/") for p in searched) >= 16
    # the server's echoes did arrive, and were blanked: in a cached target, and in the retry warnings
    assert any("<redacted>" in p.read_text() for p in (root / "cache").rglob("*.json"))
    assert "<redacted>" in (root / "first.log").read_text()
    assert holding(KEY, [root]) == [] and holding(FALLBACK_KEY, [root]) == []


def test_the_search_finds_a_key_wherever_a_file_holds_it(tmp_path):
    (tmp_path / "clean.txt").write_text("nothing to see")
    assert holding(KEY, [tmp_path]) == []
    planted = {
        tmp_path / "a" / "b" / "config.toml": f'api_key = "{KEY}"'.encode(),
        tmp_path / "weights.bin": b"\x00\x01" + KEY.encode() + b"\xff",
        tmp_path / "wide.txt": f"key={KEY}".encode("utf-16-le"),
        tmp_path / "page.html": b"data:text/plain;base64," + base64.b64encode(f"xy{KEY}".encode()),
    }
    for path, content in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    assert sorted(holding(KEY, [tmp_path])) == sorted(planted)
    assert holding(KEY, [tmp_path / "weights.bin"]) == [tmp_path / "weights.bin"]


def test_a_key_a_server_echoes_into_a_reply_is_blanked_before_anyone_sees_it():
    class Echo:
        def sample(self, prompts, max_tokens, temperature=0.0):
            return [f"my key is {KEY}, yours?"]

    with running(create_app(Echo(), "echo")) as url:
        reply = ChatClient(url + "/v1", "echo", KEY, tries=1).complete([{"role": "user", "content": "hi"}])
    assert reply == "my key is <redacted>, yours?"
