"""The `rl` experiment kind: group-relative policy gradient on the seed experiment's tasks and arms.

    config.py    the config: the seed experiment's plus [rl] (group size, temperature, reward weights, KL)
    rollouts.py  prompts drawn from the arms, G completions each, rewards by component, RLDatums
    run.py       the loop: RL steps, evaluations under every prompt, tables, figures, report
    figures.py   figures/rl.png
"""

from transferlab.experiments.rl.config import RLConfig, RLSection
from transferlab.experiments.rl.run import rl_batch, run_rl, write_rl_results

write_results = write_rl_results  # the name every kind gives its results writer

__all__ = ["RLConfig", "RLSection", "rl_batch", "run_rl", "write_results", "write_rl_results"]
