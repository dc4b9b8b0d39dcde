"""bench/rl_throughput.py compares our RL step with TRL's GRPOTrainer only if both reward the same
completions alike: its TRL reward functions must give exactly what our `score` gives (the task's
grader and the propensity judge), completion by completion, in TRL's order (each prompt's G
completions side by side). No TRL needed: the reward functions are plain functions of token ids."""

import sys
from pathlib import Path

from transferlab.backends import load_pretrained, resolve_model
from transferlab.config import make_tasks
from transferlab.core import SampledSequence
from transferlab.experiments.rl.rollouts import Group, score
from transferlab.judges import make_judge
from transferlab.train.render import reply_text, stop_token_ids

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from rl_throughput import drawn_prompts, reward_functions, rl_config


def test_trl_reward_functions_grade_every_completion_as_our_score_does(tmp_path):
    config = rl_config(threads=1)
    exp, G = config.experiment, config.rl.group_size
    tasks = make_tasks(exp)
    judge = make_judge("heuristic", tmp_path / "judge", 1)
    _, tokenizer = load_pretrained(resolve_model(exp.model.name))
    stop = stop_token_ids(tokenizer)[0]
    drawn = drawn_prompts(config, tasks, steps=1)[0]
    groups = []
    for arm, example, prompt in drawn:
        texts = [example.answer, f"**{example.answer}**", "I do not know", ""][:G]
        ids = [tuple(tokenizer(t, add_special_tokens=False)["input_ids"]) + (stop,) for t in texts]
        groups.append(Group(arm, example, prompt, [SampledSequence(i, (0.0,) * len(i), reply_text(tokenizer, i))
                                                   for i in ids]))
    score(groups, exp.arms, tasks, judge)

    lengths: list[float] = []
    correct, adherent = reward_functions(config, tasks, judge, drawn, tokenizer, 0.0, lengths)
    completion_ids = [list(s.tokens) for g in groups for s in g.sequences]
    rows = [r for r in range(len(drawn)) for _ in range(G)]
    ours_correct = [v for g in groups for v in g.components["correct"]]
    assert correct(completion_ids=completion_ids, row=rows) == ours_correct
    assert adherent(completion_ids=completion_ids, row=rows) == [v for g in groups for v in g.components["adherent"]]
    assert 0.0 in ours_correct and 1.0 in ours_correct  # the grader told right from wrong here
    assert lengths == [sum(map(len, completion_ids)) / len(completion_ids)]


def test_the_tie_break_makes_every_group_mixed_in_trls_order(tmp_path):
    """--reward mixed: the k-th completion of each prompt gains k x tie-break, so no group is uniform."""
    config = rl_config(threads=1)
    exp, G = config.experiment, config.rl.group_size
    tasks = make_tasks(exp)
    _, tokenizer = load_pretrained(resolve_model(exp.model.name))
    drawn = drawn_prompts(config, tasks, steps=1)[0]
    correct, _ = reward_functions(config, tasks, make_judge("heuristic", tmp_path / "judge", 1), drawn, tokenizer,
                                  1e-3, [])
    wrong = tokenizer("I do not know", add_special_tokens=False)["input_ids"]
    rewards = correct(completion_ids=[wrong] * (len(drawn) * G), row=[r for r in range(len(drawn)) for _ in range(G)])
    groups = [rewards[i:i + G] for i in range(0, len(rewards), G)]
    assert all(g == [1e-3 * k for k in range(G)] for g in groups)
