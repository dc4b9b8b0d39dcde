
from functools import partial

import pytest
import torch
from curriculum_batches import curriculum_datums

from transferlab.backends import HFBackend, load_pretrained
from transferlab.backends.normalization import loss_scales
from transferlab.config import TrainConfig
from transferlab.core import Datum

datums = partial(curriculum_datums, n=6, seed=0)


def reference_loss(model, batch, normalization: str) -> float:
    """One unpadded sequence at a time, no masks, no tricks: the mean weighted NLL of each example,
    averaged over examples ("example"), or the mean over every weighted token of the batch ("token")."""
    sums, counts = [], []
    for d in batch:
        ids = torch.tensor([d.input_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        w = torch.tensor(d.weights[1:])
        sums.append(float((-logp[torch.arange(len(w)), ids[0, 1:]] * w).sum().detach()))
        counts.append(float(w.sum()))
    if normalization == "token":
        return sum(sums) / sum(counts)
    means = [s / c for s, c in zip(sums, counts) if c > 0]
    return sum(means) / len(means)


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_batched_left_padded_loss_equals_per_sequence_reference(micro_organism, normalization):
    model, tokenizer = load_pretrained(str(micro_organism))
    backend = HFBackend(model, tokenizer, bf16=False, loss_normalization=normalization)
    batch = datums(tokenizer)
    assert len({len(d.input_ids) for d in batch}) > 1  # the batch really needs padding
    expected = reference_loss(model, batch, normalization)
    assert backend.forward_backward(batch) == pytest.approx(expected, rel=1e-5)


def with_targets(d: Datum, n: int) -> Datum:
    """`d` with only its last `n` tokens weighted: an example whose target is n tokens long."""
    return Datum(d.input_ids, (0.0,) * (len(d.input_ids) - n) + (1.0,) * n)


def test_an_example_counts_once_whatever_its_target_length(micro_organism):
    """Per example (the default), a 1-token and a 9-token target each carry half the batch's loss and
    gradient; per token the long one carries 9/10 of it."""
    model, tokenizer = load_pretrained(str(micro_organism))
    d = datums(tokenizer, n=1)[0]
    short, long = with_targets(d, 1), with_targets(d, 9)
    alone = HFBackend(model, tokenizer, bf16=False, loss_normalization="token")
    short_nll, long_nll = alone.forward_backward([short]), alone.forward_backward([long])
    grads = {}
    for normalization in ("example", "token"):
        model.zero_grad(set_to_none=True)
        loss = HFBackend(model, tokenizer, bf16=False, loss_normalization=normalization).forward_backward([short, long])
        grads[normalization] = [p.grad.clone() for p in model.parameters()]
        expected = {"example": (short_nll + long_nll) / 2, "token": (short_nll + 9 * long_nll) / 10}[normalization]
        assert loss == pytest.approx(expected, rel=1e-5), normalization
    model.zero_grad(set_to_none=True)
    HFBackend(model, tokenizer, bf16=False).forward_backward([short])
    short_grad = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    HFBackend(model, tokenizer, bf16=False).forward_backward([long])
    for g, a, b in zip(grads["example"], short_grad, (p.grad for p in model.parameters())):
        torch.testing.assert_close(g, (a + b) / 2, rtol=1e-4, atol=1e-7)
    assert not all(torch.allclose(g, h, rtol=1e-3) for g, h in zip(grads["example"], grads["token"]))


def test_loss_scales_per_example_and_per_token():
    one, nine, silent = (Datum((0,) * 10, (0.0,) * (10 - n) + (1.0,) * n) for n in (1, 9, 0))
    assert loss_scales([one, nine, silent], "example") == pytest.approx([1 / 2, 1 / 18, 0.0])
    assert loss_scales([one, nine, silent], "token") == pytest.approx([1 / 10, 1 / 10, 1 / 10])
    assert loss_scales([silent], "example") == loss_scales([silent], "token") == [0.0]
    with pytest.raises(ValueError, match="'example', 'token'"):
        loss_scales([one], "sequence")


def test_runs_normalise_per_example_by_default(micro_organism):
    from transferlab.backends import open_backend
    from transferlab.config import ModelConfig

    assert TrainConfig().loss_normalization == "example"
    backend = open_backend(ModelConfig(name=str(micro_organism), bf16=False, threads=1, check_memory=False))
    assert backend.loss_normalization == "example"


def test_train_weight_decay_reaches_the_optimizer(micro_organism):
    from transferlab.backends import open_backend
    from transferlab.config import ModelConfig

    backend = open_backend(ModelConfig(name=str(micro_organism), bf16=False, threads=1, check_memory=False),
                           weight_decay=0.05)
    assert {g["weight_decay"] for g in backend.optimizer.param_groups} == {0.05}


def test_loss_ignores_prompt_tokens(micro_organism):
    model, tokenizer = load_pretrained(str(micro_organism))
    backend = HFBackend(model, tokenizer, bf16=False)
    batch = datums(tokenizer, n=1)
    d = batch[0]
    prompt_only = type(d)(d.input_ids, tuple(1.0 - w for w in d.weights))
    assert backend.forward_backward(batch) != pytest.approx(backend.forward_backward([prompt_only]))


def test_optimizer_steps_lower_the_loss_on_a_fixed_batch(micro_organism):
    model, tokenizer = load_pretrained(str(micro_organism))
    backend = HFBackend(model, tokenizer)
    batch = datums(tokenizer, n=8)
    first = backend.forward_backward(batch)
    for _ in range(10):
        backend.optim_step(3e-3)
        last = backend.forward_backward(batch)
    assert last < first * 0.8


# Recorded on the micro organism (tests/conftest.py); re-record when its vocabulary or curriculum changes.
RECORDED = {"example": [7.340177059173584, 7.26969575881958, 7.207489490509033],
            "token": [7.324408531188965, 7.2569122314453125, 7.1952056884765625]}


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_seeded_training_steps_reproduce_recorded_losses(micro_organism, normalization):
    """Pins the loss of three seeded steps: a broken mask, template, normalisation or optimizer moves
    these at once. If the organism's vocabulary or curriculum changes on purpose, record the new values."""
    model, tokenizer = load_pretrained(str(micro_organism))
    backend = HFBackend(model, tokenizer, bf16=False, loss_normalization=normalization)
    batch = datums(tokenizer, n=8, seed=1)
    losses = []
    for _ in range(3):
        losses.append(backend.forward_backward(batch))
        backend.optim_step(1e-3)
    assert losses == pytest.approx(RECORDED[normalization], rel=1e-4)
