"""The tinker backend without the network: our datums as the SDK's own types, the loss the service
computes from them (its documented `cross_entropy`, run here on the micro organism) equal to the hf
backend's, chat rendering for sampling, the service's model list checked at start-up, each step's
calls submitted before either is awaited, checkpoints that expire, resuming (and reopening a saved
stage) from the service's saved state with one client, and the session closed. A fake service
stands in for the live one, recording every call."""

import json
import random
from functools import partial

import numpy as np
import pytest
import torch

tinker = pytest.importorskip("tinker")
from curriculum_batches import curriculum_datums
from tinker import types

from transferlab.backends import HFBackend, ModelNotFound, load_pretrained
from transferlab.backends.tinker import (
    STATE_FILE,
    TinkerBackend,
    lora_groups,
    to_tinker_batch,
    to_tinker_datum,
)
from transferlab.config import ConfigError, ModelConfig, load_config
from transferlab.organism.curriculum import curriculum
from transferlab.propensities import get_propensity, prompt_with
from transferlab.train.render import render_prompt

datums = partial(curriculum_datums, n=5, seed=2)
SERVED = "Qwen/Qwen3-4B-Instruct-2507"  # a model the service trains (its own list decides at start-up)


class Done:
    """An already-resolved SDK future."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class Pending(Done):
    """An SDK future whose waiting is logged, to check what is submitted before what is awaited."""

    def __init__(self, value, log, name):
        super().__init__(value)
        self.log, self.name = log, name

    def result(self):
        self.log.append(("wait", self.name))
        return self.value


class FakeTraining:
    """The service's training client, computing `cross_entropy` as the SDK documents it
    (loss = sum of -logprob * weight over every datum and token) on a local model."""

    def __init__(self, model, tokenizer, log):
        self.model, self.tokenizer, self.log = model, tokenizer, log

    def forward_backward(self, data, loss_fn):
        assert loss_fn == "cross_entropy"
        self.log.append(("forward_backward", len(data)))
        total, outputs = 0.0, []
        for d in data:
            assert isinstance(d, types.Datum)
            ids = torch.tensor([d.model_input.to_ints()])
            targets = d.loss_fn_inputs["target_tokens"].to_torch()
            weights = d.loss_fn_inputs["weights"].to_torch()
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), -1)
            target_logp = logp[torch.arange(len(targets)), targets]
            loss = -(target_logp * weights).sum()
            loss.backward()
            total += float(loss.detach())
            outputs.append({"logprobs": types.TensorData.from_torch(target_logp.detach())})
        return Pending(types.ForwardBackwardOutput(loss_fn_output_type="cross_entropy", loss_fn_outputs=outputs,
                                                   metrics={"loss:sum": total}), self.log, "forward_backward")

    def optim_step(self, params):
        assert isinstance(params, types.AdamParams)
        self.log.append(("optim_step", params))
        return Pending(None, self.log, "optim_step")

    def save_weights_and_get_sampling_client(self):
        self.log.append(("sampler",))
        return Done(FakeSampler(self.log))

    def save_state(self, name, ttl_seconds=None):
        self.log.append(("save_state", name, ttl_seconds))
        return Done(types.SaveWeightsResponse(path=f"tinker://run-1/weights/{name}"))

    def save_weights_for_sampler(self, name, ttl_seconds=None):
        self.log.append(("save_weights_for_sampler", name, ttl_seconds))
        return Done(types.SaveWeightsForSamplerResponse(path=f"tinker://run-1/sampler_weights/{name}"))

    def get_tokenizer(self):
        return self.tokenizer


class FakeSampler:
    def __init__(self, log):
        self.log = log

    def sample(self, prompt, num_samples, sampling_params):
        self.log.append(("sample", prompt.to_ints(), sampling_params))
        tokens = np.array([7, 8], dtype=np.int64)
        return Done(types.SampleResponse(sequences=[types.SampledSequence(stop_reason="stop", sequence_id="s",
                                                                           tokens_np=tokens)]))


class FakeService:
    def __init__(self, model, tokenizer):
        self.log, self.model, self.tokenizer = [], model, tokenizer

    def create_lora_training_client(self, **kwargs):
        self.log.append(("create", kwargs))
        return Done(FakeTraining(self.model, self.tokenizer, self.log))

    def create_training_client_from_state_with_optimizer(self, path):
        self.log.append(("resume", path))
        return Done(FakeTraining(self.model, self.tokenizer, self.log))

    def create_training_client_from_state(self, path):
        self.log.append(("reopen", path))
        return Done(FakeTraining(self.model, self.tokenizer, self.log))

    def close(self, status, detail=None):
        self.log.append(("close", status))
        return Done(None)


class FakeRest:
    """The service's REST client: its capabilities (the models it trains) and checkpoint TTLs."""

    def __init__(self, log, served):
        self.log, self.served = log, served

    def get_server_capabilities(self):
        self.log.append(("capabilities",))
        models = [types.SupportedModel(model_name=name, trainable=True, sampleable=True) for name in self.served]
        models.append(types.SupportedModel(model_name="Qwen/Qwen3-235B-A22B-Instruct-2507", trainable=False))
        return Done(types.GetServerCapabilitiesResponse(supported_models=models))

    def set_checkpoint_ttl_from_tinker_path(self, tinker_path, ttl_seconds):
        self.log.append(("ttl", tinker_path, ttl_seconds))
        return Done(None)


