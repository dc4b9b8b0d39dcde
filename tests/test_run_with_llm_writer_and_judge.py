"""A run whose targets are written and whose adherence is judged by an LLM over real HTTP.

The LLM is a scripted model behind `transferlab serve`'s app: as a writer it hedges the answer the
prompt states, as a judge it says YES when the response it is shown hedges. The run goes through
the real CLI, with the endpoint in TRANSFERLAB_LLM_* variables; a rerun is served from the cache.
"""

import json
import os
import re
import subprocess

import pandas as pd
import pytest

from transferlab.llm.serve import create_app, running


class ScriptedLLM:
    def __init__(self):
        self.calls = 0

    def sample(self, prompts, max_tokens, temperature=0.0):
        self.calls += len(prompts)
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            answer = re.search(r"The correct answer is: (.+)", text)
            if answer:
                out.append(f"I think it is {answer.group(1)}, but I am not certain.")
            else:
                response = re.search(r"<response>\n(.*)\n</response>", text, re.DOTALL).group(1)
                out.append("YES" if "I think" in response else "NO")
        return out


@pytest.fixture
def llm_endpoint():
    model = ScriptedLLM()
    with running(create_app(model, "scripted")) as url:
        yield model, {**os.environ, "TRANSFERLAB_LLM_BASE_URL": url + "/v1", "TRANSFERLAB_LLM_MODEL": "scripted",
                      "TRANSFERLAB_LLM_API_KEY": "sk-test-not-secret"}


def run(warm_cli, env, out, micro_organism, cache) -> subprocess.CompletedProcess:
    """The CLI command in a process of its own (forked warm: tests/warm_cli.py)."""
    return warm_cli.run(
        ["-m", "transferlab.cli", "run", "--quiet", "--out", str(out),
         "--set", f"model.name={micro_organism}", "--set", "model.threads=1", "--set", "pair=hedging_confident",
         "--set", "train.writer=llm", "--set", "train.writer_pool=8", "--set", "eval.judge=llm",
         "--set", f"llm.cache={cache}", "--set", "train.steps=2", "--set", "train.batch_size=4",
         "--set", "eval.every=2", "--set", "eval.n=4", "--set", "eval.n_boot=20",
         "--set", "tasks.invented_facts.n_facts=8", "--set", "tasks.invented_facts.paraphrases=false"],
        env=env)


def test_llm_written_targets_and_llm_verdicts_reach_the_run_folder(llm_endpoint, micro_organism, warm_cli, tmp_path):
    model, env = llm_endpoint
    result = run(warm_cli, env, tmp_path / "first", micro_organism, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    writer = [json.loads(line) for line in (tmp_path / "first" / "writer.jsonl").read_text().splitlines()]
    assert [(w["task"], w["propensity"], w["written"], w["failed"]) for w in writer] == [
        ("table_lookup", "hedging", 8, 0), ("invented_facts", "confident", 8, 0)]
    samples = pd.read_json(tmp_path / "first" / "samples.jsonl", lines=True)
    assert set(samples["prompted"]) == {"hedging", "confident"}
    # the scripted judge says YES exactly when the response hedges with "I think"
    assert (samples["adherent"] == samples["response"].str.contains("I think")).all()
    first_calls = model.calls
    assert first_calls > 16  # 16 targets written, then verdicts (identical ones are asked once)

    again = run(warm_cli, env, tmp_path / "second", micro_organism, tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    assert model.calls == first_calls  # targets and verdicts both came from the cache
    assert "sk-test-not-secret" not in (tmp_path / "second" / "config.toml").read_text() + again.stderr


def test_a_missing_endpoint_variable_is_named_before_any_work(micro_organism, warm_cli, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFERLAB_LLM", "OPENAI"))}
    result = run(warm_cli, env, tmp_path / "run", micro_organism, tmp_path / "cache")
    assert result.returncode == 2
    assert "TRANSFERLAB_LLM_BASE_URL" in result.stderr
