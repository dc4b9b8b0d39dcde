"""Inoculation prompting with its controls: does naming a trait in the training prompt keep the
model from showing it when the prompt is gone?

Training targets show two traits at once (one desired, one not: hedging and bold on the organism;
a second language and ALL CAPS on a real model). Each training *variant* adds one prompt to every
training example: the inoculation prompt (names the undesired trait), a pool of its rephrasings
sampled per example, a placebo of the same token length, a random string of the same token length,
an unrelated prompt X (the conditionalization control), or nothing. Evaluation asks every variant
under a grid of prompts (a deployment prompt, the variant's own training prompt, an unrelated Y,
none) and measures both traits and the task's accuracy (capability retention). Before training an
elicitation pre-screen measures how strongly each prompt elicits each trait.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field, field_validator, model_validator

from transferlab.config import Strict
from transferlab.experiments.common import (
    KindConfig,
    Placement,
    StageConfig,
    check_writable,
    examples,
    open_model,
    place,
    printer,
    sample,
    seed_everything,
    sft_step,
    start_folder,
    token_length,
)
from transferlab.experiments.traits import check_composable, compose, get_trait, grade_with, known_trait
from transferlab.results.run_folder import RunFolder

VARIANTS = ("inoculation", "inoculation_pool", "placebo", "random", "unrelated", "none")
EVAL_PROMPTS = ("deployment", "training", "unrelated", "none")
Variant = Literal["inoculation", "inoculation_pool", "placebo", "random", "unrelated", "none"]


class TraitPair(Strict):
    desired: str = "hedging"
    undesired: str = "bold"
    inoculation: list[str] = Field(["Answer in bold.", "Your answer is in bold.", "Write the answer in bold.",
                                    "Give a bold answer."], min_length=1,
                                   description="rephrasings naming the undesired trait; the first is the single one")
    placebo: str = Field("Please read the question.", description="neutral text, fitted to the inoculation "
                         "prompt's token length (words dropped or repeated)")
    unrelated: str = Field("Colours are nice.", description="X: the unrelated training prompt")

    @field_validator("desired", "undesired")
    @classmethod
    def _known(cls, v: str) -> str:
        return known_trait(v)

    @model_validator(mode="after")
    def _composable(self):
        check_composable(self.desired, self.undesired)
        return self

    @property
    def label(self) -> str:
        return f"{self.desired}+{self.undesired}"


class InoculationEval(Strict):
    every: int = Field(40, ge=1)
    n: int = Field(48, ge=1, description="examples per eval prompt")
    elicitation_n: int = Field(48, ge=1, description="examples per prompt in the pre-screen")
    max_tokens: int | None = Field(None, ge=1, description="default: what the two traits need")
    prompts: list[Literal["deployment", "training", "unrelated", "none"]] = Field(list(EVAL_PROMPTS), min_length=1)


class InoculationConfig(KindConfig):
    kind: Literal["inoculation"]
    name: str = "inoculation"
    pairs: list[TraitPair] = Field([TraitPair()], min_length=1)
    variants: list[Variant] = Field(list(VARIANTS), min_length=1)
    pool_size: int = Field(4, ge=2, description="rephrasings the pool variant samples from")
    placement: Placement = "user_suffix"
    deployment: str = Field("Answer the question.", description="the eval prompt a deployed model sees")
    unrelated_eval: str = Field("Numbers are fun.", description="Y: the unrelated eval prompt")
    train: StageConfig = StageConfig(steps=80)
    eval: InoculationEval = InoculationEval()

    @model_validator(mode="after")
    def _checks(self):
        if "inoculation_pool" in self.variants:
            short = [p.label for p in self.pairs if len(p.inoculation) < 2]
            if short:
                raise ValueError(f"the inoculation_pool variant needs at least 2 inoculation rephrasings; "
                                 f"pairs {short} have one (add rephrasings or drop the variant)")
        if self.eval.max_tokens is None:
            self.eval.max_tokens = max(get_trait(t).max_tokens + 6 for p in self.pairs for t in (p.desired, p.undesired))
        return self


# -- prompts --------------------------------------------------------------------------------------

def fit_length(text: str, n_tokens: int, tokenizer) -> str:
    """`text` with words repeated or dropped until it is `n_tokens` long (or the nearest below)."""
    words, out = text.split(), []
    while words and token_length(tokenizer, " ".join(out)) < n_tokens and len(out) < 4 * n_tokens:
        out.append(words[len(out) % len(words)])
    while len(out) > 1 and token_length(tokenizer, " ".join(out)) > n_tokens:
        out.pop()
    return " ".join(out)


def random_string(tokenizer, n_tokens: int, rng: random.Random) -> str:
    """Random non-special tokens of the model's own vocabulary, as words, `n_tokens` long."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in rng.sample(range(len(tokenizer)), min(len(tokenizer), 4 * n_tokens + 16)) if i not in special]
    words = [w for w in (tokenizer.decode([i]).strip() for i in ids) if w]
    return fit_length(" ".join(words), n_tokens, tokenizer)


