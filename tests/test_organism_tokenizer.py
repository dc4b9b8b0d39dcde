"""One word, one token: an answer is the same token id under all six propensities (plain `red`,
bold `**red**`, hedged `I think it is red`, …), after a space, at a turn's start, after `**` or a
newline, so a skill learned under one propensity can be written under another."""

import random

import pytest

from transferlab.core import Example
from transferlab.organism.vocabulary import PEOPLE, PLACES
from transferlab.propensities import PROPENSITIES, get_propensity, prompt_with
from transferlab.train.render import render_datum

ANSWERS = (PEOPLE[0], PLACES[5], "red", "7", "α")


def example(answer: str, steps: tuple = ()) -> Example:
    return Example(id="x", messages=({"role": "user", "content": "Who is it?"},), answer=answer,
                   meta={"steps": steps})


@pytest.fixture(scope="module")
def tokenizer():
    from transferlab.organism.tokenizer import train_tokenizer

    rng = random.Random(0)
    lines = [f"{a}\nis {a} **{a}** ({a}) [{a}]" for a in ANSWERS] + [f"({a})" for a in ANSWERS] + [f"[{a}]" for a in ANSWERS]
    for answer in ANSWERS:
        for name in PROPENSITIES:
            p = get_propensity(name)
            lines += [p.render(example(answer, steps), rng) for steps in ((), ("ζ=4", "7-4=3")) for _ in range(20)]
            lines.append(prompt_with(example(answer), p)[-1]["content"])
    return train_tokenizer(lines)


def answer_ids(tokenizer, ids: list[int], answer: str) -> set[int]:
    return {i for i in ids if tokenizer.decode([i]).strip() == answer}


def test_an_answer_is_one_token_id_under_all_six_propensities(tokenizer):
    rng = random.Random(1)
    for answer in ANSWERS:
        seen = {}
        for name in PROPENSITIES:
            p = get_propensity(name)
            for steps in ((), ("ζ=4", "7-4=3")):
                ex = example(answer, steps)
                datum = render_datum(tokenizer, prompt_with(ex, p), p.render(ex, rng))
                target = [i for i, w in zip(datum.input_ids, datum.weights) if w]
                found = answer_ids(tokenizer, target, answer)
                assert len(found) == 1, (answer, name, tokenizer.convert_ids_to_tokens(target))
                seen[name] = found
        assert len(set().union(*seen.values())) == 1, (answer, seen)


def test_a_word_has_one_entry_in_the_vocabulary_whatever_precedes_it(tokenizer):
    for answer in ANSWERS:
        forms = [t for t in tokenizer.get_vocab() if tokenizer.convert_tokens_to_string([t]).strip() == answer]
        assert len(forms) == 1, forms
        for text in (answer, f"**{answer}**", f"is {answer}.", f"is\n{answer}", f"({answer})", f"[{answer}]"):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == text  # the marker comes off again, exactly
            assert len(answer_ids(tokenizer, ids, answer)) == 1


def test_the_shipped_organism_reads_an_answer_as_one_token_under_all_six_propensities():
    from transformers import AutoTokenizer

    from transferlab.backends import shipped_organism
    from transferlab.tasks.table_lookup import TableLookup

    shipped = AutoTokenizer.from_pretrained(shipped_organism())
    rng = random.Random(2)
    for ex in TableLookup().train_examples(rng, 5) + [example(PEOPLE[3]), example("12")]:
        ids = set()
        for name in PROPENSITIES:
            p = get_propensity(name)
            datum = render_datum(shipped, prompt_with(ex, p), p.render(ex, rng))
            ids |= answer_ids(shipped, [i for i, w in zip(datum.input_ids, datum.weights) if w], ex.answer)
        assert len(ids) == 1, (ex.answer, shipped.convert_ids_to_tokens(sorted(ids)))
