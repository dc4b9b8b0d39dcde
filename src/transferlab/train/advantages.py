"""From rewards to per-token advantages: group-relative baselines, skipped groups, a KL penalty.

A group is one prompt's `group_size` sampled completions. Its advantages are each reward minus the
group's mean (tinker-cookbook's `compute_grpo_advantages`), optionally divided by the group's
standard deviation plus 1e-4 (TRL GRPOTrainer's `scale_rewards`, with torch's unbiased std, as it
computes it). A group whose rewards are all equal teaches nothing (every advantage is 0): it is
skipped and counted (cookbook's `remove_constant_reward_groups`).

The KL penalty to a reference (the starting weights) is put into the advantages the way the
cookbook's `incorporate_kl_penalty` does, so every backend (the hosted one included) trains it with
the same importance-sampling loss: with d = log p_sampled - log p_reference per completion token
and d̄ their mean over the batch's completion tokens, each token's advantage gains
`coef * (d̄ - d)`. d̄ estimates KL(policy ‖ reference) on the policy's own samples, and is logged
whether or not it is penalised.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

STD_EPS = 1e-4  # TRL's: advantages / (std + 1e-4)


def uniform(rewards: Sequence[float]) -> bool:
    """Whether a group's rewards are all the same (no reward variance: nothing to learn)."""
    return max(rewards) == min(rewards)


def group_advantages(rewards: Sequence[float], scale_std: bool = False) -> list[float]:
    """Each reward minus the group mean; divided by (unbiased std + 1e-4) when `scale_std`."""
    if not rewards:
        raise ValueError("a group needs at least one reward")
    mean = sum(rewards) / len(rewards)
    advantages = [r - mean for r in rewards]
    if scale_std:
        std = statistics.stdev(rewards) if len(rewards) > 1 else 0.0
        advantages = [a / (std + STD_EPS) for a in advantages]
    return advantages


def outcome_shares(correct: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Of the groups, the share whose completions are all right, all wrong, or mixed (by the grader)."""
    n = len(correct)
    if n == 0:
        return {"all_right": 0.0, "all_wrong": 0.0, "mixed": 0.0}
    right = sum(all(g) for g in correct)
    wrong = sum(not any(g) for g in correct)
    return {"all_right": right / n, "all_wrong": wrong / n, "mixed": (n - right - wrong) / n}


def logprob_gaps(sampled: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> list[list[float]]:
    """Per completion token, log p_sampled - log p_reference."""
    return [[s - r for s, r in zip(ss, rs, strict=True)] for ss, rs in zip(sampled, reference, strict=True)]


def mean_kl(gaps: Sequence[Sequence[float]]) -> float:
    """The mean gap over every completion token: the sample estimate of KL(policy ‖ reference)."""
    tokens = sum(len(g) for g in gaps)
    return sum(map(sum, gaps)) / tokens if tokens else 0.0


def kl_penalised(advantages: Sequence[Sequence[float]], gaps: Sequence[Sequence[float]],
                 coef: float) -> list[list[float]]:
    """Per-token advantages with the cookbook's KL penalty: each gains coef * (mean gap - its gap)."""
    average = mean_kl(gaps)
    return [[a + coef * (average - g) for a, g in zip(adv, gap, strict=True)]
            for adv, gap in zip(advantages, gaps, strict=True)]
