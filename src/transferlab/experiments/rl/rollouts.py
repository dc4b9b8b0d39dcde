"""One RL step's data: prompts drawn from the arms, `group_size` completions each, their rewards by
component, and the RLDatums (prompt + completion tokens, sampling log-probs, advantages) to learn from."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from transferlab.core import Example, Message, RLDatum, SampledSequence
from transferlab.judges import judge_each
from transferlab.propensities import get_propensity, prompt_with
from transferlab.train.render import render_prompt


@dataclass
class Group:
    """One prompt and its sampled completions, with each completion's reward components."""

    arm: int
    example: Example
    prompt: list[Message]
    sequences: list[SampledSequence]
    components: dict[str, list[float]] = field(default_factory=dict)

    def rewards(self, weights: dict[str, float]) -> list[float]:
        """Each completion's reward: the weighted sum of its components."""
        return [sum(weights[c] * self.components[c][i] for c in weights) for i in range(len(self.sequences))]

    def correct(self) -> list[bool]:
        return [bool(v) for v in self.components["correct"]]


def example_stream(task, rng: random.Random, chunk: int = 64) -> Iterator[Example]:
    while True:
        yield from task.train_examples(rng, chunk)


def draw_prompts(arms, streams: dict[int, Iterator[Example]], rng: random.Random,
                 n: int) -> list[tuple[int, Example, list[Message]]]:
    """`n` (arm, example, prompt) triples, arms drawn by weight, each prompt under its arm's propensity."""
    picks = rng.choices(range(len(arms)), [a.weight for a in arms], k=n)
    out = []
    for i in picks:
        example = next(streams[i])
        out.append((i, example, prompt_with(example, get_propensity(arms[i].propensity))))
    return out


def roll_out(backend, drawn, group_size: int, max_tokens: int, temperature: float) -> list[Group]:
    sequences = backend.sample_sequences([p for _, _, p in drawn], num_samples=group_size, max_tokens=max_tokens,
                                         temperature=temperature)
    return [Group(arm, example, prompt, seqs) for (arm, example, prompt), seqs in zip(drawn, sequences)]


def score(groups: list[Group], arms, tasks: dict, judge) -> None:
    """Every completion's components: the task's grade, and the judge's verdict on the arm's propensity."""
    texts, propensities, answers, prompts = [], [], [], []
    for g in groups:
        task = tasks[arms[g.arm].task]
        g.components["correct"] = [float(task.grade(g.example, s.text)) for s in g.sequences]
        for s in g.sequences:
            texts.append(s.text)
            propensities.append(arms[g.arm].propensity)
            answers.append(g.example.answer)
            prompts.append(g.prompt)
    verdicts = iter(judge_each(judge, propensities, texts, answers, prompts))
    for g in groups:
        g.components["adherent"] = [float(next(verdicts)) for _ in g.sequences]


def arm_reward_name(arm) -> str:
    """The log column of an arm's own mean reward."""
    return f"reward_{arm.task}_{arm.propensity}"


def arm_rewards(groups: list[Group], arms, weights: dict[str, float]) -> dict[str, float]:
    """The step's mean reward per arm, under `arm_reward_name` (NaN where the step drew no prompt of
    that arm): the overall mean cannot say which task the reward, and so the learning, comes from."""
    out = {}
    for i, arm in enumerate(arms):
        rewards = [r for g in groups if g.arm == i for r in g.rewards(weights)]
        out[arm_reward_name(arm)] = sum(rewards) / len(rewards) if rewards else float("nan")
    return out


def sequence_datum(prompt_ids: Sequence[int], seq: SampledSequence,
                   advantages: Sequence[float] | None = None) -> RLDatum:
    """Prompt + completion as one RLDatum: weight, sampling log-prob and advantage 0 on the prompt."""
    n, m = len(prompt_ids), len(seq.tokens)
    advantages = [0.0] * m if advantages is None else list(advantages)
    if len(advantages) != m:
        raise ValueError(f"{len(advantages)} advantages for a completion of {m} tokens")
    return RLDatum(input_ids=tuple(prompt_ids) + tuple(seq.tokens), weights=(0.0,) * n + (1.0,) * m,
                   logprobs=(0.0,) * n + tuple(seq.logprobs), advantages=(0.0,) * n + tuple(advantages))


def prompt_token_ids(backend, groups: list[Group]) -> list[list[int]]:
    """Each group's prompt as the backend rendered it to sample (its chat template, model.thinking)."""
    thinking = getattr(getattr(backend, "inner", backend), "thinking", False)  # through the data-parallel wrapper
    return [render_prompt(backend.tokenizer, g.prompt, thinking) for g in groups]
