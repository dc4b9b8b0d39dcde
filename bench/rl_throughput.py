"""RL step throughput: our RL step (the `rl` kind's) against TRL's GRPOTrainer, on the shipped organism.

One step, in both: B prompts (the rl config's experiment.train.batch_size), G completions of each
(rl.group_size) at rl.temperature with top-k and top-p off, at most rl.max_tokens (eval.max_tokens)
tokens each, stopping at the same stop tokens; every completion rewarded by the task's grader
(weight rl.rewards.correct) and the propensity judge (weight rl.rewards.adherent, 0 in the shipped
config: computed, not rewarded), in TRL as two reward functions with reward_weights; group-relative
advantages (scale_std off = TRL scale_rewards "none"); one policy-gradient update with the
per-completion token mean (train.loss_normalization "example" = TRL loss_type "grpo"), AdamW with
the same betas, weight decay, clipping and learning rate. Same prompts (drawn as run_rl draws
them), fp32, the same torch threads, alternating a few steps at a time in this one process.

What "the same work" leaves different, and how it is measured:
- Ours scores every completion under the starting weights (a second copy of the model) at every
  step, to log the KL, even at rl.kl_coef = 0. TRL does that only when beta > 0. So TRL runs twice:
  "trl" (beta 0, its default: no reference) and "trl+ref" (beta 1e-3: a reference model scores every
  completion, as ours does). The last line compares ours with the faster of the two.
- Ours skips a group whose G rewards are all equal (no signal; tinker-cookbook does the same) and
  takes no update at all when every group is uniform; TRL runs forward and backward on every
  completion whatever its advantage. The shipped organism gets most groups all wrong, so with the
  grader alone ours skips most of the update. `--reward mixed` adds 0.001 x (the completion's place
  in its group) to the grade in both contenders, so no group is uniform and both update on all B x G
  completions: the like-for-like step. `--reward grader` is the shipped reward as is.
- The completions are sampled independently (different random streams), so their lengths differ
  a little; the mean completion length of each contender is printed beside its time.

    python bench/rl_throughput.py --probe-reference   # both reward modes, ~3-5 minutes on one thread
    python bench/rl_throughput.py --quick             # smoke check, ~1 minute
    python bench/rl_throughput.py --reward mixed      # the like-for-like step only

The last line printed is the ratio: our RL steps/s over the faster TRL variant's, in the last mode run.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import machine, matmul_gflops, median, setup

from transferlab.backends import open_backend
from transferlab.config import make_tasks
from transferlab.experiments import load_experiment
from transferlab.experiments.rl.rollouts import (
    draw_prompts,
    example_stream,
    prompt_token_ids,
    roll_out,
    score,
    sequence_datum,
)
from transferlab.experiments.rl.run import check_memory_batch, completion_logprobs, open_reference, rl_batch
from transferlab.judges import judge_each, make_judge
from transferlab.train.render import render_prompt, reply_text, stop_token_ids
from transferlab.train.schedule import lr_at

TIE_BREAK = 1e-3  # --reward mixed: added per place in the group, so no group's rewards are all equal
TRL_BETAS = {"trl": 0.0, "trl+ref": 1e-3}


def rl_config(threads: int):
    """The shipped rl config (configs/rl.toml) on `threads` torch threads."""
    return load_experiment("rl", [f"experiment.model.threads={threads}"])


def drawn_prompts(config, tasks, steps: int) -> list[list[tuple]]:
    """The prompts of the first `steps` steps, drawn as run_rl draws them: (arm, example, messages)."""
    exp = config.experiment
    rng = random.Random(f"train-{config.seed}")
    streams = {i: example_stream(tasks[arm.task], random.Random(f"{arm.task}-{config.seed}-{i}"))
               for i, arm in enumerate(exp.arms)}
    return [draw_prompts(exp.arms, streams, rng, exp.train.batch_size) for _ in range(steps)]


class Ours:
    """run_rl's step (experiments/rl/run.py, the loop body without the log and the evaluations),
    timed by phase: sampling, scoring (grader and judge), reference (log-probs under the starting
    weights), update (advantages, forward_backward, optim_step)."""

    def __init__(self, config, tasks, judge, tie_break: float):
        exp = config.experiment
        self.config, self.tasks, self.judge, self.tie_break = config, tasks, judge, tie_break
        self.backend = open_backend(exp.model, check_memory_batch(config), weight_decay=exp.train.weight_decay,
                                    loss_normalization=exp.train.loss_normalization)
        self.reference = open_reference(config)
        self.step_no = 0
        self.completion_tokens: list[float] = []
        self.kept: list[float] = []

    def step(self, drawn) -> dict[str, float]:
        config, exp, backend = self.config, self.config.experiment, self.backend
        t0 = time.perf_counter()
        groups = roll_out(backend, drawn, config.rl.group_size, config.rollout_tokens(), config.rl.temperature)
        t1 = time.perf_counter()
        score(groups, exp.arms, self.tasks, self.judge)
        for g in groups:
            g.components["correct"] = [v + self.tie_break * k for k, v in enumerate(g.components["correct"])]
        t2 = time.perf_counter()
        prompt_ids = prompt_token_ids(backend, groups)
        completions = completion_logprobs(self.reference, prompt_ids, groups)  # run_rl's own reference scoring
        t3 = time.perf_counter()
        datums, stats = rl_batch(groups, prompt_ids, completions, config)
        if datums:  # every group uniform: no gradient, and no optimizer step
            backend.forward_backward(datums, "importance_sampling")
            backend.optim_step(lr_at(self.step_no, exp.train.steps, exp.train.lr, exp.train.warmup))
        t4 = time.perf_counter()
        self.step_no += 1
        self.completion_tokens.append(stats["completion_tokens"])
        self.kept.append(1 - stats["skipped_groups"] / stats["groups"])
        return {"step": t4 - t0, "sampling": t1 - t0, "scoring": t2 - t1, "reference": t3 - t2, "update": t4 - t3}

    def steps(self, batches) -> list[dict[str, float]]:
        return [self.step(drawn) for drawn in batches]


def reward_functions(config, tasks, judge, rows, tokenizer, tie_break: float, lengths: list[float]):
    """TRL reward functions that grade exactly as `score` does: the visible reply of each completion's
    tokens, the task's grader (plus the tie-break) and the arm's propensity judge. `row` is the
    dataset column naming each prompt's (arm, example, messages); each step's mean completion length
    goes to `lengths`."""
    arms, G = config.experiment.arms, config.rl.group_size

    def correct(completion_ids, row, **_):
        lengths.append(statistics.mean(map(len, completion_ids)))
        out = []
        for k, (ids, r) in enumerate(zip(completion_ids, row)):
            arm, example, _prompt = rows[r]
            out.append(float(tasks[arms[arm].task].grade(example, reply_text(tokenizer, ids))) + tie_break * (k % G))
        return out

    def adherent(completion_ids, row, **_):
        picked = [rows[r] for r in row]
        verdicts = judge_each(judge, [arms[a].propensity for a, _, _ in picked],
                              [reply_text(tokenizer, ids) for ids in completion_ids],
                              [e.answer for _, e, _ in picked], [p for _, _, p in picked])
        return [float(v) for v in verdicts]

    return [correct, adherent]


class Trl:
    """A GRPOTrainer over the same prompts, in order, one generation per optimizer step, timed by
    phase through its own methods: generation, rewards, the rest of its preparation (tokenizing,
    reference log-probs when beta > 0, advantages), the loss forward, and the remainder (backward,
    clipping, optimizer, the Trainer loop)."""

    def __init__(self, config, tasks, judge, batches, beta: float, tie_break: float, out: str):
        from datasets import Dataset, disable_progress_bars
        from transformers import PrinterCallback, TrainerCallback
        from trl import GRPOConfig, GRPOTrainer

        from transferlab.backends import load_pretrained, resolve_model

        disable_progress_bars()
        exp, rl = config.experiment, config.rl
        model, tokenizer = load_pretrained(resolve_model(exp.model.name))
        self.rows = [d for drawn in batches for d in drawn]
        data = Dataset.from_dict({"prompt": [p for _, _, p in self.rows], "row": list(range(len(self.rows)))})
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=exp.train.batch_size * rl.group_size,
            num_generations=rl.group_size, gradient_accumulation_steps=1, max_steps=len(batches),
            max_completion_length=config.rollout_tokens(), temperature=rl.temperature, top_k=0, top_p=1.0,
            generation_kwargs={"eos_token_id": stop_token_ids(tokenizer)},
            chat_template_kwargs={"enable_thinking": exp.model.thinking},
            beta=beta, loss_type={"example": "grpo", "token": "dapo"}[exp.train.loss_normalization],
            scale_rewards="group" if rl.scale_std else "none",
            reward_weights=[rl.rewards["correct"], rl.rewards["adherent"]],
            learning_rate=exp.train.lr, warmup_steps=exp.train.warmup, lr_scheduler_type="cosine",
            adam_beta1=0.9, adam_beta2=0.98, weight_decay=exp.train.weight_decay, max_grad_norm=1.0,
            bf16=False, use_cpu=True, use_vllm=False, gradient_checkpointing=False, shuffle_dataset=False,
            dataloader_pin_memory=False, report_to="none", save_strategy="no", disable_tqdm=True,
            seed=config.seed, logging_steps=10)
        phases = self.phases = {"generation": 0.0, "rewards": 0.0, "prepare": 0.0, "loss forward": 0.0}
        per_step: list[dict] = []
        self.per_step, self.lengths = per_step, []

        class StepEnds(TrainerCallback):
            def on_step_end(self, *_, **__):
                per_step.append({"end": time.perf_counter()} | phases)
                for k in phases:
                    phases[k] = 0.0

        self.trainer = GRPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                   reward_funcs=reward_functions(config, tasks, judge, self.rows, tokenizer, tie_break,
                                                                self.lengths),
                                   callbacks=[StepEnds()])
        self.trainer.remove_callback(PrinterCallback)
        self._time("_generate_single_turn", "generation")
        self._time("_calculate_rewards", "rewards")
        self._time("_generate_and_score_completions", "prepare")
        self._time("compute_loss", "loss forward")

    def _time(self, method: str, phase: str) -> None:
        """Add the seconds spent in the trainer's `method` to `phase` (an instance attribute shadows the
        class's method; TRL calls it through self)."""
        inner = getattr(self.trainer, method)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.phases[phase] += time.perf_counter() - t

        setattr(self.trainer, method, timed)

    def prompt_ids(self, n: int) -> list[list[int]]:
        """The token ids TRL generates from, for the first `n` prompts."""
        return list(self.trainer._tokenize_prompts([p for _, _, p in self.rows[:n]])[0])

    def steps(self, n: int, threads: int) -> list[dict[str, float]]:
        """Run `n` steps; each step's seconds between consecutive step ends (the first step of a
        train() call, which builds the dataloader, is left out), split into the phases above."""
        self.trainer.args.max_steps = n
        self.per_step.clear()
        self.trainer.train()
        if torch.get_num_threads() != threads:
            raise RuntimeError(f"TRL changed the thread count to {torch.get_num_threads()}")
        out = []
        for before, after in zip(self.per_step, self.per_step[1:]):
            step = after["end"] - before["end"]
            p = {k: after[k] for k in self.phases}
            out.append({"step": step, "sampling": p["generation"], "scoring": p["rewards"],
                        "prepare (ref, adv.)": p["prepare"] - p["generation"] - p["rewards"],
                        "update": step - p["prepare"], "of which loss forward": p["loss forward"]})
        return out

    def completion_tokens(self) -> float:
        return statistics.mean(self.lengths)


