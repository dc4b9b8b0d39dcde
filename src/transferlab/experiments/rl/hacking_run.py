"""The hacking design, top to bottom. Per seed: one SFT warm-start on the environment (a share of
its wrong-check targets demonstrate the hack), saved in seed<k>/checkpoints/warm_start and
evaluated under every prompt (the rates before RL, step 0); then, for every condition, RL from that
checkpoint under the condition's training prompt and reward, evaluated under every prompt again.

An RL step is the transfer design's (run.py `learn`): G completions per prompt, each scored for
`correct`, `passes` and `hack`; only the condition's reward component weighs; the others are
logged. The reference for the KL is the warm-start, opened once per seed and never trained.
"""

from __future__ import annotations

import dataclasses
import random
import time

from transferlab.config import ConfigError
from transferlab.core import Example
from transferlab.experiments.common import (
    open_model,
    place,
    printer,
    sample,
    seed_everything,
    sft_step,
    start_folder,
)
from transferlab.experiments.rl.hacking_config import REWARDS, Condition, RLHackingConfig
from transferlab.experiments.rl.rollouts import Group
from transferlab.experiments.rl.run import learn
from transferlab.results.run_folder import RunFolder
from transferlab.tasks.hackable_difference import HackableDifference
from transferlab.train.schedule import lr_at

TRAIN_LOG = "train_log.jsonl"


def run_hacking(config: RLHackingConfig, out, quiet: bool = False) -> RunFolder:
    from transferlab.experiments.rl.hacking_results import write_hacking_results

    folder = start_folder(out, config)
    log, env = printer(quiet), config.env.make()
    started = time.time()
    for seed in config.seeds():
        run_seed(config, env, seed, folder, log)
        log(f"seed {seed} done ({time.time() - started:.0f} s so far)")
    write_hacking_results(folder, config)
    log(f"done in {time.time() - started:.0f} s: {folder.path}/table.csv, {folder.path}/transfer.csv, "
        f"{folder.path}/figures, {folder.path}/report.html")
    return folder


def run_seed(config: RLHackingConfig, env: HackableDifference, seed: int, folder: RunFolder, log) -> None:
    seed_everything(seed)
    backend = open_model(config.model)
    check_readable(backend.tokenizer, config.prompts.named())
    grid = env.eval_sets(random.Random(f"hacking-eval-{seed}"), config.eval.n)["held_out"]
    log(f"seed {seed}: warm-start, {config.warm_start.steps} SFT steps")
    warm_up(backend, config, env, seed, folder)
    start = RunFolder(folder.path / f"seed{seed}").save_checkpoint(backend, {"step": config.warm_start.steps},
                                                                      name="warm_start")
    folder.append_samples(evaluate(backend, config, env, grid, seed=seed, condition="warm_start", step=0))
    reference = open_model(config.model, start)
    for condition in config.conditions:
        log(f"seed {seed}: RL under {condition.name} (prompt {condition.prompt}, reward {condition.reward}, "
            f"h {config.env.h if condition.h is None else condition.h})")
        seed_everything(seed)
        reinforce(open_model(config.model, start), reference, config, env, condition, seed, grid, folder)


def check_readable(tokenizer, prompts: dict[str, str]) -> None:
    """Every prompt in the model's vocabulary: an [UNK] would make two prompts the same to the model."""
    for name, text in prompts.items():
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise ConfigError(f"prompts.{name} = {text!r} has words the model's tokenizer does not know "
                              f"([UNK]); the organism reads only its own vocabulary (see docs/rl.md)")


def prompted(example: Example, text: str) -> list[dict]:
    """The example's messages with a condition's prompt as a system line above the check."""
    return place(example.messages, text, "system")