def served_by(service, micro_organism, *others):
    return FakeRest(service.log, [str(micro_organism), *others])


@pytest.fixture()
def organism(micro_organism):
    torch.manual_seed(0)
    return load_pretrained(str(micro_organism))


def hosted(micro_organism, service, name=None, options=None, **kw):
    """A tinker backend on the fake service, which trains the micro organism (by its folder's name)."""
    config = ModelConfig(name=str(name or micro_organism), backend="tinker", full_finetune=False, **kw)
    return TinkerBackend.from_config(config, service=service, rest=served_by(service, micro_organism),
                                     **(options or {}))


def test_datum_is_the_sdk_type_shifted_by_one_with_weights_on_assistant_tokens_only(organism):
    _, tokenizer = organism
    d = datums(tokenizer, n=1)[0]
    t = to_tinker_datum(d)
    assert isinstance(t, types.Datum)
    assert t.model_input.to_ints() == list(d.input_ids[:-1])
    targets, weights = t.loss_fn_inputs["target_tokens"], t.loss_fn_inputs["weights"]
    assert (targets.dtype, weights.dtype) == ("int64", "float32")
    assert targets.tolist() == list(d.input_ids[1:])
    # weight i scores target i = token i+1: exactly the tokens after the rendered prompt
    prompt_len = d.weights.index(1.0)
    assert weights.tolist() == [0.0] * (prompt_len - 1) + [1.0] * (len(d.input_ids) - prompt_len)
    answer = tokenizer.decode([tok for tok, w in zip(targets.tolist(), weights.tolist()) if w])
    assert answer and answer in tokenizer.decode(list(d.input_ids))


def test_weights_are_scaled_per_example_or_per_token_so_the_services_sum_is_our_loss(organism):
    """Per example each datum's weights sum to 1/n (an example counts once, however long its
    target); per token every weight is 1/(the batch's weighted tokens). Either way they sum to one."""
    _, tokenizer = organism
    ours = datums(tokenizer)
    tokens = [sum(d.weights[1:]) for d in ours]
    assert len(set(tokens)) > 1
    for normalization in ("example", "token"):
        sums = [float(np.sum(d.loss_fn_inputs["weights"].to_numpy())) for d in to_tinker_batch(ours, normalization)]
        assert sum(sums) == pytest.approx(1.0)
        expected = [1 / len(ours)] * len(ours) if normalization == "example" else [t / sum(tokens) for t in tokens]
        assert sums == pytest.approx(expected, rel=1e-6), normalization


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_service_loss_and_gradient_equal_the_hf_backends(micro_organism, organism, normalization):
    """The service's documented sum, on our scaled weights, is the hf backend's loss under either
    normalisation: loss and gradient, so a learning rate means the same on both backends."""
    model, tokenizer = organism
    reference_model, _ = load_pretrained(str(micro_organism))
    batch = datums(tokenizer)
    service = FakeService(model, tokenizer)
    backend = hosted(micro_organism, service, options={"loss_normalization": normalization})
    local = HFBackend(reference_model, tokenizer, bf16=False, loss_normalization=normalization)
    assert backend.forward_backward(batch) == pytest.approx(local.forward_backward(batch), rel=1e-5)
    for a, b in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_lora_settings_and_seed_reach_the_service(micro_organism, organism):
    service = FakeService(*organism)
    torch.manual_seed(7)
    hosted(micro_organism, service, lora_rank=8, lora_targets=["attn", "mlp"])
    (_, kwargs), = [e for e in service.log if e[0] == "create"]
    assert kwargs == {"base_model": str(micro_organism), "rank": 8, "seed": 7, "train_attn": True,
                      "train_mlp": True, "train_unembed": False}


