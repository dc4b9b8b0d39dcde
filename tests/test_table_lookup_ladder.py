"""The table-lookup ladder (`variant`): each rung's answer follows from its prompt, its chance is
under 15% on the knobs the default runs use, and no rung is in the organism's curriculum."""

import random

import pytest

from transferlab.propensities import PROPENSITIES, get_propensity, prompt_with
from transferlab.tasks.table_lookup import VARIANTS, TableLookup


def read_table(line: str, key=str, value=str) -> dict:
    entries = line.split(": ", 1)[1].split(", ")
    return {key(k): value(v) for k, v in (e.split("=") for e in entries)}


def test_difference_rung_shows_table_1_alone_and_answers_the_difference_of_the_two_numbers():
    for ex in TableLookup(variant="difference").train_examples(random.Random(0), 200):
        system = ex.messages[0]["content"]
        assert "\n" not in system and "Table 2" not in system
        table1 = read_table(system, value=int)
        va, vb = table1[ex.meta["a"]], table1[ex.meta["b"]]
        assert ex.answer == str(abs(va - vb)) and ex.answer not in (str(va), str(vb))
        assert ex.messages[1]["content"] == f"What is the difference between {ex.meta['a']} and {ex.meta['b']}?"


def test_colour_rung_answers_the_colour_of_one_symbols_number():
    for ex in TableLookup(variant="colour").train_examples(random.Random(1), 200):
        line1, line2 = ex.messages[0]["content"].split("\n")
        table1, table2 = read_table(line1, value=int), read_table(line2, key=int)
        assert ex.answer == table2[table1[ex.meta["a"]]]
        assert ex.messages[1]["content"] == f"Which colour does {ex.meta['a']} point to?"


def test_the_seed_rung_stays_the_default():
    assert TableLookup().variant == "subtracted"
    assert TableLookup().make(random.Random(2), 0) == TableLookup(variant="subtracted").make(random.Random(2), 0)


@pytest.mark.parametrize("variant,max_int,expected", [("difference", 16, 0.134), ("colour", 12, 1 / 12),
                                                      ("subtracted", 12, 1 / 12)])
def test_each_rung_states_its_chance(variant, max_int, expected):
    chance = TableLookup(variant=variant, max_int=max_int).chance()
    assert chance == pytest.approx(expected, abs=0.01) and chance <= 0.15


def test_difference_rung_chance_is_the_commonest_answer_not_a_uniform_guess():
    # with integers up to 12, "1" is the answer 15% of the time: more than 1/11
    assert TableLookup(variant="difference", max_int=12).chance() > 1 / 11 + 0.04


def test_every_rung_grades_every_propensity_of_its_right_answer_as_right():
    rng = random.Random(3)
    for variant in VARIANTS:
        task = TableLookup(variant=variant)
        for ex in task.train_examples(rng, 20):
            for name in PROPENSITIES:
                assert task.grade(ex, get_propensity(name).render(ex, rng)), (variant, name)
            assert not task.grade(ex, "I think it is " + next(c for c in ex.meta["candidates"] if c != ex.answer))


def test_unknown_variant_names_the_rungs():
    with pytest.raises(ValueError, match="unknown table_lookup variant 'hardest'; allowed: difference"):
        TableLookup(variant="hardest")


def test_no_rung_is_asked_by_the_organisms_curriculum():
    from transferlab.organism.curriculum import MIXES, curriculum, episode

    rng = random.Random(4)
    props = [get_propensity(p) for p in PROPENSITIES]
    asked = [m["content"] for mix in (None, MIXES["ladder"]) for _ in range(300)
             for m in episode(rng, props, mix=mix) if m["role"] == "user"]
    asked += [prompt_with(ex, props[0])[-1]["content"] for ex in curriculum(rng, 300)]
    for q in asked:
        assert "point to" not in q and not (" and " in q and "colour" in q)
        if q.startswith("What is the difference between"):
            assert q.split()[5].isdigit()  # a difference of two numbers: a primitive, not a rung


def test_a_rungs_answer_space_is_what_off_task_counts():
    difference, colour = TableLookup(variant="difference"), TableLookup(variant="colour")
    assert difference.is_candidate("**7**") and not difference.is_candidate("red")
    assert colour.is_candidate("I think it is red.") and not colour.is_candidate("7")


def test_the_organisms_default_run_uses_the_difference_rung_and_real_models_the_seed_task():
    from transferlab.config import load_config

    organism, lora = load_config().tasks["table_lookup"], load_config("default_lora").tasks["table_lookup"]
    assert organism["variant"] == "difference" and TableLookup(**organism).chance() <= 0.15
    assert lora["variant"] == "subtracted"
