"""Training datums for backend tests: curriculum examples, each under bold or plain at random."""

import random

from transferlab.organism.curriculum import curriculum
from transferlab.propensities import get_propensity, prompt_with
from transferlab.train.render import render_datum


def curriculum_datums(tokenizer, n: int, seed: int) -> list:
    """`n` datums drawn from `seed`; bold and plain targets give them different loss-token counts."""
    rng = random.Random(seed)
    out = []
    for ex in curriculum(rng, n):
        p = get_propensity(rng.choice(["bold", "plain"]))
        out.append(render_datum(tokenizer, prompt_with(ex, p), p.render(ex, rng)))
    return out
