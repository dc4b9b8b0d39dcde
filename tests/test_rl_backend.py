"""RL on the backends: sampled completions carry the log-probabilities they were drawn with, and
forward_backward("importance_sampling") is the Tinker service's documented loss, -sum(exp(logprob -
sampling logprob) x advantage), times train.loss_normalization's per-datum scale: checked against a
hand computation one sequence at a time (the hf backend packs sequences into rows), across
micro-batches (processes: tests/test_distributed.py), and through the tinker backend against a stand-in for the service."""

import random

import pytest
import torch

from transferlab.backends import HFBackend, load_pretrained, open_backend
from transferlab.backends.normalization import loss_scales
from transferlab.backends.rl_loss import importance_sampling
from transferlab.config import ModelConfig
from transferlab.core import RLDatum
from transferlab.experiments.rl.rollouts import sequence_datum
from transferlab.organism.curriculum import curriculum
from transferlab.propensities import get_propensity, prompt_with
from transferlab.train.render import render_prompt


def prompts(n=4, seed=5):
    return [prompt_with(e, get_propensity("bold")) for e in curriculum(random.Random(seed), n)]


def model_config(micro, **kw):
    return ModelConfig(name=str(micro), bf16=False, threads=1, check_memory=False, **kw)


def rollouts(backend, n=4, group=3, seed=0):
    """RLDatums of sampled completions, each token's advantage drawn at random (so a wrong pairing of
    advantages with tokens changes the gradient), sampled log-probs as the sampler gave them."""
    torch.manual_seed(seed)
    ps = prompts(n)
    sampled = backend.sample_sequences(ps, num_samples=group, max_tokens=6, temperature=1.0)
    rng = random.Random(seed)
    out = []
    for p, seqs in zip(ps, sampled):
        ids = render_prompt(backend.tokenizer, p)
        out += [sequence_datum(ids, s, [rng.uniform(-1, 1) for _ in s.tokens]) for s in seqs]
    return out


def fixed_rl_datums(tokenizer) -> list[RLDatum]:
    """RLDatums without sampling (for the two-process test in tests/test_distributed.py): curriculum
    targets as completions, sampling log-probs -1 and advantages +-1 alternating."""
    from curriculum_batches import curriculum_datums

    out = []
    for i, d in enumerate(curriculum_datums(tokenizer, n=6, seed=4)):
        sign = 1.0 if i % 2 else -1.0
        out.append(RLDatum(d.input_ids, d.weights, tuple(-w for w in d.weights),
                           tuple(sign * w for w in d.weights)))
    return out


def shifted(d: RLDatum, by: list[float]) -> RLDatum:
    """The same datum as if sampled with log-probs lowered by `by` (per token): ratio = exp(by)."""
    return RLDatum(d.input_ids, d.weights, tuple(lp - b for lp, b in zip(d.logprobs, by)), d.advantages)


@pytest.fixture()
def micro_backend(micro_organism):
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(str(micro_organism))
    return HFBackend(model, tokenizer, bf16=False, loss_normalization="example")


