"""The evaluation grid: every task under both propensities of its pair, graded and judged."""

from __future__ import annotations

import random
from dataclasses import dataclass

from transferlab.core import Backend, Example
from transferlab.judges import HeuristicJudge, judge_each
from transferlab.propensities import get_propensity, partner, prompt_with
from transferlab.tasks import Task


@dataclass(frozen=True)
class EvalItem:
    task: str
    eval_set: str
    trained: str
    prompted: str
    example: Example


def build_grid(tasks: dict[str, Task], trained: dict[str, str], rng: random.Random, n: int) -> list[EvalItem]:
    """The same examples under the trained propensity's prompt and the swapped one (paired)."""
    items = []
    for name, task in tasks.items():
        conditions = [trained[name], partner(trained[name])]
        for eval_set, examples in task.eval_sets(rng, n).items():
            for prompted in conditions:
                items += [EvalItem(name, eval_set, trained[name], prompted, ex) for ex in examples]
    return items


def evaluate(backend: Backend, tasks: dict[str, Task], items: list[EvalItem], *, step: int, seed: int,
             max_tokens: int, judge=None) -> list[dict]:
    """Sample greedy answers for every item; one row per answer with its grade and adherence
    (by `judge`, the heuristic judges when None)."""
    prompts = [prompt_with(item.example, get_propensity(item.prompted)) for item in items]
    # Similar lengths in one batch waste less padding; answers are put back in grid order.
    order = sorted(range(len(items)), key=lambda i: len(str(prompts[i])))
    replies = backend.sample([prompts[i] for i in order], max_tokens=max_tokens)
    responses = [""] * len(items)
    for i, reply in zip(order, replies):
        responses[i] = reply
    adherent = judge_each(judge or HeuristicJudge(), [item.prompted for item in items], responses,
                          [item.example.answer for item in items], prompts)
    rows = []
    for item, prompt, response, follows in zip(items, prompts, responses, adherent):
        rows.append({
            "step": step, "seed": seed, "task": item.task, "eval_set": item.eval_set,
            "trained": item.trained, "prompted": item.prompted, "example_id": item.example.id,
            "prompt": prompt, "answer": item.example.answer, "response": response,
            "correct": tasks[item.task].grade(item.example, response),
            "adherent": follows,
        })
    return rows
