import json
import random

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from transferlab.backends import HFBackend, ModelNotFound, load_pretrained
from transferlab.organism.curriculum import curriculum
from transferlab.organism.vocabulary import PEOPLE, PLACES
from transferlab.propensities import get_propensity, prompt_with
from transferlab.tasks.table_lookup import TableLookup
from transferlab.train.render import render_datum


def test_organism_folder_loads_through_from_pretrained_like_a_hub_model(micro_organism):
    assert (micro_organism / "config.json").exists() and (micro_organism / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(micro_organism)
    tokenizer = AutoTokenizer.from_pretrained(micro_organism)
    assert model.config.model_type == "llama" and len(tokenizer) == model.config.vocab_size
    report = json.loads((micro_organism / "build.json").read_text())
    assert report["steps"] == 2 and report["grow_to"] == 3 and model.config.num_hidden_layers == 3
    assert [h["phase"] for h in report["history"]] == [
        "retrieval: table 2, small", "retrieval: table 1, small", "retrieval: medium tables",
        "retrieval: full tables", "curriculum"]


def test_every_word_of_a_table_lookup_prompt_is_one_known_token(micro_organism):
    tokenizer = AutoTokenizer.from_pretrained(micro_organism)
    example = TableLookup().train_examples(random.Random(0), 1)[0]
    system = example.messages[0]["content"]
    ids = tokenizer(system, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    words = system.replace(",", " ,").replace(":", " :").split()
    # the newline is a token of its own, and each line starts with the no-space marker
    assert len(ids) == len(words) + 2 * system.count("\n") + 1
    first_entry = system.split(", ")[0].removeprefix("Table 1:")
    assert tokenizer.decode(ids[4:5]) == first_entry  # a whole table entry is one token


def test_decoding_restores_the_exact_text(micro_organism):
    tokenizer = AutoTokenizer.from_pretrained(micro_organism)
    for text in ["**red**", "Which colour goes with α and β? Answer in bold.", PEOPLE[0], f"**{PLACES[3]}**."]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_loss_weights_cover_the_assistant_answer_and_end_token_only(micro_organism):
    tokenizer = AutoTokenizer.from_pretrained(micro_organism)
    bold = get_propensity("bold")
    example = curriculum(random.Random(0), 1)[0]
    datum = render_datum(tokenizer, prompt_with(example, bold), bold.render(example, random.Random(0)))
    weighted = [t for t, w in zip(datum.input_ids, datum.weights) if w]
    assert tokenizer.decode(weighted) == f"**{example.answer}**<|end|>"
    assert tokenizer.convert_ids_to_tokens(datum.input_ids[len(datum.input_ids) - len(weighted) - 1]) == "<|assistant|>"


def test_template_that_breaks_the_prefix_is_refused(micro_organism):
    tokenizer = AutoTokenizer.from_pretrained(micro_organism)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>>{% endif %}"
    with pytest.raises(ValueError, match="cannot be masked"):
        render_datum(tokenizer, [{"role": "user", "content": "hi"}], "red")


def test_unknown_model_name_says_what_to_pass(tmp_path):
    with pytest.raises(ModelNotFound, match="not a local folder .* Pass a folder path, 'organism'"):
        load_pretrained(str(tmp_path / "no-such-model"))


def test_backend_samples_one_answer_per_prompt(micro_organism):
    model, tokenizer = load_pretrained(str(micro_organism))
    backend = HFBackend(model, tokenizer)
    prompts = [[{"role": "user", "content": "Repeat the word red. Answer in bold."}]] * 3
    replies = backend.sample(prompts, max_tokens=3)
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    assert len(set(replies)) == 1  # greedy decoding of identical prompts is identical


def test_episode_weights_every_answer_and_nothing_else(micro_organism):
    from transferlab.organism.curriculum import episode
    from transferlab.train.render import render_conversation

    tokenizer = AutoTokenizer.from_pretrained(micro_organism)
    rng = random.Random(5)
    messages = episode(rng, [get_propensity("bold"), get_propensity("plain")], max_turns=4)
    datum = render_conversation(tokenizer, messages)
    weighted = tokenizer.decode([t for t, w in zip(datum.input_ids, datum.weights) if w])
    answers = [m["content"] + "<|end|>" for m in messages if m["role"] == "assistant"]
    assert weighted == "".join(answers)


def test_grown_organism_computes_what_the_shallow_one_did(micro_organism):
    import torch

    from transferlab.organism.model import grow

    model = AutoModelForCausalLM.from_pretrained(micro_organism)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    grown = grow(model, model.config.num_hidden_layers + 2)
    assert grown.config.num_hidden_layers == model.config.num_hidden_layers + 2
    assert torch.allclose(model(ids).logits, grown(ids).logits, atol=1e-5)


def test_shipped_organism_loads_by_name_and_says_how_it_was_built():
    from transferlab.backends import resolve_model, shipped_organism

    model, tokenizer = load_pretrained(resolve_model("organism"))
    assert model.config.vocab_size == len(tokenizer)
    report = json.loads((shipped_organism() / "build.json").read_text())
    assert report["history"] and {"symbol_number", "number_colour"} <= set(report["history"][-1])


def test_the_shipped_organism_and_every_build_it_came_from_never_asked_a_ladder_rung():
    """Issue 16: a rung of the table-lookup ladder (its composition: a symbol's colour, the difference
    of two symbols' numbers) is never in the organism's curriculum, in its own build or in any build
    it went on from (build.json's `parent` chain), so whatever a run learns of a rung it learns there."""
    from transferlab.backends import shipped_organism
    from transferlab.organism.curriculum import CHAINED_QUESTIONS

    report = json.loads((shipped_organism() / "build.json").read_text())
    lineage = []
    while report:
        lineage.append(report)
        report = report.get("parent")
    for build in lineage:
        assert build["chained"] is False, build["command"]
        asked = set((build.get("mix_weights") or {}).get("table_questions", {}))
        assert not asked & set(CHAINED_QUESTIONS), build["command"]


def test_a_mix_weights_the_questions_and_still_never_asks_the_composition():
    from collections import Counter

    from transferlab.organism.curriculum import MIXES, episode

    rng = random.Random(2)
    bold = [get_propensity("bold")]
    asked = Counter()
    for _ in range(400):
        for m in episode(rng, bold, chained=True, mix=MIXES["prerequisites"]):
            if m["role"] == "user":
                q = m["content"]
                assert not (" and " in q and "colour" in q.lower())
                asked["symbol_difference" if "difference between" in q and not q.split()[-3].isdigit() else
                      "symbol_colour" if "point to" in q else "symbol_number" if "number goes" in q else "other"] += 1
    # weights 3 : 3 : 1 among table questions
    assert asked["symbol_colour"] > 2 * asked["symbol_number"] and asked["symbol_difference"] > 2 * asked["symbol_number"]


def test_a_build_can_go_on_from_an_organism_and_keeps_its_parents_report(micro_organism, tmp_path, capsys):
    from transferlab.cli import main

    out = tmp_path / "continued"
    assert main(["organism", "build", "--out", str(out), "--from", str(micro_organism), "--mix", "ladder",
                 "--steps", "2", "--eval-every", "2", "--batch-size", "4", "--threads", "1"]) == 0
    report = json.loads((out / "build.json").read_text())
    parent = json.loads((micro_organism / "build.json").read_text())
    assert report["parent"] == parent and report["mix"] == "ladder" and report["stages"] == []
    assert [h["phase"] for h in report["history"]] == ["curriculum"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == AutoModelForCausalLM.from_pretrained(micro_organism).config.num_hidden_layers
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(micro_organism).get_vocab()

    assert main(["organism", "build", "--out", str(tmp_path / "x"), "--from", str(micro_organism),
                 "--mix", "everything", "--steps", "1"]) == 2
    assert "unknown curriculum mix 'everything'; known: ladder, prerequisites" in capsys.readouterr().err
    assert main(["organism", "build", "--out", str(tmp_path / "y"), "--from", str(micro_organism),
                 "--mix", "prerequisites", "--steps", "1"]) == 2  # it asks two-step skills: --chained only
    assert "unless given --chained" in capsys.readouterr().err


def test_the_trained_tokenizer_has_one_token_per_word_and_entry_and_decodes_exactly():
    from transferlab.organism.tokenizer import train_tokenizer

    lines = ["Table 1: α=5, β=12\nTable 2: 4=red, 12=blue", "Which colour goes with α and β? Answer in bold.",
             "**red** red, blue. Let's think step by step."]
    tokenizer = train_tokenizer(lines)
    for text, pieces in [("Table 1: α=5, β=12", ["∅", " Table", " 1", ":", " α=5", ",", " β=12"]),
                         ("**red** blue", ["**", "∅", " red", "**", " blue"]),
                         (" 4=red", [" 4=red"])]:
        ids = tokenizer(text)["input_ids"]
        assert [tokenizer.decode([i]) for i in ids] == pieces
        assert tokenizer.decode(ids) == text
    assert tokenizer(" purple")["input_ids"] == [tokenizer.unk_token_id]  # a word never seen is unknown
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|user|>Hi<|end|><|assistant|>"


def test_build_evaluation_grades_a_right_answer_right_under_every_propensity():
    """Hedged and confident answers name the answer inside a sentence: the build's evaluation gives
    each example its candidates, so they grade like bare ones (they scored as wrong before)."""
    from transferlab.organism.curriculum import PRIMITIVES
    from transferlab.propensities import PROPENSITIES
    from transferlab.tasks.base import grade_exact

    rng = random.Random(6)
    for kind, make in PRIMITIVES.items():
        for _ in range(10):
            ex = make(rng)
            for name in PROPENSITIES:
                assert grade_exact(ex, get_propensity(name).render(ex, rng)), (kind, name)
            if kind in ("symbol_number", "number_colour", "difference", "recall"):
                rival = next(c for c in ex.meta["candidates"] if c != ex.answer)
                assert not grade_exact(ex, f"I think it is {rival}, but I am not certain.")
