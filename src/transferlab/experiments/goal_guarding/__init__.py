"""The `goal_guarding` kind: does training where two behaviours agree keep the one the model has?

    run.py      the config, the instil stage, the cells (learning rates, mixes, targets) and the loop
    results.py  the tables (per seed, over seeds), figures and report of a finished folder
"""

from transferlab.experiments.goal_guarding.results import write_results
from transferlab.experiments.goal_guarding.run import (
    GoalGuardingConfig,
    SettingConfig,
    items,
    on_distribution,
    own_answers,
    rule_target,
    run_goal_guarding,
)

__all__ = ["GoalGuardingConfig", "SettingConfig", "items", "on_distribution", "own_answers", "rule_target",
           "run_goal_guarding", "write_results"]