def test_sampled_token_logprobs_equal_a_forward_passs_log_softmax(micro_backend):
    """At temperature 1 the sampler's log-prob of each token is the model's own log-softmax, scored
    one sequence at a time with no padding or cache; G samples per prompt, stop token included."""
    ps = prompts(3)
    torch.manual_seed(1)
    sampled = micro_backend.sample_sequences(ps, num_samples=4, max_tokens=8, temperature=1.0)
    assert [len(g) for g in sampled] == [4, 4, 4]
    model = micro_backend.model
    checked = 0
    for p, group in zip(ps, sampled):
        ids = render_prompt(micro_backend.tokenizer, p)
        for s in group:
            assert 1 <= len(s.tokens) == len(s.logprobs) <= 8
            assert micro_backend.tokenizer.eos_token_id not in s.tokens[:-1]  # cut after the stop token
            full = torch.tensor([ids + list(s.tokens)])
            with torch.no_grad():
                logp = model(input_ids=full).logits[0, :-1].float().log_softmax(-1)
            expected = logp[torch.arange(len(ids) - 1, full.size(1) - 1), full[0, len(ids):]]
            torch.testing.assert_close(torch.tensor(s.logprobs), expected, rtol=0, atol=1e-4)
            checked += len(s.tokens)
    assert checked > 12
    texts = {s.text for g in sampled for s in g}
    assert len(texts) > 3  # sampled, not greedy


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_prompts_prefilled_once_sample_what_each_row_prefilled_alone_samples(micro_backend, monkeypatch, temperature):
    """Each distinct prompt's cache is computed once and copied to its num_samples rows; with the same
    seed the completions are those of rows that each prefill their own prompt (chunks of 5 rows cut
    through the groups of 3, and the prompts differ in length)."""
    from transferlab.backends import rl_sampling

    ps = prompts(6, seed=9)
    assert len({len(render_prompt(micro_backend.tokenizer, p)) for p in ps}) > 1
    torch.manual_seed(3)
    shared = rl_sampling.hf_sample_sequences(micro_backend, ps, 3, 8, temperature, batch_size=5)

    def each_row_alone(backend, seqs, owners, pad):
        ids, mask = rl_sampling.left_padded(seqs, pad)
        return ids, mask, {}

    monkeypatch.setattr(rl_sampling, "_prefilled_once", each_row_alone)
    torch.manual_seed(3)
    alone = rl_sampling.hf_sample_sequences(micro_backend, ps, 3, 8, temperature, batch_size=5)
    assert [[s.tokens for s in g] for g in shared] == [[s.tokens for s in g] for g in alone]
    for g, h in zip(shared, alone):
        for s, t in zip(g, h):
            assert s.logprobs == pytest.approx(t.logprobs, abs=1e-4)


def test_token_logprobs_of_a_batch_equal_one_sequence_at_a_time(micro_backend):
    datums = rollouts(micro_backend)
    scored = micro_backend.token_logprobs(datums)
    for d, lp in zip(datums, scored):
        n = len(d.input_ids) - sum(1 for w in d.weights if w)  # prompt length
        # the completion part is what the sampler scored (temperature 1)
        assert lp[n:] == pytest.approx(list(d.logprobs[n:]), abs=1e-4)
        assert lp[0] == 0.0 and len(lp) == len(d.input_ids)


def test_weighted_only_scores_the_completions_as_the_whole_sequence_does(micro_backend):
    """The reference scoring of RL (`weighted_only`: the projection runs only where a completion
    token is predicted) gives the full scoring's values at weighted tokens and 0 elsewhere."""
    datums = rollouts(micro_backend, n=5, group=3)
    full = micro_backend.token_logprobs(datums)
    weighted = micro_backend.token_logprobs(datums, weighted_only=True)
    assert any(w == 0 for d in datums for w in d.weights) and any(w > 0 for d in datums for w in d.weights)
    for d, f, w in zip(datums, full, weighted):
        assert len(w) == len(d.input_ids)
        assert [v for v, wt in zip(w, d.weights) if wt == 0] == [0.0] * sum(wt == 0 for wt in d.weights)
        assert [v for v, wt in zip(w, d.weights) if wt > 0] == pytest.approx(
            [v for v, wt in zip(f, d.weights) if wt > 0], abs=1e-5)
        assert any(v < 0 for v, wt in zip(w, d.weights) if wt > 0)


