"""Registry of propensities and of the pairs an experiment contrasts."""

from __future__ import annotations

from transferlab.propensities.base import Propensity, prompt_with
from transferlab.propensities.bold_plain import Bold, Plain
from transferlab.propensities.hedging_confident import Confident, Hedging
from transferlab.propensities.reasoning import NoReasoning, Reasoning

PROPENSITIES: dict[str, type] = {p.name: p for p in (Bold, Plain, Hedging, Confident, Reasoning, NoReasoning)}

# The seed experiment's spectrum, from pure formatting to capability-laden.
PAIRS: dict[str, tuple[str, str]] = {
    "bold_plain": ("bold", "plain"),
    "hedging_confident": ("hedging", "confident"),
    "reasoning_no_reasoning": ("reasoning", "no_reasoning"),
}


def get_propensity(name: str) -> Propensity:
    if name not in PROPENSITIES:
        raise KeyError(f"unknown propensity {name!r}; known: {', '.join(sorted(PROPENSITIES))}")
    return PROPENSITIES[name]()


def partner(name: str) -> str:
    """The other propensity of the pair `name` belongs to."""
    for first, second in PAIRS.values():
        if name == first:
            return second
        if name == second:
            return first
    raise KeyError(f"propensity {name!r} is in no pair; pairs: {PAIRS}")


__all__ = ["PAIRS", "PROPENSITIES", "Propensity", "get_propensity", "partner", "prompt_with"]