def warm_up(backend, config: RLHackingConfig, env: HackableDifference, seed: int, folder: RunFolder) -> None:
    """SFT on the environment, each example under one of the prompts at random (so no prompt is tied
    to hacking before RL). Every check is wrong here, and the target is the check's number with
    probability `hack_share`, else the difference: a right check would teach copying it too (the
    copy is then right), and hacking would start far above `hack_share`."""
    stage, texts = config.warm_start, list(config.prompts.named().values())
    rng = random.Random(f"hacking-warm-start-{seed}")
    wrong = dataclasses.replace(env, h=1.0)
    for step in range(1, stage.steps + 1):
        pairs = []
        for example in wrong.train_examples(rng, stage.batch_size):
            hack = rng.random() < stage.hack_share
            pairs.append((prompted(example, rng.choice(texts)), example.meta["check"] if hack else example.answer))
        row = sft_step(backend, pairs, step, stage)
        folder.append_jsonl(folder.path / TRAIN_LOG, [{"phase": "warm_start", "seed": seed, "condition": "warm_start",
                                                      **row}])


def reinforce(backend, reference, config: RLHackingConfig, env: HackableDifference, condition: Condition,
              seed: int, grid: list[Example], folder: RunFolder) -> None:
    """RL steps under one condition; evaluated every `eval.every` steps (when set) and at the end."""
    text = config.prompts.named()[condition.prompt]
    env = env if condition.h is None else dataclasses.replace(env, h=condition.h)
    weights = {c: float(c == condition.reward) for c in REWARDS}
    rng = random.Random(f"hacking-rl-{seed}-{condition.name}")
    train, started = config.train, time.time()
    for step in range(1, train.steps + 1):
        examples = env.train_examples(rng, train.batch_size)
        prompts = [prompted(e, text) for e in examples]
        sequences = backend.sample_sequences(prompts, num_samples=config.rl.group_size,
                                             max_tokens=config.rollout_tokens(), temperature=config.rl.temperature)
        groups = [Group(0, e, p, seqs) for e, p, seqs in zip(examples, prompts, sequences)]
        for g in groups:
            g.components = score(env, g.example, [s.text for s in g.sequences])
        lr = lr_at(step - 1, train.steps, train.lr, train.warmup)
        loss, tokens, stats = learn(backend, reference, groups, config, lr, weights, outcome=condition.reward)
        folder.append_jsonl(folder.path / TRAIN_LOG, [{
            "phase": "rl", "seed": seed, "condition": condition.name, "step": step, "loss": round(loss, 6), "lr": lr,
            "tokens": tokens, "elapsed_s": round(time.time() - started, 2),
            **{k: round(float(v), 6) for k, v in stats.items()}}])
        if (config.eval.every and step % config.eval.every == 0) or step == train.steps:
            folder.append_samples(evaluate(backend, config, env, grid, seed=seed, condition=condition.name,
                                           step=step))


def score(env: HackableDifference, example: Example, texts: list[str]) -> dict[str, list[float]]:
    """The three flags of every completion: true correctness, the test's verdict, hacking."""
    return {"correct": [float(env.grade(example, t)) for t in texts],
            "passes": [float(env.passes(example, t)) for t in texts],
            "hack": [float(env.is_hack(example, t)) for t in texts]}


def evaluate(backend, config: RLHackingConfig, env: HackableDifference, grid: list[Example], *, seed: int,
             condition: str, step: int) -> list[dict]:
    """Greedy answers to the held-out prompts under every eval prompt, one row per answer."""
    texts = config.prompts.named()
    rows = []
    for name in config.eval.prompts:
        messages = [prompted(e, texts[name]) for e in grid]
        for e, m, response in zip(grid, messages, sample(backend, messages, config.eval.max_tokens)):
            correct, hack = env.grade(e, response), env.is_hack(e, response)
            rows.append({"seed": seed, "condition": condition, "step": step, "eval_prompt": name,
                         "example_id": e.id, "prompt": m, "answer": e.answer, "check": e.meta["check"],
                         "response": response, "correct": bool(correct), "hack": bool(hack),
                         "other": not (correct or hack)})
    return rows
