"""The `rl` experiment kind: group-relative advantages equal the published arithmetic (tinker-cookbook's
GRPO and KL penalty, TRL GRPOTrainer's std scaling) on one batch; groups without reward variance
are skipped and counted; one step's datums carry each completion's advantage on its own tokens; and
`transferlab run rl` writes the seed experiment's folder plus the RL log, table, figure and report."""

import math
import random

import pandas as pd
import pytest
import torch

from transferlab.config import ConfigError
from transferlab.core import Example, SampledSequence
from transferlab.experiments import load_experiment
from transferlab.experiments.rl import rl_batch
from transferlab.experiments.rl.rollouts import Group, arm_rewards
from transferlab.train.advantages import group_advantages, kl_penalised, logprob_gaps, mean_kl, uniform

REWARDS = [[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [2.0, 0.0, 1.0, 0.25], [0.0, 0.0, 0.0, 1.0]]


def cookbook_grpo_advantages(rewards):
    """tinker-cookbook, tinker_cookbook/rl/advantages.py, compute_grpo_advantages (transcribed):
    rewards_G = torch.tensor(group rewards); advantages_G = rewards_G - rewards_G.mean()."""
    out = []
    for group in rewards:
        rewards_G = torch.tensor(group)
        out.append(rewards_G - rewards_G.mean())
    return out


def trl_grpo_advantages(rewards, num_generations):
    """TRL GRPOTrainer._generate_and_score_completions (transcribed), scale_rewards on:
    mean and std per group of num_generations (torch's default, unbiased std), repeated back,
    advantages = (rewards - mean) / (std + 1e-4)."""
    rewards = torch.tensor([r for group in rewards for r in group])
    mean_grouped_rewards = rewards.view(-1, num_generations).mean(dim=1)
    std_grouped_rewards = rewards.view(-1, num_generations).std(dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    std_grouped_rewards = std_grouped_rewards.repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    return advantages / (std_grouped_rewards + 1e-4)


def cookbook_kl_penalty(sampled_logprobs, base_logprobs, masks, advantages, kl_penalty_coef):
    """tinker-cookbook, incorporate_kl_penalty (transcribed, discount 0): logprob_diffs =
    (sampled - base) * mask; avg = sum(diffs) / sum(mask); advantages += coef * mask * (avg - diffs)."""
    float_masks = [torch.tensor(m, dtype=torch.float32) for m in masks]
    logprob_diffs = [(torch.tensor(s) - torch.tensor(b)) * m
                     for s, b, m in zip(sampled_logprobs, base_logprobs, float_masks)]
    avg_logp_diff = sum(d.sum() for d in logprob_diffs) / sum(m.sum() for m in float_masks)
    out = [torch.tensor(a) + kl_penalty_coef * m * (avg_logp_diff - d)
           for a, m, d in zip(advantages, float_masks, logprob_diffs)]
    return out, float(avg_logp_diff)


def test_advantages_equal_tinker_cookbooks_grpo_and_trls_scaled_ones_on_one_batch():
    ours = [group_advantages(g) for g in REWARDS]
    for mine, theirs in zip(ours, cookbook_grpo_advantages(REWARDS)):
        assert mine == pytest.approx(theirs.tolist(), abs=1e-6)
    scaled = [a for g in REWARDS for a in group_advantages(g, scale_std=True)]
    assert scaled == pytest.approx(trl_grpo_advantages(REWARDS, 4).tolist(), rel=1e-5, abs=1e-6)
    assert scaled[:4] != pytest.approx([a for a in ours[0]])  # the scaling did something here


def test_kl_penalty_equals_tinker_cookbooks_on_one_batch():
    rng = random.Random(0)
    lengths = [3, 5, 2, 4]
    sampled = [[rng.uniform(-3, 0) for _ in range(n)] for n in lengths]
    base = [[rng.uniform(-3, 0) for _ in range(n)] for n in lengths]
    advantages = [[a] * n for a, n in zip([0.5, -0.5, 1.0, -1.0], lengths)]
    gaps = logprob_gaps(sampled, base)
    ours = kl_penalised(advantages, gaps, 0.3)
    theirs, kl = cookbook_kl_penalty(sampled, base, [[1.0] * n for n in lengths], advantages, 0.3)
    for mine, reference in zip(ours, theirs):
        assert mine == pytest.approx(reference.tolist(), abs=1e-6)
    assert mean_kl(gaps) == pytest.approx(kl, abs=1e-6)
    assert ours != advantages  # the penalty moved them


def sequence(tokens, logprob=-0.5):
    return SampledSequence(tuple(tokens), (logprob,) * len(tokens), "")


def groups_with(correct: list[list[int]]) -> list[Group]:
    out = []
    for i, marks in enumerate(correct):
        example = Example(f"e{i}", ({"role": "user", "content": "q"},), "a")
        seqs = [sequence(range(10, 12 + k)) for k in range(len(marks))]  # completions of 2, 3, ... tokens
        g = Group(0, example, [], seqs)
        g.components = {"correct": [float(m) for m in marks], "adherent": [1.0] * len(marks)}
        out.append(g)
    return out


def test_groups_with_no_reward_variance_are_skipped_and_counted():
    config = load_experiment("rl", overrides=["rl.group_size=3"])
    groups = groups_with([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    prompt_ids = [[1, 2, 3]] * 4
    reference = [list(s.logprobs) for g in groups for s in g.sequences]
    datums, stats = rl_batch(groups, prompt_ids, reference, config)
    assert stats["groups"] == 4 and stats["skipped_groups"] == 3
    assert (stats["all_right"], stats["all_wrong"], stats["mixed"]) == (0.25, 0.5, 0.25)
    assert stats["reward_correct"] == pytest.approx(4 / 12) and stats["reward_adherent"] == 1.0
    assert stats["kl"] == 0.0 and stats["entropy"] == pytest.approx(0.5)
    # only the mixed group trains: its three completions, each advantage on its own tokens only
    assert len(datums) == 3
    for d, advantage, seq in zip(datums, [2 / 3, -1 / 3, -1 / 3], groups[2].sequences):
        assert d.input_ids == (1, 2, 3, *seq.tokens)
        assert d.weights == (0.0,) * 3 + (1.0,) * len(seq.tokens)
        assert d.advantages == pytest.approx([0.0] * 3 + [advantage] * len(seq.tokens))
        assert d.logprobs == (0.0,) * 3 + seq.logprobs
    assert uniform([0.5, 0.5]) and not uniform([0.5, 0.25])


def test_each_arms_reward_is_the_mean_over_its_own_groups_and_nan_when_none_was_drawn():
    config = load_experiment("rl", overrides=["rl.group_size=3"])
    arms = config.experiment.arms + [config.experiment.arms[0].model_copy(update={"propensity": "plain"})]
    groups = groups_with([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    groups[1].arm = groups[2].arm = 1
    rewards = arm_rewards(groups, arms, {"correct": 1.0, "adherent": 0.0})
    first, second, third = (f"reward_{a.task}_{a.propensity}" for a in arms)
    assert rewards[first] == pytest.approx(2 / 3) and rewards[second] == pytest.approx(0.5)
    assert math.isnan(rewards[third])
    assert arm_rewards(groups, arms, {"correct": 1.0, "adherent": 1.0})[first] == pytest.approx(5 / 3)


def test_the_kl_to_the_start_is_logged_and_penalised_only_when_asked():
    groups = groups_with([[1, 0], [1, 0]])
    reference = [[lp - 0.1 * (i + 1) for lp in s.logprobs] for i, s in enumerate(s for g in groups for s in g.sequences)]
    plain = load_experiment("rl", overrides=["rl.group_size=2"])
    penalised = load_experiment("rl", overrides=["rl.group_size=2", "rl.kl_coef=0.5"])
    free, free_stats = rl_batch(groups, [[1]] * 2, reference, plain)
    kept, kept_stats = rl_batch(groups, [[1]] * 2, reference, penalised)
    assert free_stats["kl"] == kept_stats["kl"] > 0  # logged either way
    assert [d.advantages[1:] for d in free] == [(0.5,) * 2, (-0.5,) * 3, (0.5,) * 2, (-0.5,) * 3]
    assert [d.advantages[1:] for d in kept] != [d.advantages[1:] for d in free]


def test_unknown_reward_components_and_all_zero_weights_are_refused():
    with pytest.raises(ConfigError, match="unknown reward component.*allowed: correct, adherent"):
        load_experiment("rl", overrides=["rl.rewards.length=1.0"])
    with pytest.raises(ConfigError, match="every reward weight is 0"):
        load_experiment("rl", overrides=["rl.rewards.correct=0.0"])
    with pytest.raises(ConfigError, match="set experiment.train.replay = 0"):
        load_experiment("rl", overrides=["experiment.train.replay=0.25"])


def test_transferlab_run_rl_writes_the_seed_folder_and_the_rl_log(micro_organism, tmp_path):
    from transferlab.cli import main

    overrides = [f"experiment.model.name={micro_organism}", "experiment.model.threads=1", "experiment.train.steps=2",
                 "experiment.train.batch_size=3", "rl.group_size=2", "experiment.eval.every=2", "experiment.eval.n=3",
                 "experiment.eval.n_boot=20", "rl.max_tokens=4", "rl.rewards.adherent=1.0"]
    assert main(["run", "rl", "--quiet", "--out", str(tmp_path / "run"),
                 *[a for o in overrides for a in ("--set", o)]]) == 0
    run = tmp_path / "run"
    for name in ("samples.jsonl", "metrics.csv", "gaps.csv", "rl_metrics.csv", "report.html",
                 "figures/gap.png", "figures/accuracy.png", "figures/rl.png", "checkpoints/latest/run_state.json"):
        assert (run / name).exists(), name
    log = pd.read_csv(run / "train_log.csv")
    assert list(log["step"]) == [1, 2]
    assert (log["groups"] == 3).all() and log["skipped_groups"].between(0, 3).all()
    shares = log[["all_right", "all_wrong", "mixed"]].sum(axis=1)
    assert shares.tolist() == pytest.approx([1.0, 1.0])
    assert (log["reward"] == log["reward_correct"] + log["reward_adherent"]).all()
    assert log["entropy"].gt(0).all() and log["completion_tokens"].between(1, 4).all()
    assert log["kl"].abs().iloc[0] < 1e-3  # before any step the policy is the reference
    by_arm = log[["reward_table_lookup_bold", "reward_invented_facts_plain"]]
    assert by_arm.stack().between(0, 2).all() and by_arm.notna().any(axis=1).all()  # stack drops the NaNs
    lowest, highest = by_arm.min(axis=1), by_arm.max(axis=1)  # the step's mean lies between its arms'
    assert (log["reward"].between(lowest - 1e-6, highest + 1e-6)).all()
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics["step"]) == {0, 2} and set(metrics["prompted"]) == {"bold", "plain"}
    rl = pd.read_csv(run / "rl_metrics.csv")  # one row per evaluation after training: steps 1 and 2
    assert list(rl["step"]) == [2] and list(rl["steps"]) == [2]
    assert rl["reward"][0] == pytest.approx(log["reward"].mean()) and rl["kl"][0] == pytest.approx(log["kl"].mean())
    assert (rl["groups"][0], rl["skipped_groups"][0]) == (6, log["skipped_groups"].sum())
    assert (rl["tokens"][0], rl["elapsed_s"][0]) == (log["tokens"].iloc[-1], log["elapsed_s"].iloc[-1])  # running totals
    assert "rl_metrics.csv" in (run / "report.html").read_text()


def test_rl_steps_raise_the_probability_of_what_is_rewarded(micro_organism):
    """Behaviour, not arithmetic: reward, in each group, the completions whose first token is the one
    its first completion drew (X; the others mostly draw something else), take one step, and
    p(X first | prompt) rises on every prompt. A flipped sign anywhere (advantages, ratio, loss)
    lowers it instead."""
    from transferlab.backends import HFBackend, load_pretrained
    from transferlab.organism.curriculum import curriculum
    from transferlab.propensities import get_propensity, prompt_with
    from transferlab.train.render import render_prompt

    torch.manual_seed(0)
    backend = HFBackend(*load_pretrained(str(micro_organism)), bf16=False, loss_normalization="example")
    config = load_experiment("rl", overrides=["rl.group_size=8"])
    example = Example("e", ({"role": "user", "content": "q"},), "a")
    prompts = [prompt_with(e, get_propensity("plain")) for e in curriculum(random.Random(2), 4)]
    ids = [render_prompt(backend.tokenizer, p) for p in prompts]

    def p_first(i, x):
        with torch.no_grad():
            return float(backend.model(input_ids=torch.tensor([i])).logits[0, -1].softmax(-1)[x])

    groups = [Group(0, example, p, seqs) for p, seqs in zip(prompts, backend.sample_sequences(prompts, 8, 2))]
    chosen = [g.sequences[0].tokens[0] for g in groups]
    for g, x in zip(groups, chosen):
        g.components = {"correct": [float(s.tokens[0] == x) for s in g.sequences], "adherent": [0.0] * 8}
    datums, stats = rl_batch(groups, ids, [list(s.logprobs) for g in groups for s in g.sequences], config)
    assert stats["skipped_groups"] == 0  # every group has something to learn
    before = [p_first(i, x) for i, x in zip(ids, chosen)]
    backend.forward_backward(datums, "importance_sampling")
    backend.optim_step(1e-3)
    after = [p_first(i, x) for i, x in zip(ids, chosen)]
    assert all(a > b for a, b in zip(after, before)), (before, after)
