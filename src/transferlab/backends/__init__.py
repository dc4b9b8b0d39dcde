"""Backends by name; `organism` names the base organism shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from transferlab.backends.hf import HFBackend, ModelNotFound, load_pretrained


def shipped_organism() -> Path:
    path = Path(str(resources.files("transferlab.organism").joinpath("shipped")))
    if not (path / "config.json").exists():
        raise ModelNotFound(
            f"the shipped organism is missing from {path}; rebuild it with "
            f"`transferlab organism build --out {path}`")
    return path


def resolve_model(name: str) -> str:
    return str(shipped_organism()) if name == "organism" else name


def open_backend(model_config, batch_size: int | None = None, *, loss_normalization: str = "example",
                 weight_decay: float = 0.0, resume_from: str | Path | None = None):
    """The backend `model_config` names, ready to train, its loss normalised per example or per token
    (train.loss_normalization), its optimizer decaying weights by `weight_decay` (train.weight_decay),
    holding the weights and optimizer state of the checkpoint `resume_from` when given.
    For `hf`: the memory arithmetic first (refusing a run that cannot fit a batch of `batch_size`
    before any weight is read), then the weights in their training dtype, LoRA and gradient
    checkpointing as configured, and, across processes or micro-batches, the data-parallel wrapper.
    A LoRA checkpoint as the model's name (an earlier stage's output) opens its base with that
    adapter: training on under LoRA, merged under full fine-tuning.
    Ranks other than 0 hand the result to `serve`."""
    import torch

    torch.set_num_threads(model_config.threads)
    if model_config.backend == "tinker":
        from transferlab.backends.tinker import TinkerBackend

        return TinkerBackend.from_config(model_config, loss_normalization=loss_normalization,
                                         weight_decay=weight_decay, resume_from=resume_from)
    from transferlab.backends import distributed, lora, memory

    _, size, _ = distributed.world()
    if model_config.processes != size:
        raise RuntimeError(
            f"model.processes = {model_config.processes} but this is {size} process(es): start them with "
            f"`transferlab run --processes {model_config.processes}` or `accelerate launch --num_processes "
            f"{model_config.processes} -m transferlab.cli run ...`")
    distributed.init()
    name = resolve_model(model_config.name)
    adapter, base = name, lora.adapter_base(name)  # a LoRA checkpoint (a stage's output): its base, then it
    name = base or name
    if model_config.check_memory:
        try:
            shape = memory.model_shape(name)
        except (OSError, ValueError):
            shape = None  # no config.json to read: load_pretrained says why
        if shape is not None:
            memory.check_fits(model_config, batch_size or 1, shape=shape)
    model, tokenizer = load_pretrained(name)
    model = model.to(lora.load_dtype(model_config, torch.cuda.is_available()))
    model = lora.prepare_model(model, model_config)
    if base is not None:
        model = lora.start_from_adapter(model, adapter)
    model = distributed.replicate_or_shard(model, model_config.parallel)  # before the optimizer is made
    backend = HFBackend(model, tokenizer, bf16=model_config.bf16, loss_normalization=loss_normalization,
                        weight_decay=weight_decay, thinking=model_config.thinking)
    if size > 1 or model_config.grad_accumulation > 1:
        backend = distributed.DataParallelBackend(backend, grad_accumulation=model_config.grad_accumulation,
                                                  parallel=model_config.parallel)
    if resume_from is not None:
        backend.load_state(resume_from)
    return backend


__all__ = ["HFBackend", "ModelNotFound", "load_pretrained", "open_backend", "resolve_model", "shipped_organism"]
