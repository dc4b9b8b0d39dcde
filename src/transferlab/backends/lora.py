"""A Hugging Face model made ready to train at size: LoRA adapters through PEFT, bf16 weights on a GPU,
gradient checkpointing. A LoRA checkpoint holds the adapter only (adapter_config.json and
adapter_model.safetensors), which `AutoModelForCausalLM.from_pretrained` and PEFT both reopen on top of
the base model it names.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def load_dtype(model_config, on_gpu: bool) -> torch.dtype:
    """The dtype the weights are loaded in. A frozen LoRA base on a GPU is stored in bf16 (half the
    memory; the adapters themselves train in fp32); weights that train stay fp32 master weights, and
    bf16 enters through autocast only."""
    lora = not model_config.full_finetune
    return torch.bfloat16 if (lora and on_gpu and model_config.bf16 is not False) else torch.float32


def prepare_model(model, model_config, seed: int | None = None):
    """Gradient checkpointing and LoRA as `model_config` asks; returns the model to train."""
    if model_config.gradient_checkpointing:
        # non-reentrant checkpointing needs no input that requires grad, so it works under LoRA too;
        # transformers 5.2x renamed the method (the old name warns), older 5.x only has the old one
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
    if model_config.full_finetune:
        return model
    return add_lora(model, rank=model_config.lora_rank, alpha=model_config.lora_alpha,
                    dropout=model_config.lora_dropout, targets=model_config.lora_targets, seed=seed)


def add_lora(model, *, rank: int, alpha: float, dropout: float, targets: list[str], seed: int | None = None):
    """Wrap `model` in LoRA adapters. The adapters are drawn from their own generator seeded with
    `seed` (default: the seed torch was last given), so the same seed gives the same adapter and the
    global RNG stream that dropout and sampling use is left where it was."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("LoRA (model.full_finetune = false) needs PEFT: pip install 'transferlab[lora]' "
                          "(or pip install peft)") from err
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM",
                        target_modules="all-linear" if "all-linear" in targets else list(targets))
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(torch.initial_seed() if seed is None else seed)
        try:
            return get_peft_model(model, config)
        except ValueError as err:  # PEFT's own message lists what it looked for
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                            if isinstance(m, torch.nn.Linear)})
            raise ValueError(f"model.lora_targets {targets} matched no layer of this model ({err}); its "
                             f"Linear layers are: {', '.join(names)} (or use 'all-linear')") from err


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def save_adapter(model, path: Path) -> None:
    """The adapter alone: a few MB where the base model is GBs."""
    model.save_pretrained(path)


def load_adapter(model, path: Path) -> None:
    """Put the adapter saved in `path` into `model`'s adapter, in place (the optimizer keeps pointing at
    the same tensors)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(path) / ADAPTER_WEIGHTS))
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise ValueError(f"the adapter in {path} does not match this model's LoRA settings (unexpected: "
                         f"{list(result.unexpected_keys)[:3]}, missing: {missing[:3]}); check model.lora_rank "
                         f"and model.lora_targets against {Path(path) / 'adapter_config.json'}")


def adapter_base(path: str | Path) -> str | None:
    """The base model a LoRA checkpoint folder names (its adapter_config.json), or None where `path`
    is not a LoRA checkpoint (a model folder, a hub name)."""
    folder = Path(path)
    config = folder / "adapter_config.json"
    if not config.is_file() or (folder / "config.json").exists():
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config} names no base model (base_model_name_or_path): open the base as model.name")
    return base


def start_from_adapter(model, path: str | Path):
    """`model` (the base, prepared by `prepare_model`) holding the LoRA checkpoint in `path`: under LoRA
    the adapter trains on from its saved weights; under full fine-tuning it is merged into the weights.
    (Opening the folder with from_pretrained and then adding LoRA would put fresh adapters over the
    saved ones: the stage before would be lost.)"""
    if is_lora(model):
        load_adapter(model, path)
        return model
    from peft import PeftModel

    merged = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    merged.requires_grad_(True)  # PEFT froze the base it wrapped; full fine-tuning trains every weight
    return merged


def checkpoint_bytes(model) -> int:
    """What save_state writes: the trainable weights and AdamW's two fp32 moments, plus 10%."""
    params = trainable_parameters(model) if is_lora(model) else list(model.parameters())
    return int(sum(p.numel() * (p.element_size() + 8) for p in params) * 1.1)
