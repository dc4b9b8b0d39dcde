"""Training throughput: our SFT step against TRL's SFTTrainer, on the shipped organism.

Same data (the default experiment's first batches, rendered by the loop), same batch size, same
precision, same threads, same optimizer settings; loss on the assistant tokens only in both (TRL
gets each conversation's input_ids with a completion_mask). The two run alternately, a few steps at
a time, in this one process. Tokens are the real tokens of the conversations (padding never counts).

    python bench/train_throughput.py                # ~5 minutes on one thread
    python bench/train_throughput.py --quick        # smoke check, ~1 minute
    python bench/train_throughput.py --curves 300   # also: loss curve before/after packing, same seed

The last line printed is the ratio: our tokens/s over TRL's.
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
import warnings

import torch
from _common import (
    default_config,
    machine,
    matmul_gflops,
    median,
    padded_forward_backward,
    setup,
    train_flops,
    training_batches,
)

from transferlab.backends import HFBackend, load_pretrained, resolve_model
from transferlab.train.schedule import lr_at


def our_steps(backend, batches, config, first_step: int) -> list[float]:
    """Seconds per step of forward_backward + optim_step, one per batch."""
    times = []
    for i, datums in enumerate(batches):
        t = time.perf_counter()
        backend.forward_backward(datums)
        backend.optim_step(lr_at(first_step + i, config.train.steps, config.train.lr, config.train.warmup))
        times.append(time.perf_counter() - t)
    return times


def trl_trainer(batches, config, bf16: bool, padding_free: bool, out: str):
    """An SFTTrainer over the same batches, in order, with the settings that make it fastest here:
    gradient checkpointing off (TRL's default is on), no trackers, no checkpoints."""
    from datasets import Dataset, disable_progress_bars
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    disable_progress_bars()
    rows = [d for datums in batches for d in datums]
    data = Dataset.from_dict({
        "input_ids": [list(d.input_ids) for d in rows],
        "completion_mask": [[int(w > 0) for w in d.weights] for d in rows],
    })
    args = SFTConfig(
        output_dir=out, per_device_train_batch_size=config.train.batch_size, max_steps=len(batches),
        learning_rate=config.train.lr, warmup_steps=config.train.warmup, lr_scheduler_type="cosine",
        adam_beta1=0.9, adam_beta2=0.98, weight_decay=config.train.weight_decay, max_grad_norm=1.0,
        bf16=bf16, use_cpu=True, gradient_checkpointing=False, completion_only_loss=True,
        padding_free=padding_free, max_length=None, train_sampling_strategy="sequential",
        dataloader_pin_memory=False, report_to="none", save_strategy="no", disable_tqdm=True,
        seed=config.seed, logging_steps=10)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())

    timer = StepTimes()
    model, tokenizer = load_pretrained(resolve_model(config.model.name))
    t = time.perf_counter()
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # its end-of-train summary line, not a cost worth timing
    prepare_s = time.perf_counter() - t
    return trainer, timer, prepare_s


def trl_steps(trainer, timer, steps: int) -> list[float]:
    """Run `steps` TRL steps; seconds per step between consecutive step ends (all its per-step work:
    collation, forward, backward, clipping, optimizer, scheduler, logging)."""
    trainer.args.max_steps = steps
    timer.ends.clear()
    trainer.train()
    assert torch.get_num_threads() == trainer_threads, "TRL changed the thread count"
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])]


def first_losses(backend, trainer, datums) -> tuple[float, float]:
    """The loss both compute on the same batch with the same weights: the masks must agree."""
    ours = copy.deepcopy(backend.model)
    ref = HFBackend(ours, backend.tokenizer, bf16=backend.bf16)
    mine = ref.forward_backward(datums)
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(len(datums))])
    trainer.model.load_state_dict(backend.model.state_dict())
    with torch.no_grad():
        theirs = float(trainer.compute_loss(trainer.model, inputs))
    return mine, theirs


