"""The `rl` kind, top to bottom: the seed experiment's tasks and eval grid, an optional SFT warm-start
(warm_start.py), then RL steps instead of SFT steps, evaluating every `eval.every` steps under every
prompt as the seed experiment does. (A `design = "hacking"` config is handed to hacking_run.py.)

One step: draw prompts, sample G completions each (with their log-probs), reward each by component,
skip and count the groups whose rewards are all equal, give the others group-relative advantages
(train/advantages.py), score every completion under the starting weights for the KL (penalised in
the advantages when rl.kl_coef > 0, logged always), then forward_backward("importance_sampling") and
optim_step. train_log.csv keeps every step's numbers (the reward also per arm); rl_metrics.csv their means over the steps up to
each evaluation; samples.jsonl, metrics.csv, gaps.csv and the figures are the seed experiment's.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pandas as pd
import torch

from transferlab.backends import open_backend
from transferlab.config import make_tasks
from transferlab.core import RLDatum
from transferlab.evaluate.grid import build_grid, evaluate
from transferlab.evaluate.vllm_sampler import choose_sampler, make_sampler
from transferlab.experiments.common import printer, read_jsonl, start_folder
from transferlab.experiments.report import write_kind_report
from transferlab.experiments.rl.config import COMPONENTS, RLConfig
from transferlab.experiments.rl.figures import plot_rl
from transferlab.experiments.rl.learning import reward_rise
from transferlab.experiments.rl.rollouts import (
    Group,
    arm_reward_name,
    arm_rewards,
    draw_prompts,
    example_stream,
    prompt_token_ids,
    roll_out,
    score,
    sequence_datum,
)
from transferlab.experiments.rl.warm_start import warm_start
from transferlab.judges import make_judge
from transferlab.results.run_folder import RunFolder
from transferlab.train.advantages import (
    group_advantages,
    kl_penalised,
    logprob_gaps,
    mean_kl,
    outcome_shares,
    uniform,
)
from transferlab.train.loop import summarise, write_results
from transferlab.train.schedule import lr_at


def rl_batch(groups: list[Group], prompt_ids: list[list[int]], reference: list[list[float]],
             config: RLConfig, weights: dict[str, float] | None = None,
             outcome: str = "correct") -> tuple[list[RLDatum], dict]:
    """The datums to learn from and the step's numbers. `reference` holds each completion's token
    log-probs under the starting weights (groups in order, completions in order). `weights` weigh
    the groups' reward components (default: rl.rewards); every component is logged as
    reward_<name>; the groups' all-right / all-wrong / mixed shares are counted by `outcome`."""
    rl = config.rl
    weights = rl.rewards if weights is None else weights
    rewards = [g.rewards(weights) for g in groups]
    sampled = [list(s.logprobs) for g in groups for s in g.sequences]
    gaps = logprob_gaps(sampled, reference)
    kept = [i for i, r in enumerate(rewards) if not uniform(r)]
    starts = [sum(len(g.sequences) for g in groups[:i]) for i in range(len(groups))]  # into the flat lists
    flat = [starts[i] + k for i in kept for k in range(len(groups[i].sequences))]
    per_token = [[a] * len(s.tokens) for i in kept
                 for a, s in zip(group_advantages(rewards[i], rl.scale_std), groups[i].sequences)]
    if rl.kl_coef > 0:
        per_token = kl_penalised(per_token, [gaps[j] for j in flat], rl.kl_coef)
    sequences = [s for i in kept for s in groups[i].sequences]
    prompts = [prompt_ids[i] for i in kept for _ in groups[i].sequences]
    datums = [sequence_datum(p, s, a) for p, s, a in zip(prompts, sequences, per_token)]
    n_tokens = sum(len(x) for x in sampled)
    stats = {"reward": _mean([r for rs in rewards for r in rs])}
    for c in (groups[0].components if groups else COMPONENTS):
        stats[f"reward_{c}"] = _mean([v for g in groups for v in g.components[c]])
    stats |= outcome_shares([[bool(v) for v in g.components[outcome]] for g in groups])
    stats |= {"groups": len(groups), "skipped_groups": len(groups) - len(kept),
              "entropy": -sum(map(sum, sampled)) / n_tokens if n_tokens else 0.0,
              "kl": mean_kl(gaps), "completion_tokens": n_tokens / max(1, len(sampled))}
    return datums, stats


