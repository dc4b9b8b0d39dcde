"""Registry of propensities and of the pairs an experiment contrasts."""

from __future__ import annotations

from transferlab.propensities.base import Propensity, prompt_with
from transferlab.propensities.bold_plain import Bold, Plain

PROPENSITIES: dict[str, type] = {"bold": Bold, "plain": Plain}

PAIRS: dict[str, tuple[str, str]] = {"bold_plain": ("bold", "plain")}


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
