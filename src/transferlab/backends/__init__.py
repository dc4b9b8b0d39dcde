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


def open_backend(model_config) -> HFBackend:
    import torch

    torch.set_num_threads(model_config.threads)
    model, tokenizer = load_pretrained(resolve_model(model_config.name))
    return HFBackend(model, tokenizer, bf16=model_config.bf16)


__all__ = ["HFBackend", "ModelNotFound", "load_pretrained", "open_backend", "resolve_model", "shipped_organism"]