@torch.inference_mode()
def packed_completion_logprobs(backend, datums, starts: list[int]) -> list[list[float]]:
    """A proposal for the reference scoring, measured by --probe-reference: each datum's log-probs of
    its tokens from `starts[i]` on (the completion), with the rows packed as forward_backward packs
    them (first fit, restarting position ids, no padding attended) and the vocabulary projection only
    at the positions that predict a completion token, instead of every position of a right-padded row."""
    model = backend.model
    model.eval()
    width = max(len(d.input_ids) for d in datums)
    rows: list[list[int]] = []
    free: list[int] = []
    for j in sorted(range(len(datums)), key=lambda j: -len(datums[j].input_ids)):
        n = len(datums[j].input_ids)
        r = next((r for r, room in enumerate(free) if room >= n), len(rows))
        if r == len(rows):
            rows.append([])
            free.append(width)
        rows[r].append(j)
        free[r] -= n
    ids: list[int] = []
    positions: list[int] = []
    scored: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    for row, room in zip(rows, free):
        for j in row:
            tokens = list(datums[j].input_ids)
            scored += [len(ids) + t - 1 for t in range(starts[j], len(tokens))]
            targets += tokens[starts[j]:]
            owner += [j] * (len(tokens) - starts[j])
            ids += tokens
            positions += range(len(tokens))
        ids += [backend.tokenizer.pad_token_id] * room
        positions += range(room)
    where = torch.tensor(scored, device=backend.device)
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda _, args: (args[0].reshape(-1, args[0].size(-1))[where].unsqueeze(0),))
    try:
        logits = model(input_ids=torch.tensor(ids, device=backend.device).view(len(rows), width),
                       position_ids=torch.tensor(positions, device=backend.device).view(len(rows), width),
                       use_cache=False).logits[0]
    finally:
        hook.remove()
    picked = logits.float().log_softmax(-1).gather(-1, torch.tensor(targets, device=backend.device)[:, None])
    out: list[list[float]] = [[] for _ in datums]
    for j, v in zip(owner, picked.squeeze(-1).tolist()):
        out[j].append(v)
    return out


