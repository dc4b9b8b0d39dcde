"""The experiment config: TOML in, a validated pydantic object out, every default written back.

A mistake (an unknown key, a wrong type, an unknown task, propensity or model) stops before any
work, with a message that names the key and what it may be.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from transferlab.propensities import PAIRS, PROPENSITIES, get_propensity, partner
from transferlab.tasks import TASKS


class ConfigError(ValueError):
    """A config problem, worded for the person who wrote the config."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


BACKENDS = ("hf", "tinker")
PARALLEL = ("ddp", "fsdp")


class ModelConfig(Strict):
    name: str = Field("organism", description="'organism' (shipped), a local folder, or a hub name")
    backend: str = "hf"
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bf16 autocast: 'auto' uses it where it is fast (GPUs with bf16, CPUs with "
        "native bf16); on an AVX2-only CPU it is emulated and ~10x slower than fp32")
    threads: int = Field(2, ge=1, le=512)
    full_finetune: bool = Field(True, description="train every weight; false: LoRA adapters only "
                                "(the tinker backend trains LoRA only)")
    lora_rank: int = Field(32, ge=1, le=4096)
    lora_alpha: float = Field(32.0, gt=0, description="hf only: the hosted service fixes its own scaling")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="hf only")
    lora_targets: list[str] = Field(["all-linear"], min_length=1, description="hf: PEFT module names "
                                    "(q_proj, v_proj, ...) or 'all-linear'; tinker: 'all-linear' or the "
                                    "groups 'attn', 'mlp', 'unembed'")
    grad_accumulation: int = Field(1, ge=1, le=4096, description="micro-batches per optimizer step: the "
                                   "same global batch and loss in less activation memory")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (hf)")
    processes: int = Field(1, ge=1, le=4096, description="data-parallel processes (`transferlab run "
                           "--processes N` launches them); the global batch stays train.batch_size")
    parallel: str = Field("ddp", description="'ddp' (every process holds the model) or 'fsdp' "
                          "(weights, gradients and optimizer sharded across processes)")
    check_memory: bool = Field(True, description="refuse before loading when the arithmetic says the "
                               "run cannot fit the device (see docs/real-models.md)")
    thinking: bool = Field(False, description="chat templates that can think (Qwen3's enable_thinking): render "
                           "prompts and training conversations with thinking on; off, the model answers at once")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; allowed: {', '.join(map(repr, BACKENDS))}")
        return v

    @field_validator("parallel")
    @classmethod
    def _known_parallel(cls, v: str) -> str:
        if v not in PARALLEL:
            raise ValueError(f"unknown parallel strategy {v!r}; allowed: {', '.join(map(repr, PARALLEL))}")
        return v

    @model_validator(mode="after")
    def _backend_supports(self) -> ModelConfig:
        if self.backend == "tinker":
            if self.full_finetune:
                raise ValueError("the tinker backend trains LoRA adapters only; set model.full_finetune = false")
            if self.name == "organism":
                raise ValueError("the tinker backend trains the models its service hosts; set model.name to "
                                 "one of them (e.g. 'Qwen/Qwen3-4B-Instruct-2507' or 'Qwen/Qwen3-8B'; the run "
                                 "lists what the service trains when it starts), or use backend = 'hf'")
            if self.processes > 1:
                raise ValueError("the tinker backend is parallelised by its service; set model.processes = 1")
        return self


class ArmConfig(Strict):
    task: str
    propensity: str
    weight: float = Field(1.0, gt=0)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        return known_task(v)

    @field_validator("propensity")
    @classmethod
    def _known_propensity(cls, v: str) -> str:
        if v not in PROPENSITIES:
            raise ValueError(f"unknown propensity {v!r}; allowed: {', '.join(sorted(PROPENSITIES))}")
        return v


