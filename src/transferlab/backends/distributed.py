"""Data-parallel training across processes, and gradient accumulation within one.

One process (rank 0) runs the experiment loop exactly as a single process would; the others serve its
backend calls. Every call is broadcast, then each process does its part:
- forward_backward: the global batch is cut into one shard per process and each shard into
  `grad_accumulation` micro-batches. The batch loss is a sum over examples with scales fixed over
  the whole global batch first (backends/normalization.py: per example or per token), so each
  micro-batch contributes its part of that sum (not 1/number of micro-batches of a mean: shards
  hold different numbers of examples and tokens), and the gradients are summed across processes:
  the step equals one process on the whole batch, up to float rounding.
- optim_step: every process steps its own copy with the same summed gradient (DDP's arithmetic).
- sample: each process answers a share of the prompts; rank 0 gathers them in order.
- save_state: rank 0 writes; load_state: every process reads the same checkpoint.

With `model.parallel = "fsdp"` each process keeps only its shard of every decoder layer's weights,
gradients and optimizer state (PyTorch's FSDP2, `fully_shard`): the layers are gathered for each
forward and backward and the gradients reduce-scattered, so a model too large for one device trains
across several. The arithmetic above is unchanged; sampling then runs on every process in lockstep
(same prompts, same random state), and a checkpoint is the sharded state (torch.distributed.checkpoint,
for resuming) plus the trained weights gathered on rank 0 (the adapter, or the full model), which
from_pretrained reopens.

Processes are started by `transferlab run --processes N` (see `launch`), by `accelerate launch` or by
`torchrun`: all three set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, which is all
`init` reads. gloo on CPUs, NCCL on GPUs (one GPU per process, LOCAL_RANK picks it).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from transferlab.backends.normalization import loss_scales, loss_tokens
from transferlab.core import Datum

# rank 0 may spend long between calls (an LLM writer filling its pool before the model opens)
TIMEOUT = timedelta(hours=4)
BUCKET = 64 * 1024 * 1024  # gradient elements all-reduced at once: bounds the extra memory
SHARDS = "fsdp_shards"  # inside an FSDP checkpoint: every process's shard of weights and optimizer


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as launchers set them; (0, 1, 0) in a plain process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", env.get("RANK", 0)))


def init() -> None:
    """Join the process group the launcher described (a no-op in a single process)."""
    rank, size, local = world()
    if size == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local % torch.cuda.device_count())
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=TIMEOUT)


def split(items: list, parts: int) -> list[list]:
    """`parts` contiguous slices of near-equal length (the first ones one longer)."""
    q, r = divmod(len(items), parts)
    bounds = [i * q + min(i, r) for i in range(parts + 1)]
    return [items[bounds[i]: bounds[i + 1]] for i in range(parts)]


def replicate_or_shard(model, parallel: str = "ddp"):
    """Before the optimizer exists: every process takes rank 0's trainable weights (adapters drawn
    elsewhere could differ), then under FSDP keeps only its shard of each decoder layer."""
    _, size, _ = world()
    if size == 1:
        return model
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, src=0)
    if parallel != "fsdp":
        return model
    from torch.distributed.fsdp import fully_shard

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"FSDP shards a model layer by layer, and {type(base).__name__} names no layer class "
                         f"(transformers' _no_split_modules); use model.parallel = 'ddp'")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return model


class DataParallelBackend:
    """The Backend protocol over an in-process backend (HFBackend), split across processes and
    micro-batches. Rank 0's calls are mirrored on every other rank, which runs `serve`. The model
    must have gone through `replicate_or_shard` before the inner backend made its optimizer."""

    def __init__(self, inner, *, grad_accumulation: int = 1, parallel: str = "ddp"):
        self.inner = inner
        self.grad_accumulation = grad_accumulation
        self.rank, self.size, _ = world()
        if self.size > 1 and not dist.is_initialized():
            raise RuntimeError("WORLD_SIZE > 1 but no process group: call transferlab.backends.distributed.init()")
        self.fsdp = parallel == "fsdp" and self.size > 1
        self._stopped = self._busy = False
        if self.size > 1 and self.rank == 0:
            _LIVE.append(self)
            atexit.register(self.stop)

    # -- what the loop sees -----------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.inner.tokenizer

    @property
    def model(self):
        return self.inner.model

    @property
    def loss_normalization(self) -> str:
        return self.inner.loss_normalization

    @loss_normalization.setter
    def loss_normalization(self, value: str) -> None:
        self.inner.loss_normalization = value

    def forward_backward(self, datums: list[Datum], loss_fn: str = "cross_entropy") -> float:
        # rank 0's normalisation travels with the call: every rank scales the batch alike
        return self._call("forward_backward", list(datums), self.inner.loss_normalization, loss_fn)

    def optim_step(self, lr: float) -> None:
        self._call("optim_step", lr)

    def train_step(self, datums: list[Datum], lr: float) -> float:
        loss = self.forward_backward(datums)
        self.optim_step(lr)
        return loss

    def close(self, status: str = "success") -> None:
        self.stop()

    def sample(self, prompts, max_tokens: int, temperature: float = 0.0, **kwargs) -> list[str]:
        return self._call("sample", list(prompts), max_tokens, temperature, kwargs)

    def sample_sequences(self, prompts, num_samples: int, max_tokens: int, temperature: float = 1.0, **kwargs):
        return self._call("sample_sequences", list(prompts), num_samples, max_tokens, temperature, kwargs)

    def token_logprobs(self, datums: list[Datum], weighted_only: bool = False) -> list[list[float]]:
        return self._call("token_logprobs", list(datums), weighted_only)

    def save_state(self, path) -> None:
        self._call("save_state", str(path))

    def load_state(self, path) -> None:
        self._call("load_state", str(path))

    def checkpoint_bytes(self) -> int:
        from transferlab.backends.lora import checkpoint_bytes

        return checkpoint_bytes(self.inner.model)

    def stop(self) -> None:
        """Release the other processes (rank 0, once, when the run ends or fails)."""
        if self._busy:  # a call failed midway: a stop message could meet a collective; the launcher
            return      # ends the other ranks when this one exits
        if self.size > 1 and self.rank == 0 and not self._stopped and dist.is_initialized():
            self._stopped = True
            dist.broadcast_object_list([("stop", ())], src=0)

    # -- the work every rank does -----------------------------------------------------------------
    def _call(self, name: str, *args):
        if self.size > 1:
            if self.rank != 0:
                raise RuntimeError("only rank 0 drives the backend; the other ranks run serve()")
            dist.broadcast_object_list([(name, args)], src=0)
        self._busy = True  # stays set if the call fails: the other ranks may be inside a collective
        result = getattr(self, f"_{name}")(*args)
        self._busy = False
        return result

    def _forward_backward(self, datums: list[Datum], normalization: str, loss_fn: str = "cross_entropy") -> float:
        scales = loss_scales(datums, normalization)  # over the global batch, before it is cut
        shards = split(list(zip(datums, scales)), self.size)
        shard = shards[self.rank]
        if self.fsdp:  # every process must run as many forward/backward passes as the others
            fewest = min(map(len, shards))
            if fewest == 0:
                raise ValueError(f"under FSDP every process needs an example: train.batch_size ({len(datums)}) "
                                 f"must be at least model.processes ({self.size})")
            micros = split(shard, min(self.grad_accumulation, fewest))
        else:
            micros = split(shard, min(self.grad_accumulation, len(shard)) or 1)
        # FSDP averages gradients over processes; our scales already make a sum over all of them
        reduction = self.size if self.fsdp else 1
        loss_sum = 0.0
        for micro in micros:
            if not self.fsdp and not any(scale * loss_tokens(d) for d, scale in micro):
                continue  # nothing to learn here: its gradient is zero
            part, part_scales = zip(*micro)
            loss_sum += self.inner.scaled_forward_backward(list(part), [s * reduction for s in part_scales],
                                                           loss_fn) / reduction
        if self.size > 1:
            if not self.fsdp:
                self._all_reduce_gradients()
            loss = torch.tensor([loss_sum], dtype=torch.float64)
            dist.all_reduce(loss)
            loss_sum = float(loss)
        return loss_sum

    def _optim_step(self, lr: float) -> None:
        self.inner.optim_step(lr)

    def _sample(self, prompts, max_tokens, temperature, kwargs) -> list[str]:
        """Each process samples a share of the prompts (FSDP: sharded layers are gathered for each
        forward, so every process generates all of them in step)."""
        return self._shared("sample", prompts, max_tokens, temperature, **kwargs)

    def _sample_sequences(self, prompts, num_samples, max_tokens, temperature, kwargs):
        """Each process samples a share of the prompts (all of them, in step, under FSDP)."""
        return self._shared("sample_sequences", prompts, num_samples, max_tokens, temperature, **kwargs)

    def _token_logprobs(self, datums: list[Datum], weighted_only: bool = False) -> list[list[float]]:
        return self._shared("token_logprobs", datums, weighted_only=weighted_only)

    def _shared(self, name: str, items: list, *args, **kwargs) -> list:
        """`inner.<name>(items, ...)` with the items dealt round-robin to the processes and the
        answers gathered back in order on every rank (FSDP: every process does all, in lockstep)."""
        work = getattr(self.inner, name)
        if self.fsdp:
            self._same_random_state()
            return work(items, *args, **kwargs)
        mine = work(items[self.rank::self.size], *args, **kwargs) if items[self.rank::self.size] else []
        if self.size == 1:
            return mine
        gathered = [None] * self.size
        dist.all_gather_object(gathered, mine)
        out = [None] * len(items)
        for r, replies in enumerate(gathered):
            out[r::self.size] = replies
        return out

    def _save_state(self, path: str) -> None:
        if not self.fsdp:
            if self.rank == 0:  # every copy holds the same weights
                self.inner.save_state(path)
            return
        import torch.distributed.checkpoint as dcp

        dcp.save(self._sharded_state(), checkpoint_id=os.path.join(path, SHARDS))
        trained = {n: p.full_tensor() for n, p in self.inner.model.named_parameters() if p.requires_grad}
        if self.rank == 0:  # the adapter (or the full model) gathered, for from_pretrained
            self.inner.model.save_pretrained(path, state_dict=trained)
            self.inner.tokenizer.save_pretrained(path)

    def _load_state(self, path: str) -> None:
        if not self.fsdp:
            self.inner.load_state(path)
            return
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        state = self._sharded_state()
        dcp.load(state, checkpoint_id=os.path.join(path, SHARDS))
        set_model_state_dict(self.inner.model, state["model"])
        set_optimizer_state_dict(self.inner.model, self.inner.optimizer, state["optimizer"])

    def _sharded_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        return {"model": get_model_state_dict(self.inner.model),
                "optimizer": get_optimizer_state_dict(self.inner.model, self.inner.optimizer)}

    def _same_random_state(self) -> None:
        """Rank 0's generator state on every process, so sampling draws alike everywhere."""
        states = [torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None]
        dist.broadcast_object_list(states, src=0)
        torch.set_rng_state(states[0])
        if states[1] is not None:
            torch.cuda.set_rng_state(states[1])

    # -- plumbing ---------------------------------------------------------------------------------
    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.inner.model.parameters() if p.requires_grad]

    def _all_reduce_gradients(self) -> None:
        """Sum every trainable gradient across processes, in buckets of flattened tensors."""
        params = self._trainable()
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[torch.Tensor] = []
        size = 0
        for p in params + [None]:
            if p is not None and (not bucket or (size + p.numel() <= BUCKET and p.grad.dtype == bucket[0].dtype)):
                bucket.append(p.grad)
                size += p.numel()
                continue
            if bucket:
                flat = torch.cat([g.reshape(-1) for g in bucket])
                dist.all_reduce(flat)
                offset = 0
                for g in bucket:
                    g.copy_(flat[offset: offset + g.numel()].view_as(g))
                    offset += g.numel()
            bucket, size = ([p.grad], p.numel()) if p is not None else ([], 0)


