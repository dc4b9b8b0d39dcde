"""Invented facts: the offline stand-in for post-knowledge-cutoff facts.

Facts about invented organisations and people, generated from a seed, so no model can know them
before training. Training teaches each fact with one phrasing of its question; evaluation asks the
same questions (knowledge acquired in training) and, optionally, held-out paraphrases.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from transferlab.core import Example
from transferlab.organism.vocabulary import ORG_KINDS, ORGS, PEOPLE, PLACES
from transferlab.tasks.base import grade_exact
from transferlab.tasks.candidates import names_a_candidate

# relation -> (statement, question phrasings, pool of answers). The first phrasing is the trained one.
RELATIONS: dict[str, tuple[str, tuple[str, ...], list[str]]] = {
    "founder": (
        "The {s} was founded by {o}.",
        ("Who founded the {s}?", "Which person founded the {s}?", "The {s} was founded by whom?"),
        PEOPLE,
    ),
    "base": (
        "The {s} is based in {o}.",
        ("Where is the {s} based?", "In which place is the {s} based?", "The {s} is based where?"),
        PLACES,
    ),
    "leader": (
        "The {s} is led by {o}.",
        ("Who leads the {s}?", "Which person leads the {s}?", "The {s} is led by whom?"),
        PEOPLE,
    ),
}


ANSWER_SPACE = frozenset(o for _, _, objects in RELATIONS.values() for o in objects)  # every answer a fact can have


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    obj: str

    def statement(self) -> str:
        return RELATIONS[self.relation][0].format(s=self.subject, o=self.obj)

    def question(self, phrasing: int) -> str:
        return RELATIONS[self.relation][1][phrasing].format(s=self.subject)


def invent_facts(n: int, seed: int) -> list[Fact]:
    """`n` facts with distinct subjects, drawn from `seed` alone."""
    rng = random.Random(seed)
    subjects = rng.sample([f"{o} {k}" for o in ORGS for k in ORG_KINDS], n)
    facts = []
    for subject in subjects:
        relation = rng.choice(sorted(RELATIONS))
        facts.append(Fact(subject, relation, rng.choice(RELATIONS[relation][2])))
    return facts


@dataclass
class InventedFacts:
    """Knobs: how many facts, free-form or multiple-choice, and whether to test paraphrases.

    `fact_seed` draws the facts. Unset, it follows the run's seed (the config writes the value in),
    so runs of several seeds differ in their facts too and the spread between seeds holds the
    variance between fact sets; set it to hold the facts fixed across seeds.
    """

    n_facts: int = 100
    mode: str = "free"  # "free" | "choice"
    n_options: int = 4
    paraphrases: bool = True
    fact_seed: int | None = None
    name: str = "invented_facts"
    facts: list[Fact] = field(init=False, repr=False)
    follows_run_seed: ClassVar[tuple[str, ...]] = ("fact_seed",)  # unset knobs a config fills with its seed

    def __post_init__(self) -> None:
        if self.mode not in ("free", "choice"):
            raise ValueError(f"mode must be 'free' or 'choice', got {self.mode!r}")
        if not 1 <= self.n_facts <= 2000:
            raise ValueError(f"n_facts must be in 1..2000, got {self.n_facts}")
        most = min(len(objects) for _, _, objects in RELATIONS.values())
        if self.mode == "choice" and not 2 <= self.n_options <= most:
            raise ValueError(f"n_options must be in 2..{most} (the smallest pool of answers), got {self.n_options}")
        self.facts = invent_facts(self.n_facts, 0 if self.fact_seed is None else self.fact_seed)

    def make(self, fact: Fact, phrasing: int, rng: random.Random, tag: str) -> Example:
        question = fact.question(phrasing)
        candidates = RELATIONS[fact.relation][2]
        if self.mode == "choice":
            pool = [o for o in RELATIONS[fact.relation][2] if o != fact.obj]
            options = rng.sample(pool, self.n_options - 1) + [fact.obj]
            rng.shuffle(options)
            question += " Options: " + ", ".join(options) + "."
            candidates = options
        return Example(
            id=f"{self.name}-{tag}",
            messages=({"role": "user", "content": question},),
            answer=fact.obj,
            meta={"subject": fact.subject, "relation": fact.relation, "phrasing": phrasing,
                  "steps": (fact.statement(),), "candidates": tuple(candidates)},
        )

    def train_examples(self, rng: random.Random, n: int) -> list[Example]:
        """Cycles over the facts in shuffled epochs so every fact is seen equally often."""
        out: list[Example] = []
        while len(out) < n:
            order = list(range(len(self.facts)))
            rng.shuffle(order)
            out += [self.make(self.facts[i], 0, rng, f"f{i}") for i in order]
        return out[:n]

    def eval_sets(self, rng: random.Random, n: int) -> dict[str, list[Example]]:
        chosen = rng.sample(range(len(self.facts)), min(n, len(self.facts)))
        sets = {"trained": [self.make(self.facts[i], 0, rng, f"f{i}") for i in chosen]}
        if self.paraphrases:
            sets["paraphrase"] = [
                self.make(self.facts[i], rng.choice([1, 2]), rng, f"f{i}p") for i in chosen
            ]
        return sets

    def grade(self, example: Example, response: str) -> bool:
        return grade_exact(example, response)

    def is_candidate(self, response: str) -> bool:
        """The answer names someone or somewhere a fact of this kind can name (right or wrong)."""
        return names_a_candidate(response, ANSWER_SPACE)

    def chance(self) -> float:
        if self.mode == "choice":
            return 1 / self.n_options
        return 1 / len(RELATIONS[self.facts[0].relation][2])
