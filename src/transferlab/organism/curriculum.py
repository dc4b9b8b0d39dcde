"""The base organism's curriculum: primitive skills, each shown under every propensity.

A pretrained LLM arrives able to look things up in its context, subtract small numbers, recall a
stated fact and follow "answer in bold". The organism learns those primitives here, and never the
experiment's compositions: no example asks for the colour of a difference of looked-up numbers, and
facts are only ever asked about while stated in the context (the experiment asks closed-book).

Two-step primitives (`chained`) are included by default: the colour of one symbol's number, and the
difference of two symbols' numbers. Each is one hop shorter than Subtracted Table Lookup, whose
composition (colour of the difference) only the experiment teaches.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from transferlab.core import Example
from transferlab.organism.vocabulary import COLOURS, GREEK, PEOPLE, PLACES
from transferlab.tasks.invented_facts import RELATIONS, invent_facts
from transferlab.tasks.table_lookup import render_tables


def _tables(rng: random.Random) -> tuple[dict[str, int], dict[int, str], str]:
    n_symbols = rng.randint(2, 6)
    max_int = rng.randint(max(n_symbols, 6), 16)
    symbols = rng.sample(GREEK, n_symbols)
    table1 = dict(zip(symbols, rng.sample(range(1, max_int + 1), n_symbols)))
    keys = list(range(1, max_int + 1))
    rng.shuffle(keys)
    table2 = {k: rng.choice(COLOURS) for k in keys}
    return table1, table2, render_tables(table1, table2)


def _example(kind: str, system: str | None, user: str, answer: str) -> Example:
    messages = ({"role": "system", "content": system},) if system else ()
    return Example(id=kind, messages=messages + ({"role": "user", "content": user},), answer=answer,
                   meta={"kind": kind})


def symbol_number(rng: random.Random) -> Example:
    table1, _, text = _tables(rng)
    s = rng.choice(list(table1))
    return _example("symbol_number", text, f"Which number goes with {s}?", str(table1[s]))


def number_colour(rng: random.Random) -> Example:
    _, table2, text = _tables(rng)
    k = rng.choice(list(table2))
    return _example("number_colour", text, f"Which colour goes with {k}?", table2[k])


def difference(rng: random.Random) -> Example:
    a, b = rng.sample(range(1, 17), 2)
    return _example("difference", None, f"What is the difference between {a} and {b}?", str(abs(a - b)))


def larger(rng: random.Random) -> Example:
    a, b = rng.sample(range(1, 17), 2)
    return _example("larger", None, f"Which is larger, {a} or {b}?", str(max(a, b)))


def symbol_colour(rng: random.Random) -> Example:
    table1, table2, text = _tables(rng)
    s = rng.choice(list(table1))
    return _example("symbol_colour", text, f"Which colour does {s} point to?", table2[table1[s]])


def symbol_difference(rng: random.Random) -> Example:
    table1, _, text = _tables(rng)
    a, b = rng.sample(list(table1), 2)
    return _example("symbol_difference", text, f"What is the difference between {a} and {b}?",
                    str(abs(table1[a] - table1[b])))


def recall(rng: random.Random) -> Example:
    """A question about facts stated in the context (fresh facts each time, never the task's)."""
    facts = invent_facts(rng.randint(2, 4), seed=rng.randrange(1 << 30) + 1_000_000)
    fact = rng.choice(facts)
    user = fact.question(rng.randrange(3))
    if rng.random() < 0.4:
        pool = [o for o in RELATIONS[fact.relation][2] if o != fact.obj]
        options = rng.sample(pool, 3) + [fact.obj]
        rng.shuffle(options)
        user += " Options: " + ", ".join(options) + "."
    return _example("recall", "Facts: " + " ".join(f.statement() for f in facts), user, fact.obj)


def repeat(rng: random.Random) -> Example:
    word = rng.choice(COLOURS + PEOPLE + PLACES + [str(i) for i in range(41)])
    return _example("repeat", None, f"Repeat the word {word}.", word)


PRIMITIVES: dict[str, Callable[[random.Random], Example]] = {
    "symbol_number": symbol_number, "number_colour": number_colour, "difference": difference,
    "larger": larger, "recall": recall, "repeat": repeat,
}
CHAINED: dict[str, Callable[[random.Random], Example]] = {
    "symbol_colour": symbol_colour, "symbol_difference": symbol_difference,
}
# Harder skills are drawn more often: retrieval from context is what a small model learns slowest.
WEIGHTS = {"symbol_number": 3, "number_colour": 3, "difference": 1, "larger": 1, "recall": 2,
           "repeat": 1, "symbol_colour": 3, "symbol_difference": 3}


def curriculum(rng: random.Random, n: int, chained: bool = True) -> list[Example]:
    makers = {**PRIMITIVES, **(CHAINED if chained else {})}
    names = list(makers)
    weights = [WEIGHTS[k] for k in names]
    return [makers[k](rng) for k in rng.choices(names, weights, k=n)]
