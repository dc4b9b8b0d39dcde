"""The base organism's curriculum: primitive skills, each shown under every propensity.

A pretrained LLM arrives able to look things up in its context, subtract small numbers, recall a
stated fact and follow "answer in bold". The organism learns those primitives here, and never the
experiment's compositions: no example asks for the colour of a difference of looked-up numbers, and
facts are only ever asked about while stated in the context (the experiment asks closed-book).

Two-step skills (`chained`: the colour of one symbol's number, the difference of two symbols'
numbers) are left out by default: they are rungs of the table-lookup ladder
(`tasks.table_lookup.variant`), compositions the experiment teaches, so the organism must not
arrive knowing them. Builds i and j had them; `--chained` still asks them, for such probes.

Training uses episodes: one context (tables, facts, or none) followed by several question/answer
turns about it, with loss on every answer, and list questions whose answers interleave keys and
values. One answer per sequence gave too little signal for retrieval to emerge (measured: none
after 4,000 steps); list answers made it emerge in ~500.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from transferlab.core import Example, Message
from transferlab.organism.vocabulary import COLOURS, GREEK, PEOPLE, PLACES
from transferlab.tasks.invented_facts import RELATIONS, Fact, invent_facts
from transferlab.tasks.table_lookup import render_table1, render_tables

QA = tuple[str, str, tuple[str, ...]]  # (question, answer, the steps a reasoning target shows)
MAX_INT = 16  # the largest integer (so Table 2's largest size) in the curriculum's tables


def random_tables(rng: random.Random, max_int_cap: int = MAX_INT) -> tuple[dict[str, int], dict[int, str]]:
    """Tables of 2..6 symbols (at most max_int_cap - 2) and integers 1..max_int (4 <= max_int <= max_int_cap)."""
    n_symbols = rng.randint(2, max(2, min(6, max_int_cap - 2)))
    max_int = rng.randint(max(n_symbols, 4), max(max_int_cap, 4))
    symbols = rng.sample(GREEK, n_symbols)
    table1 = dict(zip(symbols, rng.sample(range(1, max_int + 1), n_symbols)))
    keys = list(range(1, max_int + 1))
    rng.shuffle(keys)
    return table1, {k: rng.choice(COLOURS) for k in keys}


# -- questions about tables -------------------------------------------------------------------

def symbol_number(rng: random.Random, t1: dict, t2: dict) -> QA:
    s = rng.choice(list(t1))
    return f"Which number goes with {s}?", str(t1[s]), (f"{s}={t1[s]}",)


def number_colour(rng: random.Random, t1: dict, t2: dict) -> QA:
    k = rng.choice(list(t2))
    return f"Which colour goes with {k}?", t2[k], (f"{k}={t2[k]}",)


def symbol_colour(rng: random.Random, t1: dict, t2: dict) -> QA:
    s = rng.choice(list(t1))
    return f"Which colour does {s} point to?", t2[t1[s]], (f"{s}={t1[s]}", f"{t1[s]}={t2[t1[s]]}")


def symbol_difference(rng: random.Random, t1: dict, t2: dict) -> QA:
    a, b = rng.sample(list(t1), 2)
    big, small = max(t1[a], t1[b]), min(t1[a], t1[b])
    return (f"What is the difference between {a} and {b}?", str(big - small),
            (f"{a}={t1[a]}", f"{b}={t1[b]}", f"{big}-{small}={big - small}"))


def symbol_numbers(rng: random.Random, t1: dict, t2: dict) -> QA:
    """Several lookups answered as `β 7, α 5`: each value is predicted right after its symbol, so
    every second answer token is a retrieval whose query is the token just written. This dense,
    direct signal is what makes in-context retrieval emerge (measured: ~500 steps, against none in
    4,000 steps of one-answer questions)."""
    keys = rng.sample(list(t1), rng.randint(2, len(t1)))
    return ("Which numbers go with " + ", ".join(keys) + "?", ", ".join(f"{k} {t1[k]}" for k in keys),
            tuple(f"{k}={t1[k]}" for k in keys))


def number_colours(rng: random.Random, t1: dict, t2: dict) -> QA:
    keys = rng.sample(list(t2), rng.randint(2, min(6, len(t2))))
    return ("Which colours go with " + ", ".join(map(str, keys)) + "?",
            ", ".join(f"{k} {t2[k]}" for k in keys), tuple(f"{k}={t2[k]}" for k in keys))


TABLE_QUESTIONS = {"symbol_number": symbol_number, "number_colour": number_colour,
                   "symbol_numbers": symbol_numbers, "number_colours": number_colours}
CHAINED_QUESTIONS = {"symbol_colour": symbol_colour, "symbol_difference": symbol_difference}


# -- questions without tables -----------------------------------------------------------------

def difference(rng: random.Random) -> QA:
    a, b = rng.sample(range(1, 17), 2)
    big, small = max(a, b), min(a, b)
    return f"What is the difference between {a} and {b}?", str(big - small), (f"{big}-{small}={big - small}",)


def larger(rng: random.Random) -> QA:
    a, b = rng.sample(range(1, 17), 2)
    return f"Which is larger, {a} or {b}?", str(max(a, b)), (f"{max(a, b)} is larger than {min(a, b)}",)


def repeat(rng: random.Random) -> QA:
    word = rng.choice(COLOURS + PEOPLE + PLACES + [str(i) for i in range(41)])
    return f"Repeat the word {word}.", word, (f"The word is {word}",)


FREE_QUESTIONS = {"difference": difference, "larger": larger, "repeat": repeat}


def recall_question(rng: random.Random, fact: Fact) -> QA:
    """A question about a fact stated in the context, sometimes with options to choose from."""
    question = fact.question(rng.randrange(3))
    if rng.random() < 0.4:
        pool = [o for o in RELATIONS[fact.relation][2] if o != fact.obj]
        options = rng.sample(pool, 3) + [fact.obj]
        rng.shuffle(options)
        question += " Options: " + ", ".join(options) + "."
    return question, fact.obj, (fact.statement(),)


def random_facts(rng: random.Random) -> list[Fact]:
    """Fresh facts each time (seeds far from the task's), so recall means reading the context."""
    return invent_facts(rng.randint(2, 4), seed=rng.randrange(1 << 30) + 1_000_000)


def facts_text(facts: list[Fact]) -> str:
    return "Facts: " + " ".join(f.statement() for f in facts)


# -- single-turn examples (evaluation of the build) --------------------------------------------

NUMBERS = tuple(str(i) for i in range(41))
# The answers a question of each kind chooses among, so that grading finds the answer inside a
# hedged or confident reply ("I think it is 7, but…") as it does for the experiment's tasks. A list
# answer has no rivals: it must be named whole.
CANDIDATES = {"symbol_number": NUMBERS, "number_colour": tuple(COLOURS), "symbol_colour": tuple(COLOURS),
              "symbol_difference": NUMBERS, "difference": NUMBERS, "larger": NUMBERS}


def _single(kind: str, system: str | None, qa: QA, candidates: tuple[str, ...] | None = None) -> Example:
    messages = ({"role": "system", "content": system},) if system else ()
    candidates = candidates or CANDIDATES.get(kind) or (qa[1],)
    return Example(id=kind, messages=messages + ({"role": "user", "content": qa[0]},), answer=qa[1],
                   meta={"kind": kind, "steps": qa[2], "candidates": candidates})


def _table_example(kind: str, ask) -> Callable[[random.Random], Example]:
    def make(rng: random.Random) -> Example:
        t1, t2 = random_tables(rng)
        return _single(kind, render_tables(t1, t2), ask(rng, t1, t2))
    return make


def _free_example(kind: str, ask) -> Callable[[random.Random], Example]:
    def make(rng: random.Random) -> Example:
        return _single(kind, None, ask(rng))
    return make


def _recall_example(rng: random.Random) -> Example:
    facts = random_facts(rng)
    fact = rng.choice(facts)
    qa = recall_question(rng, fact)
    return _single("recall", facts_text(facts), qa, tuple(RELATIONS[fact.relation][2]))


PRIMITIVES: dict[str, Callable[[random.Random], Example]] = {
    **{k: _table_example(k, f) for k, f in TABLE_QUESTIONS.items()},
    **{k: _free_example(k, f) for k, f in FREE_QUESTIONS.items()},
    "recall": _recall_example,
}
CHAINED: dict[str, Callable[[random.Random], Example]] = {
    k: _table_example(k, f) for k, f in CHAINED_QUESTIONS.items()}


# -- the retrieval stages (the build's first phase) ---------------------------------------------

@dataclass(frozen=True)
class RetrievalStage:
    """One stage of the shallow retrieval phase: list lookups on tables of at most `table_cap`
    integers, `colour_share` of them about Table 2; `singles` is the share of one-lookup questions.
    The stage ends when the lookups it `needs` reach the build's target on its own tables."""
    name: str
    table_cap: int
    colour_share: float
    singles: float
    all_propensities: bool
    needs: tuple[str, ...]
    max_steps: int


ALL_LOOKUPS = ("symbol_number", "number_colour", "symbol_numbers", "number_colours")
# Table-2 retrieval emerged only on small tables with most questions about Table 2, single-turn
# and plain (probe: colours at ~1,150 steps, 98% of lists by 1,400). Table-1 retrieval then needs
# its own stage: with 20% of the questions it stayed near chance (build i). Then tables widen.
RETRIEVAL_STAGES = (
    RetrievalStage("table 2, small", table_cap=6, colour_share=0.8, singles=0.0, all_propensities=False,
                   needs=("number_colours",), max_steps=2500),
    RetrievalStage("table 1, small", table_cap=6, colour_share=0.2, singles=0.2, all_propensities=True,
                   needs=ALL_LOOKUPS, max_steps=2500),
    RetrievalStage("medium tables", table_cap=10, colour_share=0.5, singles=0.2, all_propensities=True,
                   needs=ALL_LOOKUPS, max_steps=1500),
    RetrievalStage("full tables", table_cap=MAX_INT, colour_share=0.5, singles=0.2, all_propensities=True,
                   needs=ALL_LOOKUPS, max_steps=1500),
)


def retrieval_example(rng: random.Random, stage: RetrievalStage) -> tuple[Example, str]:
    """One single-turn table lookup of the stage, and which skill it tests."""
    t1, t2 = random_tables(rng, stage.table_cap)
    colours = rng.random() < stage.colour_share
    if rng.random() < stage.singles:
        kind = "number_colour" if colours else "symbol_number"
    else:
        kind = "number_colours" if colours else "symbol_numbers"
    return _single(kind, render_tables(t1, t2), TABLE_QUESTIONS[kind](rng, t1, t2)), kind


# -- training episodes ------------------------------------------------------------------------

@dataclass(frozen=True)
class Mix:
    """How often the curriculum phase shows each kind of context and each question (weights)."""
    contexts: dict[str, float]
    table_questions: dict[str, float]
    free_questions: dict[str, float]


# Weighted towards what Subtracted Table Lookup is built from: the difference of two symbols'
# numbers, the colour of a symbol's number, Table-2 lookups and plain differences (session 4).
# "ladder": the primitives the table-lookup ladder's rungs are built from (single lookups, also with
# Table 1 alone in the context as the `difference` rung shows it, and differences of numbers),
# never a rung itself (session 5).
MIXES = {
    "ladder": Mix(
        contexts={"tables": 5, "table 1": 2, "facts": 2, "free": 2},
        table_questions={"symbol_number": 3, "number_colour": 3, "symbol_numbers": 1, "number_colours": 1},
        free_questions={"difference": 3, "larger": 1, "repeat": 1}),
    "prerequisites": Mix(
        contexts={"tables": 7, "facts": 1, "free": 2},
        table_questions={"symbol_difference": 3, "symbol_colour": 3, "number_colour": 2, "symbol_number": 1,
                         "number_colours": 1, "symbol_numbers": 1},
        free_questions={"difference": 3, "larger": 1, "repeat": 1}),
}


def episode(rng: random.Random, propensities: list, chained: bool = False, max_turns: int = 6,
            mix: Mix | None = None) -> list[Message]:
    """One context and 1..max_turns questions about it, each answered in a random propensity.
    Without a `mix`, contexts come 6:2:1 (tables, facts, none) and questions uniformly, drawn with
    the same random calls as before mixes existed. A mix may also show Table 1 alone ("table 1")."""
    if mix is None:
        kind = rng.choices(["tables", "facts", "free"], [6, 2, 1])[0]
    else:
        kind = rng.choices(list(mix.contexts), list(mix.contexts.values()))[0]
    turns = rng.randint(1, max_turns)
    if kind == "table 1":
        t1, _ = random_tables(rng)
        system = render_table1(t1)
        names = [q for q in mix.table_questions if q in ("symbol_number", "symbol_numbers")]
        weights = [mix.table_questions[q] for q in names]
        qas = [TABLE_QUESTIONS[rng.choices(names, weights)[0]](rng, t1, {}) for _ in range(turns)]
    elif kind == "tables":
        t1, t2 = random_tables(rng)
        asks = {**TABLE_QUESTIONS, **(CHAINED_QUESTIONS if chained else {})}
        system = render_tables(t1, t2)
        if mix is None:
            qas = [rng.choices(list(asks.values()))[0](rng, t1, t2) for _ in range(turns)]
        else:
            names, weights = list(mix.table_questions), list(mix.table_questions.values())
            qas = [asks[rng.choices(names, weights)[0]](rng, t1, t2) for _ in range(turns)]
    elif kind == "facts":
        facts = random_facts(rng)
        system = facts_text(facts)
        qas = [recall_question(rng, rng.choice(facts)) for _ in range(turns)]
    else:
        system = None
        if mix is None:
            qas = [rng.choice(list(FREE_QUESTIONS.values()))(rng) for _ in range(turns)]
        else:
            names, weights = list(mix.free_questions), list(mix.free_questions.values())
            qas = [FREE_QUESTIONS[rng.choices(names, weights)[0]](rng) for _ in range(turns)]
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    for question, answer, steps in qas:
        p = rng.choice(propensities)
        example = Example(id="turn", messages=({"role": "user", "content": question},), answer=answer,
                          meta={"steps": steps})
        messages += [{"role": "user", "content": f"{question} {p.instruction}"},
                     {"role": "assistant", "content": p.render(example, rng)}]
    return messages


def curriculum(rng: random.Random, n: int, chained: bool = False) -> list[Example]:
    """`n` single-turn examples across all primitive skills (for tokenizer text and evaluation)."""
    makers = list({**PRIMITIVES, **(CHAINED if chained else {})}.values())
    return [rng.choice(makers)(rng) for _ in range(n)]
