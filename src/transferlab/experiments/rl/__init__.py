"""The `rl` experiment kind: group-relative policy gradient, in two designs.

`design = "transfer"` (configs rl.toml, rl_transfer.toml): the seed experiment's tasks, arms and
eval grid, an optional SFT warm-start, then RL steps instead of SFT steps.

    config.py           the config: the seed experiment's plus [rl] and [warm_start]
    warm_start.py       the SFT warm-start: the seed experiment's loop into the run folder's warm_start/
    rollouts.py         prompts drawn from the arms, G completions each, rewards by component, RLDatums
    run.py              the loop: RL steps (`learn`, shared by both designs), evaluations, tables, report
    figures.py          figures/rl.png

`design = "hacking"` (config rl_inoculation.toml): a reward-hackable environment
(tasks/hackable_difference.py), one warm-start per seed, RL under a grid of conditions
(inoculation and its conditionalization controls, the no-loophole ceiling).

    hacking_config.py   the conditions, prompts, environment and stages
    hacking_run.py      per seed: warm-start, evaluation before RL, RL per condition, evaluation
    hacking_results.py  hack rate, true accuracy and capability transfer, within and across seeds
    hacking_figures.py  figures/rl_inoculation.png
"""

from transferlab.experiments.rl.config import RLConfig, RLKnobs, RLSection, WarmStart
from transferlab.experiments.rl.run import learn, rl_batch, run_rl, write_rl_results

write_results = write_rl_results  # the name every kind gives its results writer

__all__ = ["RLConfig", "RLKnobs", "RLSection", "WarmStart", "learn", "rl_batch", "run_rl", "write_results",
           "write_rl_results"]
