"""Our tasks as inspect_ai tasks: run for real through inspect's `eval` and its CLI, offline.

The model is inspect's `mockllm/model` with scripted outputs (a function of the prompt), so every
scorer's accuracy is known exactly in advance; one test runs our micro organism with `hf/<folder>`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai import eval as inspect_eval
from inspect_ai import score as inspect_score
from inspect_ai.log import read_eval_log
from inspect_ai.model import ModelOutput, ModelUsage, get_model

from transferlab.inspect_tasks import INSPECT_TASKS, adherent, correct, transferlab_dataset, transferlab_task
from transferlab.llm.serve import create_app, running
from transferlab.tasks import TASKS

INSPECT = Path(sys.executable).with_name("inspect")
FAST_KNOBS = {"chess": {"sample_size": 40}}  # 40 generated puzzles, 8 held out for eval, instead of 500


def key(messages) -> tuple:
    return tuple((m.role, m.text) for m in messages)


def wrong_answer(sample) -> str:
    """A rival candidate where the task lists them (a plausible wrong answer), else a non-answer."""
    rivals = [c for c in sample.metadata["example"]["meta"].get("candidates", ()) if c != sample.target]
    return rivals[0] if rivals else "zzz"


def scripted(dataset, reply) -> object:
    """mockllm answering each sample's prompt with `reply(index, sample)`."""
    replies = {key(s.input): reply(i, s) for i, s in enumerate(dataset)}
    assert len(replies) == len(dataset), "two samples share a prompt; the script could not tell them apart"

    def output(messages, tools, tool_choice, config):
        out = ModelOutput.from_content("mockllm/model", replies[key(messages)])
        # usage given, so mockllm does not count tokens with tiktoken (which downloads its encoding)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return out

    return get_model("mockllm/model", custom_outputs=output)


def accuracies(log) -> dict[str, dict[str, float]]:
    assert log.status == "success", log.error
    return {s.name: {m: v.value for m, v in s.metrics.items()} for s in log.results.scores}


def run(task, model, tmp_path, **task_args):
    [log] = inspect_eval(task, model=model, task_args=task_args, log_dir=str(tmp_path), display="none")
    return log


def test_every_transferlab_task_is_registered_with_inspect():
    assert set(INSPECT_TASKS) == set(TASKS)


@pytest.mark.parametrize("name", sorted(INSPECT_TASKS))
def test_scorers_grade_and_judge_each_task_exactly(name, tmp_path):
    # per four samples: right in bold, right in bold, wrong in bold, wrong in plain text
    knobs = FAST_KNOBS.get(name, {})
    dataset = transferlab_dataset(name, ["bold"], n=8, knobs=knobs)
    styles = ["**{}**", "**{}**", "**{}**", "{}"]

    def reply(i, sample):
        answer = sample.target if i % 4 < 2 else wrong_answer(sample)
        return styles[i % 4].format(answer)

    log = run(f"transferlab/{name}", scripted(dataset, reply), tmp_path, propensity="bold", n=8, **knobs)
    scores = accuracies(log)
    assert log.results.total_samples == 8
    assert scores["correct"]["accuracy"] == 0.5
    assert scores["adherent"]["accuracy"] == 0.75
    assert set(scores["correct"]) == {"accuracy", "stderr"}


def test_a_pair_shows_the_same_examples_under_both_prompts_and_reports_each(tmp_path):
    dataset = transferlab_dataset("table_lookup", ["bold", "plain"], n=4)
    log = run("transferlab/table_lookup", scripted(dataset, lambda i, s: f"**{s.target}**"), tmp_path,
              pair="bold_plain", n=4)
    scores = accuracies(log)
    assert scores["correct"] == {"accuracy": 1.0, "stderr": 0.0, "fresh/bold": 1.0, "fresh/plain": 1.0}
    assert scores["adherent"]["accuracy"] == 0.5
    assert (scores["adherent"]["fresh/bold"], scores["adherent"]["fresh/plain"]) == (1.0, 0.0)
    by_prompt = {p: [s.metadata["example"]["id"] for s in dataset if s.metadata["propensity"] == p]
                 for p in ("bold", "plain")}
    assert by_prompt["bold"] == by_prompt["plain"]
    assert all(s.input[-1].text.endswith("Answer in plain text.") for s in dataset if s.metadata["propensity"] == "plain")


def test_eval_set_all_covers_every_set_and_knobs_reach_the_task(tmp_path):
    dataset = transferlab_dataset("invented_facts", ["plain"], eval_set="all", n=3, knobs={"mode": "choice"})
    assert [s.metadata["eval_set"] for s in dataset] == ["trained"] * 3 + ["paraphrase"] * 3
    assert all("Options:" in s.input[-1].text for s in dataset)
    log = run("transferlab/invented_facts", scripted(dataset, lambda i, s: s.target if i < 3 else "zzz"), tmp_path,
              propensity="plain", eval_set="all", n=3, mode="choice")
    scores = accuracies(log)
    assert (scores["correct"]["trained/plain"], scores["correct"]["paraphrase/plain"]) == (1.0, 0.0)
    assert scores["adherent"]["trained/plain"] == 1.0


