"""Our grader and our judges as inspect_ai scorers: `correct` (Task.grade) and `adherent` (a Judge).

Both read what they need from the sample's metadata (`example`, `propensity`), which
`transferlab.inspect_tasks.tasks` writes, so a log can be rescored later, e.g. by the LLM judge:

    inspect score LOG --scorer transferlab/adherent -S judge=llm --action append

(name the scorer: inspect records scorer names without their package, so a bare `inspect score LOG`
cannot find ours.)
"""

from __future__ import annotations

import functools
import json

import anyio
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState

from transferlab.core import Example
from transferlab.evaluate.extract import final_answer
from transferlab.judges import make_judge
from transferlab.propensities import get_propensity, prompt_with
from transferlab.tasks import Task, make_task


@functools.lru_cache(maxsize=32)
def _cached_task(name: str, knobs_json: str) -> Task:
    return make_task(name, **json.loads(knobs_json))


def cached_task(name: str, knobs: dict) -> Task:
    """One task object per (name, knobs), shared by the dataset and the `correct` scorer (building
    some tasks reads files or invents thousands of facts)."""
    return _cached_task(name, json.dumps(knobs, sort_keys=True, default=str))


def example_from(metadata: dict) -> Example:
    """The Example a sample was built from (see `tasks.sample_from`)."""
    ex = metadata["example"]
    return Example(id=ex["id"], messages=tuple(ex["messages"]), answer=ex["answer"], meta=ex["meta"])


@scorer(metrics=[accuracy(), stderr()])
def correct(task: str, knobs: dict | None = None):
    """Our task's own grader: the final answer, whatever its decoration, is the right one."""
    graded = cached_task(task, knobs or {})

    async def score(state: TaskState, target: Target) -> Score:
        response = state.output.completion
        ok = graded.grade(example_from(state.metadata), response)
        return Score(value=CORRECT if ok else INCORRECT, answer=final_answer(response),
                     explanation=f"expected {target.text!r}")

    return score


@scorer(metrics=[accuracy(), stderr()])
def adherent(judge: str = "heuristic", judge_cache: str = ".transferlab-cache/judge"):
    """Whether the response shows the prompted propensity, by our `heuristic` judge (offline) or the
    `llm` judge on the TRANSFERLAB_LLM_* endpoint (verdicts cached in `judge_cache`)."""
    verdicts = make_judge(judge, judge_cache)

    async def score(state: TaskState, target: Target) -> Score:
        propensity = get_propensity(state.metadata["propensity"])
        response = state.output.completion
        prompt = prompt_with(example_from(state.metadata), propensity)

        def verdict() -> bool:
            return verdicts.judge(propensity, [response], [target.text], [prompt])[0]

        # the LLM judge blocks on HTTP: run it off the event loop so other samples keep going
        follows = verdict() if judge == "heuristic" else await anyio.to_thread.run_sync(verdict)
        return Score(value=CORRECT if follows else INCORRECT,
                     explanation=f"{judge} judge: {'shows' if follows else 'does not show'} {propensity.name}")

    return score
