"""Judges: whether a response shows a propensity (regex, offline heuristics, or an LLM)."""
