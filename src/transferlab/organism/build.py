"""`transferlab organism build`: pretrain the base organism on the curriculum and save it.

Reproducible from its arguments: the tokenizer is trained on text from fixed seeds, the model is
initialised and trained from `seed`. The output folder loads with `from_pretrained` like any hub
model, and `build.json` records how it was built and what it can do.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from transferlab.backends.hf import HFBackend
from transferlab.organism.curriculum import (
    CHAINED,
    MIXES,
    PRIMITIVES,
    RETRIEVAL_STAGES,
    RetrievalStage,
    curriculum,
    episode,
    retrieval_example,
)
from transferlab.organism.model import grow, new_organism, transplant
from transferlab.organism.tokenizer import train_tokenizer
from transferlab.organism.vocabulary import COLOURS, GREEK, ORG_KINDS, ORGS, PEOPLE, PLACES
from transferlab.propensities import PROPENSITIES, get_propensity, prompt_with
from transferlab.tasks import TASKS, make_task
from transferlab.tasks.base import grade_exact
from transferlab.tasks.table_lookup import VARIANTS
from transferlab.train.render import render_conversation, render_datum
from transferlab.train.schedule import lr_at


def _chat_text(messages: list[dict], target: str) -> str:
    return "".join(m["content"] + "\n" for m in messages) + target


def tokenizer_corpus() -> list[str]:
    """Every word the organism may meet, in every spacing and decoration it can appear with."""
    rng = random.Random(0)
    words = COLOURS + GREEK + PEOPLE + PLACES + ORGS + ORG_KINDS + [str(i) for i in range(41)]
    entries = [f"{s}={n}" for s in GREEK for n in range(41)] + [f"{n}={c}" for n in range(41) for c in COLOURS]
    lines = [" ".join(words), ", ".join(entries), " ".join(f"**{w}** {w}. {w}, {w}? **{w}**. **{w}**, (**{w}**)" for w in words)]
    propensities = [get_propensity(p) for p in PROPENSITIES]
    examples = curriculum(rng, 20000, chained=True)
    for name in TASKS:
        variants = {"invented_facts": ({}, {"mode": "choice"}),
                    "table_lookup": tuple({"variant": v} for v in VARIANTS)}
        for knobs in variants.get(name, ({},)):
            task = make_task(name, **knobs)
            examples += task.train_examples(rng, 300)
            for ex_set in task.eval_sets(rng, 300).values():
                examples += ex_set
    for ex in examples:
        for p in propensities:
            lines.append(_chat_text(prompt_with(ex, p), p.render(ex, rng)))
    return lines


def evaluate_curriculum(backend: HFBackend, seed: int, n: int = 64, chained: bool = False) -> dict[str, float]:
    """Greedy accuracy per primitive skill, with the propensity instruction drawn at random; each
    example lists its candidate answers, so a hedged or confident reply grades like a bare one."""
    rng = random.Random(seed)
    kinds = {**PRIMITIVES, **(CHAINED if chained else {})}
    propensities = [get_propensity(p) for p in PROPENSITIES]
    scores = {}
    for kind, make in kinds.items():
        examples = [make(rng) for _ in range(n)]
        props = [rng.choice(propensities) for _ in examples]
        replies = backend.sample([prompt_with(e, p) for e, p in zip(examples, props)], max_tokens=48)
        correct = [grade_exact(e, r) for r, e in zip(replies, examples)]
        adherent = [p.judge([r])[0] for r, p in zip(replies, props)]
        scores[kind] = sum(correct) / n
        scores[kind + "/adherence"] = sum(adherent) / n
    return scores


def retrieval_scores(backend: HFBackend, stage: RetrievalStage, seed: int, n: int = 64) -> dict[str, float]:
    """Greedy accuracy of single and list lookups on the stage's own tables (whole answer exact)."""
    rng = random.Random(seed)
    plain = get_propensity("plain")
    scores = {}
    for kind in ("symbol_number", "number_colour", "symbol_numbers", "number_colours"):
        colours = kind.startswith("number")
        probe = replace(stage, colour_share=float(colours), singles=float(not kind.endswith("s")))
        examples = [retrieval_example(rng, probe)[0] for _ in range(n)]
        replies = backend.sample([prompt_with(e, plain) for e in examples], max_tokens=20)
        scores[kind] = sum(grade_exact(e, r) for e, r in zip(examples, replies)) / n
    return scores


