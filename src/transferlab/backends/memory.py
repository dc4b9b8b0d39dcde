"""Will the run fit? Bytes of weights, gradients, optimizer and activations, from the model's config.json.

The arithmetic, per process (docs/real-models.md has the table it gives for real models):
- weights: every parameter in its training dtype. Full fine-tuning keeps fp32 master weights (4 bytes;
  bf16 autocast adds a 2-byte copy while the forward pass runs); LoRA keeps the frozen base in bf16 on
  a GPU (2 bytes) and fp32 on a CPU, and only the adapters train.
- gradients 4 bytes and AdamW's two moments 8 bytes, per *trainable* parameter.
- activations per token of a micro-batch: about (10 h + 4 i) values per layer (h hidden, i MLP width:
  the tensors a decoder layer saves for backward), or one layer input per layer plus one layer's worth
  under gradient checkpointing; plus the logits (bf16/fp32, their fp32 log-softmax and its gradient).
- FSDP shards weights, gradients and optimizer across processes; DDP replicates them.
- 1 GiB for the CUDA context and the allocator's slack.

The parameter count comes from instantiating the architecture on the meta device: exact for any model
transformers knows, and no weight is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GiB = 1024 ** 3
SEQ_LEN = 512  # tokens per example assumed by the check: our prompts and answers stay well under it
OVERHEAD = 1 * GiB


class DoesNotFit(RuntimeError):
    """The arithmetic says the run cannot fit the device; the message names the numbers and the fixes."""


@dataclass(frozen=True)
class ModelShape:
    name: str
    parameters: int
    layers: int
    hidden: int
    intermediate: int  # MLP width a token passes through (all its experts', in a mixture of experts)
    vocab: int
    linear_shapes: tuple[tuple[str, int, int], ...]  # (module name, in, out) of every nn.Linear

    def lora_parameters(self, rank: int, targets: list[str]) -> int:
        """Adapter parameters PEFT adds: rank * (in + out) per targeted Linear ('all-linear': every
        Linear but the output head, as PEFT means it)."""
        def targeted(name: str) -> bool:
            leaf = name.rsplit(".", 1)[-1]
            if "all-linear" in targets:
                return leaf != "lm_head"
            return leaf in targets or name in targets
        return sum(rank * (i + o) for name, i, o in self.linear_shapes if targeted(name))


def model_shape(name: str) -> ModelShape:
    """The shape of `name` (a folder or a hub name) from its config.json alone."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(name)
    text = getattr(config, "text_config", None) or config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linears = tuple((n, m.in_features, m.out_features) for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear))
    hidden = text.hidden_size
    # a mixture of experts runs `num_experts_per_tok` expert MLPs on every token
    experts = getattr(text, "num_experts_per_tok", None) or 1
    intermediate = getattr(text, "moe_intermediate_size", None) or getattr(text, "intermediate_size", None) or 4 * hidden
    return ModelShape(name=name, parameters=sum(p.numel() for p in model.parameters()),
                      layers=text.num_hidden_layers, hidden=hidden, intermediate=intermediate * experts,
                      vocab=text.vocab_size, linear_shapes=linears)


@dataclass(frozen=True)
class Estimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    trainable: int
    tokens: int  # per micro-batch on one process

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + OVERHEAD

    def describe(self) -> str:
        return (f"{gb(self.total)} (weights {gb(self.weights)} + gradients {gb(self.gradients)} + AdamW "
                f"{gb(self.optimizer)} + activations {gb(self.activations)} for {self.tokens} tokens per "
                f"micro-batch + {gb(OVERHEAD)} runtime)")