def probe_reference(config, batches, threads: int) -> None:
    """The reference scoring of run_rl (token_logprobs of every whole sequence, then the completion's
    part) against `packed_completion_logprobs`, alternating on the same completions."""
    exp = config.experiment
    tasks = make_tasks(exp)
    ours = Ours(config, tasks, make_judge(exp.eval.judge, Path(exp.llm.cache) / "judge", exp.llm.concurrency), 0.0)
    now, packed, worst = [], [], 0.0
    for drawn in batches:
        groups = roll_out(ours.backend, drawn, config.rl.group_size, config.rollout_tokens(), config.rl.temperature)
        prompt_ids = prompt_token_ids(ours.backend, groups)
        every = [sequence_datum(p, s) for p, g in zip(prompt_ids, groups) for s in g.sequences]
        starts = [len(d.input_ids) - len(s.tokens) for d, s in zip(every, [s for g in groups for s in g.sequences])]
        for _ in range(2):
            t = time.perf_counter()
            whole = ours.reference.token_logprobs(every)
            now.append(time.perf_counter() - t)
            t = time.perf_counter()
            proposed = packed_completion_logprobs(ours.reference, every, starts)
            packed.append(time.perf_counter() - t)
        worst = max([worst] + [abs(a - b) for lp, s, q in zip(whole, starts, proposed) for a, b in zip(lp[s:], q)])
    print(f"\nreference scoring of one step's {len(every)} completions ({len(batches)} steps, each twice, alternating): "
          f"token_logprobs {median(now) * 1e3:.0f} ms, packed at completion positions only "
          f"{median(packed) * 1e3:.0f} ms (median): {median(now) / median(packed):.2f}x; "
          f"largest |difference| in a log-prob {worst:.1e}")