_LIVE: list[DataParallelBackend] = []  # rank 0's backends whose other ranks still wait for calls


def stop_workers() -> None:
    """Release every other rank (rank 0, when its run ends, however it ends)."""
    while _LIVE:
        _LIVE.pop().stop()


def serve_config(config) -> int:
    """What a rank other than 0 does for `transferlab run`: open the same backend, serve rank 0."""
    from transferlab.backends import open_backend

    torch.manual_seed(config.seed)
    serve(open_backend(config.model, config.train.batch_size, loss_normalization=config.train.loss_normalization,
                       weight_decay=config.train.weight_decay))
    return 0


def serve(backend: DataParallelBackend) -> None:
    """The loop of every rank but 0: do what rank 0 broadcasts until it says stop."""
    while True:
        message = [None]
        dist.broadcast_object_list(message, src=0)
        name, args = message[0]
        if name == "stop":
            return
        getattr(backend, f"_{name}")(*args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], processes: int, *, env: dict | None = None, quiet_workers: bool = True) -> int:
    """Run `python argv...` as `processes` ranks on this machine, as torchrun would; returns rank 0's
    exit code. When one rank fails the others are ended (only the processes started here)."""
    port = free_port()
    ranks = []
    for rank in range(processes):
        rank_env = {**os.environ, **(env or {}), "RANK": str(rank), "LOCAL_RANK": str(rank),
                    "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        quiet = quiet_workers and rank > 0
        ranks.append(subprocess.Popen([sys.executable, *argv], env=rank_env,
                                      stdout=subprocess.DEVNULL if quiet else None))
    failed: list[int] = []
    try:
        while True:
            codes = [p.poll() for p in ranks]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c is not None for c in codes):
                break
            if codes[0] is not None:  # rank 0 is done: the others have nothing left to serve
                deadline = time.time() + 30
                while time.time() < deadline and any(p.poll() is None for p in ranks):
                    time.sleep(0.2)
                break
            time.sleep(0.2)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.terminate()
        for p in ranks:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    if failed:  # the first failure, not the signal that ended the others
        return failed[0]
    return ranks[0].returncode or next((p.returncode for p in ranks if p.returncode), 0)
