"""How much each example's weighted tokens count in a batch's loss (`train.loss_normalization`).

Every backend computes the batch loss as one sum, `sum over examples d of scale_d * sum over tokens
t of weight_dt * nll_dt`, with the scales fixed here from the whole global batch. A sum splits over
micro-batches, packed rows and processes without any re-weighting, so each of those gives the loss
of the batch taken whole; a hosted service that sums `weight * -logprob` gets the scaled weights.

- "example": each example's loss is the mean over its own weighted tokens, and the batch loss the
  mean of those over the examples that carry any loss. An arm then takes the share of the gradient
  its `weight` gives it, however long its targets (tinker-cookbook's supervised default).
- "token": the mean over every weighted token of the batch, so an example counts in proportion to
  its number of target tokens (an arm with `**red**` or reasoning chains outweighs one with `red`).
"""

from __future__ import annotations

from collections.abc import Sequence

from transferlab.core import Datum

NORMALIZATIONS = ("example", "token")


def loss_tokens(d: Datum) -> float:
    """The weight a datum adds to the loss: its first token is never predicted."""
    return float(sum(d.weights[1:]))


def loss_scales(datums: Sequence[Datum], normalization: str) -> list[float]:
    """One factor per datum, multiplying its token weights, so the sum is the batch's loss."""
    tokens = [loss_tokens(d) for d in datums]
    if normalization == "token":
        total = sum(tokens)
        return [1.0 / total if total > 0 else 0.0] * len(datums)
    if normalization == "example":
        counted = sum(1 for t in tokens if t > 0)
        return [1.0 / (t * counted) if t > 0 else 0.0 for t in tokens]
    raise ValueError(f"unknown loss normalization {normalization!r}; allowed: "
                     f"{', '.join(map(repr, NORMALIZATIONS))}")
