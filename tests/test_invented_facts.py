import random

import pytest

from transferlab.tasks.invented_facts import InventedFacts, invent_facts


def test_facts_depend_only_on_the_fact_seed():
    assert invent_facts(50, seed=1) == invent_facts(50, seed=1)
    assert invent_facts(50, seed=1) != invent_facts(50, seed=2)


def test_subjects_are_distinct_so_each_question_has_one_answer():
    facts = invent_facts(500, seed=0)
    assert len({f.subject for f in facts}) == 500


def test_training_cycles_over_every_fact_with_the_trained_phrasing():
    task = InventedFacts(n_facts=30)
    examples = task.train_examples(random.Random(0), 60)
    assert {ex.meta["subject"] for ex in examples} == {f.subject for f in task.facts}
    assert all(ex.meta["phrasing"] == 0 for ex in examples)


def test_eval_asks_trained_questions_and_held_out_paraphrases():
    task = InventedFacts(n_facts=40)
    sets = task.eval_sets(random.Random(0), 20)
    assert set(sets) == {"trained", "paraphrase"}
    trained, para = sets["trained"], sets["paraphrase"]
    assert [e.answer for e in trained] == [e.answer for e in para]
    assert all(e.meta["phrasing"] == 0 for e in trained)
    assert all(e.meta["phrasing"] in (1, 2) for e in para)


def test_choice_mode_lists_the_answer_among_options():
    task = InventedFacts(n_facts=20, mode="choice", n_options=4)
    for ex in task.train_examples(random.Random(1), 20):
        options = ex.messages[-1]["content"].split("Options: ")[1].rstrip(".").split(", ")
        assert len(options) == 4 and ex.answer in options
    assert task.chance() == 0.25


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be 'free' or 'choice'"):
        InventedFacts(mode="essay")


def test_fact_seed_follows_the_runs_seed_unless_set():
    from transferlab.config import dump_config, load_config, make_tasks

    def facts(seed, *overrides):
        config = load_config(None, seed=seed, overrides=list(overrides))
        return config, make_tasks(config)["invented_facts"].facts

    config, of_seed_5 = facts(5)
    assert config.tasks["invented_facts"]["fact_seed"] == 5
    assert "fact_seed = 5" in dump_config(config)  # the resolved config records the value used
    assert of_seed_5 != facts(6)[1]  # so seeds differ in their items too
    fixed, of_fixed = facts(5, "tasks.invented_facts.fact_seed=2")
    assert fixed.tasks["invented_facts"]["fact_seed"] == 2 and of_fixed == facts(6, "tasks.invented_facts.fact_seed=2")[1]
