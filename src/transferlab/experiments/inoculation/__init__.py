"""The `inoculation` kind: does naming a trait in the training prompt keep it away at deployment?

    run.py      the config, the training-prompt variants, the elicitation pre-screen and the loop
    results.py  the rate tables (per seed, over seeds), figures and report of a finished folder
"""

from transferlab.experiments.inoculation.results import write_results
from transferlab.experiments.inoculation.run import (
    InoculationConfig,
    TraitPair,
    eval_prompt,
    run_inoculation,
    training_prompts,
)

__all__ = ["InoculationConfig", "TraitPair", "eval_prompt", "run_inoculation", "training_prompts", "write_results"]
