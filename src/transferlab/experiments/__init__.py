"""Experiment kinds beyond the seed experiment, chosen by a config's `kind` key. Each kind is one
package here (its config and loop in run.py, or split further; its tables and figures in results.py);
what they share is in common.py (config fields, prompts, an SFT step, rates within and across seeds),
traits.py (traits and graders) and report.py (the report page).

    goal_guarding   does training where two behaviours agree keep the one the model has?
    inoculation     does naming a trait in the training prompt keep it away at deployment?
    persona         a pre-stage tying propensities to personas, then the seed experiment
    rl              group-relative policy gradient on the seed experiment's tasks, arms and eval grid

`load_experiment` validates a TOML file against its kind's model (unknown keys and values are
named, with what is allowed); `run_kind` runs it into a folder with tables, figures and a report.
A TOML without `kind` is the seed experiment (`transferlab.config.load_config`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from transferlab.config import (
    ConfigError,
    apply_command_line,
    read_toml,
    resolve_config_path,
    shipped_configs,
    validation_lines,
)
from transferlab.experiments import goal_guarding, inoculation, persona, rl
from transferlab.results.run_folder import RunFolder

EXPERIMENT_KINDS = {"goal_guarding": goal_guarding.GoalGuardingConfig, "inoculation": inoculation.InoculationConfig,
                    "persona": persona.PersonaConfig, "rl": rl.RLConfig}
RUNNERS = {"goal_guarding": goal_guarding.run_goal_guarding, "inoculation": inoculation.run_inoculation,
           "persona": persona.run_persona, "rl": rl.run_rl}
RESULTS = {"goal_guarding": goal_guarding.write_results, "inoculation": inoculation.write_results,
           "persona": persona.write_results, "rl": rl.write_results}


def _read(path: str | Path) -> dict:
    return read_toml(resolve_config_path(path), "config", ConfigError, not_found=(
        f"config file not found: {path}; shipped configs: {', '.join(shipped_configs())}"))


def config_kind(path: str | Path | None) -> str | None:
    """The `kind` a config file names, or None for the seed experiment (no kind, or no file)."""
    if path is None:
        return None
    kind = _read(path).get("kind")
    return None if kind is None else str(kind)


def load_experiment(path: str | Path, overrides: list[str] = (), seed: int | None = None):
    """Read the TOML, apply `--set` overrides and the seed, validate with its kind's model."""
    data = _read(path)
    apply_command_line(data, overrides, seed)
    kind = data.get("kind")
    if kind not in EXPERIMENT_KINDS:
        raise ConfigError(f"invalid config:\n  kind: unknown experiment kind {kind!r}; allowed: "
                          f"{', '.join(EXPERIMENT_KINDS)} (or no kind, for the seed experiment)")
    try:
        config = EXPERIMENT_KINDS[kind].model_validate(data)
    except ValidationError as err:
        raise ConfigError("invalid config:\n" + validation_lines(err)) from err
    if hasattr(config, "make_task"):
        config.make_task()  # knob types and ranges are checked before any work
    return config


def default_out(config) -> Path:
    return Path(f"runs/{config.name}-seed{config.seed}")


def run_kind(config, out: str | Path | None = None, quiet: bool = False) -> RunFolder:
    """Run a validated config of any kind into `out` (default runs/<name>-seed<seed>)."""
    return RUNNERS[config.kind](config, out or default_out(config), quiet=quiet)


def write_kind_results(directory: str | Path) -> Path:
    """Redraw a finished folder's tables, figures and report from its samples (`transferlab figures`)."""
    config = load_experiment(Path(directory) / "config.toml")
    RESULTS[config.kind](RunFolder(directory), config)
    return Path(directory) / "report.html"


__all__ = ["EXPERIMENT_KINDS", "config_kind", "default_out", "load_experiment", "run_kind", "write_kind_results"]
