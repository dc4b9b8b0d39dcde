"""The losses `forward_backward` knows by name, as arithmetic on per-token log-probabilities.

- "cross_entropy": SFT, `-sum(weight * logprob)` (weights already hold the per-datum scale of
  backends/normalization.py).
- "importance_sampling": policy gradient on sampled completions, as the Tinker service defines it
  (tinker-docs, losses/importance-sampling): `ratio = exp(logprob - sampling_logprob)` and
  `loss = -sum(ratio * advantage)`, here times the same per-datum scale, so with
  train.loss_normalization = "example" it is the mean over completions of each one's mean over its
  tokens (TRL GRPOTrainer's loss_type "grpo"), and a learning rate means the same on every backend.
  Where the weights are the ones that sampled, ratio = 1 and the gradient is advantage x grad logprob.

The hf backend packs datums into rows and scores only weighted positions; `token_loss` receives the
datums in that packed order and lines their sampling log-probs and advantages up with those positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transferlab.core import Datum, RLDatum

LOSSES = ("cross_entropy", "importance_sampling")


def check_loss(loss_fn: str, datums: Sequence[Datum]) -> None:
    """Refuse an unknown loss name, or policy-gradient datums without sampling log-probs/advantages."""
    if loss_fn not in LOSSES:
        raise ValueError(f"unknown loss {loss_fn!r}; allowed: {', '.join(map(repr, LOSSES))}")
    if loss_fn == "importance_sampling":
        wrong = next((d for d in datums if not isinstance(d, RLDatum)), None)
        if wrong is not None:
            raise TypeError(f"the importance_sampling loss needs RLDatum (token ids, weights, sampling logprobs, "
                            f"advantages), got {type(wrong).__name__}: build them with "
                            f"transferlab.experiments.rl.rollouts.rl_datums")
        for d in datums:
            if not len(d.input_ids) == len(d.weights) == len(d.logprobs) == len(d.advantages):
                raise ValueError("an RLDatum's input_ids, weights, logprobs and advantages must have one entry "
                                 f"per token; got lengths {len(d.input_ids)}, {len(d.weights)}, {len(d.logprobs)}, "
                                 f"{len(d.advantages)}")


def weighted(values: Sequence[float], d: Datum) -> list[float]:
    """The entries of a per-token sequence at the positions that carry loss (never the first token)."""
    return [v for v, w in zip(values[1:], d.weights[1:]) if w]


def token_loss(loss_fn: str, logprobs: torch.Tensor, weights: torch.Tensor, packed: Sequence[Datum]) -> torch.Tensor:
    """The batch loss from the current model's log-probabilities at the weighted positions of `packed`
    (in that order), and each position's weight x its datum's scale."""
    if loss_fn == "cross_entropy":
        return -(logprobs * weights).sum()
    if loss_fn == "importance_sampling":
        sampled = torch.tensor([v for d in packed for v in weighted(d.logprobs, d)], device=logprobs.device)
        advantages = torch.tensor([v for d in packed for v in weighted(d.advantages, d)], device=logprobs.device)
        return importance_sampling(logprobs, sampled, advantages, weights)
    raise ValueError(f"unknown loss {loss_fn!r}; allowed: {', '.join(map(repr, LOSSES))}")


def importance_sampling(logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, advantages: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """`-sum(weight * exp(logprob - sampling_logprob) * advantage)` over tokens."""
    ratio = torch.exp(logprobs - sampling_logprobs)
    return -(weights * ratio * advantages).sum()


# -- the hosted service -------------------------------------------------------------------------

def to_tinker_rl_datum(datum: RLDatum, scale: float = 1.0):
    """An RLDatum as the SDK's importance_sampling datum: inputs tokens[:-1]; targets, sampling
    logprobs and advantages of tokens[1:]. The service's loss has no weights, so each advantage
    carries its token's weight x the datum's scale (0 on prompt tokens)."""
    from transferlab.backends.tinker import tinker_types

    types = tinker_types()
    tokens = list(datum.input_ids)
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": tokens[1:],
                                       "logprobs": [float(v) for v in datum.logprobs[1:]],
                                       "advantages": [float(a) * float(w) * scale
                                                      for a, w in zip(datum.advantages[1:], datum.weights[1:])]})


def tinker_rl_loss(output, batch) -> float:
    """The service's summed importance-sampling loss (its `loss:sum` metric, else from the logprobs it
    returns: -sum(exp(logprob - sampling logprob) * advantage))."""
    if "loss:sum" in output.metrics:
        return float(output.metrics["loss:sum"])
    total = 0.0
    for out, d in zip(output.loss_fn_outputs, batch):
        now = torch.tensor(out["logprobs"].to_numpy(), dtype=torch.float64)
        sampled = torch.tensor(d.loss_fn_inputs["logprobs"].to_numpy(), dtype=torch.float64)
        advantages = torch.tensor(d.loss_fn_inputs["advantages"].to_numpy(), dtype=torch.float64)
        total += float(importance_sampling(now, sampled, advantages, torch.ones_like(now)))
    return total
