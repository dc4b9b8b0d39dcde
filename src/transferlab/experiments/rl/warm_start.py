"""The transfer design's SFT warm-start: the seed experiment's own loop (train/loop.py) for a few
steps, into the run folder's warm_start/, whose checkpoint RL then starts from.

The stage is a whole seed-experiment run (its samples, metrics, gaps, figures), so what SFT alone
gave is on record beside what RL added. Another RL run of the same seed and settings can start from
the same checkpoint (`warm_start.checkpoint`) instead of training its own: the settings stored
beside that checkpoint must equal this run's, or the run stops and names the differences.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from transferlab.config import ConfigError, dump_config
from transferlab.experiments.rl.config import RLConfig
from transferlab.results.run_folder import RunFolder, describe_differences
from transferlab.train.loop import run_experiment

STAGE_NAME = "warm-start"  # the same for every run, so runs of other names can share a warm-start


def warm_start(config: RLConfig, folder: RunFolder, quiet: bool = False) -> str | None:
    """The folder RL starts from: a warm-start checkpoint, or None (the configured model itself)."""
    section = config.warm_start
    if section is None:
        return None
    stage = section.experiment(config.experiment, STAGE_NAME)
    if section.checkpoint is not None:
        check_same_stage(Path(section.checkpoint), dump_config(stage))
        return section.checkpoint
    run_experiment(stage, folder.path / "warm_start", quiet=quiet)
    return str(folder.path / "warm_start" / "checkpoints" / "latest")


def check_same_stage(checkpoint: Path, expected: str) -> None:
    """The checkpoint's stage (the config.toml two folders up) was run with `expected` settings."""
    stored = checkpoint.parent.parent / "config.toml"
    weights = (checkpoint / "config.json").exists() or (checkpoint / "adapter_config.json").exists()  # LoRA: the adapter
    if not weights or not stored.exists():
        raise ConfigError(f"warm_start.checkpoint = {str(checkpoint)!r} is not a finished warm-start: give a run "
                          f"folder's warm_start/checkpoints/latest, or leave warm_start.checkpoint unset to train one")
    differences = describe_differences(tomllib.loads(stored.read_text()), tomllib.loads(expected))
    if differences:
        raise ConfigError(f"warm_start.checkpoint {checkpoint} was trained with other settings than this run's "
                          f"[warm_start] and [experiment] ({differences}); match them, or leave "
                          f"warm_start.checkpoint unset to train one")