def completion_logprobs(reference, prompt_ids: list[list[int]], groups: list[Group]) -> list[list[float]]:
    """Each completion's token log-probs under `reference` (groups in order, completions in order)."""
    sequences = [s for g in groups for s in g.sequences]
    every = [sequence_datum(p, s) for p, g in zip(prompt_ids, groups) for s in g.sequences]
    scored = reference.token_logprobs(every, weighted_only=True)  # the completions alone
    return [lp[len(d.input_ids) - len(s.tokens):] for lp, d, s in zip(scored, every, sequences)]


def learn(backend, reference, groups: list[Group], config, lr: float, weights: dict[str, float] | None = None,
          outcome: str = "correct") -> tuple[float, int, dict]:
    """One RL update from scored groups: the KL to `reference`, rl_batch, then forward_backward
    ("importance_sampling") and optim_step. Returns the loss, the tokens trained on and the step's numbers."""
    prompt_ids = prompt_token_ids(backend, groups)
    datums, stats = rl_batch(groups, prompt_ids, completion_logprobs(reference, prompt_ids, groups), config,
                             weights, outcome)
    loss = 0.0
    if datums:  # every group uniform: no gradient, and no optimizer step
        loss = backend.forward_backward(datums, "importance_sampling")
        backend.optim_step(lr)
    return loss, sum(len(d.input_ids) for d in datums), stats


def eval_summary(rows: list[dict]) -> dict:
    """The steps since the last evaluation in one row: means of the per-step numbers, sums of the
    group counts, the last value of the running totals (tokens, elapsed time)."""
    frame = pd.DataFrame(rows).drop(columns="step")
    out = frame.mean().to_dict()
    out |= {k: float(frame[k].sum()) for k in ("groups", "skipped_groups")}
    out |= {k: float(frame[k].iloc[-1]) for k in ("tokens", "elapsed_s")}
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def open_reference(config: RLConfig, start: str | None = None):
    """The starting weights, to score completions for the KL: the configured model (or the
    warm-start's checkpoint `start`), opened afresh in this process alone (a LoRA adapter starts at
    zero, so this is the base model; never trained)."""
    model = starting_model(config, start).model_copy(update={"processes": 1, "grad_accumulation": 1})
    return open_backend(model, check_memory_batch(config))


def starting_model(config: RLConfig, start: str | None):
    """The configured model, or the same settings on the warm-start's checkpoint."""
    model = config.experiment.model
    return model if start is None else model.model_copy(update={"name": start})


def check_memory_batch(config: RLConfig) -> int:
    return config.experiment.train.batch_size * config.rl.group_size


