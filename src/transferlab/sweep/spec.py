"""A sweep file: a base config, fixed overrides and axes; its cells are the product of the axes.

Every cell is a list of `key=value` overrides on the base config, the same strings `transferlab run
--set` takes, so a cell reruns by hand and the manifest records exactly what ran. The whole sweep is
validated (every cell through `load_config`) before anything runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transferlab.config import (
    ConfigError,
    apply_override,
    default_config_text,
    load_config,
    parse_toml,
    read_text,
    validation_lines,
)
from transferlab.propensities import partner
from transferlab.sweep.overrides import label, override

ASSIGNMENTS = ("forward", "swapped")
NAMED_AXIS = "arms"  # the one axis whose values are named: each value is a whole list of arms


class SweepError(ValueError):
    """A problem with a sweep file or its cells, worded for the person who wrote it."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RaySettings(Strict):
    address: str | None = Field(None, description="a Ray cluster; default $RAY_ADDRESS, else a local Ray")
    num_cpus: float | None = Field(None, gt=0, description="CPUs per cell; default threads_per_cell")
    num_gpus: float = Field(0, ge=0)


class ExecutorSettings(Strict):
    kind: Literal["local", "ray"] = "local"
    threads_per_cell: int = Field(1, ge=1, description="torch threads of each cell (its model.threads)")
    workers: int | None = Field(None, ge=1, description="cells at once; default: what the machine holds")
    ray: RaySettings = RaySettings()


class SweepFile(Strict):
    name: str | None = None
    base: str | None = Field(None, description="config path relative to the sweep file; default: shipped")
    fixed: dict[str, Any] = Field(default_factory=dict, alias="set")
    axes: dict[str, Any] = Field(default_factory=dict)
    executor: ExecutorSettings = ExecutorSettings()


@dataclass(frozen=True)
class Axis:
    key: str            # a dotted config key, "arms" (named arm sets) or "assignment"
    values: list[Any]   # what the key is set to
    labels: list[str]   # how each value reads in a cell id (safe in a folder name)
    names: list[Any]    # how the manifest records each value: itself, or an arm set's name


@dataclass(frozen=True)
class Cell:
    id: str
    values: dict[str, Any]  # axis key -> its value here (an arm set's name for "arms")
    overrides: list[str]    # key=value on the base config: [set] first, then the axes


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path               # the sweep file
    sha256: str              # of the sweep file's text
    base: Path | None        # None: the shipped default config
    base_sha256: str
    axes: list[Axis]
    cells: list[Cell]
    executor: ExecutorSettings


def default_sweep_path() -> Path:
    return Path(str(resources.files("transferlab.configs").joinpath("sweeps/default.toml")))


def load_sweep(path: str | Path | None = None) -> Sweep:
    """Read a sweep file (the shipped default when `path` is None), expand and validate every cell."""
    path = Path(path) if path is not None else default_sweep_path()
    text = read_text(path, "sweep file", SweepError)
    raw = parse_toml(text, str(path), SweepError)
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as err:
        raise SweepError(f"invalid sweep file {path}:\n" + validation_lines(err)) from err
    base = (path.parent / spec.base).resolve() if spec.base else None
    base_text = read_base(base, path)
    try:
        fixed = flatten(spec.fixed, "set")
        axes = parse_axes(spec.axes)
        check_keys(fixed, axes)
        fixed_overrides = [override(key, value) for key, value in fixed.items()]
        cells = expand(fixed_overrides, axes, tomllib.loads(base_text))
    except SweepError:
        raise
    except ValueError as err:  # a value no override can spell (a TOML date, say)
        raise SweepError(f"{path}: {err}") from err
    sweep = Sweep(name=spec.name or path.stem, path=path.resolve(), sha256=sha256(text), base=base,
                  base_sha256=sha256(base_text), axes=axes, cells=cells, executor=spec.executor)
    validate(sweep)
    return sweep


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_base(base: Path | None, sweep_path: Path) -> str:
    if base is None:
        return default_config_text()
    text = read_text(base, "base config", SweepError,
                     not_found=f"base config not found: {base} (base is relative to {sweep_path})")
    parse_toml(text, f"base config {base}", SweepError)
    return text


# -- axes and fixed overrides -------------------------------------------------------------------