def gb(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n < 10 * GiB else f"{n / GiB:.0f} GiB"


def estimate(shape: ModelShape, *, full_finetune: bool, lora_rank: int = 32, lora_targets=("all-linear",),
             on_gpu: bool, bf16: bool, batch_size: int, processes: int = 1, grad_accumulation: int = 1,
             gradient_checkpointing: bool = False, parallel: str = "ddp", seq_len: int = SEQ_LEN) -> Estimate:
    """Bytes one process needs for one training step of `batch_size` examples (the global batch)."""
    shards = processes if parallel == "fsdp" else 1
    if full_finetune:
        trainable = shape.parameters
        weights = shape.parameters * (4 + (2 if bf16 else 0))  # fp32 master + autocast's bf16 copy
    else:
        trainable = shape.lora_parameters(lora_rank, list(lora_targets))
        base = 2 if (bf16 and on_gpu) else 4 + (2 if bf16 else 0)
        weights = shape.parameters * base + trainable * 4
    weights /= shards
    gradients = trainable * 4 / shards
    optimizer = trainable * 8 / shards
    per_process = -(-batch_size // processes)
    examples = -(-per_process // grad_accumulation)
    tokens = examples * seq_len
    act = 2 if bf16 else 4
    per_layer = (10 * shape.hidden + 4 * shape.intermediate) * act
    if gradient_checkpointing:
        layers = shape.layers * shape.hidden * act + per_layer
    else:
        layers = shape.layers * per_layer
    logits = shape.vocab * (act + 4 + 4)
    return Estimate(weights=weights, gradients=gradients, optimizer=optimizer,
                    activations=tokens * (layers + logits), trainable=trainable, tokens=tokens)


def device_memory(local_rank: int = 0) -> tuple[float, str]:
    """(bytes, what) this process may use: the GPU's memory, else the RAM available now."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(local_rank % torch.cuda.device_count())
        return float(props.total_memory), f"cuda:{local_rank} ({props.name})"
    return float(available_ram()), "this machine's available RAM"


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(model, batch_size: int, *, shape: ModelShape | None = None, memory: tuple[float, str] | None = None,
               on_gpu: bool | None = None, bf16: bool | None = None) -> Estimate:
    """Raise DoesNotFit, naming the numbers and the fixes, when `model` (a ModelConfig) cannot train a
    batch of `batch_size` examples here. Returns the estimate when it fits."""
    import torch

    from transferlab.backends import resolve_model

    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    bf16 = (model.bf16 is True or (model.bf16 == "auto" and on_gpu)) if bf16 is None else bf16
    shape = shape or model_shape(resolve_model(model.name))
    total, where = memory or device_memory(int(os.environ.get("LOCAL_RANK", "0")))
    on_cpu_processes = 1 if on_gpu else model.processes  # CPU processes share one machine's RAM
    settings = {"full_finetune": model.full_finetune, "lora_rank": model.lora_rank, "lora_targets": model.lora_targets,
                    "on_gpu": on_gpu, "bf16": bf16, "batch_size": batch_size, "processes": model.processes,
                    "grad_accumulation": model.grad_accumulation, "gradient_checkpointing": model.gradient_checkpointing,
                    "parallel": model.parallel}
    need = estimate(shape, **settings)
    if need.total * on_cpu_processes <= total:
        return need
    each = " each" if on_cpu_processes > 1 else ""
    fixes = []
    for label, change in fixes_for(model, batch_size):
        after = estimate(shape, **{**settings, **change})
        fixes.append(f"  - {label}: ~{gb(after.total)}{each}")
    raise DoesNotFit(
        f"{shape.name} ({shape.parameters / 1e9:.2f}B parameters, "
        f"{'full fine-tuning' if model.full_finetune else f'LoRA rank {model.lora_rank}'}, batch {batch_size}) needs "
        f"about {need.describe()}{each}, but {where} has {gb(total / on_cpu_processes)}{each}. "
        f"Assumes {SEQ_LEN} tokens per example. Ways to fit:\n" + "\n".join(fixes)
        + "\n  - or set model.check_memory = false to try anyway")


def fixes_for(model, batch_size: int) -> list[tuple[str, dict]]:
    """The config changes that shrink a run, each with the settings it changes."""
    fixes = []
    if model.full_finetune:
        fixes.append(("LoRA: model.full_finetune = false", {"full_finetune": False}))
    accumulation = min(batch_size, model.grad_accumulation * 4)
    if accumulation > model.grad_accumulation:
        fixes.append((f"smaller micro-batches: model.grad_accumulation = {accumulation}",
                      {"grad_accumulation": accumulation}))
    if not model.gradient_checkpointing:
        fixes.append(("model.gradient_checkpointing = true", {"gradient_checkpointing": True}))
    processes = max(2, model.processes * 2)
    fixes.append((f"shard over more GPUs: model.parallel = 'fsdp' with --processes {processes}",
                  {"parallel": "fsdp", "processes": processes}))
    return fixes
