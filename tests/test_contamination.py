"""The organism's curriculum never teaches what the experiment measures.

Checked on what the curriculum generates, not on its wording: every question asked over tables is
tested against every rung of the table-lookup ladder (is its answer the rung's answer for the symbols
it names?), and every fact the curriculum states or asks about against the experiment's invented
facts (the same subject, relation and object) for the seeds a run draws its facts from.
"""

from __future__ import annotations

import random
import re

import pytest

from transferlab.organism import curriculum as cur
from transferlab.organism.vocabulary import GREEK
from transferlab.propensities import get_propensity
from transferlab.tasks.invented_facts import RELATIONS, invent_facts
from transferlab.tasks.table_lookup import VARIANTS

ENTRY = re.compile(r"(\S+?)=(\S+?)(?:,|$)")
PROPENSITIES = [get_propensity(p) for p in
                ("bold", "plain", "hedging", "confident", "reasoning", "no_reasoning")]


def tables(system: str | None) -> tuple[dict[str, int], dict[int, str]]:
    t1, t2 = {}, {}
    for line in (system or "").splitlines():
        if line.startswith("Table 1: "):
            t1 = {k: int(v) for k, v in ENTRY.findall(line[len("Table 1: "):])}
        elif line.startswith("Table 2: "):
            t2 = {int(k): v for k, v in ENTRY.findall(line[len("Table 2: "):])}
    return t1, t2


def rung_answers(t1: dict, t2: dict, named: list[str]) -> dict[str, str]:
    """What each rung of the ladder would answer about the symbols a question names."""
    answers = {}
    if len(named) == 1 and named[0] in t1 and t1[named[0]] in t2:
        answers["colour"] = t2[t1[named[0]]]
    if len(named) == 2 and all(s in t1 for s in named):
        diff = abs(t1[named[0]] - t1[named[1]])
        answers["difference"] = str(diff)
        if diff in t2:
            answers["subtracted"] = t2[diff]
    return answers


def qa_turns(rng: random.Random, n: int):
    """(system, question, answer) of every turn the build trains on: the retrieval stages, the
    curriculum's episodes (the default mix and every named mix a build may use without --chained, the
    opt-in to two-step questions) and its single-turn examples."""
    for stage in cur.RETRIEVAL_STAGES:
        for _ in range(n // 4):
            example, _ = cur.retrieval_example(rng, stage)
            system = next((m["content"] for m in example.messages if m["role"] == "system"), None)
            yield system, example.messages[-1]["content"], example.answer
    unchained = [m for m in cur.MIXES.values() if not set(m.table_questions) & set(cur.CHAINED)]
    assert unchained, "no named mix to check"
    for mix in [None, *unchained]:
        for _ in range(n):
            messages = cur.episode(rng, PROPENSITIES, mix=mix)
            system = next((m["content"] for m in messages if m["role"] == "system"), None)
            users = [m["content"] for m in messages if m["role"] == "user"]
            answers = [m["content"] for m in messages if m["role"] == "assistant"]
            yield from ((system, q, a) for q, a in zip(users, answers))
    for example in cur.curriculum(rng, n):
        system = next((m["content"] for m in example.messages if m["role"] == "system"), None)
        yield system, example.messages[-1]["content"], example.answer


def test_no_curriculum_question_is_a_rung_of_the_ladder():
    assert set(VARIANTS) == {"difference", "colour", "subtracted"}  # a new rung must be checked here too
    seen = 0
    for system, question, answer in qa_turns(random.Random(0), 400):
        t1, t2 = tables(system)
        if not t1:
            continue
        named = [w for w in re.findall(r"[^\s,?.]+", question) if w in GREEK]
        # the words of the answer as the turn states it: after a reasoning chain's "Answer:", markup dropped
        final = re.findall(r"\w+", answer.rsplit("Answer:", 1)[-1])
        for rung, value in rung_answers(t1, t2, named).items():
            seen += 1
            assert value not in final or len(final) > 1 and _is_list_answer(question), (rung, system, question, answer)
    assert seen > 500  # the check met many questions that name symbols


def _is_list_answer(question: str) -> bool:
    """List lookups (`β 7, α 5`) name several values; a rung asks for one."""
    return question.startswith(("Which numbers go with", "Which colours go with"))


def test_the_composition_a_rung_asks_is_only_in_the_curriculum_when_chained_is_asked_for():
    unchained = {q for _, q, _ in qa_turns(random.Random(1), 200)}
    assert not any(q.startswith(("What is the difference between", "Which colour does")) and
                   any(s in q for s in GREEK) for q in unchained)
    chained = [cur.CHAINED[k](random.Random(2)) for k in cur.CHAINED]
    assert {e.messages[-1]["content"].split()[0] for e in chained} == {"What", "Which"}  # the opt-in still works


@pytest.mark.parametrize("seed", range(10))
def test_no_fact_of_a_run_is_stated_or_asked_in_the_curriculum(seed):
    """A run's facts come from its seed (fact_seed follows seed): none of its (subject, relation,
    object) triples may be one the curriculum states, and no curriculum question asks about one of
    its subjects closed-book (without the fact in the context)."""
    experiment = {(f.subject, f.relation, f.obj) for f in invent_facts(100, seed)}
    subjects = {s for s, _, _ in experiment}
    statements = {RELATIONS[r][0].format(s=s, o=o): (s, r, o) for s, r, o in experiment}
    rng = random.Random(100 + seed)
    for system, question, _ in qa_turns(rng, 120):
        context = system or ""
        for statement, triple in statements.items():
            assert statement not in context, (triple, context)
        asked = [s for s in subjects if s in question]
        for subject in asked:
            assert subject in context, (subject, question)  # never closed-book
