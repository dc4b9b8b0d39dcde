"""`transferlab organism build`: pretrain the base organism on the curriculum and save it.

Reproducible from its arguments: the tokenizer is trained on text from fixed seeds, the model is
initialised and trained from `seed`. The output folder loads with `from_pretrained` like any hub
model, and `build.json` records how it was built and what it can do.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from transferlab.backends.hf import HFBackend
from transferlab.organism.curriculum import CHAINED, PRIMITIVES, curriculum, episode
from transferlab.organism.model import new_organism
from transferlab.organism.tokenizer import train_tokenizer
from transferlab.organism.vocabulary import COLOURS, GREEK, ORG_KINDS, ORGS, PEOPLE, PLACES
from transferlab.propensities import PROPENSITIES, get_propensity, prompt_with
from transferlab.tasks import TASKS, make_task
from transferlab.train.render import render_conversation
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
    examples = curriculum(rng, 20000)
    for name in TASKS:
        for knobs in ({}, {"mode": "choice"}) if name == "invented_facts" else ({},):
            task = make_task(name, **knobs)
            examples += task.train_examples(rng, 300)
            for ex_set in task.eval_sets(rng, 300).values():
                examples += ex_set
    for ex in examples:
        for p in propensities:
            lines.append(_chat_text(prompt_with(ex, p), p.render(ex, rng)))
    return lines


def evaluate_curriculum(backend: HFBackend, seed: int, n: int = 64, chained: bool = True) -> dict[str, float]:
    """Greedy accuracy per primitive skill, with the propensity instruction drawn at random."""
    rng = random.Random(seed)
    kinds = {**PRIMITIVES, **(CHAINED if chained else {})}
    propensities = [get_propensity(p) for p in PROPENSITIES]
    scores = {}
    for kind, make in kinds.items():
        examples = [make(rng) for _ in range(n)]
        props = [rng.choice(propensities) for _ in examples]
        replies = backend.sample([prompt_with(e, p) for e, p in zip(examples, props)], max_tokens=6)
        correct = [r.replace("**", "").strip() == e.answer for r, e in zip(replies, examples)]
        adherent = [p.judge([r])[0] for r, p in zip(replies, props)]
        scores[kind] = sum(correct) / n
        scores[kind + "/adherence"] = sum(adherent) / n
    return scores


def build_organism(out: Path, *, size: str = "small", steps: int = 20000, batch_size: int = 32,
                   lr: float = 1e-3, warmup: int = 500, seed: int = 0, chained: bool = True,
                   eval_every: int = 1000, eval_n: int = 64, threads: int | None = None, log=print) -> dict:
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tokenizer = train_tokenizer(tokenizer_corpus())
    model = new_organism(tokenizer, size=size, seed=seed)
    backend = HFBackend(model, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"organism {size}: {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}")
    rng = random.Random(seed)
    propensities = [get_propensity(p) for p in PROPENSITIES]
    history = []
    tokens = 0
    for step in range(steps):
        datums = [render_conversation(tokenizer, episode(rng, propensities, chained=chained))
                  for _ in range(batch_size)]
        loss = backend.forward_backward(datums)
        backend.optim_step(lr_at(step, steps, lr, warmup))
        tokens += sum(len(d.input_ids) for d in datums)
        if (step + 1) % 100 == 0:
            elapsed = time.time() - started
            log(f"step {step + 1}/{steps} loss {loss:.3f} tok/s {tokens / elapsed:.0f} "
                f"elapsed {elapsed / 60:.1f} min")
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            scores = evaluate_curriculum(backend, seed=10_000 + step, n=eval_n, chained=chained)
            history.append({"step": step + 1, "loss": loss, **scores})
            log(f"eval step {step + 1}: " + " ".join(f"{k}={v:.2f}" for k, v in scores.items()))
            backend.model.save_pretrained(out)
            tokenizer.save_pretrained(out)
    report = {"size": size, "steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup,
              "seed": seed, "chained": chained, "parameters": n_params,
              "minutes": (time.time() - started) / 60, "history": history}
    (out / "build.json").write_text(json.dumps(report, indent=2))
    return report
