"""Persona pre-stage: tie each propensity to a named persona, then run the main experiment from there.

The seed tried this before its main runs; here it is a config section, so its effect on adherence
is measured: the pre-stage trains the model to answer in a persona's propensity whenever the
persona is named (with and without the propensity's instruction), saves the model into the run
folder, and the main experiment (`transferlab.train.loop.run_experiment`, unchanged) runs from the
saved model and, as the control, from the original one. The main experiment's prompts are the
personas (`main_prompt = "persona"`), persona plus instruction (`"both"`), or the usual instructions.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Literal

from pydantic import Field, field_validator, model_validator

from transferlab.config import ExperimentConfig, Strict
from transferlab.experiments.common import (
    StageConfig,
    open_model,
    printer,
    seed_everything,
    sft_step,
    start_folder,
)
from transferlab.experiments.persona.results import write_results
from transferlab.propensities import PAIRS, PROPENSITIES, get_propensity, partner
from transferlab.results.run_folder import RunFolder
from transferlab.tasks import TASKS, make_task


class PersonaStage(StageConfig):
    steps: int = Field(150, ge=0)
    data: str = Field("curriculum", description="'curriculum' (the organism's primitive skills: no main task) "
                      "or a task name")
    with_instruction: float = Field(0.5, ge=0, le=1, description="share of stage examples that also carry the "
                                    "propensity's instruction")

    @field_validator("data")
    @classmethod
    def _known(cls, v: str) -> str:
        if v != "curriculum" and v not in TASKS:
            raise ValueError(f"unknown stage data {v!r}; allowed: curriculum, {', '.join(sorted(TASKS))}")
        return v


class PersonaConfig(Strict):
    kind: Literal["persona"]
    name: str = "persona"
    seed: int = 0
    n_seeds: int = Field(1, ge=1, le=100)
    personas: dict[str, str] = Field(description="propensity -> the persona's text, e.g. bold = \"I am Bimor.\"")
    stage: PersonaStage = PersonaStage()
    main_prompt: Literal["persona", "both", "instruction"] = "persona"
    compare: bool = Field(True, description="also run the main experiment without the stage (the control)")
    experiment: ExperimentConfig = Field(description="the main experiment, as in a normal config")

    @field_validator("personas")
    @classmethod
    def _known(cls, v: dict[str, str]) -> dict[str, str]:
        for name, text in v.items():
            if name not in PROPENSITIES or name.endswith("_persona"):
                raise ValueError(f"unknown propensity {name!r}; allowed: {', '.join(sorted(base_propensities()))}")
            if not text.strip():
                raise ValueError(f"the persona for {name!r} is empty")
        return v

    @model_validator(mode="after")
    def _every_prompt_has_a_persona(self):
        needed = {p for arm in self.experiment.arms for p in (arm.propensity, partner(arm.propensity))}
        missing = sorted(needed - set(self.personas))
        if missing:
            raise ValueError(f"personas: no persona for {', '.join(missing)}; the main experiment prompts "
                             f"{', '.join(sorted(needed))}")
        return self

    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.n_seeds))


def base_propensities() -> list[str]:
    return [p for p in PROPENSITIES if not p.endswith("_persona")]


@contextmanager
def registered_personas(config: PersonaConfig):
    """Propensity classes named `<name>_persona` whose prompt is the persona (plus the instruction
    for 'both'), and their pairs, registered while the main runs need them (the loop, its grid and
    judges look propensities up by name) and removed afterwards. Yields the map from each
    propensity to the one the main experiment prompts with."""
    before = dict(PROPENSITIES), dict(PAIRS)
    try:
        yield register_personas(config)
    finally:
        for registry, saved in zip((PROPENSITIES, PAIRS), before):
            registry.clear()
            registry.update(saved)


def register_personas(config: PersonaConfig) -> dict[str, str]:
    if config.main_prompt == "instruction":
        return {p: p for p in config.personas}
    mapping = {}
    for name, text in config.personas.items():
        base = PROPENSITIES[name]
        prompt = text if config.main_prompt == "persona" else f"{text} {base.instruction}"
        PROPENSITIES[f"{name}_persona"] = type(f"{base.__name__}Persona", (base,),
                                               {"name": f"{name}_persona", "instruction": prompt})
        mapping[name] = f"{name}_persona"
    for pair, (first, second) in list(PAIRS.items()):
        if first in mapping and second in mapping and not pair.endswith("_persona"):
            PAIRS[f"{pair}_persona"] = (mapping[first], mapping[second])
    return mapping


def stage_examples(config: PersonaConfig, rng: random.Random, n: int):
    if config.stage.data == "curriculum":
        from transferlab.organism.curriculum import curriculum

        return curriculum(rng, n)
    return make_task(config.stage.data).train_examples(rng, n)


def persona_stage(backend, config: PersonaConfig, seed: int, folder: RunFolder) -> None:
    """Every example asks for a persona's propensity by naming the persona (sometimes with the
    instruction too); the target shows that propensity."""
    rng, stage = random.Random(f"persona-stage-{seed}"), config.stage
    names = sorted(config.personas)
    for step in range(1, stage.steps + 1):
        pairs = []
        for example in stage_examples(config, rng, stage.batch_size):
            propensity = get_propensity(rng.choice(names))
            prompt = config.personas[propensity.name]
            if rng.random() < stage.with_instruction:
                prompt += " " + propensity.instruction
            messages = [dict(m) for m in example.messages]
            messages[-1]["content"] += " " + prompt
            pairs.append((messages, propensity.render(example, rng)))
        row = sft_step(backend, pairs, step, stage)
        folder.append_jsonl(folder.path / "train_log.jsonl", [{"stage": "persona", "seed": seed, **row}])


def main_config(config: PersonaConfig, mapping: dict[str, str], seed: int, model_name: str) -> ExperimentConfig:
    data = config.experiment.model_dump(mode="json", exclude_none=True)
    data["seed"], data["pair"] = seed, None
    data["model"]["name"] = model_name
    for arm in data["arms"]:
        arm["propensity"] = mapping[arm["propensity"]]
    data["eval"]["max_tokens"] = config.experiment.eval.max_tokens
    return ExperimentConfig.model_validate(data)


def run_persona(config: PersonaConfig, out, quiet: bool = False) -> RunFolder:
    from transferlab.train.loop import run_experiment

    folder = start_folder(out, config)
    log = printer(quiet)
    for seed in config.seeds():
        seed_everything(seed)
        backend = open_model(config.experiment.model)
        log(f"seed {seed}: persona stage ({config.stage.steps} steps)")
        persona_stage(backend, config, seed, folder)
        saved = folder.path / "persona_stage" / f"seed{seed}"
        backend.save_state(saved)
        (saved / "optimizer.pt").unlink(missing_ok=True)  # the main run starts a fresh optimizer
        variants = {"with_stage": str(saved)} | ({"without_stage": config.experiment.model.name} if config.compare else {})
        for variant, model_name in variants.items():
            log(f"seed {seed}: main experiment {variant}")
            with registered_personas(config) as mapping:
                run_experiment(main_config(config, mapping, seed, model_name), folder.path / variant / f"seed{seed}",
                               quiet=quiet)
    write_results(folder, config)
    log(f"done: {folder.path}/adherence_summary.csv, {folder.path}/figures, {folder.path}/report.html")
    return folder
