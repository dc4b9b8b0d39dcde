"""The offline writer: each propensity's own phrasings, drawn deterministically per seed.

A target depends only on (seed, example id, propensity), so a rerun with the same seed trains on
the same text, and different examples get different phrasings (the style is not one string).
"""

from __future__ import annotations

import random

from transferlab.core import Example
from transferlab.propensities.base import Propensity


class TemplateWriter:
    name = "template"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def write_one(self, example: Example, propensity: Propensity) -> str:
        rng = random.Random(f"{self.seed}/{example.id}/{propensity.name}")
        return propensity.render(example, rng)

    def write(self, examples: list[Example], propensity: Propensity) -> list[str]:
        return [self.write_one(e, propensity) for e in examples]
