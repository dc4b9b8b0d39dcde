"""Every transferlab task as an inspect_ai task, under a propensity's prompt, for any model inspect runs.

    inspect eval transferlab/table_lookup -T propensity=bold --model openai/gpt-4o-mini
    inspect eval transferlab/invented_facts -T pair=bold_plain -T mode=choice -T n=50 --model hf/path/to/model

Each task is our `eval_sets` shown with `prompt_with` (the instruction appended to the last user
turn, exactly as our trainer's evaluation does), `generate()` as the solver, and two scorers:
`correct` (the task's own grader) and `adherent` (our judge for the prompted propensity).

Parameters (`-T name=value`):
  propensity   the prompted propensity (bold, plain, hedging, confident, reasoning, no_reasoning), or
  pair         both sides of a pair (bold_plain, ...): the same examples under both prompts, paired
  eval_set     which of the task's eval sets (default: its first, the one the gap is computed on); "all"
  n            examples per eval set (default 100, as `[eval] n`)
  seed         draws the examples: `random.Random(f"eval-{seed}")`, as `transferlab run` draws the eval
               grid (the same examples as a run's first task)
  judge        adherence judge: "heuristic" (offline) or "llm" (the TRANSFERLAB_LLM_* endpoint)
  judge_cache  where the llm judge caches its verdicts
  any other    a knob of the task (`n_symbols`, `mode`, ...; see the task's dataclass)

With more than one condition (a pair, or eval_set=all), each scorer also reports its accuracy per
condition ("<eval set>/<propensity>"). Decoding is inspect's: for the greedy answers our own
evaluation samples, pass `--temperature 0` (APIs, vLLM) or `-M do_sample=false` (`hf/` models).
"""

from __future__ import annotations

import dataclasses
import random

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageSystem, ChatMessageUser
from inspect_ai.scorer import accuracy, grouped, stderr
from inspect_ai.solver import generate

from transferlab.core import Example, Message
from transferlab.inspect_tasks.scorers import adherent, cached_task, correct
from transferlab.judges import JUDGE_KINDS
from transferlab.propensities import PAIRS, PROPENSITIES, get_propensity, prompt_with
from transferlab.tasks import TASKS

DEFAULT_N = 100
_ROLES = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}


def conditions(propensity: str | None, pair: str | None) -> list[str]:
    """The prompted propensities: the one named, or both sides of the pair named."""
    if (propensity is None) == (pair is None):
        raise ValueError(f"name one propensity (-T propensity=bold) or one pair (-T pair=bold_plain); "
                         f"propensities: {', '.join(PROPENSITIES)}; pairs: {', '.join(PAIRS)}")
    if pair is not None:
        if pair not in PAIRS:
            raise ValueError(f"unknown pair {pair!r}; allowed: {', '.join(PAIRS)}")
        return list(PAIRS[pair])
    if propensity not in PROPENSITIES:
        raise ValueError(f"unknown propensity {propensity!r}; allowed: {', '.join(PROPENSITIES)}")
    return [propensity]


def task_knobs(name: str) -> dict:
    """The knobs a task takes, with their defaults (its dataclass's init fields)."""
    return {f.name: None if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(TASKS[name]) if f.init and f.name != "name"}


def check_knobs(name: str, knobs: dict) -> None:
    unknown = sorted(set(knobs) - set(task_knobs(name)))
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in task_knobs(name).items())
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for task {name!r}; besides propensity, "
                         f"pair, eval_set, n, seed, judge and judge_cache it takes its knobs: {allowed}")


def chat(messages: list[Message]) -> list[ChatMessage]:
    return [_ROLES[m["role"]](content=m["content"]) for m in messages]


def sample_from(task_name: str, eval_set: str, example: Example, propensity: str) -> Sample:
    """One example under one prompt; the metadata holds what the scorers (and a later rescoring) need."""
    return Sample(
        id=f"{eval_set}:{example.id}:{propensity}",
        input=chat(prompt_with(example, get_propensity(propensity))),
        target=example.answer,
        metadata={"task": task_name, "eval_set": eval_set, "propensity": propensity,
                  "condition": f"{eval_set}/{propensity}",
                  "example": {"id": example.id, "messages": list(example.messages), "answer": example.answer,
                              "meta": example.meta}},
    )


def transferlab_dataset(task_name: str, propensities: list[str], eval_set: str | None = None,
                        n: int = DEFAULT_N, seed: int = 0, knobs: dict | None = None) -> MemoryDataset:
    """The task's eval examples under each prompted propensity (the same examples for each, paired)."""
    sets = cached_task(task_name, knobs or {}).eval_sets(random.Random(f"eval-{seed}"), n)
    if eval_set is None:
        eval_set = next(iter(sets))
    if eval_set != "all" and eval_set not in sets:
        raise ValueError(f"task {task_name!r} has no eval set {eval_set!r}; allowed: {', '.join(sets)}, all")
    chosen = sets if eval_set == "all" else {eval_set: sets[eval_set]}
    samples = [sample_from(task_name, name, example, propensity)
               for name, examples in chosen.items() for propensity in propensities for example in examples]
    return MemoryDataset(samples, name=f"{task_name}-{eval_set}")


def transferlab_task(task_name: str, propensity: str | None = None, pair: str | None = None,
                     eval_set: str | None = None, n: int = DEFAULT_N, seed: int = 0, judge: str = "heuristic",
                     judge_cache: str = ".transferlab-cache/judge", **knobs) -> Task:
    """The inspect Task for `task_name` (the parameters are described at the top of this module)."""
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; allowed: {', '.join(TASKS)}")
    if judge not in JUDGE_KINDS:
        raise ValueError(f"unknown judge {judge!r}; allowed: {', '.join(JUDGE_KINDS)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    check_knobs(task_name, knobs)
    data = transferlab_dataset(task_name, conditions(propensity, pair), eval_set, n, seed, knobs)
    several = len({s.metadata["condition"] for s in data}) > 1
    metrics = [accuracy(), stderr()] + ([grouped(accuracy(), "condition", all=False)] if several else [])
    return Task(name=f"transferlab/{task_name}", dataset=data, solver=generate(),
                scorer=[correct(task_name, knobs), adherent(judge, judge_cache)], metrics=metrics)


def register(task_name: str):
    """Register `transferlab/<task_name>` with inspect (a new task in `TASKS` is picked up here)."""

    def factory(propensity: str | None = None, pair: str | None = None, eval_set: str | None = None,
                n: int = DEFAULT_N, seed: int = 0, judge: str = "heuristic",
                judge_cache: str = ".transferlab-cache/judge", **knobs) -> Task:
        return transferlab_task(task_name, propensity, pair, eval_set, n, seed, judge, judge_cache, **knobs)

    factory.__name__ = factory.__qualname__ = task_name
    knobs = ", ".join(f"{k}={v!r}" for k, v in task_knobs(task_name).items())
    factory.__doc__ = f"transferlab's {task_name} under a propensity's prompt; knobs: {knobs}."
    return task(name=task_name)(factory)


INSPECT_TASKS = {name: register(name) for name in TASKS}
