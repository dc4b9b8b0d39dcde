"""What fits where, from the arithmetic: parameter counts read from config.json alone, LoRA's
trainable count as PEFT makes it, the numbers docs/real-models.md quotes, and a run refused before any
weight is loaded, with the numbers and the fixes in the message."""

import pytest
import torch

from transferlab.backends import load_pretrained, memory, open_backend
from transferlab.backends.memory import DoesNotFit, GiB, check_fits, estimate, model_shape
from transferlab.config import ModelConfig

# Llama-3.1-8B's config.json, the fields that shape it (no weights needed, no network)
LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def llama_8b(tmp_path_factory):
    from transformers import LlamaConfig

    folder = tmp_path_factory.mktemp("llama-8b-shape")
    LlamaConfig(**LLAMA_8B).save_pretrained(folder)
    return model_shape(str(folder))


def test_parameters_from_config_json_equal_the_loaded_models(micro_organism):
    shape = model_shape(str(micro_organism))
    model, _ = load_pretrained(str(micro_organism))
    assert shape.parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("targets", [["all-linear"], ["q_proj", "v_proj"]])
def test_lora_count_equals_what_peft_trains(micro_organism, targets):
    shape = model_shape(str(micro_organism))
    torch.manual_seed(0)
    config = ModelConfig(name=str(micro_organism), full_finetune=False, lora_rank=4, lora_targets=targets,
                         bf16=False, threads=1, check_memory=False)
    backend = open_backend(config)
    assert shape.lora_parameters(4, targets) == sum(p.numel() for p in backend.model.parameters() if p.requires_grad)


def test_llama_8b_counts(llama_8b):
    assert llama_8b.parameters == 8_030_261_248
    assert llama_8b.lora_parameters(32, ["all-linear"]) == 83_886_080


def gpu(**settings):
    return dict(on_gpu=True, bf16=True, batch_size=32, **settings)


def test_llama_8b_full_finetuning_needs_16_bytes_a_parameter_before_activations(llama_8b):
    need = estimate(llama_8b, full_finetune=True, **gpu())
    assert need.weights + need.gradients + need.optimizer == 8_030_261_248 * (6 + 4 + 8)


def test_llama_8b_lora_fits_one_80gb_gpu_with_micro_batches_of_8(llama_8b):
    model = ModelConfig(name="llama", full_finetune=False, grad_accumulation=4)
    need = check_fits(model, 32, shape=llama_8b, memory=(80 * GiB, "an 80 GB GPU"), on_gpu=True, bf16=True)
    assert 20 * GiB < need.total < 80 * GiB
    assert need.weights == pytest.approx(8_030_261_248 * 2 + 83_886_080 * 4)


def test_a_run_that_cannot_fit_is_refused_naming_the_numbers_and_the_fixes(llama_8b):
    with pytest.raises(DoesNotFit) as refused:
        check_fits(ModelConfig(name="llama"), 32, shape=llama_8b, memory=(80 * GiB, "cuda:0 (H100)"),
                   on_gpu=True, bf16=True)
    message = str(refused.value)
    assert "8.03B parameters" in message and "full fine-tuning" in message and "cuda:0 (H100) has 80 GiB" in message
    for fix in ("model.full_finetune = false", "model.grad_accumulation = 4", "model.gradient_checkpointing = true",
                "model.parallel = 'fsdp'", "model.check_memory = false"):
        assert fix in message


def test_fsdp_divides_weights_gradients_and_optimizer_by_the_processes(llama_8b):
    one = estimate(llama_8b, full_finetune=True, **gpu())
    eight = estimate(llama_8b, full_finetune=True, processes=8, parallel="fsdp", **gpu())
    assert eight.weights + eight.gradients + eight.optimizer == pytest.approx(
        (one.weights + one.gradients + one.optimizer) / 8)
    ddp = estimate(llama_8b, full_finetune=True, processes=8, parallel="ddp", **gpu())
    assert ddp.weights == one.weights and ddp.activations == pytest.approx(one.activations / 8)


def test_checkpointing_and_accumulation_shrink_activations(llama_8b):
    base = estimate(llama_8b, full_finetune=False, **gpu())
    assert estimate(llama_8b, full_finetune=False, gradient_checkpointing=True, **gpu()).activations < base.activations / 4
    assert estimate(llama_8b, full_finetune=False, grad_accumulation=4, **gpu()).activations == pytest.approx(
        base.activations / 4)


def test_open_backend_refuses_before_reading_any_weight(micro_organism, monkeypatch):
    from transferlab import backends

    monkeypatch.setattr(memory, "device_memory", lambda local_rank=0: (1024.0 ** 2, "a 1 MiB test device"))
    monkeypatch.setattr(backends, "load_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(DoesNotFit, match="1 MiB test device"):
        open_backend(ModelConfig(name=str(micro_organism), threads=1), batch_size=8)
    # the escape hatch
    monkeypatch.undo()
    monkeypatch.setattr(memory, "device_memory", lambda local_rank=0: (1024.0 ** 2, "a 1 MiB test device"))
    open_backend(ModelConfig(name=str(micro_organism), threads=1, check_memory=False))


def test_the_cli_prints_the_refusal_and_exits_2(micro_organism, monkeypatch, tmp_path, capsys):
    from transferlab.cli import main

    monkeypatch.setattr(memory, "device_memory", lambda local_rank=0: (1024.0 ** 2, "a 1 MiB test device"))
    code = main(["run", "--quiet", "--out", str(tmp_path / "run"), "--set", f"model.name={micro_organism}",
                 "--set", "model.threads=1", "--set", "eval.n=2", "--set", "train.steps=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "a 1 MiB test device" in err and "model.full_finetune = false" in err
