"""Writers: turn (example, propensity) into a training target, offline templates or an LLM."""