def test_importance_sampling_arithmetic_on_numbers():
    """-sum(w * exp(lp - q) * A): its value, and its gradient w * ratio * -A, by hand."""
    lp = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    q = torch.tensor([-1.0, -1.5, -0.7])
    advantages = torch.tensor([0.5, -1.0, 2.0])
    w = torch.tensor([1.0, 0.5, 0.0])
    loss = importance_sampling(lp, q, advantages, w)
    ratios = [1.0, 0.6065307, 1.2214028]  # exp(0), exp(-0.5), exp(0.2)
    assert float(loss.detach()) == pytest.approx(-(1 * ratios[0] * 0.5 + 0.5 * ratios[1] * -1.0), rel=1e-6)
    loss.backward()
    assert lp.grad.tolist() == pytest.approx([-1 * ratios[0] * 0.5, -0.5 * ratios[1] * -1.0, 0.0], rel=1e-6)


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_importance_sampling_gradient_equals_a_hand_computation(micro_organism, normalization):
    """The packed backend's gradient equals -sum_d scale_d sum_t exp(lp - q) A computed one sequence
    at a time, with ratios away from 1 (sampling log-probs shifted by a different amount per token)."""
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(str(micro_organism))
    backend = HFBackend(model, tokenizer, bf16=False, loss_normalization=normalization)
    rng = random.Random(3)
    datums = [shifted(d, [rng.uniform(-0.3, 0.3) for _ in d.input_ids]) for d in rollouts(backend)]
    loss = backend.forward_backward(datums, "importance_sampling")
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = 0.0
    for d, scale in zip(datums, loss_scales(datums, normalization)):
        ids = torch.tensor([d.input_ids])
        logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        now = logp[torch.arange(len(d.input_ids) - 1), ids[0, 1:]]
        w = torch.tensor(d.weights[1:])
        part = -(scale * w * torch.exp(now - torch.tensor(d.logprobs[1:])) * torch.tensor(d.advantages[1:])).sum()
        part.backward()
        total += float(part.detach())
    assert loss == pytest.approx(total, rel=1e-5, abs=1e-7)
    for packed, p in zip(packed_grads, model.parameters()):
        torch.testing.assert_close(packed, p.grad, rtol=1e-4, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in packed_grads)


def test_ratio_is_one_when_the_sampling_logprobs_are_the_current_ones(micro_backend):
    """Just after sampling the loss is -sum(scale * A): ratio 1 on every token; sampled with log-probs
    lower by log 2, every ratio is 2 and so is the loss."""
    datums = rollouts(micro_backend)
    scales = loss_scales(datums, "example")
    expected = -sum(s * sum(d.advantages) for d, s in zip(datums, scales))
    assert micro_backend.forward_backward(datums, "importance_sampling") == pytest.approx(expected, abs=2e-5)
    halved = [shifted(d, [0.6931472] * len(d.input_ids)) for d in datums]
    micro_backend.model.zero_grad()
    assert micro_backend.forward_backward(halved, "importance_sampling") == pytest.approx(2 * expected, abs=4e-5)


def test_a_wrong_datum_or_loss_name_is_refused(micro_backend):
    with pytest.raises(ValueError, match="unknown loss 'ppo'"):
        micro_backend.forward_backward(rollouts(micro_backend, n=1, group=1), "ppo")
    from curriculum_batches import curriculum_datums

    with pytest.raises(TypeError, match="needs RLDatum"):
        micro_backend.forward_backward(curriculum_datums(micro_backend.tokenizer, n=2, seed=0), "importance_sampling")


def test_lora_and_micro_batches_give_the_one_batch_importance_sampling_step(micro_organism):
    """The data-parallel wrapper (3 micro-batches here) over a LoRA model: the same loss and the same
    adapter weights after a step as one batch in one go."""
    results, kinds = [], []
    for accumulation in (1, 3):
        torch.manual_seed(0)
        backend = open_backend(model_config(micro_organism, full_finetune=False, lora_rank=4,
                                            grad_accumulation=accumulation))
        kinds.append(type(backend).__name__)
        datums = rollouts(backend, seed=4) if not results else results[0][2]
        losses = []
        for _ in range(2):
            losses.append(backend.forward_backward(datums, "importance_sampling"))
            backend.optim_step(1e-2)
        trained = [p.detach().clone() for p in backend.model.parameters() if p.requires_grad]
        results.append((losses, trained, datums))
    (one, one_weights, _), (three, three_weights, _) = results
    assert kinds == ["HFBackend", "DataParallelBackend"]
    assert three == pytest.approx(one, rel=1e-5, abs=1e-7)
    assert one[1] != pytest.approx(one[0], abs=1e-6)  # the step moved the adapter
    for a, b in zip(one_weights, three_weights):
        # AdamW divides by sqrt(v): a weight whose gradient is ~0 moves by float noise of order lr * 1e-3
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)


# -- the tinker backend, against a stand-in service -----------------------------------------------

tinker = pytest.importorskip("tinker")


