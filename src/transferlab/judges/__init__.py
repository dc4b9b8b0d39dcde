"""Judges: whether a response shows a propensity (regex, offline heuristics, or an LLM).

Every judge answers `judge(propensity, responses, answers, questions) -> list[bool]`, so the
evaluation loop does not care which one the config names.
"""

from __future__ import annotations

from pathlib import Path

from transferlab.propensities import Propensity, get_propensity

JUDGE_KINDS = ("heuristic", "llm")


class HeuristicJudge:
    """Each propensity's own offline judge: a regex for bold/plain, heuristics for the others."""

    name = "heuristic"

    def judge(self, propensity: Propensity, responses: list[str], answers: list[str] | None = None,
              questions: list | None = None) -> list[bool]:
        return propensity.judge(responses, answers)


class LLMAdherenceJudge:
    """The LLM judge (see `judges/llm.py`) on the endpoint named by TRANSFERLAB_LLM_* variables."""

    name = "llm"

    def __init__(self, cache_dir: str | Path, concurrency: int = 8, progress: bool = False):
        from transferlab.judges.llm import LLMJudge
        from transferlab.llm.client import ChatClient

        self.inner = LLMJudge(ChatClient.from_env(), cache_dir, concurrency=concurrency, progress=progress)

    def judge(self, propensity: Propensity, responses: list[str], answers: list[str] | None = None,
              questions: list | None = None) -> list[bool]:
        return self.inner.judge(propensity, responses, questions)


def judge_each(judge, propensities: list[str], responses: list[str], answers: list[str],
               questions: list) -> list[bool]:
    """A verdict per response against its own propensity, in the order given (one judge call per
    propensity, so an LLM judge batches and caches them together)."""
    verdicts = [False] * len(responses)
    for name in dict.fromkeys(propensities):
        index = [i for i, p in enumerate(propensities) if p == name]
        out = judge.judge(get_propensity(name), [responses[i] for i in index], [answers[i] for i in index],
                          [questions[i] for i in index])
        for i, verdict in zip(index, out):
            verdicts[i] = verdict
    return verdicts


def make_judge(kind: str, cache_dir: str | Path = ".transferlab-cache/judge", concurrency: int = 8):
    if kind == "heuristic":
        return HeuristicJudge()
    if kind == "llm":
        return LLMAdherenceJudge(cache_dir, concurrency)
    raise ValueError(f"unknown judge {kind!r}; allowed: {', '.join(JUDGE_KINDS)}")
