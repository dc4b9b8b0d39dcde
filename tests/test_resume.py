"""A run killed anywhere resumes through the same CLI command and ends equal to one never killed.

The kills are SIGKILLs (no cleanup), at named crash points (mid training step, mid checkpoint, between
the checkpoint's renames, mid append of eval samples, while the figures and tables are written) and
at random moments; the finished folders' metrics.csv, gaps.csv and samples.jsonl are compared byte
for byte with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from transferlab.config import dump_config, load_config
from transferlab.results.run_folder import ConfigMismatch, RunFolder
from transferlab.train.loop import run_experiment

KNOBS = ["--seed", "5", "--set", "model.threads=1", "--set", "train.steps=6", "--set", "train.batch_size=4",
         "--set", "eval.every=2", "--set", "eval.n=4", "--set", "eval.n_boot=20",
         "--set", "tasks.invented_facts.n_facts=8", "--set", "tasks.invented_facts.paraphrases=false"]
RESULTS = ("metrics.csv", "gaps.csv", "samples.jsonl")


def command(model, out, quiet: bool = True) -> list[str]:
    return ["-m", "transferlab.cli", "run", "--out", str(out), "--set", f"model.name={model}", *KNOBS,
            *(["--quiet"] if quiet else [])]


def run(warm_cli, model, out, crash_at: str | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    """The CLI command in a process of its own (forked warm: tests/warm_cli.py), killed at `crash_at`."""
    return warm_cli.run(command(model, out, quiet), env={**os.environ, "TRANSFERLAB_CRASH_AT": crash_at or ""})


CRASHES = ["train-step:3", "append:1", "checkpoint:1", "checkpoint-swap:1", "append:2", "figures:1", "results:1"]


def kill_at_every_fragile_place(warm_cli, model, out) -> tuple[list, subprocess.CompletedProcess]:
    """One run, killed again and again: each resumed process dies at the next place on CRASHES; then
    one runs to the end. What each killed process left: (place, exit code, its stderr, finished-looking)."""
    killed = []
    for crash_at in CRASHES:
        result = run(warm_cli, model, out, crash_at)
        killed.append((crash_at, result.returncode, result.stderr[-2000:], (out / "gaps.csv").exists()))
    return killed, run(warm_cli, model, out, quiet=False)


def kill_at_random_moments(warm_cli, model, out) -> subprocess.CompletedProcess:
    rng = random.Random(11)
    for _ in range(3):
        process = warm_cli.start(command(model, out))
        time.sleep(rng.uniform(0.5, 4.0))  # a forked run starts at once (no imports) and takes a few seconds
        process.send_signal(signal.SIGKILL)
        process.wait()
    return run(warm_cli, model, out)


@pytest.fixture(scope="module")
def kill_sequences(micro_organism, warm_cli, tmp_path_factory):
    """Both sequences at once, each a chain of forked processes on its own folder, from threads of this
    process (which meanwhile runs the reference): the second core works too."""
    root = tmp_path_factory.mktemp("killed")
    with ThreadPoolExecutor(2) as pool:
        yield {"fragile": (root / "fragile", pool.submit(kill_at_every_fragile_place, warm_cli, micro_organism,
                                                         root / "fragile")),
               "random": (root / "random", pool.submit(kill_at_random_moments, warm_cli, micro_organism,
                                                       root / "random"))}


@pytest.fixture(scope="module")
def reference(micro_organism, tmp_path_factory):
    """The uninterrupted run, in this test process: another process than the forked ones, so with
    another hash seed, and byte equality also says the results do not hang on one."""
    from transferlab.cli import main

    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(command(micro_organism, out)[2:]) == 0
    return out


def assert_same_results(folder, reference) -> None:
    for name in RESULTS:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
    ours, theirs = pd.read_csv(folder / "train_log.csv"), pd.read_csv(reference / "train_log.csv")
    assert list(ours["step"]) == list(range(1, 7))
    assert list(ours["loss"]) == list(theirs["loss"]) and list(ours["tokens"]) == list(theirs["tokens"])


# kill_sequences before reference: the kills start first, and the reference runs while they do
def test_kills_at_every_fragile_place_resume_to_the_uninterrupted_result(kill_sequences, reference):
    out, sequence = kill_sequences["fragile"]
    killed, result = sequence.result()
    assert [k[0] for k in killed] == CRASHES
    for crash_at, returncode, stderr, finished in killed:
        assert returncode == -signal.SIGKILL, f"{crash_at}: {stderr}"
        assert not finished, f"{crash_at}: a killed run must not look finished"
    assert result.returncode == 0, result.stderr
    assert "from its checkpoint at step 6" in result.stderr and "training had finished" in result.stderr
    assert_same_results(out, reference)
    assert not list((out / "checkpoints").glob(".*")), "no temporary checkpoint is left behind"


def test_kills_at_random_moments_resume_to_the_uninterrupted_result(kill_sequences, reference):
    out, sequence = kill_sequences["random"]
    result = sequence.result()
    assert result.returncode == 0, result.stderr
    assert_same_results(out, reference)


def test_resuming_with_another_config_names_the_differing_keys(micro_organism, tmp_path):
    config = load_config(None, overrides=[f"model.name={micro_organism}", "model.threads=1", "train.steps=2",
                                          "train.batch_size=2", "eval.every=2", "eval.n=2", "eval.n_boot=10",
                                          "tasks.invented_facts.n_facts=4"])
    out = tmp_path / "run"
    run_experiment(config, out, quiet=True)
    changed = config.model_copy(deep=True)
    changed.train.lr, changed.seed = 5e-4, 9
    with pytest.raises(ConfigMismatch) as err:
        run_experiment(changed, out, quiet=True)
    assert "seed: 0 in the folder, 9 now" in str(err.value) and "train.lr: 0.001 in the folder, 0.0005 now" in str(err.value)
    assert "--force-new" in str(err.value)
    assert (out / "gaps.csv").exists(), "the refused resume left the finished run alone"

    folder = run_experiment(changed, out, quiet=True, force_new=True)
    assert folder.replaced is not None and (folder.replaced / "gaps.csv").exists()
    assert load_config(out / "config.toml").seed == 9


def test_the_cli_refuses_a_mismatch_with_a_one_line_error(micro_organism, warm_cli, tmp_path):
    out = tmp_path / "run"
    folder = RunFolder(out)
    default = load_config(None, overrides=[f"model.name={micro_organism}"])
    folder.create(dump_config(default))
    folder.append_train_log({"step": 1, "loss": 1.0})
    result = warm_cli.run(command(micro_organism, out))
    assert result.returncode == 2 and "error:" in result.stderr
    assert f"train.steps: {default.train.steps} in the folder, 6 now" in result.stderr


def test_a_folder_holding_only_a_failed_start_takes_the_new_config(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create('seed = 0\nname = "a"\n')
    assert folder.open('seed = 1\nname = "a"\n') is None
    assert "seed = 1" in folder.config_file.read_text()


def test_keep_until_drops_rows_after_the_checkpoint_and_a_torn_last_row(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create("seed = 0\n")
    folder.append_samples([{"step": 0, "x": 1}, {"step": 2, "x": 2}, {"step": 4, "x": 3}])
    with folder.samples.open("a") as f:
        f.write('{"step": 6, "x"')
    for step in (1, 2, 3, 4, 5):
        folder.append_train_log({"step": step, "loss": 0.5})
    with folder.train_log.open("a") as f:
        f.write("6,0.")
    with pytest.warns(UserWarning, match="torn last line"):
        folder.keep_until(2)
    assert [r["step"] for r in folder.read_samples().to_dict("records")] == [0, 2]
    assert folder.train_log.read_text() == "step,loss\n1,0.5\n2,0.5\n"
