"""forward_backward packs several examples into a row: the loss and gradients must equal those of
each example run alone, unpadded and unmasked."""

import random

import pytest
import torch
from curriculum_batches import curriculum_datums

from transferlab.backends import HFBackend, load_pretrained
from transferlab.core import Datum
from transferlab.organism.curriculum import curriculum
from transferlab.propensities import get_propensity, prompt_with


def mixed_batch(tokenizer, seed=0):
    """Full conversations plus short ones (a prefix with its last tokens weighted, some at half
    weight), so that several short examples share a row with each other."""
    batch = curriculum_datums(tokenizer, n=4, seed=seed)
    width = max(len(d.input_ids) for d in batch)
    for i, d in enumerate(batch[:3] * 2):
        n = min(len(d.input_ids), width // 3) - i
        batch.append(Datum(d.input_ids[:n], (0.0,) * (n - 3) + (1.0, 0.5 if i % 2 else 1.0, 1.0)))
    return batch


def reference(model, batch, normalization="token"):
    """Weighted NLL and its gradients, one unpadded sequence at a time: the mean over all weighted
    tokens ("token"), or the mean over examples of each one's mean ("example")."""
    model.zero_grad(set_to_none=True)
    sums, counts = [], []
    for d in batch:
        ids = torch.tensor([d.input_ids], device=model.device)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        w = torch.tensor(d.weights[1:], device=model.device)
        sums.append((-logp[torch.arange(len(w)), ids[0, 1:]] * w).sum())
        counts.append(float(w.sum()))
    if normalization == "token":
        loss = sum(sums) / sum(counts)
    else:
        means = [s / c for s, c in zip(sums, counts) if c > 0]
        loss = sum(means) / len(means)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def rows_fed(backend, batch):
    """Run forward_backward and return the shape of the input_ids the model saw."""
    seen = []
    hook = backend.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape),
                                                   with_kwargs=True)
    try:
        loss = backend.forward_backward(batch)
    finally:
        hook.remove()
    return loss, seen[0]


@pytest.fixture()
def backend(micro_organism):
    model, tokenizer = load_pretrained(str(micro_organism))
    return HFBackend(model, tokenizer, bf16=False)


def test_short_examples_share_a_row(backend):
    batch = mixed_batch(backend.tokenizer)
    _, shape = rows_fed(backend, batch)
    assert shape[0] < len(batch)
    assert shape[1] == max(len(d.input_ids) for d in batch)


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_packed_loss_equals_one_sequence_at_a_time(backend, normalization):
    backend.loss_normalization = normalization
    batch = mixed_batch(backend.tokenizer)
    expected, _ = reference(backend.model, batch, normalization)
    loss, _ = rows_fed(backend, batch)
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_packed_gradients_equal_one_sequence_at_a_time(backend, normalization):
    """No example attends to another, in the backward pass as in the forward one; each example's
    gradient carries the weight the normalisation gives it, wherever it was packed."""
    backend.loss_normalization = normalization
    batch = mixed_batch(backend.tokenizer, seed=3)
    _, expected = reference(backend.model, batch, normalization)
    backend.model.zero_grad(set_to_none=True)
    backend.forward_backward(batch)
    for name, param in backend.model.named_parameters():
        assert torch.allclose(param.grad, expected[name], rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_an_example_alone_or_packed_gives_the_same_loss(backend, normalization):
    """Neighbours without loss tokens change nothing: not the tokens' mean, nor the examples' count."""
    backend.loss_normalization = normalization
    batch = mixed_batch(backend.tokenizer)
    short, long = batch[-1], max(batch, key=lambda d: len(d.input_ids))
    alone = backend.forward_backward([short])
    # the same example beside a neighbour that carries no loss, in a row made wide by a long one
    silent = [Datum(d.input_ids, (0.0,) * len(d.input_ids)) for d in (long, batch[-2])]
    loss, shape = rows_fed(backend, silent + [short])
    assert shape[0] == 2
    assert loss == pytest.approx(alone, rel=1e-5)


# sample: prompts that begin alike share the computation of their common beginning


@pytest.fixture(scope="module")
def organism():
    """The shipped organism: trained, so its answers depend on every position of the prompt (the
    micro organism's barely do, and would let a wrong mask or position through)."""
    from transferlab.backends import resolve_model

    model, tokenizer = load_pretrained(resolve_model("organism"))
    return HFBackend(model, tokenizer, bf16=False)


def paired_prompts(seed=0, n=5):
    """Each example under both instructions of a pair, as the eval grid asks it, plus a lone prompt."""
    rng = random.Random(seed)
    examples = curriculum(rng, n + 1)
    prompts = [prompt_with(ex, get_propensity(p)) for ex in examples[:n] for p in ("bold", "plain")]
    return prompts + [prompt_with(examples[n], get_propensity("bold"))]


def one_at_a_time(backend, prompts, max_tokens):
    from transferlab.train.render import render_prompt

    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([render_prompt(backend.tokenizer, prompt)], device=backend.device)
            generated = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                               max_new_tokens=max_tokens, do_sample=False, top_p=None,
                                               top_k=None, temperature=None,
                                               pad_token_id=backend.tokenizer.pad_token_id,
                                               eos_token_id=backend.tokenizer.eos_token_id)
            out.append(backend.tokenizer.decode(generated[0, ids.size(1):], skip_special_tokens=True))
    return out


@pytest.mark.parametrize("batch_size", [128, 3])
def test_shared_prefix_sampling_answers_as_each_prompt_alone(organism, batch_size):
    prompts = paired_prompts()
    random.Random(1).shuffle(prompts)
    expected = one_at_a_time(organism, prompts, max_tokens=6)
    assert organism.sample(prompts, max_tokens=6, batch_size=batch_size) == expected


def test_a_pair_runs_its_common_prefix_once(organism):
    prompts = paired_prompts(n=2)[:4]
    seen = []
    hook = organism.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape),
                                                    with_kwargs=True)
    try:
        organism.sample(prompts, max_tokens=2)
    finally:
        hook.remove()
    assert seen[0][0] == 2  # one prefix row per pair


def test_no_prompts_no_answers(organism):
    assert organism.sample([], max_tokens=4) == []