class TrainConfig(Strict):
    steps: int = Field(600, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay, on every backend")
    loss_normalization: Literal["example", "token"] = Field(
        "example", description="'example': each example's loss is the mean over its own target tokens, "
        "the batch loss the mean over examples, so an arm's weight is its share of the gradient; 'token': "
        "the mean over all target tokens of the batch (arms with longer targets weigh more)")
    writer: Literal["template", "llm"] = Field(
        "template", description="who writes the targets: the propensity's templates (offline) or an LLM "
        "on the endpoint named by TRANSFERLAB_LLM_BASE_URL / _MODEL / _API_KEY")
    writer_pool: int = Field(256, ge=1, description="llm writer: examples per arm written once, then cycled")
    replay: float = Field(0.0, ge=0, lt=1, description="share of each batch drawn from the organism's "
                          "curriculum (primitives under all six propensities) so instructions stay general "
                          "(train/replay.py); the organism's config turns it on, real models leave it at 0")


class EvalConfig(Strict):
    every: int = Field(50, ge=1, description="evaluate every this many steps (and at 0 and the end)")
    n: int = Field(100, ge=1, description="examples per task and eval set")
    max_tokens: int | None = Field(None, ge=1, description="tokens to generate; default: what the "
                                   "longest propensity in the grid needs (reasoning needs most)")
    batch_size: int = Field(128, ge=1)
    adherence_floor: float = Field(0.5, ge=0, le=1)
    n_boot: int = Field(1000, ge=10)
    sampler: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="who generates eval answers: 'auto' uses vLLM for LoRA runs when it is installed "
        "and a GPU is present, else HF generate; 'vllm' insists; 'hf' never uses vLLM")
    vllm_memory: float = Field(0.4, gt=0, lt=1, description="share of GPU memory the vLLM engine may take "
                               "(the model under training keeps the rest)")
    judge: Literal["heuristic", "llm"] = Field(
        "heuristic", description="adherence judge: regex/heuristics (offline) or an LLM on the TRANSFERLAB_LLM_* endpoint")


class LLMConfig(Strict):
    cache: str = Field(".transferlab-cache", description="where LLM-written targets and verdicts are cached")
    concurrency: int = Field(8, ge=1, le=256)


class TrackConfig(Strict):
    backend: Literal["none", "tensorboard", "wandb", "trackio"] = Field(
        "none", description="follow the run in an experiment tracker (results/tracking.py); "
        "`pip install -e '.[track]'`")
    project: str = Field("transferlab", description="wandb/trackio project")
    offline: bool = Field(False, description="wandb: log under the run folder only (`wandb sync` it later)")
    samples: int = Field(50, ge=0, description="rows of the last evaluation logged as a table at the end")

    @field_validator("backend")
    @classmethod
    def _installed(cls, v: str) -> str:
        import importlib.util

        if v != "none" and importlib.util.find_spec(v) is None:
            raise ValueError(f"track.backend = {v!r} but the {v} package is not installed; "
                             f"`pip install -e '.[track]'` (or `pip install {v}`), or set track.backend = \"none\"")
        return v


