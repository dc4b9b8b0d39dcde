"""Evaluation sampling through vLLM: the adapter under training, served by a vLLM engine on the GPU.

On a real model, evaluation dominates a run's time (every example under both prompts of a pair, at
every eval step), and vLLM's paged batching is several times faster than HF `generate` there. The
engine loads the base weights once; each evaluation saves the LoRA adapter as it stands and names it
in a `LoRARequest`, so no base weights move. Prompts go in as the token ids our HF path renders and
answers come back decoded by our tokenizer, so both paths are graded alike.

vLLM swaps adapters, not whole models: full fine-tuning, multi-process runs and the hosted backend
sample through their own backend. `choose_sampler` says which path a run takes and why.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from transferlab.backends.lora import save_adapter
from transferlab.core import Message
from transferlab.train.render import render_prompt, reply_text, stop_token_ids

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


class SamplerUnavailable(RuntimeError):
    """eval.sampler names a sampler this run cannot use."""


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


def reasons_against_vllm(model_config, *, installed: bool, gpu: bool) -> list[str]:
    """Why this run cannot sample through vLLM (empty: it can)."""
    reasons = []
    if model_config.backend != "hf":
        reasons.append(f"the {model_config.backend!r} backend samples through its own service")
    if model_config.full_finetune:
        reasons.append("vLLM serves LoRA adapters, not fully fine-tuned weights (set model.full_finetune = false)")
    if model_config.processes > 1:
        reasons.append("multi-process runs sample with HF generate on every process")
    if not installed:
        reasons.append("vllm is not installed (`pip install vllm` on a CUDA machine)")
    if not gpu:
        reasons.append("no CUDA GPU is visible")
    return reasons


def choose_sampler(eval_config, model_config, *, installed: bool | None = None, gpu: bool | None = None) -> str:
    """'vllm' or 'hf'. `eval.sampler = "auto"` takes vLLM whenever it can; "vllm" insists (and stops
    before any work when it cannot, naming why); "hf" never uses it."""
    if eval_config.sampler == "hf":
        return "hf"
    reasons = reasons_against_vllm(model_config, installed=vllm_installed() if installed is None else installed,
                                   gpu=gpu_present() if gpu is None else gpu)
    if not reasons:
        return "vllm"
    if eval_config.sampler == "vllm":
        raise SamplerUnavailable("eval.sampler = 'vllm' cannot be used here: " + "; ".join(reasons)
                         + ". Set eval.sampler = 'auto' (vLLM where possible, else HF generate) or 'hf'.")
    return "hf"


def vllm_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts for `max_lora_rank` that holds an adapter of `rank`."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"model.lora_rank = {rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]}); "
                     f"use eval.sampler = 'hf'")


def engine_arguments(model: str, model_config, eval_config, seed: int) -> dict:
    """Keyword arguments for `vllm.LLM`: the base model once, room for one adapter of our rank."""
    return {"model": model, "tokenizer": model, "seed": seed, "dtype": "bfloat16",
            "enable_lora": True, "max_loras": 1, "max_lora_rank": vllm_lora_rank(model_config.lora_rank),
            "gpu_memory_utilization": eval_config.vllm_memory, "enable_prefix_caching": True}


def sampling_parameters(max_tokens: int, temperature: float, eos_token_id: int | list[int] | None, seed: int):
    """Greedy by default, stopping where the HF path stops (end of text and the template's end of turn:
    `eos_token_id` may list them)."""
    from vllm import SamplingParams

    stops = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    return SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed, stop_token_ids=stops or None)


def adapter_request(name: str, number: int, path: Path):
    from vllm.lora.request import LoRARequest

    return LoRARequest(name, number, str(path))


class VLLMSampler:
    """`sample` like a backend's, answered by a vLLM engine with the backend's current adapter.

    `engine` is a `vllm.LLM` (made from `engine_args` when not given); anything with its `generate`
    signature will do, which is how the tests run it where vLLM cannot be installed."""

    def __init__(self, backend, *, engine=None, engine_args: dict | None = None, seed: int = 0,
                 scratch: str | Path | None = None):
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.seed = seed
        if engine is None:
            from vllm import LLM

            engine = LLM(**(engine_args or {}))
        self.engine = engine
        self.scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="transferlab-vllm-"))
        self.requests = 0

    def sample(self, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0) -> list[str]:
        self.requests += 1
        adapter = self.scratch / f"adapter-{self.requests}"
        save_adapter(self.backend.model, adapter)
        try:
            # A new name and id per evaluation: vLLM caches adapters by id, and this one is new weights.
            request = adapter_request(f"eval-{self.requests}", self.requests, adapter)
            params = sampling_parameters(max_tokens, temperature, stop_token_ids(self.tokenizer), self.seed)
            thinking = getattr(self.backend, "thinking", False)
            inputs = [{"prompt_token_ids": render_prompt(self.tokenizer, p, thinking)} for p in prompts]
            outputs = self.engine.generate(inputs, params, lora_request=request, use_tqdm=False)
            return [reply_text(self.tokenizer, o.outputs[0].token_ids) for o in outputs]
        finally:
            shutil.rmtree(adapter, ignore_errors=True)


def make_sampler(backend, config, choice: str):
    """What the run evaluates with (`choice`, from `choose_sampler`): the backend itself, or a vLLM
    sampler over it."""
    from transferlab.backends import resolve_model

    if choice != "vllm":
        return backend
    args = engine_arguments(resolve_model(config.model.name), config.model, config.eval, config.seed)
    return VLLMSampler(backend, engine_args=args, seed=config.seed)