def curves(config, batches, seed: int) -> None:
    """The loss of the same seeded run with forward_backward before (left padding) and after
    (packing), alternating step by step, so both the curves and the speed ratio are like for like."""
    torch.manual_seed(seed)
    model, tokenizer = load_pretrained(resolve_model(config.model.name))
    after = HFBackend(copy.deepcopy(model), tokenizer, bf16=config.model.bf16)
    before = HFBackend(model, tokenizer, bf16=config.model.bf16)
    every = max(1, len(batches) // 15)
    t_before, t_after, worst = [], [], 0.0
    print(f"\nloss curve, seed {seed}, {len(batches)} steps (before = left padding, after = packing)")
    print(f"{'step':>5} {'before':>9} {'after':>9} {'|diff|':>9}")
    for step, datums in enumerate(batches):
        lr = lr_at(step, config.train.steps, config.train.lr, config.train.warmup)
        t = time.perf_counter()
        b = padded_forward_backward(before, datums)
        before.optim_step(lr)
        t_before.append(time.perf_counter() - t)
        t = time.perf_counter()
        a = after.forward_backward(datums)
        after.optim_step(lr)
        t_after.append(time.perf_counter() - t)
        worst = max(worst, abs(a - b))
        if (step + 1) % every == 0 or step == 0:
            print(f"{step + 1:>5} {b:>9.4f} {a:>9.4f} {abs(a - b):>9.2e}")
    print(f"largest |diff| over all steps: {worst:.2e}; step time before {median(t_before) * 1e3:.0f} ms, "
          f"after {median(t_after) * 1e3:.0f} ms (median): packing {median(t_before) / median(t_after):.2f}x")


trainer_threads = 1


def main() -> None:
    global trainer_threads
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 4 steps, no TRL padding-free variant")
    parser.add_argument("--steps", type=int, default=12, help="steps per contender per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trl-padding-free", action="store_true",
                        help="also time TRL with padding_free=True (one long row per batch)")
    parser.add_argument("--curves", type=int, default=0, metavar="STEPS",
                        help="also print the loss curve before/after packing for this many steps")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 4, 3
    trainer_threads = args.threads
    setup(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    config = default_config(args.threads)

    model, tokenizer = load_pretrained(resolve_model(config.model.name))
    backend = HFBackend(model, tokenizer, bf16=config.model.bf16)
    batches = training_batches(config, tokenizer, args.steps)
    tokens = [sum(len(d.input_ids) for d in datums) for datums in batches]
    flops = [train_flops(model.config, datums) for datums in batches]
    print(f"machine: {machine()}")
    print(f"organism: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; batch "
          f"{config.train.batch_size}, {median(tokens):.0f} real tokens per batch (median); "
          f"precision: {'bf16 autocast' if backend.bf16 else 'fp32'} for both (model.bf16 = {config.model.bf16!r})")
    dtype = torch.bfloat16 if backend.bf16 else torch.float32
    print(f"matmul rate, 1024^2, fp32: {matmul_gflops():.1f} GFLOP/s; bf16 (512^2): "
          f"{matmul_gflops(torch.bfloat16, 512, 0.2):.1f} GFLOP/s")

    contenders = {"ours": None, "trl": None}
    with tempfile.TemporaryDirectory() as out:
        trainer, timer, prepare_s = trl_trainer(batches, config, backend.bf16, False, out)
        print(f"TRL dataset preparation (once, before its first step): {prepare_s:.1f} s")
        mine, theirs = first_losses(backend, trainer, batches[0])
        print(f"same batch, same weights: our loss {mine:.5f}, TRL's {theirs:.5f}")
        if not args.quick and args.trl_padding_free:
            contenders["trl padding-free"] = trl_trainer(batches, config, backend.bf16, True, out + "/pf")[:2]
        contenders["trl"] = (trainer, timer)
        times = {name: [] for name in contenders}
        rates = []
        our_step = 0
        for r in range(args.rounds):
            rates.append(matmul_gflops(dtype, 1024 if dtype == torch.float32 else 512, 0.3))
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                if name == "ours":
                    times[name] += our_steps(backend, batches, config, our_step)[1:]
                    our_step += len(batches)
                else:
                    times[name] += trl_steps(*contenders[name], len(batches))
            line = ", ".join(f"{n} {median(t) * 1e3:.0f} ms/step" for n, t in times.items())
            print(f"round {r + 1}/{args.rounds}: {line}")

    per_step_tokens = median(tokens)
    rate = median(rates)
    print(f"\nmatmul rate during the rounds ({dtype}): {rate:.1f} GFLOP/s (median of {len(rates)})")
    result = {}
    for name, t in times.items():
        s = median(t)
        result[name] = per_step_tokens / s
        share = median(flops) / s / 1e9 / rate
        print(f"{name:>16}: {s * 1e3:7.1f} ms/step, {result[name]:8.0f} tokens/s, "
              f"{median(flops) / s / 1e9:5.1f} useful GFLOP/s = {share:.0%} of the matmul rate")
    if args.curves:
        curves(config, training_batches(config, tokenizer, args.curves), config.seed)
    best_trl = max((v, k) for k, v in result.items() if k != "ours")
    print(f"ratio ours / {best_trl[1]} (tokens/s): {result['ours'] / best_trl[0]:.2f}x")


if __name__ == "__main__":
    main()