class ExperimentConfig(Strict):
    name: str = Field("experiment", pattern=r"^[^\x00-\x1f/\\]+$",
                      description="names the run folder: no slashes or control characters")
    seed: int = 0
    pair: str | None = Field(None, description="run the arms under this propensity pair instead: each "
                             "arm keeps its side (first or second) of its own pair")
    model: ModelConfig = ModelConfig()
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    arms: list[ArmConfig] = Field(min_length=1)
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    llm: LLMConfig = LLMConfig()
    track: TrackConfig = TrackConfig()

    @field_validator("tasks")
    @classmethod
    def _task_knobs(cls, tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return known_task_knobs(tasks)

    @field_validator("pair")
    @classmethod
    def _known_pair(cls, v: str | None) -> str | None:
        if v is not None and v not in PAIRS:
            raise ValueError(f"unknown pair {v!r}; allowed: {', '.join(PAIRS)}")
        return v

    @model_validator(mode="after")
    def _arms_complete(self) -> ExperimentConfig:
        for arm in self.arms:
            partner(arm.propensity)  # raises if the propensity belongs to no pair
            if self.pair:
                side = next(pair.index(arm.propensity) for pair in PAIRS.values() if arm.propensity in pair)
                arm.propensity = PAIRS[self.pair][side]
            self.tasks.setdefault(arm.task, {})
        for name in list(self.tasks):
            self.tasks[name] = {**task_defaults(name), **self.tasks[name]}
        follow_run_seed(self.tasks, self.seed)
        if self.eval.max_tokens is None:
            used = {arm.propensity for arm in self.arms} | {partner(arm.propensity) for arm in self.arms}
            self.eval.max_tokens = max(get_propensity(p).max_tokens for p in used)
        return self

    def pair_name(self) -> str:
        """The pair the (first) arm's propensity belongs to."""
        return self.pair or next(k for k, pair in PAIRS.items() if self.arms[0].propensity in pair)

    def task_names(self) -> list[str]:
        return list(dict.fromkeys(arm.task for arm in self.arms))


def known_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(sorted(TASKS))}")
    return name


def known_task_knobs(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A `[tasks]` table: every task known, every knob one its task has."""
    for name, knobs in tasks.items():
        allowed = task_knobs(known_task(name))
        for key in knobs:
            if key not in allowed:
                raise ValueError(f"unknown knob {key!r} for task {name!r}; allowed: {', '.join(allowed)}")
    return tasks


def task_knobs(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(TASKS[name]) if f.init and f.name != "name"]


def task_defaults(name: str) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(TASKS[name])
            if f.init and f.name != "name" and f.default is not dataclasses.MISSING}


def follow_run_seed(tasks: dict[str, dict[str, Any]], seed: int) -> None:
    """Fill each task's unset seed knobs (its `follows_run_seed`, e.g. invented facts' `fact_seed`)
    with the run's seed, so the resolved config records the value used."""
    for name, knobs in tasks.items():
        for key in getattr(TASKS[name], "follows_run_seed", ()):
            if knobs.get(key) is None:
                knobs[key] = seed


def make_tasks(config: ExperimentConfig) -> dict:
    """Task objects from their knobs; a knob of the wrong type or out of range is a ConfigError."""
    tasks = {}
    for name in config.task_names():
        try:
            tasks[name] = TypeAdapter(TASKS[name]).validate_python(config.tasks[name])
        except (ValidationError, ValueError) as err:
            raise ConfigError(f"config error in [tasks.{name}]: {_first_line(err)}") from err
    return tasks


def validation_lines(err: ValidationError) -> str:
    """One indented `key.path: problem` line per error, as config and sweep messages show them."""
    return "\n".join(f"  {key_path(e['loc'])}: {e['msg']}" for e in err.errors())


def key_path(loc: tuple | list) -> str:
    """`train.steps`, `arms.0.task`. A key TOML had to quote (`"" = 1`, `"a b" = 1`, a newline in it)
    is shown quoted, as TOML writes it, so it can neither vanish nor break the message's lines."""
    return ".".join(_key_part(str(part)) for part in loc) or "(top level)"


def _key_part(part: str) -> str:
    plain = part and part.isprintable() and not any(c in part for c in " .\"'=")
    return part if plain else json.dumps(part)


def _first_line(err: Exception) -> str:
    """A task's knob errors on one line. A check in the task's __post_init__ has no key path; its
    message is shown as the task wrote it, without pydantic's "Value error, " in front."""
    if isinstance(err, ValidationError):
        return "; ".join(f"{key_path(e['loc'])}: {e['msg']}" if e["loc"] else e["msg"].removeprefix("Value error, ")
                         for e in err.errors())
    return str(err)


# -- loading ----------------------------------------------------------------------------------

