"""Where the default experiment's wall time goes: data, train, eval, I/O, results, setup.

Runs `run_experiment` on the shipped default config (or with overrides) and times the loop's parts by
wrapping them from here, without touching the loop: each second counts once, for the innermost part
running (a checkpoint written during training is I/O, not train). Resident memory is sampled after
every optimizer step to show whether it grows.

    python bench/run_profile.py                      # the whole default run (1000 steps), one thread
    python bench/run_profile.py --steps 200          # shortened: 200 steps, eval every 100
    python bench/run_profile.py --quick              # smoke check: 30 steps, eval every 10 on n = 20
    python bench/run_profile.py --before             # the same with forward_backward and sample as
                                                     # they were before packing and prefix sharing

The last line printed is evaluation's share of the wall time.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import batched_sample_before, machine, padded_forward_backward, peak_rss_mib, rss_mib, setup

from transferlab.config import load_config
from transferlab.results import run_folder
from transferlab.train import loop


class Clock:
    """Exclusive time per part: a part's time excludes the parts running inside it."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list] = []  # [part, start, time of children]

    def wrap(self, part: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.stack.append([part, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, start, children = self.stack.pop()
                spent = time.perf_counter() - start
                self.totals[name] = self.totals.get(name, 0.0) + spent - children
                self.calls[name] = self.calls.get(name, 0) + 1
                if self.stack:
                    self.stack[-1][2] += spent
        return timed


def instrument(clock: Clock, memory: list[tuple[int, float]], before: bool) -> None:
    """Wrap the loop's parts in place (this process only)."""
    for name in ("make_tasks", "build_grid", "training_streams", "training_batch", "draw_batch"):
        if hasattr(loop, name):
            setattr(loop, name, clock.wrap("data", getattr(loop, name)))
    loop.evaluate = clock.wrap("eval", loop.evaluate)
    loop.write_results = clock.wrap("results (metrics, figures)", loop.write_results)
    for name, fn in inspect.getmembers(run_folder.RunFolder, inspect.isfunction):
        if not name.startswith("_"):
            setattr(run_folder.RunFolder, name, clock.wrap("I/O (samples, logs, checkpoints)", fn))
    open_backend = loop.open_backend

    def opened(*args, **kwargs):
        backend = open_backend(*args, **kwargs)
        if before:
            backend.forward_backward = functools.partial(padded_forward_backward, backend)
            backend.sample = functools.partial(batched_sample_before, backend)
        backend.forward_backward = clock.wrap("train", backend.forward_backward)
        optim_step = clock.wrap("train", backend.optim_step)

        def step_and_sample(lr):
            optim_step(lr)
            memory.append((len(memory) + 1, rss_mib()))

        backend.optim_step = step_and_sample
        return backend

    loop.open_backend = clock.wrap("setup (model load)", opened)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="train.steps (default: the config's, 1000)")
    parser.add_argument("--quick", action="store_true", help="30 steps, eval every 10 on n = 20")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    parser.add_argument("--before", action="store_true",
                        help="forward_backward and sample as they were before packing and prefix sharing")
    args = parser.parse_args()
    overrides = [f"model.threads={args.threads}", *args.set]
    if args.quick:
        overrides += ["train.steps=30", "eval.every=10", "eval.n=20"]
    elif args.steps:
        overrides += [f"train.steps={args.steps}"]
    config = load_config(None, overrides=overrides, seed=args.seed)
    setup(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    clock, memory = Clock(), []
    instrument(clock, memory, args.before)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "run")
        started = time.perf_counter()
        loop.run_experiment(config, out, quiet=True)
        wall = time.perf_counter() - started
        log = pd.read_csv(out / "train_log.csv")
        metrics = pd.read_csv(out / "metrics.csv")

    print(f"machine: {machine()}")
    print(f"run: default config, {config.train.steps} steps, batch {config.train.batch_size}, eval every "
          f"{config.eval.every} on n = {config.eval.n}, seed {config.seed}"
          f"{' (before: padded forward_backward, unshared sample)' if args.before else ''}")
    print(f"\n{'part':<34}{'seconds':>9}{'share':>8}{'calls':>7}")
    parts = dict(sorted(clock.totals.items(), key=lambda kv: -kv[1]))
    parts["other (progress, loop, Python)"] = wall - sum(parts.values())
    for part, seconds in parts.items():
        print(f"{part:<34}{seconds:>9.1f}{seconds / wall:>8.1%}{clock.calls.get(part, ''):>7}")
    print(f"{'wall':<34}{wall:>9.1f}")
    steps = len(log)
    tokens = int(log["tokens"].iloc[-1])
    train_s = clock.totals.get("train", 0.0)
    print(f"\ntraining: {tokens / train_s:.0f} tokens/s in forward_backward + optim_step, "
          f"{train_s / steps * 1e3:.0f} ms/step; end to end {tokens / wall:.0f} tokens/s of wall time")
    evals = clock.calls.get("eval", 0)
    print(f"evaluation: {evals} evaluations, {clock.totals.get('eval', 0.0) / max(1, evals):.2f} s each")

    every = max(1, steps // 10)
    print("\nloss (mean of the steps up to each mark):")
    marks = list(range(every, steps + 1, every))
    print("  " + "  ".join(f"{m:>6}" for m in marks))
    print("  " + "  ".join(f"{log['loss'].iloc[m - every:m].mean():>6.3f}" for m in marks))
    final = metrics[metrics["step"] == metrics["step"].max()]
    accuracy = final.groupby(["task", "eval_set", "prompted"])["accuracy"].first()
    print(f"accuracy at step {int(final['step'].max())}: " +
          ", ".join(f"{t}/{s}/{p} {a:.2f}" for (t, s, p), a in accuracy.items()))

    rss = [m for _, m in memory]
    half = rss[len(rss) // 2:]
    slope = 0.0
    if len(half) > 1:
        x = range(len(half))
        mx, my = sum(x) / len(half), sum(half) / len(half)
        slope = sum((a - mx) * (b - my) for a, b in zip(x, half)) / sum((a - mx) ** 2 for a in x)
    print(f"\nmemory: peak RSS {peak_rss_mib():.0f} MiB; RSS after step 1 {rss[0]:.0f}, step {len(rss) // 10 or 1} "
          f"{rss[len(rss) // 10]:.0f}, step {len(rss) // 2} {rss[len(rss) // 2 - 1]:.0f}, step {len(rss)} "
          f"{rss[-1]:.0f} MiB; " + (f"second-half trend {slope * 1000:+.1f} MiB per 1000 steps" if len(rss) >= 200
                                    else "too few steps for a trend"))
    print(f"evaluation share of wall time: {clock.totals.get('eval', 0.0) / wall:.1%}")


if __name__ == "__main__":
    main()
