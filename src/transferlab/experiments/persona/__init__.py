"""The `persona` kind: a pre-stage tying propensities to personas, then the seed experiment.

    run.py      the config, the persona propensities registered for the main runs, the stage and the loop
    results.py  the adherence tables and figure over the main runs, and the report
"""

from transferlab.experiments.persona.results import write_results
from transferlab.experiments.persona.run import PersonaConfig, main_config, registered_personas, run_persona

__all__ = ["PersonaConfig", "main_config", "registered_personas", "run_persona", "write_results"]