def shipped_configs() -> list[str]:
    folder = resources.files("transferlab.configs")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a config shipped in the package (`chess_vs_table_lookup`)."""
    if Path(path).exists() or str(path) not in shipped_configs():
        return Path(path)
    return Path(str(resources.files("transferlab.configs").joinpath(f"{path}.toml")))


def default_config_text() -> str:
    return resources.files("transferlab.configs").joinpath("default.toml").read_text()


def parse_value(text: str) -> Any:
    """A `--set` value as TOML (numbers, booleans, strings, lists), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value (e.g. train.steps=100), got {assignment!r}")
    key, value = assignment.split("=", 1)
    node = data
    parts = key.strip().split(".")
    if not all(part.strip() for part in parts):
        raise ConfigError(f"--set {assignment!r}: the key has an empty part; write key=value (e.g. train.steps=100)")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a table")
    node[parts[-1]] = parse_value(value.strip())


def non_finite(data: dict) -> list[tuple[str, float]]:
    """(key path, value) of every inf or nan in the raw config. TOML can spell them and pydantic accepts
    them where a bound is only one-sided (`lr = inf`, `weight = inf`), but every run would then fail
    deep inside training, so they stop here. Walked without recursion: overrides can nest deeply."""
    found, stack = [], [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append((key_path(loc), value))
        elif isinstance(value, dict):
            stack.extend(((*loc, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(value))
    return sorted(found)


def read_toml(path: Path, what: str, error: type[ValueError], not_found: str | None = None) -> dict:
    """A TOML file as a dict, or `error` naming the file, what is wrong and the fix: a missing file,
    a folder, bytes that are not UTF-8, bad TOML, nesting too deep to parse (never a traceback)."""
    return parse_toml(read_text(path, what, error, not_found), str(path), error)


def read_text(path: Path, what: str, error: type[ValueError], not_found: str | None = None) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError as err:
        raise error(not_found or f"{what} not found: {path}") from err
    except OSError as err:  # a folder, no permission, ...
        raise error(f"cannot read the {what} {path}: {err.strerror or err}; give a TOML file") from err
    except UnicodeDecodeError as err:
        raise error(f"{path} is not a text file (byte {err.start} is not UTF-8); a {what} is TOML text") from err


def parse_toml(text: str, name: str, error: type[ValueError]) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{name} is not valid TOML: {err}") from err
    except RecursionError as err:
        raise error(f"{name} is not a usable TOML file: arrays or tables are nested too deeply") from err


def apply_command_line(data: dict, overrides: list[str] = (), seed: int | None = None) -> None:
    """`--set` overrides and `--seed` onto the raw config, then no inf or nan anywhere in it."""
    for assignment in overrides:
        apply_override(data, assignment)
    if seed is not None:
        data["seed"] = seed
    if bad := non_finite(data):
        raise ConfigError("invalid config:\n" + "\n".join(f"  {key}: {value} is not a finite number; no setting "
                                                          f"takes inf or nan" for key, value in bad))


def load_config(path: str | Path | None = None, overrides: list[str] = (), seed: int | None = None) -> ExperimentConfig:
    """Read TOML (the shipped default when `path` is None), apply overrides, validate."""
    if path is None:
        data = parse_toml(default_config_text(), "default config", ConfigError)
    else:
        data = read_toml(resolve_config_path(path), "config", ConfigError, not_found=(
            f"config file not found: {path}; shipped configs: {', '.join(shipped_configs())}"))
    apply_command_line(data, overrides, seed)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("invalid config:\n" + validation_lines(err)) from err
    make_tasks(config)  # knob types and ranges are checked before any work
    return config


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as TOML (unset optional keys, which TOML cannot spell, are left out)."""
    return tomli_w.dumps(_without_none(config.model_dump(mode="json")))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


__all__ = ["PAIRS", "ConfigError", "ExperimentConfig", "dump_config", "load_config", "make_tasks"]