def flatten(table: dict, where: str, prefix: str = "") -> dict[str, Any]:
    """`{train: {lr: 1}}` and `{"train.lr": 1}` both become `{"train.lr": 1}`."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items = flatten(value, where, f"{full}.")
        else:
            items = {full: value}
        for k, v in items.items():
            if k in flat:
                raise SweepError(f"[{where}] names {k!r} twice")
            flat[k] = v
    return flat


def parse_axes(table: dict) -> list[Axis]:
    """The axes in the sweep file's order; `[axes.arms]` holds named arm sets, other tables nest keys."""
    axes = []
    for key, values in table.items():
        if key == NAMED_AXIS and isinstance(values, dict):
            axes.append(named_arms_axis(values))
            continue
        if key == NAMED_AXIS:
            named_arms_axis(values)  # raises with an example of the named form
        for full, vals in flatten({key: values}, "axes").items():
            axes.append(value_axis(full, vals))
    keys = [axis.key for axis in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise SweepError(f"[axes] names {key!r} twice")
    return axes


def value_axis(key: str, values: Any) -> Axis:
    if not isinstance(values, list) or not values:
        raise SweepError(f"axes.{key} must be a non-empty list of values, got {values!r}")
    if key == "assignment" and any(v not in ASSIGNMENTS for v in values):
        raise SweepError(f"axes.assignment: values must be {' or '.join(map(repr, ASSIGNMENTS))}, got {values!r}")
    labels = [label(v) for v in values]
    if len(set(labels)) < len(labels):
        raise SweepError(f"axes.{key} repeats a value: {values!r}")
    return Axis(key, values, labels, values)


def named_arms_axis(table: Any) -> Axis:
    """`[axes.arms]` maps a name (shown in cell ids) to a whole list of arms."""
    if not isinstance(table, dict) or not table:
        raise SweepError('axes.arms: name each set of arms, e.g. [axes.arms] lookup_facts = '
                         '[{task = "table_lookup", propensity = "bold"}, ...]')
    for name, arms in table.items():
        if not isinstance(arms, list) or not arms or not all(isinstance(a, dict) for a in arms):
            raise SweepError(f"axes.arms.{name} must be a non-empty list of arms "
                             f'({{task = "...", propensity = "..."}}), got {arms!r}')
    return Axis(NAMED_AXIS, list(table.values()), [label(name) for name in table], list(table))


def check_keys(fixed: dict[str, Any], axes: list[Axis]) -> None:
    for key in [*fixed, *(a.key for a in axes)]:
        if key == "model.threads":
            raise SweepError("model.threads is set by the sweep: use [executor] threads_per_cell instead")
    for axis in axes:
        if axis.key in fixed:
            raise SweepError(f"{axis.key} is both in [set] and an axis; keep one")


# -- cells ----------------------------------------------------------------------------------------

def expand(fixed: list[str], axes: list[Axis], base_data: dict) -> list[Cell]:
    """The cartesian product of the axes, first axis slowest, in the sweep file's order."""
    cells = []
    for combo in itertools.product(*(range(len(axis.values)) for axis in axes)):
        values = {axis.key: axis.names[i] for axis, i in zip(axes, combo)}
        overrides = list(fixed)
        swapped = False
        for axis, i in zip(axes, combo):
            if axis.key == "assignment":
                swapped = axis.values[i] == "swapped"
            else:
                overrides.append(override(axis.key, axis.values[i]))
        cell_id = cell_name({axis.key: axis.labels[i] for axis, i in zip(axes, combo)})
        if swapped:
            overrides.append(override("arms", swapped_arms(base_data, overrides, cell_id)))
        cells.append(Cell(cell_id, values, overrides))
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.id in seen:
            raise SweepError(f"two cells read the same as a folder name: {cell.id!r} "
                             f"({seen[cell.id].values} and {cell.values}); make the axis values differ")
        seen[cell.id] = cell
    return cells


def swapped_arms(base_data: dict, overrides: list[str], cell_id: str) -> list[dict]:
    """The cell's arms with each propensity replaced by the other side of its pair."""
    data = copy.deepcopy(base_data)
    try:
        for assignment in overrides:
            apply_override(data, assignment)
        arms = data["arms"]
        return [{**arm, "propensity": partner(arm["propensity"])} for arm in arms]
    except (ConfigError, KeyError, TypeError, AttributeError) as err:
        raise SweepError(f"cell {cell_id!r}: assignment=swapped needs arms whose propensities belong "
                         f"to a pair: {err}") from err


def cell_name(values: dict[str, str]) -> str:
    name = ",".join(f"{key}={text}" for key, text in values.items()) or "single"
    if len(name) > 200:  # folder names have a length limit; keep them unique with a digest
        name = f"{name[:180]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return name


# -- validation -------------------------------------------------------------------------------

def cell_config(sweep: Sweep, cell: Cell, threads: int | None = None):
    """The cell's validated ExperimentConfig, with `model.threads` set to the threads per cell."""
    threads = threads or sweep.executor.threads_per_cell
    return load_config(sweep.base, overrides=[*cell.overrides, f"model.threads={threads}"])


def validate(sweep: Sweep) -> None:
    """Every cell through `load_config`; the errors name the cell and the key, identical ones grouped."""
    problems: dict[str, list[str]] = {}
    for cell in sweep.cells:
        try:
            cell_config(sweep, cell)
        except ConfigError as err:
            problems.setdefault(str(err).removeprefix("invalid config:").strip(), []).append(cell.id)
        except Exception as err:  # noqa: BLE001 - an override that cannot apply (e.g. a key into a list)
            problems.setdefault(f"{type(err).__name__}: {err}", []).append(cell.id)
    if not problems:
        return
    n_bad = sum(len(ids) for ids in problems.values())
    lines = [f"invalid sweep: {n_bad} of {len(sweep.cells)} cells have config errors (nothing was run)"]
    for message, ids in problems.items():
        shown = ", ".join(repr(i) for i in ids[:3]) + (f" (+{len(ids) - 3} more)" if len(ids) > 3 else "")
        lines.append(f"  cell {shown}:")
        lines.extend(f"    {line.strip()}" for line in message.splitlines())
    raise SweepError("\n".join(lines))
