"""LoRA on a local Hugging Face folder (the micro organism is a LlamaForCausalLM): only the adapters
train, checkpoints hold the adapter alone and reopen exactly, adapters are reproducible from the seed,
and gradient checkpointing changes memory, not results."""

from functools import partial

import pytest
import torch
from curriculum_batches import curriculum_datums

from transferlab.backends import open_backend
from transferlab.backends.lora import add_lora, is_lora, load_dtype
from transferlab.config import ModelConfig

batch = partial(curriculum_datums, n=6, seed=4)


def lora_config(micro, **kw):
    settings = {"full_finetune": False, "lora_rank": 4, "bf16": False, "threads": 1, "check_memory": False}
    return ModelConfig(name=str(micro), **{**settings, **kw})


def adapters(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_only_the_adapters_train_and_the_base_stays_put(micro_organism):
    torch.manual_seed(0)
    backend = open_backend(lora_config(micro_organism))
    assert is_lora(backend.model)
    trainable = {n for n, p in backend.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in backend.model.named_parameters() if not p.requires_grad}
    before = adapters(backend.model)
    datums = batch(backend.tokenizer)
    first = backend.forward_backward(datums)
    for _ in range(6):
        backend.optim_step(1e-2)
        last = backend.forward_backward(datums)
    assert last < first
    assert all(torch.equal(p, frozen[n]) for n, p in backend.model.named_parameters() if n in frozen)
    assert any(not torch.equal(p, before[n]) for n, p in adapters(backend.model).items())


def test_all_linear_targets_every_projection_and_a_list_only_its_modules(micro_organism):
    torch.manual_seed(0)
    everything = open_backend(lora_config(micro_organism)).model
    targeted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in adapters(everything) if ".lora_A" in n}
    assert targeted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    some = open_backend(lora_config(micro_organism, lora_targets=["q_proj", "v_proj"])).model
    assert {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in adapters(some) if ".lora_A" in n} == {"q_proj", "v_proj"}


def test_unknown_targets_name_the_layers_the_model_has(micro_organism):
    with pytest.raises(ValueError, match="q_proj"):
        open_backend(lora_config(micro_organism, lora_targets=["query_key_value"]))


def trained_adapter(micro):
    """A LoRA backend on the micro organism after three steps on one batch, and that batch."""
    torch.manual_seed(0)
    backend = open_backend(lora_config(micro))
    datums = batch(backend.tokenizer)
    for _ in range(3):
        backend.forward_backward(datums)
        backend.optim_step(1e-2)
    return backend, datums


def test_checkpoint_holds_the_adapter_alone_and_reopens_exactly(micro_organism, tmp_path):
    from transformers import AutoModelForCausalLM

    backend, datums = trained_adapter(micro_organism)
    backend.save_state(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt"} <= files
    assert "model.safetensors" not in files
    adapter_bytes = (tmp_path / "ckpt" / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < (micro_organism / "model.safetensors").stat().st_size / 4

    # the folder reopens with from_pretrained (transformers + PEFT: the base it names, plus the adapter)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    ids = torch.tensor([datums[0].input_ids])
    backend.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, backend.model(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)

    expected = backend.forward_backward(datums)
    backend.optimizer.zero_grad()
    torch.manual_seed(1)  # another seed: a different fresh adapter, replaced by the loaded one
    reopened = open_backend(lora_config(micro_organism))
    reopened.load_state(tmp_path / "ckpt")
    assert reopened.forward_backward(datums) == pytest.approx(expected, rel=1e-6)
    # the optimizer moments came back too: one more step moves both alike
    backend.forward_backward(datums)
    backend.optim_step(1e-2)
    reopened.optim_step(1e-2)
    assert reopened.forward_backward(datums) == pytest.approx(backend.forward_backward(datums), rel=1e-5)


def test_a_lora_checkpoint_as_the_model_name_opens_with_its_adapter_trained_on_or_merged(micro_organism, tmp_path):
    """A stage's LoRA output named as the next stage's model: the saved adapter, not a fresh one."""
    backend, datums = trained_adapter(micro_organism)
    backend.save_state(tmp_path / "stage")
    expected = [x for row in backend.token_logprobs(datums) for x in row]
    base = [x for row in open_backend(lora_config(micro_organism)).token_logprobs(datums) for x in row]
    assert max(abs(a - b) for a, b in zip(expected, base)) > 1e-3  # the stage moved the model
    torch.manual_seed(1)
    on = open_backend(lora_config(tmp_path / "stage"))
    assert is_lora(on.model)
    assert [x for row in on.token_logprobs(datums) for x in row] == pytest.approx(expected, abs=1e-5)
    before = adapters(on.model)
    on.forward_backward(datums)
    on.optim_step(1e-2)  # the loaded adapter is what trains on
    assert any(not torch.equal(p, before[n]) for n, p in adapters(on.model).items())
    merged = open_backend(lora_config(tmp_path / "stage", full_finetune=True))
    assert not is_lora(merged.model)
    assert [x for row in merged.token_logprobs(datums) for x in row] == pytest.approx(expected, abs=1e-5)


def test_loading_an_adapter_of_another_rank_is_refused(micro_organism, tmp_path):
    torch.manual_seed(0)
    open_backend(lora_config(micro_organism, lora_rank=4)).save_state(tmp_path / "r4")
    other = open_backend(lora_config(micro_organism, lora_rank=8))
    with pytest.raises((ValueError, RuntimeError), match="lora_rank|size mismatch"):
        other.load_state(tmp_path / "r4")


def test_the_adapter_is_drawn_from_the_seed_and_leaves_the_global_stream_alone(micro_organism):
    from transformers import AutoModelForCausalLM

    def fresh(seed):
        torch.manual_seed(seed)
        model = add_lora(AutoModelForCausalLM.from_pretrained(micro_organism), rank=4, alpha=8, dropout=0.0,
                         targets=["all-linear"])
        return adapters(model), torch.rand(3)

    (a, after_a), (b, _), (c, _) = fresh(0), fresh(0), fresh(1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a if "lora_A" in n)
    torch.manual_seed(0)
    assert torch.equal(after_a, torch.rand(3))  # as if no adapter had been drawn


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(micro_organism):
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        backend = open_backend(lora_config(micro_organism, gradient_checkpointing=checkpointing))
        base = backend.model.get_base_model()
        active = getattr(base, "is_activation_checkpointing", None)
        assert (base.is_gradient_checkpointing if active is None else active) == checkpointing
        loss = backend.forward_backward(batch(backend.tokenizer))
        grads = [p.grad.clone() for p in backend.model.parameters() if p.requires_grad]
        results.append((loss, grads))
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    for g, h in zip(grads, grads_ckpt):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-7)


def test_full_finetuning_keeps_fp32_master_weights_and_a_lora_base_is_bf16_on_gpu():
    lora = ModelConfig(full_finetune=False)
    assert load_dtype(lora, on_gpu=True) == torch.bfloat16
    assert load_dtype(lora, on_gpu=False) == torch.float32
    assert load_dtype(ModelConfig(full_finetune=False, bf16=False), on_gpu=True) == torch.float32
    assert load_dtype(ModelConfig(), on_gpu=True) == torch.float32