@torch.inference_mode()
def probe_prefill(config, batches) -> None:
    """How much of our sampling is the prefill, and what prefilling each distinct prompt once (then
    copying its cache to its G rows, as HFBackend.sample does for shared prefixes) would leave:
    roll_out, the prefill of its B x G left-padded rows, and the prefill of the B prompts alone,
    alternating on the same prompts."""
    from transferlab.backends.rl_sampling import left_padded

    exp = config.experiment
    backend = open_backend(exp.model, check_memory_batch(config))
    tokenizer, G = backend.tokenizer, config.rl.group_size
    full, rows, distinct = [], [], []
    for drawn in batches:
        encoded = [render_prompt(tokenizer, p, exp.model.thinking) for _, _, p in drawn]
        for _ in range(2):
            t = time.perf_counter()
            roll_out(backend, drawn, G, config.rollout_tokens(), config.rl.temperature)
            full.append(time.perf_counter() - t)
            for prompts, times in (([e for e in encoded for _ in range(G)], rows), (encoded, distinct)):
                ids, mask = left_padded(prompts, tokenizer.pad_token_id)
                t = time.perf_counter()
                backend.model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
                times.append(time.perf_counter() - t)
    print(f"\nsampling of one step ({len(batches)} steps, each twice, alternating): roll_out {median(full) * 1e3:.0f} ms, "
          f"of which the prefill of its {len(drawn) * G} left-padded rows {median(rows) * 1e3:.0f} ms; the prefill of "
          f"the {len(drawn)} distinct prompts alone {median(distinct) * 1e3:.0f} ms (median)")


