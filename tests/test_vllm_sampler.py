"""Evaluation through vLLM: which runs take it, what they ask of the engine, and that the adapter it
is handed is the one under training (same answers as HF generate).

vLLM needs a CUDA GPU, so here the engine is a stand-in with `vllm.LLM.generate`'s signature that
loads the saved adapter onto the base folder with PEFT, as vLLM does, and decodes greedily. The test
of vLLM's own request types runs wherever vllm is installed."""

import random
from types import SimpleNamespace

import pytest
import torch

from transferlab.backends import open_backend
from transferlab.config import EvalConfig, ModelConfig
from transferlab.evaluate.vllm_sampler import (
    SamplerUnavailable,
    VLLMSampler,
    adapter_request,
    choose_sampler,
    engine_arguments,
    sampling_parameters,
    vllm_lora_rank,
)
from transferlab.organism.curriculum import curriculum
from transferlab.propensities import get_propensity, prompt_with
from transferlab.train.render import render_datum

LORA = {"full_finetune": False, "lora_rank": 4, "bf16": False, "threads": 1, "check_memory": False}


def test_auto_takes_vllm_only_for_a_single_process_lora_run_with_vllm_and_a_gpu():
    lora = ModelConfig(**LORA)
    auto = EvalConfig()
    assert choose_sampler(auto, lora, installed=True, gpu=True) == "vllm"
    assert choose_sampler(auto, lora, installed=False, gpu=True) == "hf"
    assert choose_sampler(auto, lora, installed=True, gpu=False) == "hf"
    assert choose_sampler(auto, ModelConfig(**{**LORA, "full_finetune": True}), installed=True, gpu=True) == "hf"
    assert choose_sampler(auto, ModelConfig(**{**LORA, "processes": 2}), installed=True, gpu=True) == "hf"
    assert choose_sampler(EvalConfig(sampler="hf"), lora, installed=True, gpu=True) == "hf"


def test_insisting_on_vllm_where_it_cannot_run_names_every_reason_and_the_fix():
    with pytest.raises(SamplerUnavailable) as err:
        choose_sampler(EvalConfig(sampler="vllm"), ModelConfig(full_finetune=True), installed=False, gpu=False)
    message = str(err.value)
    for part in ("model.full_finetune = false", "vllm is not installed", "no CUDA GPU", "eval.sampler = 'auto'"):
        assert part in message


def test_a_run_insisting_on_vllm_here_stops_before_any_folder_exists(tmp_path, capsys):
    from transferlab.cli import main

    out = tmp_path / "run"
    code = main(["run", "--quiet", "--out", str(out), "--set", "eval.sampler=vllm",
                 "--set", "model.full_finetune=false"])
    assert code == 2
    assert "eval.sampler = 'vllm' cannot be used here" in capsys.readouterr().err
    assert not out.exists()


def test_the_engine_gets_room_for_one_adapter_of_a_rank_vllm_accepts():
    assert [vllm_lora_rank(r) for r in (1, 4, 8, 9, 32, 300)] == [1, 8, 8, 16, 32, 320]
    with pytest.raises(ValueError, match="eval.sampler = 'hf'"):
        vllm_lora_rank(1024)
    args = engine_arguments("some/model", ModelConfig(**{**LORA, "lora_rank": 12}), EvalConfig(vllm_memory=0.3), seed=7)
    assert args["enable_lora"] and args["max_lora_rank"] == 16 and args["max_loras"] == 1
    assert args["gpu_memory_utilization"] == 0.3 and args["seed"] == 7 and args["model"] == "some/model"


class PeftEngine:
    """`vllm.LLM.generate`'s contract on CPU: token-id prompts, one LoRARequest naming a saved adapter
    folder, greedy decoding until the stop token; each call reloads the adapter from disk."""

    def __init__(self, base: str):
        self.base = base
        self.seen: list[str] = []

    def generate(self, prompts, params, *, lora_request, use_tqdm):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        assert use_tqdm is False
        self.seen.append(lora_request["path"])
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(self.base), lora_request["path"]).eval()
        outputs = []
        for prompt in prompts:
            ids = torch.tensor([prompt["prompt_token_ids"]])
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=params["max_tokens"], eos_token_id=params["stop"],
                                     pad_token_id=params["stop"][0])
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=out[0, ids.size(1):].tolist())]))
        return outputs


def test_the_engine_answers_with_the_adapter_as_it_stands_exactly_as_hf_generate(micro_organism, monkeypatch):
    import transferlab.evaluate.vllm_sampler as vs

    monkeypatch.setattr(vs, "sampling_parameters",
                        lambda max_tokens, temperature, stops, seed: {"max_tokens": max_tokens, "stop": stops})
    monkeypatch.setattr(vs, "adapter_request", lambda name, number, path: {"name": name, "path": str(path)})
    backend = open_backend(ModelConfig(name=str(micro_organism), **LORA))
    engine = PeftEngine(str(micro_organism))
    sampler = VLLMSampler(backend, engine=engine)
    rng = random.Random(3)
    examples = curriculum(rng, 12)
    prompts = [prompt_with(e, get_propensity("bold")) for e in examples]
    before = sampler.sample(prompts, max_tokens=8)
    assert before == backend.sample(prompts, max_tokens=8)
    plain = get_propensity("plain")
    datums = [render_datum(backend.tokenizer, prompt_with(e, plain), "red") for e in examples]
    for _ in range(15):
        backend.forward_backward(datums)
        backend.optim_step(3e-2)
    after = sampler.sample(prompts, max_tokens=8)
    assert after == backend.sample(prompts, max_tokens=8)
    assert after != before  # the second evaluation saw the trained adapter, not the first one
    assert len(set(engine.seen)) == 2 and not any(__import__("os").path.exists(p) for p in engine.seen)


def test_the_requests_are_vllms_own_types_where_vllm_is_installed(tmp_path):
    vllm = pytest.importorskip("vllm")
    params = sampling_parameters(16, 0.0, eos_token_id=5, seed=1)
    assert isinstance(params, vllm.SamplingParams)
    assert params.max_tokens == 16 and params.temperature == 0.0 and 5 in params.stop_token_ids
    from vllm.lora.request import LoRARequest

    request = adapter_request("eval-3", 3, tmp_path)
    assert isinstance(request, LoRARequest)
    assert (request.lora_name, request.lora_int_id, request.lora_path) == ("eval-3", 3, str(tmp_path))