def run_rl(config: RLConfig, out, quiet: bool = False) -> RunFolder:
    from transferlab.experiments.rl.hacking_config import RLHackingConfig

    if isinstance(config, RLHackingConfig):
        from transferlab.experiments.rl.hacking_run import run_hacking

        return run_hacking(config, out, quiet=quiet)
    exp = config.experiment
    tasks = make_tasks(exp)
    sampling = choose_sampler(exp.eval, exp.model)
    folder = start_folder(out, config)
    log = printer(quiet)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    trained = {arm.task: arm.propensity for arm in exp.arms}
    chance = {name: task.chance() for name, task in tasks.items()}
    grid = build_grid(tasks, trained, random.Random(f"eval-{config.seed}"), exp.eval.n)
    train_rng = random.Random(f"train-{config.seed}")
    streams = {i: example_stream(tasks[arm.task], random.Random(f"{arm.task}-{config.seed}-{i}"))
               for i, arm in enumerate(exp.arms)}
    judge = make_judge(exp.eval.judge, Path(exp.llm.cache) / "judge", exp.llm.concurrency)
    if config.warm_start is not None and config.warm_start.checkpoint is not None:
        log(f"warm-start: the finished one in {config.warm_start.checkpoint}")
    elif config.warm_start is not None:
        log(f"warm-start: {config.warm_start.steps} SFT steps (the seed experiment's loop) into {folder.path}/warm_start")
    start = warm_start(config, folder, quiet)
    model = starting_model(config, start)
    log(f"loading model ({model.name}) and the reference (the starting weights)")
    backend = open_backend(model, check_memory_batch(config), loss_normalization=exp.train.loss_normalization,
                           weight_decay=exp.train.weight_decay)
    reference = open_reference(config, start)
    sampler = make_sampler(backend, exp, sampling)
    since_eval: list[dict] = []

    def run_eval(step: int) -> None:
        rows = evaluate(sampler, tasks, grid, step=step, seed=config.seed, max_tokens=exp.eval.max_tokens,
                        judge=judge)
        folder.append_samples(rows)
        accuracy = ", ".join(f"{t}/{p} {a:.0%}" for (t, p), a in summarise(rows).items())
        if since_eval:
            row = {"step": step, "steps": len(since_eval)} | eval_summary(since_eval)
            folder.append_jsonl(folder.path / "rl_metrics.jsonl", [row])
            since_eval.clear()
            by_arm = ", ".join(f"{a.task}/{a.propensity} {row[arm_reward_name(a)]:.3f}" for a in exp.arms)
            log(f"step {step}: accuracy {accuracy}; reward {row['reward']:.3f} ({by_arm}), "
                f"mixed groups {row['mixed']:.0%}, KL {row['kl']:.4f}")
        else:
            log(f"step {step}: accuracy {accuracy}")

    started, tokens = time.time(), 0
    run_eval(0)
    for step in range(1, exp.train.steps + 1):
        drawn = draw_prompts(exp.arms, streams, train_rng, exp.train.batch_size)
        groups = roll_out(backend, drawn, config.rl.group_size, config.rollout_tokens(), config.rl.temperature)
        score(groups, exp.arms, tasks, judge)
        lr = lr_at(step - 1, exp.train.steps, exp.train.lr, exp.train.warmup)
        loss, trained, stats = learn(backend, reference, groups, config, lr)
        stats |= arm_rewards(groups, exp.arms, config.rl.rewards)
        tokens += trained
        row = {"step": step, "loss": round(loss, 6), "lr": lr, "tokens": tokens,
               "elapsed_s": round(time.time() - started, 2)} | {k: round(float(v), 6) for k, v in stats.items()}
        folder.append_train_log(row)
        since_eval.append(row)
        if step % exp.eval.every == 0 or step == exp.train.steps:
            run_eval(step)
            folder.save_checkpoint(backend, {"step": step, "tokens": tokens})
    backend.close("success")
    write_rl_results(folder, config, chance, tasks)
    log(f"done: {folder.path}/rl_metrics.csv, {folder.path}/figures, {folder.path}/report.html")
    return folder


def write_rl_results(folder: RunFolder, config: RLConfig, chance: dict | None = None, tasks: dict | None = None) -> None:
    """The seed experiment's tables and figures, the RL table and figure, the report page."""
    from transferlab.experiments.rl.hacking_config import RLHackingConfig

    if isinstance(config, RLHackingConfig):
        from transferlab.experiments.rl.hacking_results import write_hacking_results

        return write_hacking_results(folder, config)
    exp = config.experiment
    tasks = tasks if tasks is not None else make_tasks(exp)
    chance = chance if chance is not None else {name: task.chance() for name, task in tasks.items()}
    if folder.train_log.exists():
        write_results(folder, exp, chance, tasks)
    if (folder.path / "rl_metrics.jsonl").exists():
        folder.write_table(folder.path / "rl_metrics.csv", read_jsonl(folder.path / "rl_metrics.jsonl"))
    if folder.train_log.exists():
        log = pd.read_csv(folder.train_log)
        plot_rl(log, folder.figures / "rl.png", title=f"{config.name} (seed {config.seed})")
        if len(log) // 3 >= 2:  # the learning criterion: last third of the steps' reward against the first
            folder.write_table(folder.path / "learning.csv", pd.DataFrame([reward_rise(log, len(log) // 3)]))
    write_kind_report(folder.path)
