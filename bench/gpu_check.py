"""One GPU check, sized for a lent device (no network there): four measurements in one process.

1. The hf backend with LoRA on a randomly initialised model of a real architecture (a Qwen3-8B-shaped
   config: the shape is what costs time and memory, not the values of the weights).
2. Its tokens/s against TRL's SFTTrainer on the same GPU, same batches (the default experiment's,
   rendered by our loop), same LoRA, same precision, alternating rounds in this one process.
3. Its peak GPU memory against `backends/memory.py`'s estimate for that shape and batch.
4. A short organism run (`transferlab run`) on the GPU: wall time and final accuracies.

    python bench/gpu_check.py                        # on the GPU: Qwen3-8B shape, ~5 minutes
    python bench/gpu_check.py --shape tiny --quick   # a smoke check on CPU, ~1 minute

`bench/gpu_check.sh` runs it on the device machine. Each section prints its own lines; a section that
cannot run (no TRL installed, say) says why and the others go on. The last line is the ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import default_config, median, setup, training_batches

from transferlab.backends import HFBackend, load_pretrained, memory, resolve_model
from transferlab.backends.lora import add_lora
from transferlab.train.schedule import lr_at

# Qwen3-8B's config.json (hidden 4096, 36 layers, 32 query / 8 key-value heads of 128, MLP 12288,
# vocabulary 151,936, untied head): ~8.2B parameters. `tiny` keeps the architecture at toy size.
SHAPES = {
    "qwen3-8b": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                 "max_position_embeddings": 40960, "rope_theta": 1_000_000.0, "tie_word_embeddings": False},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 4096, "max_position_embeddings": 2048,
             "tie_word_embeddings": False},
}
LORA = {"rank": 16, "alpha": 32.0, "dropout": 0.0, "targets": ["all-linear"]}


def qwen3_config(shape: str):
    from transformers import Qwen3Config

    return Qwen3Config(**SHAPES[shape], torch_dtype="bfloat16")


def random_model(shape: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A seeded random Qwen3-shaped model built straight on `device` (no weights file to write)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(qwen3_config(shape), torch_dtype=dtype)
    return add_lora(model, rank=LORA["rank"], alpha=LORA["alpha"], dropout=LORA["dropout"],
                    targets=LORA["targets"], seed=seed)


def our_round(backend, batches, config, first_step: int) -> list[float]:
    """Seconds per step (forward_backward + optim_step), the device synchronised around each."""
    times = []
    for i, datums in enumerate(batches):
        sync()
        t = time.perf_counter()
        backend.forward_backward(datums)
        backend.optim_step(lr_at(first_step + i, config.train.steps, config.train.lr, config.train.warmup))
        sync()
        times.append(time.perf_counter() - t)
    return times


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def trl_trainer(model, tokenizer, batches, config, bf16: bool, out: str):
    """TRL's SFTTrainer over the same batches in order, on an already LoRA-wrapped model, with the settings
    that make it fastest (no gradient checkpointing, no trackers, no checkpoints)."""
    from datasets import Dataset, disable_progress_bars
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    disable_progress_bars()
    rows = [d for datums in batches for d in datums]
    data = Dataset.from_dict({"input_ids": [list(d.input_ids) for d in rows],
                              "completion_mask": [[int(w > 0) for w in d.weights] for d in rows]})
    args = SFTConfig(
        output_dir=out, per_device_train_batch_size=config.train.batch_size, max_steps=len(batches),
        learning_rate=config.train.lr, warmup_steps=config.train.warmup, lr_scheduler_type="cosine",
        adam_beta1=0.9, adam_beta2=0.98, max_grad_norm=1.0, bf16=bf16, use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False, completion_only_loss=True, max_length=None,
        train_sampling_strategy="sequential", report_to="none", save_strategy="no", disable_tqdm=True,
        seed=config.seed, logging_steps=10)

    class StepEnds(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *_, **__):
            sync()
            self.ends.append(time.perf_counter())

    timer = StepEnds()
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    return trainer, timer


def trl_round(trainer, timer, steps: int) -> list[float]:
    trainer.args.max_steps = steps
    timer.ends.clear()
    trainer.train()
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])]


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def estimate_line(shape: str, batch_size: int, tokens: int, on_gpu: bool) -> tuple[float, str]:
    """memory.py's estimate for this shape (read from a config.json, as a real run reads it), at the
    measured tokens per example."""
    with tempfile.TemporaryDirectory() as folder:
        qwen3_config(shape).save_pretrained(folder)
        model_shape = memory.model_shape(folder)
    est = memory.estimate(model_shape, full_finetune=False, lora_rank=LORA["rank"], lora_targets=LORA["targets"],
                          on_gpu=on_gpu, bf16=True, batch_size=batch_size, seq_len=tokens)
    return est.total / 2**30, f"{model_shape.parameters / 1e9:.2f}B parameters; estimate {est.describe()}"


def organism_run(steps: int, out: Path) -> None:
    """The default experiment for `steps` steps through the CLI, as a user would start it."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "transferlab.cli", "run", "--out", str(out),
                           "--set", f"train.steps={steps}", "--set", f"eval.every={max(1, steps // 2)}"],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"organism run failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
        return
    import pandas as pd

    metrics = pd.read_csv(out / "metrics.csv")
    last = metrics[metrics.step == metrics.step.max()]
    print(f"organism run: {steps} steps in {wall:.0f} s wall (start-up and evaluations included)")
    for row in last.itertuples():
        print(f"  step {row.step} {row.task} [{row.eval_set}] trained {row.trained}, prompted "
              f"{row.prompted}: accuracy {row.accuracy:.2f} (n={row.n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-8b")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 steps, a 20-step organism run")
    parser.add_argument("--steps", type=int, default=8, help="steps per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--organism-steps", type=int, default=300)
    parser.add_argument("--skip-organism", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.organism_steps = 3, 2, 20
    setup(threads=torch.get_num_threads())
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    print(f"device: {torch.cuda.get_device_name() if on_gpu else 'CPU'}; torch {torch.__version__}; "
          f"shape {args.shape}; LoRA r{LORA['rank']} on all linear layers")

    config = default_config(torch.get_num_threads())
    _, tokenizer = load_pretrained(resolve_model("organism"))  # the default data's token ids, < every vocab here
    batches = training_batches(config, tokenizer, args.steps)
    tokens = [sum(len(d.input_ids) for d in datums) for datums in batches]
    longest = max(len(d.input_ids) for datums in batches for d in datums)

    # 1 + 3: our backend, its peak memory against the estimate
    dtype = torch.bfloat16 if on_gpu else torch.float32  # the frozen base as a LoRA run loads it
    t = time.perf_counter()
    model = random_model(args.shape, device, dtype)
    print(f"model built on {device} in {time.perf_counter() - t:.0f} s")
    backend = HFBackend(model, tokenizer, bf16=on_gpu, device=str(device))
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    ours = our_round(backend, batches, config, 0)[1:]
    est_gib, est_text = estimate_line(args.shape, config.train.batch_size, longest, on_gpu)
    peak = peak_gib()
    print(f"peak GPU memory over {len(batches)} steps of batch {config.train.batch_size} (longest example "
          f"{longest} tokens): {peak:.1f} GiB measured; {est_gib:.1f} GiB estimated ({est_text}); "
          f"measured / estimate = {peak / est_gib:.2f}")

    # 2: TRL on the same GPU, alternating with ours
    try:
        import trl  # noqa: F401
    except ImportError:
        trl_times = None
        print("TRL is not installed here: tokens/s of ours only (bench/gpu_check.sh installs it from .whl/)")
    else:
        trl_model = random_model(args.shape, device, dtype)
        with tempfile.TemporaryDirectory() as out:
            trainer, timer = trl_trainer(trl_model, tokenizer, batches, config, on_gpu, out)
            trl_times, step = [], len(batches)
            for r in range(args.rounds):
                for name in (["ours", "trl"] if r % 2 == 0 else ["trl", "ours"]):
                    if name == "ours":
                        ours += our_round(backend, batches, config, step)[1:]
                        step += len(batches)
                    else:
                        trl_times += trl_round(trainer, timer, len(batches))
                print(f"round {r + 1}/{args.rounds}: ours {median(ours) * 1e3:.0f} ms/step, "
                      f"TRL {median(trl_times) * 1e3:.0f} ms/step")
        del trainer, trl_model
    del backend, model
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()

    # 4: the organism, end to end
    if not args.skip_organism:
        with tempfile.TemporaryDirectory() as out:
            organism_run(args.organism_steps, Path(out) / "run")

    rate = median(tokens) / median(ours)
    summary = {"device": torch.cuda.get_device_name() if on_gpu else "cpu", "shape": args.shape,
               "ours_tokens_per_s": round(rate), "peak_gib": round(peak, 2), "estimate_gib": round(est_gib, 2)}
    if trl_times:
        summary["trl_tokens_per_s"] = round(median(tokens) / median(trl_times))
    print(json.dumps(summary))
    print(f"ours: {rate:.0f} tokens/s" + (f"; ratio ours / TRL (tokens/s): {median(trl_times) / median(ours):.2f}x"
                                           if trl_times else "; TRL not measured"))


if __name__ == "__main__":
    main()