@pytest.mark.parametrize("args, message", [
    ({}, "name one propensity"),
    ({"propensity": "bold", "pair": "bold_plain"}, "name one propensity"),
    ({"propensity": "italic"}, "unknown propensity 'italic'"),
    ({"pair": "bold_italic"}, "unknown pair"),
    ({"propensity": "bold", "eval_set": "paraphrase"}, "no eval set 'paraphrase'; allowed: fresh, all"),
    ({"propensity": "bold", "n_colors": 8}, "unknown parameter(s) n_colors"),
    ({"propensity": "bold", "judge": "oracle"}, "unknown judge 'oracle'"),
])
def test_bad_parameters_say_what_is_allowed(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        transferlab_task("table_lookup", **args)


def test_the_llm_judge_option_judges_over_http(tmp_path, monkeypatch):
    class Judge:  # YES when the judged response is bold
        def sample(self, prompts, max_tokens, temperature=0.0):
            return ["YES" if "<response>\n**" in p[-1]["content"] else "NO" for p in prompts]

    dataset = transferlab_dataset("table_lookup", ["bold"], n=4)
    with running(create_app(Judge(), "judge")) as url:
        monkeypatch.setenv("TRANSFERLAB_LLM_BASE_URL", url + "/v1")
        monkeypatch.setenv("TRANSFERLAB_LLM_MODEL", "judge")
        monkeypatch.setenv("TRANSFERLAB_LLM_API_KEY", "sk-test")
        model = scripted(dataset, lambda i, s: f"**{s.target}**" if i < 3 else s.target)
        log = run("transferlab/table_lookup", model, tmp_path / "logs", propensity="bold", n=4, judge="llm",
                  judge_cache=str(tmp_path / "cache"))
    assert accuracies(log)["adherent"]["accuracy"] == 0.75
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4


def test_a_log_read_back_from_disk_can_be_rescored_by_our_scorers(tmp_path):
    dataset = transferlab_dataset("realtime_qa", ["hedging"], n=4)
    model = scripted(dataset, lambda i, s: f"I think it is {s.target}, but I am not certain." if i < 2 else s.target)
    run("transferlab/realtime_qa", model, tmp_path, propensity="hedging", n=4)
    [path] = tmp_path.glob("*.eval")
    log = read_eval_log(str(path))  # metadata went through JSON (tuples are lists now)
    rescored = inspect_score(log, [correct("realtime_qa"), adherent()], action="overwrite", display="none")
    assert accuracies(rescored) == {"correct": {"accuracy": 1.0, "stderr": 0.0},
                                    "adherent": {"accuracy": 0.5, "stderr": pytest.approx(0.5 / 3 ** 0.5)}}


# inspect's mockllm, left to its default output, counts tokens with tiktoken, which downloads its
# encoding on first use: offline, the CLI runs with that count replaced (nothing else is touched).
OFFLINE_CLI = """
import sys
from inspect_ai.model._providers.mockllm import MockLLM
async def count_text_tokens(self, text):
    return len(text) // 4
MockLLM.count_text_tokens = count_text_tokens
from inspect_ai._cli.main import main
sys.argv[0] = "inspect"
main()
"""


def test_inspect_cli_finds_our_tasks_through_the_entry_point(warm_cli, tmp_path):
    done = warm_cli.run(  # `python -c OFFLINE_CLI`, forked from the warm CLI server (tests/warm_cli.py)
        ["-c", OFFLINE_CLI, "eval", "transferlab/table_lookup", "-T", "propensity=bold", "-T", "n=4",
         "--model", "mockllm/model", "--log-dir", str(tmp_path), "--display", "plain"], timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [path] = tmp_path.glob("*.eval")
    log = read_eval_log(str(path))
    assert log.eval.task == "transferlab/table_lookup"
    assert log.eval.task_args["propensity"] == "bold"
    scores = accuracies(log)  # the default output "Default output from mockllm/model" is neither right nor bold
    assert (scores["correct"]["accuracy"], scores["adherent"]["accuracy"]) == (0.0, 0.0)


def test_inspect_hf_provider_runs_our_organism_folder(micro_organism, warm_cli, tmp_path):
    pytest.importorskip("accelerate")  # inspect's hf provider loads with a device_map, which needs it
    done = warm_cli.run(  # the `inspect` script's code, forked from the warm CLI server (tests/warm_cli.py)
        ["-c", INSPECT.read_text(), "eval", "transferlab/table_lookup", "-T", "pair=bold_plain", "-T", "n=2",
         "--model", f"hf/{micro_organism}", "-M", "do_sample=false", "--max-tokens", "8",
         "--log-dir", str(tmp_path / "logs"), "--display", "plain"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [path] = (tmp_path / "logs").glob("*.eval")
    log = read_eval_log(str(path))
    assert log.results.total_samples == 4
    assert {"correct", "adherent"} <= set(accuracies(log))
    assert all(s.output.completion is not None for s in log.samples)
