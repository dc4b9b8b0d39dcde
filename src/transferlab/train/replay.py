"""Replay: a share of every training batch drawn from the organism's own curriculum.

A real model follows "Answer in bold." on any question. The organism learned its instructions on
a closed curriculum, and during an experiment each instruction meets only one task (bold only on
table lookup), so fine-tuning binds the instruction to that task: asked for bold on facts, build j
answered a colour 87-93% of the time. Replaying the curriculum's primitives (lookups, differences,
recall, repeat) under all six propensities keeps every instruction attached to every kind of
question while the experiment trains. Off for real models (`train.replay = 0`): they do not need it,
and the curriculum's closed world of symbols and invented names is the organism's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from transferlab.core import Message
from transferlab.propensities import PROPENSITIES, get_propensity, prompt_with


def replay_count(share: float, batch_size: int) -> int:
    """How many of a batch's `batch_size` examples are replayed (at least one when `share` > 0)."""
    return max(1, round(share * batch_size)) if share > 0 else 0


def replay_stream(seed: int) -> Iterator[tuple[list[Message], str]]:
    """(prompt, target) pairs: one curriculum primitive under one of the six propensities at random."""
    from transferlab.organism.curriculum import curriculum

    rng = random.Random(f"replay-{seed}")
    propensities = [get_propensity(p) for p in PROPENSITIES]
    while True:
        for example in curriculum(rng, 256):
            propensity = rng.choice(propensities)
            yield prompt_with(example, propensity), propensity.render(example, rng)


def describe(share: float, batch_size: int) -> dict:
    """What the run folder's replay.json records."""
    return {"share": share, "per_batch": replay_count(share, batch_size), "batch_size": batch_size,
            "source": "the organism's curriculum: single lookups, differences, comparisons, repeat and "
                      "in-context recall, each under one of the six propensities at random",
            "propensities": list(PROPENSITIES)}
