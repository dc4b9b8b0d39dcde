"""Evaluation throughput: our evaluation (batched, left-padded, KV cache) against `generate` called
one prompt at a time, on the default eval grid of the shipped organism.

Ours is the whole `evaluate()` of the training loop: sampling, grading and judging every item of the
grid. The baseline is generation alone, one prompt per `model.generate` call (greedy, the same
max_tokens, precision and threads), over an evenly spaced subset of the same grid. The two alternate
in this one process.

    python bench/eval_throughput.py            # ~1 minute on one thread
    python bench/eval_throughput.py --quick    # smoke check

The last line printed is the ratio: our answers/s over one-at-a-time answers/s.
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import time

import torch
from _common import batched_sample_before, default_config, machine, median, setup

from transferlab.backends import HFBackend, load_pretrained, resolve_model
from transferlab.config import make_tasks
from transferlab.evaluate.grid import build_grid, evaluate
from transferlab.propensities import get_propensity, prompt_with
from transferlab.train.render import render_prompt


def one_at_a_time(backend, prompts, max_tokens: int) -> list[str]:
    """What a user would write first: one generate call per prompt."""
    model, tokenizer = backend.model, backend.tokenizer
    model.eval()
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([render_prompt(tokenizer, prompt)], device=backend.device)
            with backend._autocast():
                generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                           max_new_tokens=max_tokens, do_sample=False, top_p=None, top_k=None,
                                           temperature=None, pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id)
            out.append(tokenizer.decode(generated[0, ids.size(1):], skip_special_tokens=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="eval.n = 20, 2 rounds of 15 prompts")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=60, help="one-at-a-time prompts per round (different each round)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", action="store_true",
                        help="also time evaluate() with sample as it was before prompts shared prefixes")
    args = parser.parse_args()
    setup(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    config = default_config(args.threads, {"eval.n": 20} if args.quick else None)
    if args.quick:
        args.rounds, args.chunk = 2, 15

    tasks = make_tasks(config)
    trained = {arm.task: arm.propensity for arm in config.arms}
    grid = build_grid(tasks, trained, random.Random(f"eval-{config.seed}"), config.eval.n)
    prompts = [prompt_with(item.example, get_propensity(item.prompted)) for item in grid]
    wanted = min(len(grid), args.rounds * args.chunk)
    spread = [round(k * len(grid) / wanted) for k in range(wanted)]  # evenly over the grid's tasks and sets
    chunks = [spread[r::args.rounds] for r in range(args.rounds)]
    max_tokens = config.eval.max_tokens
    model, tokenizer = load_pretrained(resolve_model(config.model.name))
    backend = HFBackend(model, tokenizer, bf16=config.model.bf16)
    print(f"machine: {machine()}")
    print(f"default eval grid: {len(grid)} items (n = {config.eval.n} per task, eval set and prompt), "
          f"max_tokens {max_tokens}, {'bf16 autocast' if backend.bf16 else 'fp32'}; one-at-a-time baseline "
          f"on {wanted} of them, {args.chunk} per round")

    sample = backend.sample
    sample_s = []

    def timed_sample(*a, **kw):
        t = time.perf_counter()
        try:
            return sample(*a, **kw)
        finally:
            sample_s.append(time.perf_counter() - t)

    backend.sample = timed_sample
    evaluate(backend, tasks, grid[:8], step=0, seed=config.seed, max_tokens=max_tokens)  # warm up
    one_at_a_time(backend, prompts[:2], max_tokens)
    sample_s.clear()
    ours_s, naive_s, before_s, same, ratios = [], [], [], 0, []
    names = ["ours", "naive"] + (["before"] if args.before else [])
    for r, chunk in enumerate(chunks):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            if name == "ours":
                rows = evaluate(backend, tasks, grid, step=0, seed=config.seed, max_tokens=max_tokens)
                ours_s.append(time.perf_counter() - t)
            elif name == "before":
                backend.sample = functools.partial(batched_sample_before, backend)
                earlier = evaluate(backend, tasks, grid, step=0, seed=config.seed, max_tokens=max_tokens)
                before_s.append(time.perf_counter() - t)
                backend.sample = timed_sample
                agree = sum(a["response"] == b["response"] for a, b in zip(earlier, rows))
            else:
                replies = one_at_a_time(backend, [prompts[i] for i in chunk], max_tokens)
                naive_s.append(time.perf_counter() - t)
        same += sum(rows[i]["response"] == reply for i, reply in zip(chunk, replies))
        ratios.append(len(grid) / ours_s[-1] / (len(chunk) / naive_s[-1]))
        print(f"round {r + 1}/{args.rounds}: ours {len(grid) / ours_s[-1]:.0f} answers/s (evaluate: sample, "
              f"grade, judge), one at a time {len(chunk) / naive_s[-1]:.1f} answers/s (generate only): "
              f"{ratios[-1]:.1f}x")
    ours = len(grid) * len(ours_s) / sum(ours_s)
    naive = wanted / sum(naive_s)
    print(f"\nthe same answer from both paths on {same}/{wanted} prompts (greedy)")
    print(f"ours: {ours:.0f} answers/s; {len(grid)} answers in {median(ours_s):.2f} s (median), of which "
          f"sampling {median(sample_s):.2f} s")
    print(f"one prompt at a time: {naive:.1f} answers/s")
    if before_s:
        print(f"before prefix sharing: {len(grid) * len(before_s) / sum(before_s):.0f} answers/s, the same "
              f"answer on {agree}/{len(grid)} prompts; prefix sharing {sum(before_s) / sum(ours_s):.2f}x")
    print(f"per-round ratios: median {median(ratios):.1f}x, range {min(ratios):.1f}-{max(ratios):.1f}x")
    print(f"ratio ours / one-at-a-time (answers/s, all rounds): {ours / naive:.1f}x")


if __name__ == "__main__":
    main()
