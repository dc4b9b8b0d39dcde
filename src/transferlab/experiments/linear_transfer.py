"""A linear-regression model of goal guarding: how far does training on train prompts move the
output on eval prompts, which have a direction train prompts never show?

Inputs x = a·s + b·e + σ·noise: `s` is shared by train and eval prompts, `e` is seen only at eval
(train prompts have b = 0, or b scaled by `overlap`). The model is y = w·x, starting from
w0 = s + c·e: the initial behaviour uses `e`, the alternate (w = s) ignores it, and on train prompts
both give y = a. Gradient descent on train prompts with targets a (off-policy, written) changes w·e
only through the noise (and overlap, and weight decay): in expectation
    w·e(t) = c · (1 − lr · (2(σ² + overlap²) + weight_decay))^t,
so removal speeds up with the learning rate and vanishes without noise: the gradient lies in the
span of the inputs the model is trained on. On-policy targets (the model's own outputs) give zero
gradient, and the initial behaviour stays. numpy only; `transferlab linear-transfer` draws it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from transferlab.results.run_folder import atomic_write


def simulate(lr: float, steps: int, *, dim: int = 16, batch: int = 32, noise: float = 0.3, overlap: float = 0.0,
             weight_decay: float = 0.0, c: float = 1.0, targets: str = "off_policy", seed: int = 0) -> np.ndarray:
    """The initial behaviour's share of the eval output, w·e / c, after each of 0..steps SGD steps."""
    rng = np.random.default_rng(seed)
    s, e = np.eye(dim)[0], np.eye(dim)[1]
    w = s + c * e
    out = [w @ e / c]
    for _ in range(steps):
        a, b = rng.normal(size=(batch, 1)), rng.normal(size=(batch, 1))
        x = a * s + overlap * b * e + noise * rng.normal(size=(batch, dim))
        y = a[:, 0] if targets == "off_policy" else x @ w  # on-policy: the model's own outputs
        grad = 2 * ((x @ w - y)[:, None] * x).mean(axis=0) + weight_decay * w
        w = w - lr * grad
        out.append(w @ e / c)
    return np.array(out)


def expected(lr: float, steps: int, *, noise: float = 0.3, overlap: float = 0.0, weight_decay: float = 0.0) -> np.ndarray:
    """The closed form above (exact in expectation while w·s stays at 1)."""
    return (1 - lr * (2 * (noise**2 + overlap**2) + weight_decay)) ** np.arange(steps + 1)


def curves(lrs: list[float], steps: int, repeats: int = 5, *, noise: float = 0.3, overlap: float = 0.0,
           weight_decay: float = 0.0, **options) -> pd.DataFrame:
    """Per learning rate: the simulated share over steps (mean and range of `repeats` seeds) and the
    closed form."""
    shape = {"noise": noise, "overlap": overlap, "weight_decay": weight_decay}
    rows = []
    for lr in lrs:
        runs = np.stack([simulate(lr, steps, seed=r, **shape, **options) for r in range(repeats)])
        closed = expected(lr, steps, **shape)
        for step in range(steps + 1):
            rows.append({"lr": lr, "step": step, "mean": runs[:, step].mean(), "min": runs[:, step].min(),
                         "max": runs[:, step].max(), "expected": closed[step]})
    return pd.DataFrame(rows)


def plot(over_steps: pd.DataFrame, by_lr: pd.DataFrame, path: str | Path, title: str) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.3))
    colours = plt.get_cmap("viridis")
    lrs = sorted(over_steps["lr"].unique())
    for k, lr in enumerate(lrs):
        rows, colour = over_steps[over_steps["lr"] == lr], colours(k / max(1, len(lrs) - 1))
        left.fill_between(rows["step"], rows["min"], rows["max"], color=colour, alpha=0.2, lw=0)
        left.plot(rows["step"], rows["mean"], color=colour, label=f"lr {lr:g}")
        left.plot(rows["step"], rows["expected"], color=colour, ls="--", lw=1)
    left.set_xlabel("gradient steps on train prompts")
    left.set_ylabel("initial behaviour on eval prompts (w·e / c)")
    left.set_title("off-policy targets: simulated (band: seeds), closed form dashed", fontsize=9)
    left.set_ylim(-0.15, 1.08)
    left.grid(alpha=0.25)
    left.legend(fontsize=8, frameon=False)
    for label, rows in by_lr.groupby("setting", sort=False):
        on_policy = label.startswith("on-policy")  # drawn dashed: it lies on the noise-0 line
        right.plot(rows["lr"], rows["final"], marker="s" if on_policy else "o", ls="--" if on_policy else "-",
                   ms=8 if on_policy else 5, mfc="none" if on_policy else None, label=label)
    right.set_xscale("log")
    right.set_xlabel("learning rate")
    right.set_ylabel("initial behaviour left after training")
    right.set_title("after all steps: removal depends on the learning rate", fontsize=9)
    right.set_ylim(-0.15, 1.08)
    right.grid(alpha=0.25)
    right.legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def sweep_lr(lrs: list[float], steps: int, noise: float, **options) -> pd.DataFrame:
    """The share left after `steps` per learning rate, for several noise levels and on-policy targets."""
    rows = []
    settings = [(f"off-policy, noise {n:g}", "off_policy", n) for n in (0.0, noise / 2, noise, 2 * noise)]
    settings.append((f"on-policy, noise {noise:g}", "on_policy", noise))
    for label, targets, n in settings:
        for lr in lrs:
            rows.append({"setting": label, "lr": lr, "noise": n, "targets": targets,
                         "final": simulate(lr, steps, noise=n, targets=targets, **options)[-1]})
    return pd.DataFrame(rows)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", default="linear_transfer.png", help="the PNG to write (a CSV goes next to it)")
    parser.add_argument("--lrs", default="0.003,0.01,0.03,0.1,0.3", help="comma-separated learning rates")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.3, help="σ of the isotropic input noise")
    parser.add_argument("--overlap", type=float, default=0.0, help="how much train prompts show the eval-only direction")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="seeds per learning rate")
    return parser


def cmd_linear_transfer(args: argparse.Namespace) -> int:
    lrs = [float(v) for v in str(args.lrs).split(",") if v.strip()]
    if not lrs or any(lr <= 0 for lr in lrs):
        raise SystemExit(f"--lrs needs positive learning rates, got {args.lrs!r}")
    options = {"dim": args.dim, "batch": args.batch, "overlap": args.overlap, "weight_decay": args.weight_decay}
    over_steps = curves(lrs, args.steps, args.repeats, noise=args.noise, **options)
    by_lr = sweep_lr(lrs, args.steps, args.noise, **options)
    out = Path(args.out)
    title = (f"linear model of goal guarding: noise σ={args.noise:g}, overlap {args.overlap:g}, "
             f"weight decay {args.weight_decay:g}, dim {args.dim}")
    plot(over_steps, by_lr, out, title)
    table = pd.concat([over_steps.assign(kind="over_steps", noise=args.noise), by_lr.assign(kind="by_lr")])
    atomic_write(out.with_suffix(".csv"), table.to_csv(index=False))
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0


def linear_transfer_main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="transferlab linear-transfer", description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    return cmd_linear_transfer(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(linear_transfer_main())
