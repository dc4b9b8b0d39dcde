"""`transferlab run rl_inoculation` end to end on the micro organism (two seeds, the five conditions,
every eval prompt): the warm-start checkpoint each seed's conditions start from, the train log, and
tables whose values are the samples' own; then the tables of a folder whose answers are known."""

import json

import numpy as np
import pandas as pd
import pytest

from transferlab.experiments import load_experiment, write_kind_results
from transferlab.results.metrics import wilson_interval

TINY = ["model.threads=1", "n_seeds=2", "warm_start.steps=2", "warm_start.batch_size=4", "train.steps=2",
        "train.batch_size=2", "rl.group_size=2", "eval.n=4", "eval.max_tokens=2"]
PROMPTS = ["deployment", "inoculation", "unrelated", "unrelated_eval", "unsatiated", "satiated"]
CONDITIONS = ["warm_start", "deployment", "inoculation", "unrelated", "unsatiated", "ceiling"]


@pytest.fixture(scope="module")
def run(micro_organism, tmp_path_factory):
    from transferlab.cli import main

    out = tmp_path_factory.mktemp("rl_inoculation") / "run"
    args = [a for o in [f"model.name={micro_organism}", *TINY] for a in ("--set", o)]
    assert main(["run", "rl_inoculation", "--quiet", "--out", str(out), *args]) == 0
    return out


def test_each_seed_warm_starts_once_and_every_condition_runs_rl_from_that_checkpoint(run):
    for seed in (0, 1):
        assert (run / f"seed{seed}" / "checkpoints" / "warm_start" / "model.safetensors").exists()
    log = pd.read_csv(run / "train_log.csv")
    warm = log[log["phase"] == "warm_start"]
    assert sorted(warm.groupby("seed")["step"].apply(list).tolist()) == [[1, 2], [1, 2]]
    rl = log[log["phase"] == "rl"]
    assert sorted(set(zip(rl["seed"], rl["condition"]))) == sorted((s, c) for s in (0, 1) for c in CONDITIONS[1:])
    assert (rl.groupby(["seed", "condition"])["step"].apply(list) == pd.Series([[1, 2]] * 10).values).all()
    first = rl[rl["step"] == 1]
    assert first["kl"].abs().max() < 1e-4  # the policy starts where the reference (the warm-start) is
    # the reward is the condition's component; the others are logged beside it
    hackable = rl[rl["condition"] != "ceiling"]
    assert (hackable["reward"] == hackable["reward_passes"]).all()
    ceiling = rl[rl["condition"] == "ceiling"]
    assert (ceiling["reward"] == ceiling["reward_correct"]).all()
    assert (rl["reward_hack"] <= rl["reward_passes"] + 1e-9).all()
    assert (rl["groups"] == 2).all() and rl[["all_right", "all_wrong", "mixed"]].sum(axis=1).round(9).eq(1).all()


def test_every_run_is_evaluated_under_every_prompt_and_the_tables_are_its_samples(run):
    samples = pd.read_json(run / "samples.jsonl", lines=True)
    assert not (samples["correct"] & samples["hack"]).any()  # every check is wrong at evaluation
    assert (samples["other"] == ~(samples["correct"] | samples["hack"])).all()
    counts = samples.groupby(["condition", "seed", "step", "eval_prompt"]).size()
    assert (counts == 4).all() and len(counts) == 2 * len(CONDITIONS) * len(PROMPTS)
    table = pd.read_csv(run / "table.csv")
    assert list(zip(table["condition"], table["eval_prompt"])) == [(c, p) for c in CONDITIONS for p in PROMPTS]
    assert (table["n_seeds"] == 2).all() and (table["n"] == 8).all()
    last = samples[samples["step"] == samples.groupby(["condition", "seed"])["step"].transform("max")]
    for measure in ("hack", "correct"):
        per_seed = last.groupby(["condition", "eval_prompt", "seed"])[measure].mean()
        mean = per_seed.groupby(level=[0, 1]).mean()
        got = table.set_index(["condition", "eval_prompt"])[f"{measure}_mean"]
        assert got.sort_index().to_numpy() == pytest.approx(mean.sort_index().to_numpy())
        assert table[f"{measure}_seed_low"].between(0, 1).all() and table[f"{measure}_seed_high"].between(0, 1).all()
    before = pd.read_csv(run / "before_rl.csv")
    assert set(before["condition"]) == {"warm_start"} and list(before["eval_prompt"]) == PROMPTS