def test_lora_targets_map_to_the_services_groups():
    assert lora_groups(["all-linear"]) == {"train_attn": True, "train_mlp": True, "train_unembed": False}
    assert lora_groups(["mlp"]) == {"train_attn": False, "train_mlp": True, "train_unembed": False}
    with pytest.raises(ValueError, match="whole groups"):
        lora_groups(["q_proj", "v_proj"])


def test_optimizer_step_sends_the_hf_backends_adam_and_refreshes_the_sampler(micro_organism, organism):
    model, tokenizer = organism
    service = FakeService(model, tokenizer)
    backend = hosted(micro_organism, service)
    prompts = [prompt_with(e, get_propensity("bold")) for e in curriculum(random.Random(1), 2)]
    backend.sample(prompts, max_tokens=5)
    backend.sample(prompts, max_tokens=5)
    assert sum(e[0] == "sampler" for e in service.log) == 1  # weights unchanged: the same sampler
    backend.optim_step(2e-4)
    (_, params), = [e for e in service.log if e[0] == "optim_step"]
    assert isinstance(params, types.AdamParams)
    assert (params.learning_rate, params.beta1, params.beta2, params.grad_clip_norm) == (2e-4, 0.9, 0.98, 1.0)
    replies = backend.sample(prompts, max_tokens=5)
    assert sum(e[0] == "sampler" for e in service.log) == 2
    assert replies == [tokenizer.decode([7, 8], skip_special_tokens=True)] * 2


def test_sampling_prompts_are_rendered_with_the_models_chat_template(micro_organism, organism):
    model, tokenizer = organism
    service = FakeService(model, tokenizer)
    backend = hosted(micro_organism, service)
    prompts = [prompt_with(e, get_propensity("plain")) for e in curriculum(random.Random(3), 3)]
    backend.sample(prompts, max_tokens=9, temperature=0.0)
    sent = [e for e in service.log if e[0] == "sample"]
    assert [tokens for _, tokens, _ in sent] == [render_prompt(tokenizer, p) for p in prompts]
    params = sent[0][2]
    assert isinstance(params, types.SamplingParams)
    assert (params.max_tokens, params.temperature, list(params.stop)) == (9, 0.0, [tokenizer.eos_token_id])


def test_a_resumed_run_makes_one_training_client_from_the_services_saved_state(micro_organism, organism,
                                                                              tmp_path, monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-secret-key-never-written")
    model, tokenizer = organism
    service = FakeService(model, tokenizer)
    backend = hosted(micro_organism, service)
    backend.save_state(tmp_path / "latest")
    record = json.loads((tmp_path / "latest" / STATE_FILE).read_text())
    assert record["state_path"].startswith("tinker://") and record["base_model"] == str(micro_organism)

    again = FakeService(model, tokenizer)
    hosted(micro_organism, again, options={"resume_from": tmp_path / "latest"}).forward_backward(datums(tokenizer, n=1))
    made = [e for e in again.log if e[0] in ("create", "resume", "reopen")]
    assert made == [("resume", record["state_path"])]  # weights and Adam moments; no fresh adapter first
    assert ("forward_backward", 1) in again.log
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "latest").rglob("*") if p.is_file())
    assert "tml-secret-key-never-written" not in written


def test_an_unknown_base_model_is_refused_at_start_up_with_the_services_list(micro_organism, organism):
    service = FakeService(*organism)
    with pytest.raises(ModelNotFound) as refused:
        hosted(micro_organism, service, name="meta-llama/Llama-3.1-8B")
    assert "meta-llama/Llama-3.1-8B" in str(refused.value) and str(micro_organism) in str(refused.value)
    assert "Qwen3-235B" not in str(refused.value)  # listed by the service, but not trainable
    assert [e[0] for e in service.log] == ["capabilities"]  # refused before any client was made


def test_a_step_submits_forward_backward_and_optim_step_before_waiting_on_either(micro_organism, organism):
    model, tokenizer = organism
    service = FakeService(model, tokenizer)
    backend = hosted(micro_organism, service, options={"weight_decay": 0.01})
    batch = datums(tokenizer)
    expected = HFBackend(load_pretrained(str(micro_organism))[0], tokenizer, bf16=False,
                         loss_normalization="example").forward_backward(batch)
    del service.log[:]
    loss = backend.train_step(batch, 3e-4)
    assert [e[0] for e in service.log] == ["forward_backward", "optim_step", "wait", "wait"]
    params = service.log[1][1]
    assert (params.learning_rate, params.weight_decay) == (3e-4, 0.01)  # train.weight_decay reaches the service
    assert loss == pytest.approx(expected, rel=1e-5)


