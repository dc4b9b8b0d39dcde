"""The rl kind's SFT warm-start (transfer design): the seed experiment's loop writes a checkpoint into
the run folder, RL starts from it (not from the configured model), and another run can share it
only when its settings match."""

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from transferlab.config import ConfigError
from transferlab.experiments import load_experiment, run_kind

TINY = ["experiment.model.threads=1", "experiment.train.steps=1", "experiment.train.batch_size=2", "rl.group_size=2",
        "experiment.eval.every=1", "experiment.eval.n=3", "experiment.eval.n_boot=20", "rl.max_tokens=3",
        "warm_start.steps=3", "warm_start.batch_size=4", "warm_start.lr=0.03", "warm_start.warmup=0",
        "warm_start.replay=0.0"]


def tiny(micro_organism, *more):
    return load_experiment("rl_transfer", overrides=[f"experiment.model.name={micro_organism}", *TINY, *more])


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_rl_starts_from_the_warm_starts_checkpoint_saved_in_the_run_folder(micro_organism, tmp_path):
    run = run_kind(tiny(micro_organism), tmp_path / "run", quiet=True).path
    checkpoint = run / "warm_start" / "checkpoints" / "latest"
    warm_log = pd.read_csv(run / "warm_start" / "train_log.csv")
    assert list(warm_log["step"]) == [1, 2, 3]  # the seed experiment's loop ran the stage
    start, base = weights(checkpoint), weights(micro_organism)
    assert any(not torch.equal(start[k], base[k]) for k in base)  # SFT moved the weights
    # RL's step-0 answers are the warm-start's last answers (same weights, greedy, same grid) ...
    rl = pd.read_json(run / "samples.jsonl", lines=True)
    warm = pd.read_json(run / "warm_start" / "samples.jsonl", lines=True)
    keys = ["task", "example_id", "prompted"]
    first = rl[rl["step"] == 0].set_index(keys)["response"].sort_index()
    assert first.equals(warm[warm["step"] == 3].set_index(keys)["response"].sort_index())
    # ... and the first RL step's KL to the reference (the warm-start, opened again) is ~0
    assert abs(pd.read_csv(run / "train_log.csv")["kl"].iloc[0]) < 1e-4


def test_a_second_run_shares_a_matching_warm_start_and_refuses_another(micro_organism, tmp_path):
    first = run_kind(tiny(micro_organism), tmp_path / "first", quiet=True).path
    checkpoint = first / "warm_start" / "checkpoints" / "latest"
    second = run_kind(tiny(micro_organism, f"warm_start.checkpoint={checkpoint}", "rl.group_size=3",
                           "name=other"), tmp_path / "second", quiet=True).path
    assert not (second / "warm_start").exists()  # nothing trained again
    assert (second / "train_log.csv").exists()
    with pytest.raises(ConfigError, match="train.steps: 3 in the folder, 4 now"):
        run_kind(tiny(micro_organism, f"warm_start.checkpoint={checkpoint}", "warm_start.steps=4"),
                 tmp_path / "third", quiet=True)
    with pytest.raises(ConfigError, match="is not a finished warm-start"):
        run_kind(tiny(micro_organism, f"warm_start.checkpoint={tmp_path}"), tmp_path / "fourth", quiet=True)


def test_under_lora_rl_starts_from_the_warm_starts_adapter_and_a_second_run_shares_it(micro_organism, tmp_path):
    """A LoRA warm-start saves the adapter alone; RL must train on that adapter, not a fresh one."""
    lora = ["experiment.model.full_finetune=false", "experiment.model.lora_rank=4", "experiment.eval.n=6",
            "warm_start.steps=6", "warm_start.lr=0.1"]
    run = run_kind(tiny(micro_organism, *lora), tmp_path / "run", quiet=True).path
    checkpoint = run / "warm_start" / "checkpoints" / "latest"
    assert (checkpoint / "adapter_config.json").exists() and not (checkpoint / "model.safetensors").exists()
    keys = ["task", "example_id", "prompted"]
    rl = pd.read_json(run / "samples.jsonl", lines=True)
    warm = pd.read_json(run / "warm_start" / "samples.jsonl", lines=True)
    before, after = (warm[warm["step"] == s].set_index(keys)["response"].sort_index() for s in (0, 6))
    assert not before.equals(after)  # the warm-start changed answers, so a lost adapter would show
    assert rl[rl["step"] == 0].set_index(keys)["response"].sort_index().equals(after)
    second = run_kind(tiny(micro_organism, *lora, f"warm_start.checkpoint={checkpoint}", "name=other"),
                      tmp_path / "second", quiet=True).path
    assert not (second / "warm_start").exists()
    shared = pd.read_json(second / "samples.jsonl", lines=True)
    assert shared[shared["step"] == 0].set_index(keys)["response"].sort_index().equals(after)
