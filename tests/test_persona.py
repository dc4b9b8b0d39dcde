"""Persona pre-stage: personas must cover the main experiment's prompts, persona propensities
prompt with the persona and judge like their base, and a run compares adherence with and without
the stage."""

import pandas as pd
import pytest

from transferlab.config import ConfigError
from transferlab.experiments import load_experiment, run_kind
from transferlab.experiments.persona import main_config, registered_personas
from transferlab.propensities import PAIRS, PROPENSITIES, get_propensity

CONFIG = """kind = "persona"
[personas]
bold = "I am Bimor."
{plain}
[experiment]
[[experiment.arms]]
task = "table_lookup"
propensity = "bold"
"""


def test_every_propensity_the_main_experiment_prompts_needs_a_persona(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(CONFIG.format(plain=""))
    with pytest.raises(ConfigError, match="personas: no persona for plain; the main experiment prompts bold, plain"):
        load_experiment(path)
    path.write_text(CONFIG.format(plain='italic = "I am Bogox."'))
    with pytest.raises(ConfigError, match="unknown propensity 'italic'"):
        load_experiment(path)


def test_persona_propensities_prompt_with_the_persona_judge_like_their_base_and_go_away(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(CONFIG.format(plain='plain = "I am Bogox."'))
    config = load_experiment(path)
    with registered_personas(config) as mapping:
        assert mapping == {"bold": "bold_persona", "plain": "plain_persona"}
        persona = get_propensity("bold_persona")
        assert persona.instruction == "I am Bimor."
        assert persona.judge(["**red**", "red"], ["red", "red"]) == [True, False]
        main = main_config(config, mapping, seed=3, model_name="elsewhere")
        assert [a.propensity for a in main.arms] == ["bold_persona"] and main.seed == 3
        assert PAIRS["bold_plain_persona"] == ("bold_persona", "plain_persona")
    assert "bold_persona" not in PROPENSITIES and "bold_plain_persona" not in PAIRS


def test_a_run_measures_adherence_with_and_without_the_stage(micro_organism, tmp_path):
    config = load_experiment("persona", [
        f"experiment.model.name={micro_organism}", "n_seeds=1", "stage.steps=2", "stage.batch_size=4",
        "experiment.train.steps=2", "experiment.train.batch_size=4", "experiment.eval.every=2",
        "experiment.eval.n=4", "experiment.eval.n_boot=20", "experiment.tasks.invented_facts.n_facts=8"])
    folder = run_kind(config, tmp_path / "persona", quiet=True)
    assert (folder.path / "persona_stage" / "seed0" / "config.json").exists()
    stage_log = pd.read_csv(folder.path / "train_log.csv")
    assert list(stage_log["step"]) == [1, 2] and stage_log["loss"].between(0, 50).all()  # the stage trained

    # the summary's numbers are the samples' own, recomputed here from each main run's samples.jsonl
    samples = pd.concat([pd.read_json(folder.path / variant / "seed0" / "samples.jsonl", lines=True)
                         .assign(variant=variant) for variant in ("with_stage", "without_stage")])
    samples["role"] = (samples["prompted"] == samples["trained"]).map({True: "trained", False: "swapped"})
    keys = ["variant", "task", "eval_set", "role", "prompted", "step"]
    expected = samples.groupby(keys).agg(n=("adherent", "size"), adherent=("adherent", "mean"),
                                         correct=("correct", "mean"))
    summary = pd.read_csv(folder.path / "adherence_summary.csv").set_index(keys).sort_index()
    assert list(summary.index) == list(expected.index)  # every condition, no other
    assert set(summary.index.get_level_values("variant")) == {"with_stage", "without_stage"}
    assert set(summary.index.get_level_values("step")) == {0, 2}
    assert set(summary.index.get_level_values("prompted")) == {"bold_persona", "plain_persona"}
    trained = dict(zip(samples["task"], samples["trained"]))
    assert trained == {"table_lookup": "bold_persona", "invented_facts": "plain_persona"}
    assert (summary["n"] == 4).all() and (expected["n"] == 4).all()  # eval.n examples per condition
    assert summary["adherent_mean"].to_numpy() == pytest.approx(expected["adherent"].to_numpy())
    assert summary["correct_mean"].to_numpy() == pytest.approx(expected["correct"].to_numpy())
    for measure in ("adherent", "correct"):
        assert summary[f"{measure}_mean"].between(0, 1).all()
        assert (summary[f"{measure}_pooled_low"] <= summary[f"{measure}_mean"] + 1e-12).all()
        assert (summary[f"{measure}_mean"] <= summary[f"{measure}_pooled_high"] + 1e-12).all()
    assert (folder.path / "figures" / "persona_adherence.png").stat().st_size > 10_000
    assert "with_stage/seed0" in (folder.path / "report.html").read_text()