def test_checkpoints_expire_hold_no_sampler_weights_and_closing_keeps_the_last_one_long(micro_organism, organism,
                                                                                       tmp_path):
    from transferlab.backends.tinker import FINAL_TTL, ROLLING_TTL

    service = FakeService(*organism)
    backend = hosted(micro_organism, service)
    backend.save_state(tmp_path / "a")
    backend.save_state(tmp_path / "b")
    saves = [e for e in service.log if e[0] == "save_state"]
    assert [ttl for *_, ttl in saves] == [ROLLING_TTL, ROLLING_TTL] and ROLLING_TTL < FINAL_TTL
    assert not [e for e in service.log if e[0] in ("save_weights_for_sampler", "sampler")]  # no evaluation asked
    backend.close("success")
    last = json.loads((tmp_path / "b" / STATE_FILE).read_text())["state_path"]
    assert service.log[-2:] == [("ttl", last, FINAL_TTL), ("close", "success")]
    backend.close("success")
    assert service.log.count(("close", "success")) == 1


def test_a_saved_stage_reopens_from_its_service_state_not_its_folder_name(micro_organism, organism, tmp_path):
    """Goal guarding's stage 2 and the persona run open the folder a stage was saved to as model.name:
    the service gets the state that folder names, on the base model it was trained from."""
    service = FakeService(*organism)
    hosted(micro_organism, service).save_state(tmp_path / "stage1")
    state = json.loads((tmp_path / "stage1" / STATE_FILE).read_text())["state_path"]
    later = FakeService(*organism)
    backend = hosted(micro_organism, later, name=tmp_path / "stage1")
    assert [e for e in later.log if e[0] in ("create", "resume", "reopen")] == [("reopen", state)]
    assert backend.base_model == str(micro_organism)


def test_a_run_on_the_service_pipelines_its_steps_passes_weight_decay_resumes_with_one_client_and_closes(
        micro_organism, organism, tmp_path, monkeypatch):
    """`transferlab run` with backend = "tinker", the SDK's clients replaced by the fake service."""
    from transferlab.train.loop import run_experiment

    services = []

    def service_client():
        services.append(FakeService(*organism))
        return services[-1]

    monkeypatch.setenv("TINKER_API_KEY", "tml-test")
    monkeypatch.setattr(tinker, "ServiceClient", service_client)
    monkeypatch.setattr(tinker, "RestClient", lambda: served_by(services[-1], micro_organism))
    config = load_config("default_lora", overrides=[
        "model.backend=tinker", f"model.name={micro_organism}", "model.threads=1", "train.steps=2",
        "train.batch_size=4", "train.weight_decay=0.02", "eval.every=2", "eval.n=2", "eval.n_boot=20"])
    run_experiment(config, tmp_path / "run", quiet=True)
    first = [e[0] for e in services[0].log]
    assert first[:2] == ["capabilities", "create"]
    steps = [i for i, name in enumerate(first) if name == "forward_backward"]
    assert len(steps) == 2 and all(first[i:i + 4] == ["forward_backward", "optim_step", "wait", "wait"] for i in steps)
    assert {e[1].weight_decay for e in services[0].log if e[0] == "optim_step"} == {0.02}
    assert first[-2:] == ["ttl", "close"]

    run_experiment(config, tmp_path / "run", quiet=True)  # finished: reopened from its checkpoint
    made = [e for e in services[1].log if e[0] in ("create", "resume", "reopen")]
    assert [e[0] for e in made] == ["resume"]


def test_without_an_api_key_the_backend_says_which_variable_to_set(micro_organism, monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    config = ModelConfig(name=SERVED, backend="tinker", full_finetune=False)
    with pytest.raises(RuntimeError, match="TINKER_API_KEY"):
        TinkerBackend.from_config(config)


def test_the_lora_config_switches_to_tinker_by_the_model_and_backend_keys_alone():
    config = load_config("default_lora", overrides=["model.backend=tinker", f"model.name={SERVED}"])
    assert config.model.backend == "tinker"
    with pytest.raises(ConfigError, match="full_finetune = false"):
        load_config(None, overrides=["model.backend=tinker", f"model.name={SERVED}"])
    with pytest.raises(ConfigError, match="model.name") as refused:
        load_config("default_lora", overrides=["model.backend=tinker"])
    assert "Llama" not in str(refused.value)  # retired from the service in 2026