def test_tinker_runs_the_services_importance_sampling_loss_and_it_equals_the_hf_backends(micro_organism):
    """Our RLDatums become the SDK's importance_sampling datums (advantages carry weight x scale, no
    weights key); a stand-in computing the documented loss, -(exp(target_logprobs - logprobs) *
    advantages).sum(), gives the hf backend's loss and gradient."""
    from test_tinker_backend import FakeService, FakeTraining, Pending, hosted
    from tinker import types

    class ISTraining(FakeTraining):
        def forward_backward(self, data, loss_fn):
            assert loss_fn == "importance_sampling"
            self.log.append(("forward_backward", loss_fn))
            total, outputs = 0.0, []
            for d in data:
                assert set(d.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"}
                ids = torch.tensor([d.model_input.to_ints()])
                targets = d.loss_fn_inputs["target_tokens"].to_torch()
                logp = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), -1)
                target_logp = logp[torch.arange(len(targets)), targets]
                ratio = torch.exp(target_logp - d.loss_fn_inputs["logprobs"].to_torch())
                loss = -(ratio * d.loss_fn_inputs["advantages"].to_torch()).sum()
                loss.backward()
                total += float(loss.detach())
                outputs.append({"logprobs": types.TensorData.from_torch(target_logp.detach())})
            return Pending(types.ForwardBackwardOutput(loss_fn_output_type="importance_sampling",
                                                       loss_fn_outputs=outputs, metrics={"loss:sum": total}),
                           self.log, "forward_backward")

    class ISService(FakeService):
        def create_lora_training_client(self, **kwargs):
            self.log.append(("create", kwargs))
            return type(super().create_lora_training_client(**kwargs))(ISTraining(self.model, self.tokenizer, self.log))

    torch.manual_seed(0)
    model, tokenizer = load_pretrained(str(micro_organism))
    local_model, _ = load_pretrained(str(micro_organism))
    local = HFBackend(local_model, tokenizer, bf16=False, loss_normalization="token")
    rng = random.Random(1)
    datums = [shifted(d, [rng.uniform(-0.2, 0.2) for _ in d.input_ids]) for d in rollouts(local, n=3, group=2)]
    local.model.zero_grad()
    service = ISService(model, tokenizer)
    backend = hosted(micro_organism, service, options={"loss_normalization": "token"})
    assert backend.forward_backward(datums, "importance_sampling") == pytest.approx(
        local.forward_backward(datums, "importance_sampling"), rel=1e-5, abs=1e-7)
    assert ("forward_backward", "importance_sampling") in service.log
    for a, b in zip(model.parameters(), local_model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_tinker_samples_g_completions_per_prompt_with_their_logprobs(micro_organism):
    import numpy as np
    from test_tinker_backend import Done, FakeSampler, FakeService, FakeTraining, hosted
    from tinker import types

    class GSampler(FakeSampler):
        def sample(self, prompt, num_samples, sampling_params):
            self.log.append(("sample", num_samples, sampling_params.temperature))
            seqs = [types.SampledSequence(stop_reason="stop", sequence_id=f"s{i}",
                                          tokens_np=np.array([7, 8 + i], dtype=np.int32),
                                          logprobs_np=np.array([-0.5, -1.0 - i], dtype=np.float32))
                    for i in range(num_samples)]
            return Done(types.SampleResponse(sequences=seqs))

    class GTraining(FakeTraining):
        def save_weights_and_get_sampling_client(self):
            self.log.append(("sampler",))
            return Done(GSampler(self.log))

    class GService(FakeService):
        def create_lora_training_client(self, **kwargs):
            self.log.append(("create", kwargs))
            return Done(GTraining(self.model, self.tokenizer, self.log))

    service = GService(*load_pretrained(str(micro_organism)))
    backend = hosted(micro_organism, service)
    out = backend.sample_sequences(prompts(2), num_samples=3, max_tokens=4, temperature=0.7)
    assert [[s.tokens for s in g] for g in out] == [[(7, 8), (7, 9), (7, 10)]] * 2
    assert out[0][2].logprobs == (-0.5, -3.0)
    assert [e for e in service.log if e[0] == "sample"] == [("sample", 3, 0.7)] * 2
    assert [e for e in service.log if e[0] == "sampler"] == [("sampler",)]  # saved once for both prompts
