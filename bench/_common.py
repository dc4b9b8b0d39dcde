"""What the benchmarks share: one thread, the default experiment's data, a matmul rate, memory, FLOPs.

Every benchmark measures the two contenders alternately in one process (ours, theirs, ours, ...),
so that a neighbour stealing the CPU for a while slows both alike and the ratio stays fair.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import statistics
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from transferlab.config import load_config, make_tasks
from transferlab.core import Datum


def setup(threads: int) -> None:
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars


def default_config(threads: int, overrides: dict | None = None):
    """The shipped default config (configs/default.toml) with `model.threads` set, plus overrides."""
    config = load_config(None)
    config.model.threads = threads
    for dotted, value in (overrides or {}).items():
        target = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return config


class _Quiet:
    """The progress object training_streams wants; the template writer never uses it."""

    def stage(self, *_):
        pass


def training_batches(config, tokenizer, n: int) -> list[list[Datum]]:
    """The first `n` batches the default experiment trains on, drawn and rendered as the loop does."""
    from transferlab.train import loop

    streams = loop.training_streams(config, make_tasks(config), None, _Quiet())
    rng = random.Random(f"train-{config.seed}")
    return [loop.training_batch(config, streams, tokenizer, rng) for _ in range(n)]


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.5) -> float:
    """The machine's square-matmul rate on the threads set, in GFLOP/s (the best of a few tries)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def train_flops(config, datums: list[Datum]) -> float:
    """Useful training FLOPs of one batch (forward and backward, 3x the forward): the matmuls of every
    real (non-padding) token, causal attention within each example, and the vocabulary projection
    at the positions that carry loss. Padding and logits nobody needs do not count."""
    c = config
    d, heads, kv = c.hidden_size, c.num_attention_heads, c.num_key_value_heads
    head_dim = getattr(c, "head_dim", None) or d // heads
    per_layer = d * heads * head_dim * 2 + d * kv * head_dim * 2 + 3 * d * c.intermediate_size
    tokens = sum(len(x.input_ids) for x in datums)
    attention = sum(len(x.input_ids) ** 2 for x in datums) * heads * head_dim * 2  # QK^T and AV, causal half
    scored = sum(1 for x in datums for w in x.weights[1:] if w)
    forward = 2 * per_layer * tokens * c.num_hidden_layers + attention * c.num_hidden_layers
    forward += 2 * d * c.vocab_size * scored
    return 3 * forward


def rss_mib() -> float:
    """Resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
            f"{torch.get_num_threads()} thread(s)")


def median(xs) -> float:
    return statistics.median(xs)


def padded_forward_backward(backend, datums: list[Datum]) -> float:
    """HFBackend.forward_backward as it was before padding-free packing (left padding, logits for
    the last positions of every row), kept here so a benchmark can show the loss curves before and
    after on the same seed."""
    backend.model.train()
    width = max(len(d.input_ids) for d in datums)
    pad = backend.tokenizer.pad_token_id
    ids = torch.full((len(datums), width), pad, dtype=torch.long)
    weights = torch.zeros((len(datums), width))
    attention = torch.zeros((len(datums), width), dtype=torch.long)
    first_weighted = width
    for row, d in enumerate(datums):
        start = width - len(d.input_ids)
        ids[row, start:] = torch.tensor(d.input_ids)
        weights[row, start:] = torch.tensor(d.weights)
        attention[row, start:] = 1
        nonzero = [i for i, w in enumerate(d.weights) if w]
        first_weighted = min(first_weighted, start + (nonzero[0] if nonzero else len(d.weights)))
    keep = min(width, width - first_weighted + 1)
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    ids, weights, attention, positions = (t.to(backend.device) for t in (ids, weights, attention, positions))
    with backend._autocast():
        logits = backend.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                               logits_to_keep=keep).logits
    targets = ids[:, width - keep + 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    w = weights[:, width - keep + 1:].reshape(-1)
    loss = (nll * w).sum() / w.sum().clamp(min=1)
    loss.backward()
    return float(loss.detach())


@torch.no_grad()
def batched_sample_before(backend, prompts, max_tokens: int, temperature: float = 0.0,
                          batch_size: int = 128) -> list[str]:
    """HFBackend.sample as it was before prompts shared their common prefixes (for before/after runs)."""
    from transferlab.train.render import render_prompt

    backend.model.eval()
    out: list[str] = []
    pad = backend.tokenizer.pad_token_id
    for start in range(0, len(prompts), batch_size):
        encoded = [render_prompt(backend.tokenizer, p) for p in prompts[start: start + batch_size]]
        width = max(map(len, encoded))
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, e in enumerate(encoded):
            ids[row, width - len(e):] = torch.tensor(e)
            attention[row, width - len(e):] = 1
        with backend._autocast():
            generated = backend.model.generate(
                input_ids=ids.to(backend.device), attention_mask=attention.to(backend.device),
                max_new_tokens=max_tokens, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                pad_token_id=pad, eos_token_id=backend.tokenizer.eos_token_id)
        out += backend.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return out
