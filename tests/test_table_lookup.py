import random

import pytest

from transferlab.tasks.table_lookup import TableLookup


def parse_tables(system: str) -> tuple[dict[str, int], dict[int, str]]:
    line1, line2 = system.split("\n")
    line1, line2 = line1.replace("=", " "), line2.replace("=", " ")
    table1 = {k: int(v) for k, v in (e.split() for e in line1.removeprefix("Table 1: ").split(", "))}
    table2 = {int(k): v for k, v in (e.split() for e in line2.removeprefix("Table 2: ").split(", "))}
    return table1, table2


def test_answer_is_colour_of_the_difference_read_from_the_prompt():
    task = TableLookup()
    for ex in task.train_examples(random.Random(1), 200):
        table1, table2 = parse_tables(ex.messages[0]["content"])
        a, b = ex.meta["a"], ex.meta["b"]
        assert f" {a} and {b}?" in ex.messages[1]["content"]
        assert ex.answer == table2[abs(table1[a] - table1[b])]


def test_answer_never_equals_a_shortcut_colour():
    task = TableLookup()
    for ex in task.train_examples(random.Random(2), 500):
        table1, table2 = parse_tables(ex.messages[0]["content"])
        va, vb = table1[ex.meta["a"]], table1[ex.meta["b"]]
        for shortcut in (va, vb, va + vb):
            if shortcut in table2:
                assert table2[shortcut] != ex.answer


def test_tables_are_regenerated_per_example():
    examples = TableLookup().train_examples(random.Random(3), 20)
    assert len({ex.messages[0]["content"] for ex in examples}) == 20


def test_instructions_never_mention_subtraction():
    for ex in TableLookup().train_examples(random.Random(4), 50):
        text = " ".join(m["content"] for m in ex.messages).lower()
        assert not any(word in text for word in ("subtract", "minus", "difference", "-"))


def test_same_seed_same_examples_other_seed_other_examples():
    task = TableLookup()
    first = task.train_examples(random.Random(5), 30)
    assert first == task.train_examples(random.Random(5), 30)
    assert first != task.train_examples(random.Random(6), 30)


def test_default_knobs_put_chance_under_fifteen_percent():
    task = TableLookup()
    assert task.chance() == pytest.approx(1 / 12)
    assert task.chance_without_shortcuts() < 0.15


def test_knobs_change_the_tables():
    task = TableLookup(n_symbols=6, max_int=20, n_colours=8)
    table1, table2 = parse_tables(task.train_examples(random.Random(7), 1)[0].messages[0]["content"])
    assert len(table1) == 6 and len(table2) == 20 and len(set(table2.values())) <= 8


def test_knob_out_of_range_is_refused_with_the_allowed_range():
    with pytest.raises(ValueError, match="n_colours must be in 4..16"):
        TableLookup(n_colours=2)