def write_known_folder(folder, rates: dict) -> None:
    """A finished-looking folder whose samples give `rates[(condition, seed)] = (hack, correct)` on 20
    answers under every eval prompt."""
    config = load_experiment("rl_inoculation")
    from transferlab.experiments.common import dump_kind

    folder.mkdir()
    (folder / "config.toml").write_text(dump_kind(config))
    rows, log = [], []
    for (condition, seed), (hack, correct) in rates.items():
        hacks, rights = round(hack * 20), round(correct * 20)
        for prompt in PROMPTS:
            for i in range(20):
                is_hack, is_correct = i < hacks, hacks <= i < hacks + rights
                rows.append({"seed": seed, "condition": condition, "step": 0 if condition == "warm_start" else 60,
                             "eval_prompt": prompt, "example_id": f"e{i}", "response": "", "answer": "1",
                             "correct": bool(is_correct), "hack": bool(is_hack),
                             "other": not (is_hack or is_correct)})
        log.append({"phase": "rl", "seed": seed, "condition": condition, "step": 1, "loss": 0.0})
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


def test_the_tables_of_known_answers(tmp_path):
    rates = {("warm_start", 0): (0.2, 0.3), ("warm_start", 1): (0.2, 0.4), ("deployment", 0): (0.8, 0.1),
             ("deployment", 1): (0.6, 0.2), ("inoculation", 0): (0.4, 0.4), ("inoculation", 1): (0.3, 0.5),
             ("unrelated", 0): (0.5, 0.3), ("unrelated", 1): (0.5, 0.3), ("unsatiated", 0): (0.7, 0.2),
             ("unsatiated", 1): (0.7, 0.2), ("ceiling", 0): (0.0, 0.7), ("ceiling", 1): (0.05, 0.6)}
    folder = tmp_path / "known"
    write_known_folder(folder, rates)
    write_kind_results(folder)
    table = pd.read_csv(folder / "table.csv").set_index(["condition", "eval_prompt"])
    row = table.loc[("deployment", "satiated")]
    assert (row["hack_mean"], row["correct_mean"]) == pytest.approx((0.7, 0.15))
    half = 12.706 * np.std([0.8, 0.6], ddof=1) / np.sqrt(2)
    assert (row["hack_seed_low"], row["hack_seed_high"]) == pytest.approx((max(0, 0.7 - half), min(1, 0.7 + half)),
                                                                         rel=1e-3)
    assert (row["hack_pooled_low"], row["hack_pooled_high"]) == pytest.approx(wilson_interval(28, 40))
    assert table.loc[("unrelated", "deployment"), "hack_std"] == 0  # two equal seeds
    per_run = pd.read_csv(folder / "metrics.csv").set_index(["condition", "seed", "eval_prompt"])
    assert (per_run.loc[("ceiling", 1, "inoculation"), ["hack", "hack_low", "hack_high"]].tolist()
            == pytest.approx([0.05, *wilson_interval(1, 20)]))
    transfer = pd.read_csv(folder / "transfer.csv").set_index(["condition", "eval_prompt"])
    inoculation = transfer.loc[("inoculation", "deployment")]
    # gains over the warm-start: 0.1 and 0.1; the ceiling's: 0.4 and 0.2
    assert inoculation["transfer_mean"] == pytest.approx((0.1 / 0.4 + 0.1 / 0.2) / 2)
    assert inoculation["transfer_of_means"] == pytest.approx(0.1 / 0.3)
    assert transfer.loc[("deployment", "deployment"), "transfer_mean"] == pytest.approx((-0.2 / 0.4 - 0.2 / 0.2) / 2)
    assert (folder / "figures" / "rl_inoculation.png").stat().st_size > 10_000
