"""Data parallelism and gradient accumulation change where the arithmetic runs, never its result: the
same global batch gives the same loss curve in one process, in micro-batches, and across two gloo
processes (launched the way `transferlab run --processes 2` launches them), whether the loss is
normalised per example or per token."""

import json
import os
import random
import sys
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch
from curriculum_batches import curriculum_datums

from transferlab.backends import open_backend
from transferlab.backends.distributed import launch, split
from transferlab.backends.normalization import loss_tokens
from transferlab.config import ModelConfig
from transferlab.organism.curriculum import curriculum
from transferlab.propensities import get_propensity, prompt_with

STEPS = 3


batch = partial(curriculum_datums, n=9, seed=3)  # examples with different numbers of loss tokens


def model_config(micro, **kw):
    return ModelConfig(name=str(micro), bf16=False, threads=1, check_memory=False, **kw)


def curve(backend, datums, steps=STEPS) -> list[float]:
    losses = []
    for _ in range(steps):
        losses.append(backend.forward_backward(datums))
        backend.optim_step(3e-3)
    return losses


def both_curves(backend, datums) -> dict[str, list[float]]:
    """STEPS steps normalised per example, then STEPS more per token: both normalisations checked for
    the price of one more short curve, not of a second model and launch."""
    curves = {}
    for normalization in ("example", "token"):
        backend.loss_normalization = normalization
        curves[normalization] = curve(backend, datums)
    return curves


def test_split_keeps_order_and_covers_everything():
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1], 2) == [[1], []]


def test_grad_accumulation_gives_the_one_batch_loss_curve(micro_organism):
    # In float64: AdamW divides by sqrt(v), so a weight whose gradient is ~0 would move by float32's
    # summation-order noise (micro-batches add in another order), up to ~lr; float64 keeps that noise
    # far below the tolerance and the comparison about the accumulation itself.
    torch.manual_seed(0)
    whole = open_backend(model_config(micro_organism))
    whole.model.double()
    datums = batch(whole.tokenizer)
    expected = both_curves(whole, datums)
    torch.manual_seed(0)
    accumulated = open_backend(model_config(micro_organism, grad_accumulation=4))
    accumulated.model.double()
    got = both_curves(accumulated, datums)
    for normalization in expected:
        assert got[normalization] == pytest.approx(expected[normalization], rel=1e-5), normalization
    for a, b in zip(whole.model.parameters(), accumulated.model.parameters()):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("normalization", ["example", "token"])
def test_micro_batches_weigh_by_their_part_of_the_batch_not_by_count(micro_organism, normalization):
    """The naive average of micro-batch losses (parts hold different numbers of examples and of loss
    tokens) misses the batch loss by several times the tolerance of the test above, so it can fail."""
    backend = open_backend(model_config(micro_organism))
    backend.loss_normalization = normalization
    datums = batch(backend.tokenizer)
    parts = split(datums, 4)
    assert len({sum(map(loss_tokens, p)) for p in parts}) > 1 and len(set(map(len, parts))) > 1
    means = [backend.forward_backward(p) for p in parts]
    whole = backend.forward_backward(datums)
    assert abs(sum(means) / len(means) - whole) > 5e-5 * whole  # the curves above agree to 1e-5


def test_lora_and_grad_accumulation_compose(micro_organism):
    torch.manual_seed(0)
    whole = open_backend(model_config(micro_organism, full_finetune=False, lora_rank=4))
    datums = batch(whole.tokenizer)
    expected = curve(whole, datums)
    torch.manual_seed(0)
    accumulated = open_backend(model_config(micro_organism, full_finetune=False, lora_rank=4, grad_accumulation=3))
    assert curve(accumulated, datums) == pytest.approx(expected, rel=1e-5)


RANK_SCRIPT = """
import json, random, sys, torch
sys.path.insert(0, {tests!r})
from test_distributed import MODES, batch, both_curves, curve, model_config, prompts, rl_curve
from transferlab.backends import open_backend
from transferlab.backends.distributed import serve, world

results = {{}}
for mode, settings in MODES.items():  # both modes in one launch: starting Python twice costs more
    torch.manual_seed(0)
    backend = open_backend(model_config({micro!r}, processes=2, **settings))
    rank, size, _ = world()
    if rank != 0:
        serve(backend)
        continue
    datums = batch(backend.tokenizer)
    losses = both_curves(backend, datums)
    replies = backend.sample(prompts(), max_tokens=8)
    backend.save_state({out!r} + "/" + mode)
    saved = curve(backend, datums, steps=1)  # then move on, and come back
    backend.load_state({out!r} + "/" + mode)
    reloaded = curve(backend, datums, steps=1)
    rl = rl_curve(backend) if mode == "ddp" else None  # RL's loss, sampling and scoring, for one launch more
    backend.stop()
    sharded = any(type(p).__name__ == "DTensor" for p in backend.model.parameters())
    results[mode] = {{"losses": losses, "replies": replies, "size": size, "saved": saved, "reloaded": reloaded,
                     "sharded": sharded, "rl": rl}}
if world()[0] == 0:
    json.dump(results, open({out!r} + "/result.json", "w"))
"""
# DDP with full fine-tuning (DDP with LoRA: the CLI test below); FSDP sharding all weights, and a LoRA model
MODES = {"ddp": {}, "fsdp": {"parallel": "fsdp"},
         "fsdp_lora": {"parallel": "fsdp", "full_finetune": False, "lora_rank": 4}}


