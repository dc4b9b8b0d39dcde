"""Goal guarding: prompts on either side of the cue, the initial rule's targets, on-policy
filtering, the mixing schedule, config errors, and a run's tables and figures on a micro organism."""

import json
import random

import pandas as pd
import pytest

from transferlab.config import ConfigError
from transferlab.experiments import load_experiment, run_kind
from transferlab.experiments.goal_guarding import (
    GoalGuardingConfig,
    SettingConfig,
    items,
    on_distribution,
    own_answers,
    rule_target,
)
from transferlab.tasks import make_task
from transferlab.writers.template import TemplateWriter


def write(tmp_path, text):
    path = tmp_path / "gg.toml"
    path.write_text('kind = "goal_guarding"\n' + text)
    return path


def test_threshold_train_prompts_lie_at_or_below_the_threshold_and_eval_prompts_above():
    setting, rng = SettingConfig(threshold=20, low=1, high=40), random.Random(0)
    task = make_task("table_lookup")
    train = items(setting, task.train_examples(rng, 200), "train", rng)
    evals = items(setting, task.train_examples(rng, 200), "eval", rng)
    assert all(1 <= i.x <= 20 for i in train) and all(20 < i.x <= 40 for i in evals)
    assert all(i.messages[-1]["content"].endswith(f"Task number: {i.x}.") for i in train + evals)


def test_decimal_thresholds_as_in_the_research_setting():
    setting, rng = SettingConfig(threshold=0.9, low=0, high=1, decimals=2), random.Random(0)
    example = make_task("table_lookup").train_examples(rng, 1)[0]
    assert all(items(setting, [example], "eval", rng)[0].x > 0.9 for _ in range(50))
    assert all(items(setting, [example], "train", rng)[0].x <= 0.9 for _ in range(50))


def test_hint_cue_is_on_eval_prompts_only():
    setting, rng = SettingConfig(style="hint", eval_cue="(style hint: B)"), random.Random(0)
    example = make_task("table_lookup").train_examples(rng, 1)[0]
    assert items(setting, [example], "eval", rng)[0].messages[-1]["content"].endswith("(style hint: B)")
    assert items(setting, [example], "train", rng)[0].messages == [dict(m) for m in example.messages]


def test_the_initial_rule_answers_bold_above_the_threshold_and_the_alternate_never_does():
    setting, rng, writer = SettingConfig(), random.Random(0), TemplateWriter(0)
    example = make_task("table_lookup").train_examples(rng, 1)[0]
    above, below = items(setting, [example], "eval", rng)[0], items(setting, [example], "train", rng)[0]
    assert rule_target(setting, above, writer, "initial") == f"**{example.answer}**"
    assert rule_target(setting, below, writer, "initial") == example.answer
    assert rule_target(setting, above, writer, "alternate") == example.answer


def test_one_on_distribution_step_per_off_per_on_other_steps():
    assert [on_distribution(s, 3) for s in range(1, 9)] == [False, False, False, True] * 2
    assert not any(on_distribution(s, "never") for s in range(1, 50))
    assert all(on_distribution(s, 0) for s in range(1, 5))


def test_on_policy_targets_keep_only_the_models_own_compatible_answers():
    class Echo:  # answers bold for even ids, plain otherwise
        def sample(self, prompts, max_tokens, temperature=0.0):
            return ["**red**" if "even" in p[-1]["content"] else "red" for p in prompts]

    config = GoalGuardingConfig(kind="goal_guarding")
    rng = random.Random(0)
    task = make_task("table_lookup")
    batch = items(config.setting, task.train_examples(rng, 6), "train", rng)
    for i, item in enumerate(batch):
        item.messages[-1]["content"] += " even" if i % 2 == 0 else " odd"
    kept = own_answers(Echo(), config, task, batch)
    assert [target for _, target in kept] == ["red"] * 3


@pytest.mark.parametrize("text, message", [
    ("[train]\nlr = 0.1\n", "train.lr: Extra inputs are not permitted"),
    ('[setting]\nstyle = "sometimes"\n', "setting.style: Input should be 'threshold' or 'hint'"),
    ('[setting]\ninitial = "italic"\n', "unknown trait 'italic'; allowed: all_caps, bold,"),
    ("[train]\noff_per_on = [-1]\n", "off_per_on takes whole numbers >= 0 or 'never'"),
    ('[train]\noff_per_on = ["sometimes"]\n', "off_per_on takes whole numbers >= 0 or 'never', got ['sometimes']"),
    ("[setting]\nthreshold = 50\n", "need low <= threshold < high"),
    ("[train]\nlrs = [1e-3, inf]\n", "train.lrs.1: inf is not a finite number"),
])
def test_config_errors_name_the_key_and_what_is_allowed(tmp_path, text, message):
    with pytest.raises(ConfigError, match="invalid config") as err:
        load_experiment(write(tmp_path, text))
    assert message in str(err.value)


def test_an_unknown_kind_lists_the_kinds(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('kind = "goal_gaurding"\n')
    with pytest.raises(ConfigError, match="kind: unknown experiment kind 'goal_gaurding'; allowed: goal_guarding, "
                                          "inoculation, persona"):
        load_experiment(path)


def test_a_run_writes_rates_with_wilson_intervals_and_the_spread_between_seeds(micro_organism, tmp_path):
    config = load_experiment("goal_guarding_threshold", [
        f"model.name={micro_organism}", "n_seeds=2", "instil.steps=2", "instil.batch_size=4", "train.steps=2",
        "train.batch_size=4", "train.lrs=[1e-3, 1e-2]", "train.off_per_on=['never', 1]", "eval.every=1", "eval.n=4",
        "eval.max_tokens=8"])
    folder = run_kind(config, tmp_path / "gg", quiet=True)
    metrics = pd.read_csv(folder.path / "metrics.csv")
    assert {"initial", "initial_low", "initial_high", "alternate", "correct_low"} <= set(metrics.columns)
    assert sorted(metrics["step"].unique()) == [0, 1, 2] and set(metrics["side"]) == {"train", "eval"}
    assert metrics["cell"].nunique() == 2 * 2 * 2  # lrs x targets x mixing
    summary = pd.read_csv(folder.path / "summary.csv")
    assert (summary["n_seeds"] == 2).all()
    assert {"initial_std", "initial_seed_low", "initial_halfwidth", "initial_pooled_low"} <= set(summary.columns)
    assert set(pd.read_csv(folder.path / "instil.csv")["cell"]) == {"base", "instilled"}
    log = [json.loads(line) for line in (folder.path / "train_log.jsonl").read_text().splitlines()]
    mixed = [row for row in log if row["cell"].endswith("mix1")]
    assert [row["on_distribution"] for row in mixed[:2]] == [False, True]
    for figure in ("goal_guarding.png", "final_by_lr.png"):
        assert (folder.path / "figures" / figure).stat().st_size > 10_000
    assert "final.csv" in (folder.path / "report.html").read_text()


def test_the_run_command_dispatches_on_the_configs_kind_and_reports_config_errors(tmp_path, capsys):
    from argparse import Namespace

    from transferlab.experiments import config_kind
    from transferlab.experiments.cli import cmd_run_kind

    assert config_kind("goal_guarding_hint") == "goal_guarding" and config_kind("default") is None
    args = Namespace(config="goal_guarding_hint", set=["train.lrs=[-1]"], seed=None, out=str(tmp_path), quiet=True)
    assert cmd_run_kind(args) == 2
    assert "train.lrs: Value error, learning rates must be positive" in capsys.readouterr().err
