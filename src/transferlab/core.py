"""Shared types that every stage speaks: examples, arms, conditions and the backend protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": ...}


@dataclass(frozen=True)
class Example:
    """One task instance, before any propensity instruction is added.

    `messages` holds the system/user turns; `answer` is the bare correct answer that grading
    compares against; `meta` keeps whatever a task needs to grade or explain the example.
    """

    id: str
    messages: tuple[Message, ...]
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Arm:
    """What a training stage mixes: a task shown with one propensity."""

    task: str
    propensity: str


@dataclass(frozen=True)
class Condition:
    """What evaluation measures: a task under one prompted propensity."""

    task: str
    prompted: str


@dataclass(frozen=True)
class Datum:
    """Token ids with a per-token loss weight (1 on assistant tokens, 0 elsewhere)."""

    input_ids: tuple[int, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class RLDatum(Datum):
    """A sampled completion to learn from by policy gradient (`forward_backward(datums, "importance_sampling")`):
    per token, the log-probability the sampler gave it and its advantage, both 0 on prompt tokens."""

    logprobs: tuple[float, ...]
    advantages: tuple[float, ...]


@dataclass(frozen=True)
class SampledSequence:
    """One completion: its token ids (the stop token included when it stopped), the sampler's
    log-probability of each, and its text."""

    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str


class Backend(Protocol):
    """Shaped like the Tinker training API so hosted and in-process backends share one loop.

    `forward_backward` takes a loss name, `loss_fn` (as Tinker names it): "cross_entropy" (SFT on
    Datum) or "importance_sampling" (RL on RLDatum: -ratio x advantage per token, ratio =
    exp(logprob now - logprob when sampled); backends/rl_loss.py).
    `sample_sequences` gives `num_samples` completions per prompt with their token log-probabilities;
    `token_logprobs` scores given sequences with the current weights (`weighted_only`: just the
    tokens each datum weights, 0 elsewhere: an RL rollout's completion)."""

    def forward_backward(self, datums: list[Datum], loss_fn: str = "cross_entropy") -> float: ...

    def sample_sequences(self, prompts: list[list[Message]], num_samples: int, max_tokens: int,
                         temperature: float = 1.0) -> list[list[SampledSequence]]: ...

    def token_logprobs(self, datums: list[Datum], weighted_only: bool = False) -> list[list[float]]: ...

    def optim_step(self, lr: float) -> None: ...

    def sample(self, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0) -> list[str]: ...

    def save_state(self, path: str) -> None: ...

    def load_state(self, path: str) -> None: ...


class Judge(Protocol):
    """Adherence: whether each response shows `propensity` (see `transferlab.judges`)."""

    def judge(self, propensity: Any, responses: list[str], answers: list[str] | None = None,
              questions: list | None = None) -> list[bool]: ...


class Writer(Protocol):
    """Training targets: each example's answer shown with `propensity` (see `transferlab.writers`)."""

    def write(self, examples: list[Example], propensity: Any) -> Any: ...