def prompts():
    return [prompt_with(e, get_propensity("bold")) for e in curriculum(random.Random(5), 5)]


def rl_curve(backend) -> dict:
    """Two importance-sampling steps on fixed RLDatums (tests/test_rl_backend.py), then G = 2 samples
    of 3 prompts and the batch's token log-probs: what the rl kind asks of the backend."""
    from test_rl_backend import fixed_rl_datums

    datums = fixed_rl_datums(backend.tokenizer)
    losses = []
    for _ in range(2):
        losses.append(backend.forward_backward(datums, "importance_sampling"))
        backend.optim_step(1e-2)
    shape = [len(g) for g in backend.sample_sequences(prompts()[:3], num_samples=2, max_tokens=4)]
    return {"losses": losses, "shape": shape, "scored": backend.token_logprobs(datums)}


def test_two_gloo_processes_reach_the_one_process_loss_curve(micro_organism, tmp_path):
    """DDP and FSDP: the same per-step loss as one process on the same global batch (within float
    noise), normalised per example and per token, the same greedy answers, and a checkpoint that
    reopens where it was taken."""
    script = RANK_SCRIPT.format(tests=str(Path(__file__).parent), micro=str(micro_organism), out=str(tmp_path))
    assert launch(["-c", script], 2, env={"OMP_NUM_THREADS": "1"}) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    for mode, settings in MODES.items():
        torch.manual_seed(0)
        single = open_backend(model_config(micro_organism, **settings))
        expected = both_curves(single, batch(single.tokenizer))
        assert result[mode]["size"] == 2
        assert result[mode]["sharded"] == mode.startswith("fsdp")
        for normalization, losses in expected.items():
            assert result[mode]["losses"][normalization] == pytest.approx(losses, rel=1e-5), (mode, normalization)
        assert expected["example"][-1] < expected["example"][0]  # it trained
        assert result[mode]["replies"] == single.sample(prompts(), max_tokens=8)
        assert result[mode]["reloaded"] == pytest.approx(result[mode]["saved"], rel=1e-6)
        weights = "adapter_model.safetensors" if "lora" in mode else "model.safetensors"
        assert (tmp_path / mode / weights).exists()  # from_pretrained reopens it, under FSDP too
        assert (tmp_path / mode / "fsdp_shards").exists() == mode.startswith("fsdp")
        if mode == "ddp":  # N processes equal one for RL too: its loss, and the scores after its steps
            curve(single, batch(single.tokenizer), steps=1)  # where the launch stood (saved, reloaded, one step)
            rl = rl_curve(single)
            assert result[mode]["rl"]["losses"] == pytest.approx(rl["losses"], rel=1e-5, abs=1e-7)
            assert result[mode]["rl"]["losses"][1] != pytest.approx(rl["losses"][0], abs=1e-6)
            assert result[mode]["rl"]["shape"] == rl["shape"] == [2, 2, 2]
            for got, want in zip(result[mode]["rl"]["scored"], rl["scored"]):
                assert got == pytest.approx(want, abs=1e-4)


TINY = ["train.steps=3", "train.batch_size=6", "eval.every=3", "eval.n=4", "eval.n_boot=20",
        "model.threads=1", "model.bf16=false"]


def test_transferlab_run_with_two_processes_logs_the_one_process_losses(micro_organism, warm_cli, tmp_path):
    """The shipped LoRA config through `transferlab run --processes 2`: rank 0 runs the loop and writes
    the folder, rank 1 serves; the training log equals a one-process run's, the checkpoint is the
    adapter alone."""
    from transferlab.config import load_config
    from transferlab.train.loop import run_experiment

    overrides = [f"model.name={micro_organism}", *TINY]
    # the command forks from the warm CLI server (tests/warm_cli.py); the ranks it launches start afresh
    result = warm_cli.run(["-m", "transferlab.cli", "run", "default_lora", "--quiet", "--processes", "2",
                           "--out", str(tmp_path / "two"), *[a for o in overrides for a in ("--set", o)]],
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "processes = 2" in (tmp_path / "two" / "config.toml").read_text()
    run_experiment(load_config("default_lora", overrides=overrides), tmp_path / "one", quiet=True)
    two = pd.read_csv(tmp_path / "two" / "train_log.csv")
    one = pd.read_csv(tmp_path / "one" / "train_log.csv")
    assert list(two["loss"]) == pytest.approx(list(one["loss"]), rel=1e-5)
    assert list(two["tokens"]) == list(one["tokens"])
    latest = tmp_path / "two" / "checkpoints" / "latest"
    assert (latest / "adapter_model.safetensors").exists() and not (latest / "model.safetensors").exists()
    assert set(pd.read_csv(tmp_path / "two" / "metrics.csv")["step"]) == {0, 3}


def test_a_failing_rank_ends_the_launch_with_its_exit_code(tmp_path):
    code = launch(["-c", "import os, sys, time\nif os.environ['RANK'] == '1': sys.exit(3)\ntime.sleep(60)"], 2)
    assert code == 3


def test_processes_without_a_launcher_is_refused(micro_organism):
    with pytest.raises(RuntimeError, match="--processes 2"):
        open_backend(model_config(micro_organism, processes=2))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
