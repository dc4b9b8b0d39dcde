"""Subtracted Table Lookup: the colour of the difference of two looked-up numbers, and easier rungs.

Table 1 maps symbols to distinct integers, Table 2 maps integers to colours; both are drawn anew for
every example. The user names two symbols and the answer is Table 2's colour for
(larger - smaller). Nothing in the prompt says "subtract": the rule is only learnable from data.
An example is redrawn until its answer differs from the colours of a, b and a+b (where Table 2 has
them), so those shortcuts score zero rather than better than chance.

`variant` picks a rung of a difficulty ladder (VARIANTS); "subtracted" is the task above. The
easier rungs are the organism's: a tiny model learns a composition of two steps where the
three-step one stays at chance (docs/organism-notes.md). None of them is in the organism's
curriculum, so each starts at chance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from transferlab.core import Example
from transferlab.organism.vocabulary import COLOURS, GREEK
from transferlab.tasks.base import grade_exact
from transferlab.tasks.candidates import names_a_candidate

QUESTION = "Which colour goes with {a} and {b}?"
DIFFERENCE_QUESTION = "What is the difference between {a} and {b}?"
COLOUR_QUESTION = "Which colour does {a} point to?"

VARIANTS = {
    "difference": "the difference of two symbols' numbers, Table 1 alone in the prompt (two parallel "
                  "lookups and a subtraction); redrawn until it differs from both numbers",
    "colour": "the colour of one symbol's number (two sequential lookups)",
    "subtracted": "the colour of the difference of two symbols' numbers (three steps: the seed task)",
}


def render_table1(table1: dict) -> str:
    """`Table 1: α=5, β=7`."""
    return "Table 1: " + ", ".join(f"{k}={v}" for k, v in table1.items())


def render_tables(table1: dict, table2: dict) -> str:
    """`Table 1: α=5, β=7` on one line, `Table 2: 4=red, 1=blue` on the next."""
    return render_table1(table1) + "\nTable 2: " + ", ".join(f"{k}={v}" for k, v in table2.items())


@dataclass
class TableLookup:
    """Knobs: Table 1 size, the integer range 1..max_int (Table 2 holds every one), colour palette,
    and the rung of the ladder (`variant`, one of VARIANTS)."""

    n_symbols: int = 4
    max_int: int = 12
    n_colours: int = 12
    variant: str = "subtracted"
    name: str = "table_lookup"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown table_lookup variant {self.variant!r}; allowed: "
                             + "; ".join(f"{k} ({v})" for k, v in VARIANTS.items()))
        if not 2 <= self.n_symbols <= len(GREEK):
            raise ValueError(f"n_symbols must be in 2..{len(GREEK)}, got {self.n_symbols}")
        if not self.n_symbols <= self.max_int <= 40:
            raise ValueError(f"max_int must be in n_symbols..40, got {self.max_int}")
        if not 4 <= self.n_colours <= len(COLOURS):
            raise ValueError(f"n_colours must be in 4..{len(COLOURS)}, got {self.n_colours}")

    # -- examples ---------------------------------------------------------------------------
    def draw(self, rng: random.Random) -> tuple[dict[str, int], dict[int, str], str, str]:
        """Tables and a question whose answer no shortcut colour shares."""
        palette = COLOURS[: self.n_colours]
        for _ in range(1000):
            symbols = rng.sample(GREEK, self.n_symbols)
            table1 = dict(zip(symbols, rng.sample(range(1, self.max_int + 1), self.n_symbols)))
            keys = list(range(1, self.max_int + 1))
            rng.shuffle(keys)
            if self.n_colours >= self.max_int:
                colours = rng.sample(palette, self.max_int)
            else:
                colours = [rng.choice(palette) for _ in keys]
            table2 = dict(zip(keys, colours))
            a, b = rng.sample(symbols, 2)
            va, vb = table1[a], table1[b]
            if self.variant == "colour":
                return table1, table2, a, b
            if self.variant == "difference":
                if abs(va - vb) not in (va, vb):  # copying a looked-up number never scores
                    return table1, table2, a, b
                continue
            answer = table2[abs(va - vb)]
            shortcuts = {table2.get(va), table2.get(vb), table2.get(va + vb)}
            if answer not in shortcuts:
                return table1, table2, a, b
        raise ValueError("could not draw an example that defeats the shortcuts; use more colours")

    def make(self, rng: random.Random, index: int) -> Example:
        table1, table2, a, b = self.draw(rng)
        va, vb = table1[a], table1[b]
        diff = abs(va - vb)
        subtraction = f"{max(va, vb)}-{min(va, vb)}={diff}"
        if self.variant == "difference":
            system, question, answer = render_table1(table1), DIFFERENCE_QUESTION.format(a=a, b=b), str(diff)
            steps = (f"{a}={va}", f"{b}={vb}", subtraction)
        elif self.variant == "colour":
            system, question, answer = render_tables(table1, table2), COLOUR_QUESTION.format(a=a), table2[va]
            steps = (f"{a}={va}", f"{va}={table2[va]}")
        else:
            system, question, answer = render_tables(table1, table2), QUESTION.format(a=a, b=b), table2[diff]
            steps = (f"{a}={va}", f"{b}={vb}", subtraction, f"{diff}={table2[diff]}")
        return Example(
            id=f"{self.name}-{index}",
            messages=({"role": "system", "content": system}, {"role": "user", "content": question}),
            answer=answer,
            meta={"a": a, "b": b, "value_a": va, "value_b": vb, "difference": diff, "steps": steps,
                  "candidates": self.candidates(), "variant": self.variant},
        )

    def train_examples(self, rng: random.Random, n: int) -> list[Example]:
        return [self.make(rng, i) for i in range(n)]

    def eval_sets(self, rng: random.Random, n: int) -> dict[str, list[Example]]:
        return {"fresh": [self.make(rng, i) for i in range(n)]}

    def grade(self, example: Example, response: str) -> bool:
        return grade_exact(example, response)

    def candidates(self) -> tuple[str, ...]:
        """The answers this rung chooses among: the palette's colours, or the possible differences."""
        if self.variant == "difference":
            return tuple(str(i) for i in range(1, self.max_int))
        return tuple(COLOURS[: self.n_colours])

    def is_candidate(self, response: str) -> bool:
        """The answer is one of this rung's candidates (right or wrong): a table-lookup answer."""
        return names_a_candidate(response, self.candidates())

    # -- chance -----------------------------------------------------------------------------
    def chance(self, draws: int = 2000) -> float:
        """A colour rung: expected accuracy of guessing uniformly among the colours Table 2 lists.
        The difference rung: the share of the commonest answer (always guessing it beats guessing
        uniformly, since small differences are the most frequent)."""
        rng = random.Random(0)
        if self.variant == "difference":
            answers = [self.make(rng, 0).answer for _ in range(draws)]
            return max(answers.count(a) for a in set(answers)) / draws
        return sum(1 / len(set(self.draw(rng)[1].values())) for _ in range(draws)) / draws

    def chance_without_shortcuts(self, draws: int = 2000) -> float:
        """Same, for a guesser who also rules out the colours of a, b and a+b (the seed's rung)."""
        if self.variant != "subtracted":
            raise ValueError(f"chance_without_shortcuts is the subtracted rung's; this task is {self.variant!r}")
        rng = random.Random(0)
        total = 0.0
        for _ in range(draws):
            table1, table2, a, b = self.draw(rng)
            va, vb = table1[a], table1[b]
            ruled_out = {table2.get(va), table2.get(vb), table2.get(va + vb)} - {None}
            total += 1 / len(set(table2.values()) - ruled_out)
        return total / draws