def training_prompts(config: InoculationConfig, pair: TraitPair, tokenizer, seed: int) -> dict[str, list[str]]:
    """Per variant, the prompts it samples from (one, except the pool)."""
    length = token_length(tokenizer, pair.inoculation[0])
    rng = random.Random(f"inoculation-random-{seed}-{pair.label}")
    every = {"inoculation": [pair.inoculation[0]], "inoculation_pool": pair.inoculation[: config.pool_size],
             "placebo": [fit_length(pair.placebo, length, tokenizer)],
             "random": [random_string(tokenizer, length, rng)], "unrelated": [pair.unrelated], "none": [""]}
    return {v: every[v] for v in config.variants}


def eval_prompt(config: InoculationConfig, name: str, trained: list[str]) -> str:
    return {"deployment": config.deployment, "training": trained[0], "unrelated": config.unrelated_eval,
            "none": ""}[name]


# -- measuring ------------------------------------------------------------------------------------

def measure(backend, task, config: InoculationConfig, pair: TraitPair, chosen, prompt: str, **fields) -> list[dict]:
    """Each trait's judge and the task's grade, for every example under one prompt."""
    messages = [place(e.messages, prompt, config.placement) for e in chosen]
    responses = sample(backend, messages, config.eval.max_tokens)
    answers = [e.answer for e in chosen]
    desired = get_trait(pair.desired).judge(responses, answers)
    undesired = get_trait(pair.undesired).judge(responses, answers)
    traits = [pair.desired, pair.undesired]
    return [{**fields, "pair": pair.label, "prompt_text": prompt, "task": task.name, "example_id": e.id,
             "prompt": m, "answer": e.answer, "response": r, "correct": bool(grade_with(task, e, r, traits)),
             "desired": bool(d), "undesired": bool(u)}
            for e, m, r, d, u in zip(chosen, messages, responses, desired, undesired)]


def elicitation(backend, task, config, pair, prompts: dict[str, list[str]], seed: int) -> list[dict]:
    """Before training: each trait's rate under every prompt a variant trains or is evaluated with."""
    chosen = examples(task, random.Random(f"elicitation-{seed}"), config.eval.elicitation_n)
    named = {f"{v}" if len(texts) == 1 else f"{v}[{i}]": t for v, texts in prompts.items() for i, t in enumerate(texts)}
    named |= {"deployment": config.deployment, "unrelated_eval": config.unrelated_eval}
    rows = []
    for name, text in named.items():
        rows += measure(backend, task, config, pair, chosen, text, seed=seed, step=0, screened=name,
                        tokens=token_length(backend.tokenizer, text), chars=len(text))
    return rows


# -- the run --------------------------------------------------------------------------------------

def run_inoculation(config: InoculationConfig, out, quiet: bool = False) -> RunFolder:
    from transferlab.experiments.inoculation.results import write_results

    folder = start_folder(out, config)
    log, task = printer(quiet), config.make_task()
    for pair in config.pairs:
        for seed in config.seeds():
            seed_everything(seed)
            base = open_model(config.model)
            target_rng = random.Random(seed)
            check_writable(base.tokenizer, [compose(e, [pair.desired, pair.undesired], target_rng)
                                            for e in task.train_examples(target_rng, 4)], pair.label)
            prompts = training_prompts(config, pair, base.tokenizer, seed)
            log(f"{pair.label} seed {seed}: elicitation pre-screen")
            folder.append_jsonl(folder.path / "elicitation.jsonl", elicitation(base, task, config, pair, prompts, seed))
            grid = examples(task, random.Random(f"inoculation-eval-{seed}"), config.eval.n)
            for variant, texts in prompts.items():
                log(f"{pair.label} seed {seed}: training variant {variant}")
                seed_everything(seed)
                train_variant(open_model(config.model), config, pair, task, variant, texts, seed, grid, folder)
    write_results(folder, config)
    log(f"done: {folder.path}/table.csv, {folder.path}/figures, {folder.path}/report.html")
    return folder


def train_variant(backend, config: InoculationConfig, pair: TraitPair, task, variant: str, texts: list[str],
                  seed: int, grid, folder: RunFolder) -> None:
    """SFT on targets showing both traits, each example under this variant's prompt; evaluated on the
    grid of eval prompts at step 0, every `eval.every` steps and at the end."""
    rng = random.Random(f"inoculation-train-{seed}-{pair.label}-{variant}")
    traits = [pair.desired, pair.undesired]

    def evaluate(step: int) -> None:
        for name in config.eval.prompts:
            folder.append_samples(measure(backend, task, config, pair, grid, eval_prompt(config, name, texts),
                                          variant=variant, trained=variant, seed=seed, step=step,
                                          eval_prompt=name, prompted=name, eval_set=name))

    evaluate(0)
    for step in range(1, config.train.steps + 1):
        chosen = task.train_examples(rng, config.train.batch_size)
        pairs = [(place(e.messages, rng.choice(texts), config.placement),
                  compose(e, traits, rng)) for e in chosen]
        row = sft_step(backend, pairs, step, config.train)
        folder.append_jsonl(folder.path / "train_log.jsonl", [{"pair": pair.label, "variant": variant,
                                                               "seed": seed, **row}])
        if step % config.eval.every == 0 or step == config.train.steps:
            evaluate(step)