def _save(out: Path, model, tokenizer, report: dict, started: float) -> None:
    report["minutes"] = (time.time() - started) / 60
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "build.json").write_text(json.dumps(report, indent=2))


def build_organism(out: Path, *, size: str = "shallow", grow_to: int | None = None,
                   stages: tuple[RetrievalStage, ...] = RETRIEVAL_STAGES, retrieval_steps: int | None = None,
                   retrieval_target: float = 0.9,
                   steps: int = 3000, batch_size: int = 32, lr: float = 2e-3, warmup: int = 100, seed: int = 0,
                   chained: bool = False, eval_every: int = 250, eval_n: int = 64, threads: int | None = None,
                   stop_at: int | None = None, start_from: str | Path | None = None, mix: str | None = None,
                   new_tokenizer: bool = False, tokenizer=None, command: str | None = None, log=print) -> dict:
    """Two phases. A shallow model learns in-context retrieval in `stages` (each ends when its
    lookups reach `retrieval_target`, or after its `max_steps`, or `retrieval_steps` if given), then grows to `grow_to` layers
    and learns the whole curriculum (`steps`; `stop_at` ends it early without changing the
    learning-rate schedule, which is how an interrupted build is reproduced).

    `start_from` (an organism folder) skips the first phase and the growth: its model and tokenizer
    go on learning the curriculum, with its questions weighted by the named `mix` (MIXES in
    curriculum.py) when given; the new build.json keeps the parent's under "parent". With
    `new_tokenizer` it first reads with a tokenizer trained by today's code (`transplant` keeps
    every learned embedding whose token survives). `grow_to`
    defaults to 6 layers for a new build and to no growth for one that goes on. A new build trains
    its tokenizer on `tokenizer_corpus()` (a minute: the corpus solves chess puzzles) unless given
    one; the tests' micro organisms reuse the shipped organism's."""
    if threads:
        torch.set_num_threads(threads)
    if retrieval_steps is not None:
        stages = tuple(replace(s, max_steps=retrieval_steps) for s in stages)
    if mix is not None and mix not in MIXES:
        raise ValueError(f"unknown curriculum mix {mix!r}; known: {', '.join(MIXES)}")
    question_mix = MIXES[mix] if mix else None
    if grow_to is None:
        grow_to = 0 if start_from is not None else 6
    if question_mix and not chained and set(question_mix.table_questions) & set(CHAINED):
        raise ValueError(f"mix {mix!r} asks two-step questions, which a build leaves out unless given --chained")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    parent = None
    if start_from is not None:
        from transferlab.backends.hf import load_pretrained

        model, tokenizer = load_pretrained(str(start_from))
        if new_tokenizer:
            old_tokenizer, tokenizer = tokenizer, train_tokenizer(tokenizer_corpus())
            log(f"new tokenizer: {transplant(model, old_tokenizer, tokenizer)} of {len(tokenizer)} tokens "
                f"keep a learned embedding")
        stages = ()
        parent_report = Path(start_from) / "build.json"
        parent = json.loads(parent_report.read_text()) if parent_report.exists() else None
    else:
        tokenizer = tokenizer or train_tokenizer(tokenizer_corpus())
        model = new_organism(tokenizer, size=size, seed=seed)
    rng = random.Random(seed)
    propensities = [get_propensity(p) for p in PROPENSITIES]
    plain = get_propensity("plain")
    report = {"command": command, "size": size, "grow_to": grow_to, "stages": [asdict(s) for s in stages], "steps": steps,
              "stop_at": stop_at, "retrieval_target": retrieval_target,
              "batch_size": batch_size, "lr": lr, "warmup": warmup, "seed": seed, "chained": chained,
              "start_from": str(start_from) if start_from else None, "mix": mix, "new_tokenizer": new_tokenizer,
              "mix_weights": asdict(question_mix) if question_mix else None, "history": [], "parent": parent}
    done = 0
    backend = HFBackend(model, tokenizer)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    retrieval_total = sum(s.max_steps for s in stages)
    for stage in stages:
        log(f"retrieval stage {stage.name!r}: {model.config.num_hidden_layers} layers, "
            f"{report['parameters'] / 1e6:.2f}M parameters, tables up to {stage.table_cap}, "
            f"at most {stage.max_steps} steps")
        stage_started = time.time()
        for step in range(stage.max_steps):
            datums = []
            for _ in range(batch_size):
                example, _ = retrieval_example(rng, stage)
                p = rng.choice(propensities) if stage.all_propensities else plain
                datums.append(render_datum(tokenizer, prompt_with(example, p), p.render(example, rng)))
            loss = backend.forward_backward(datums)
            # the retrieval phase keeps its learning rate high: it ends when retrieval appears
            backend.optim_step(lr_at(done, 4 * retrieval_total, lr, warmup))
            done += 1
            if (step + 1) % 50 == 0:
                log(f"{stage.name} step {step + 1}/{stage.max_steps} loss {loss:.3f} "
                    f"{(step + 1) / (time.time() - stage_started) * 60:.0f} steps/min, "
                    f"elapsed {(time.time() - started) / 60:.1f} min")
            if (step + 1) % eval_every == 0 or step + 1 == stage.max_steps:
                scores = retrieval_scores(backend, stage, seed=10_000 + done, n=eval_n)
                report["history"].append({"phase": f"retrieval: {stage.name}", "step": done, "loss": loss,
                                          **scores})
                log(f"eval {stage.name} step {step + 1}: " + " ".join(f"{k}={v:.2f}" for k, v in scores.items()))
                _save(out, model, tokenizer, report, started)
                if min(scores[k] for k in stage.needs) >= retrieval_target:
                    log(f"{stage.name}: lookups reached {retrieval_target:.0%} at step {step + 1}")
                    break
    if grow_to > model.config.num_hidden_layers:
        model = grow(model, grow_to)
    backend = HFBackend(model, tokenizer)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    log(f"curriculum phase: {model.config.num_hidden_layers} layers, {report['parameters'] / 1e6:.2f}M "
        f"parameters, vocabulary {len(tokenizer)}, {steps} steps")
    phase_started = time.time()
    for step in range(steps):
        datums = [render_conversation(tokenizer, episode(rng, propensities, chained=chained, mix=question_mix))
                  for _ in range(batch_size)]
        loss = backend.forward_backward(datums)
        backend.optim_step(lr_at(step, steps, lr, warmup))
        done += 1
        if (step + 1) % 50 == 0:
            elapsed = time.time() - phase_started
            left = elapsed / (step + 1) * (steps - step - 1)
            log(f"curriculum step {step + 1}/{steps} loss {loss:.3f} "
                f"elapsed {(time.time() - started) / 60:.1f} min, phase left {left / 60:.1f} min")
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            scores = evaluate_curriculum(backend, seed=10_000 + done, n=eval_n, chained=chained)
            report["history"].append({"phase": "curriculum", "step": done, "loss": loss, **scores})
            log(f"eval curriculum step {step + 1}: " + " ".join(
                f"{k}={v:.2f}" for k, v in scores.items() if "/" not in k))
            _save(out, model, tokenizer, report, started)
            if stop_at and step + 1 >= stop_at:
                log(f"stopping the curriculum phase at step {step + 1} of {steps} (--stop-at)")
                break
    _save(out, model, tokenizer, report, started)
    return report