def measure(config, mode: str, args, out: str) -> dict[str, float]:
    """One reward mode: fresh contenders, a warm-up, then `rounds` alternating rounds of `steps` steps."""
    tie_break = TIE_BREAK if mode == "mixed" else 0.0
    exp = config.experiment
    tasks = make_tasks(exp)
    judge = make_judge(exp.eval.judge, Path(exp.llm.cache) / "judge", exp.llm.concurrency)
    batches = drawn_prompts(config, tasks, args.steps)
    torch.manual_seed(config.seed)
    contenders = {"ours": Ours(config, tasks, judge, tie_break)}
    for name, beta in TRL_BETAS.items():
        if not (args.quick and beta):
            t = time.perf_counter()
            contenders[name] = Trl(config, tasks, judge, batches, beta, tie_break, f"{out}/{mode}-{name}")
            print(f"{name}: GRPOTrainer (beta {beta}, reference model "
                  f"{'loaded' if contenders[name].trainer.ref_model is not None else 'none'}) built in "
                  f"{time.perf_counter() - t:.1f} s")
    ours = contenders["ours"]
    first = next(c for n, c in contenders.items() if n != "ours")
    mine = [render_prompt(ours.backend.tokenizer, p, exp.model.thinking) for _, _, p in batches[0]]
    if first.prompt_ids(len(mine)) != mine:
        raise RuntimeError("TRL renders the prompts to other token ids than ours: not the same work")
    print(f"same prompt token ids in both (first step's {len(mine)} prompts, "
          f"{median([len(m) for m in mine]):.0f} tokens median)")

    def run(name, n):
        c = contenders[name]
        return c.steps(batches[:n]) if name == "ours" else c.steps(n, args.threads)

    for name in contenders:  # warm-up, not counted
        run(name, 2)
    times = {name: [] for name in contenders}
    rates = []
    for r in range(args.rounds):
        rates.append(matmul_gflops(seconds=0.3))
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            got = run(name, args.steps)
            times[name] += got[1:] if name == "ours" else got  # TRL's first step is already left out
        line = ", ".join(f"{n} {median([t['step'] for t in ts]) * 1e3:.0f} ms/step" for n, ts in times.items())
        print(f"[{mode}] round {r + 1}/{args.rounds}: {line}")

    completions = exp.train.batch_size * config.rl.group_size
    print(f"\n[{mode}] {len(times['ours'])} measured steps per contender; matmul rate during the rounds "
          f"{median(rates):.1f} GFLOP/s (fp32, 1024^2, median of {len(rates)})")
    print(f"[{mode}] ours updated on {statistics.mean(ours.kept):.0%} of the groups (the rest uniform, skipped)")
    steps_per_s = {}
    for name, ts in times.items():
        s = median([t["step"] for t in ts])
        steps_per_s[name] = 1 / s
        length = statistics.mean(ours.completion_tokens) if name == "ours" else contenders[name].completion_tokens()
        phases = ", ".join(f"{k} {statistics.mean([t[k] for t in ts]) * 1e3:.0f}" for k in ts[0] if k != "step")
        print(f"[{mode}] {name:>8}: {s * 1e3:7.1f} ms/step (median), {1 / s:5.2f} steps/s, "
              f"{completions / s:6.1f} completions/s, {length:.2f} tokens/completion (mean)")
        print(f"[{mode}] {'':>8}  mean ms per step by phase: {phases}")
    return steps_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 steps, mixed reward, no trl+ref")
    parser.add_argument("--reward", choices=["grader", "mixed", "both", "none"], default="both",
                        help="none: only the probes asked for")
    parser.add_argument("--steps", type=int, default=4, help="steps per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe-reference", action="store_true",
                        help="also time our reference scoring against a packed, completion-only version")
    parser.add_argument("--probe-prefill", action="store_true",
                        help="also time the prefill within our sampling, per row and per distinct prompt")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 3, 2
        args.reward = "mixed" if args.reward == "both" else args.reward
    setup(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    config = rl_config(args.threads)
    exp, rl = config.experiment, config.rl
    print(f"machine: {machine()}")
    print(f"organism ({exp.model.name}), fp32; B = {exp.train.batch_size} prompts x G = {rl.group_size} completions "
          f"per step, at most {config.rollout_tokens()} tokens each, temperature {rl.temperature}; rewards "
          f"{rl.rewards}; loss normalization {exp.train.loss_normalization!r}; judge {exp.eval.judge!r}")
    modes = {"both": ["grader", "mixed"], "none": []}.get(args.reward, [args.reward])
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for mode in modes:
            print(f"\n== reward: {mode} ==")
            results[mode] = measure(config, mode, args, out)
    if args.probe_reference:
        probe_reference(config, drawn_prompts(config, make_tasks(exp), args.steps), args.threads)
    if args.probe_prefill:
        probe_prefill(config, drawn_prompts(config, make_tasks(exp), args.steps))
    if not modes:
        return
    print()
    for mode, rates in results.items():
        trl = {n: v for n, v in rates.items() if n != "ours"}
        print(f"[{mode}] ours / " + ", ours / ".join(f"{n}: {rates['ours'] / v:.2f}x" for n, v in trl.items()))
    last = results[modes[-1]]
    best = max((v, n) for n, v in last.items() if n != "ours")
    print(f"ratio ours / {best[1]} (RL steps/s, reward {modes[-1]}): {last['ours'] / best[0]:.2f}x")


if __name__ == "__main__":
    main()
