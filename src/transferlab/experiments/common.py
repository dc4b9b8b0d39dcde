"""What the experiment kinds share: config fields, prompt placement, a short SFT stage, sampling,
and rates summarised within a run (Wilson) and across seeds (spread), kept side by side.

Each kind is a different *shape* of training and evaluation prompts around the same primitives
(`render_datum`, a backend's forward_backward / optim_step / sample, the propensities' judges).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import tomli_w
import torch
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator
from rich.console import Console

from transferlab.backends import open_backend
from transferlab.config import (
    ConfigError,
    ModelConfig,
    Strict,
    follow_run_seed,
    known_task,
    known_task_knobs,
    task_defaults,
)
from transferlab.core import Example, Message
from transferlab.results.metrics import between_seed_interval, wilson_arrays
from transferlab.results.run_folder import RunFolder, atomic_write
from transferlab.tasks import TASKS
from transferlab.train.render import render_datum
from transferlab.train.schedule import lr_at

Placement = Literal["system", "user_prefix", "user_suffix"]


class KindConfig(Strict):
    """Keys every kind has: which model, which task, which seeds."""

    kind: str
    name: str = "experiment"
    seed: int = Field(0, description="the first seed; seeds are seed .. seed + n_seeds - 1")
    n_seeds: int = Field(3, ge=1, le=100)
    model: ModelConfig = ModelConfig(bf16=False, threads=1)
    task: str = "table_lookup"
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict, description="task knobs, as in the main config")

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        return known_task(v)

    @field_validator("tasks")
    @classmethod
    def _task_knobs(cls, tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return known_task_knobs(tasks)  # the error's location names `tasks`

    @model_validator(mode="after")
    def _task_defaults(self):
        self.tasks.setdefault(self.task, {})
        for name in list(self.tasks):
            self.tasks[name] = {**task_defaults(name), **self.tasks[name]}
        follow_run_seed(self.tasks, self.seed)  # the first seed's: one task serves every seed of a kind
        return self

    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.n_seeds))

    def make_task(self):
        knobs = self.tasks[self.task]
        try:
            TypeAdapter(TASKS[self.task]).validate_python(knobs)
            return TASKS[self.task](**knobs)
        except (ValidationError, ValueError) as err:
            raise ConfigError(f"config error in [tasks.{self.task}]: {err}") from err


class StageConfig(Strict):
    """One SFT stage: steps, batch and the peak of the warm-up + cosine schedule."""

    steps: int = Field(100, ge=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup: int = Field(10, ge=0)


def dump_kind(config: Strict) -> str:
    """The resolved config as TOML; python mode keeps `inf` a float (TOML spells it), None is dropped."""
    return tomli_w.dumps(_without_none(config.model_dump(mode="python")))


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def start_folder(out: str | Path, config: Strict) -> RunFolder:
    """A fresh run folder holding the resolved config (a folder that holds a run is refused)."""
    folder = RunFolder(out)
    if (folder.path / "config.toml").exists():
        raise FileExistsError(f"{folder.path} already holds a run; choose another --out or remove the folder")
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write(folder.path / "config.toml", dump_kind(config))
    return folder


def printer(quiet: bool) -> Callable[[str], None]:
    console = Console(stderr=True)
    return (lambda _: None) if quiet else (lambda line: console.print(line, highlight=False, soft_wrap=True))


def seed_everything(seed: int) -> None:
    """Before a backend is opened or a stage starts, so adapters and sampling are reproducible."""
    random.seed(seed)
    torch.manual_seed(seed)


def open_model(model: ModelConfig, name: str | Path | None = None):
    """The configured model, or the same settings on a saved folder (a stage's output)."""
    return open_backend(model if name is None else model.model_copy(update={"name": str(name)}))


# -- prompts --------------------------------------------------------------------------------------

def place(messages: Iterable[Message], text: str, placement: Placement) -> list[Message]:
    """`text` as a system line (first, before any tables), a user prefix, or a user suffix."""
    out = [dict(m) for m in messages]
    if not text:
        return out
    if placement == "system":
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{text}\n{out[0]['content']}"
        else:
            out.insert(0, {"role": "system", "content": text})
        return out
    last_user = max(i for i, m in enumerate(out) if m["role"] == "user")
    content = out[last_user]["content"]
    out[last_user]["content"] = f"{text} {content}" if placement == "user_prefix" else f"{content} {text}"
    return out


def token_length(tokenizer, text: str) -> int:
    return len(tokenizer(" " + text, add_special_tokens=False)["input_ids"]) if text else 0


def check_writable(tokenizer, texts: list[str], what: str) -> None:
    """Stop when the model's tokenizer cannot write a target (the organism's word-level vocabulary
    has no upper-case or Spanish words): training on [UNK] would measure nothing."""
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise ConfigError(f"the model's tokenizer cannot write {what} targets such as {text!r} (unknown "
                              f"tokens); pick traits it can write (the organism: bold, plain, hedging, "
                              f"confident, reasoning, no_reasoning) or a real model (model.name)")


# -- training and sampling ------------------------------------------------------------------------

def sft_step(backend, pairs: list[tuple[list[Message], str]], step: int, stage: StageConfig,
             lr: float | None = None) -> dict:
    """One SFT step on (prompt, target) pairs with the stage's schedule; returns the log row."""
    peak = stage.lr if lr is None else lr
    datums = [render_datum(backend.tokenizer, messages, target) for messages, target in pairs]
    loss = backend.forward_backward(datums)
    rate = lr_at(step - 1, stage.steps, peak, stage.warmup)
    backend.optim_step(rate)
    return {"step": step, "loss": round(loss, 5), "lr": rate}


def sample(backend, prompts: list[list[Message]], max_tokens: int, temperature: float = 0.0) -> list[str]:
    """Replies in the order given; prompts of similar length are batched together (less padding)."""
    order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))
    replies = backend.sample([prompts[i] for i in order], max_tokens=max_tokens, temperature=temperature)
    out = [""] * len(prompts)
    for i, reply in zip(order, replies):
        out[i] = reply
    return out


def read_jsonl(path: Path) -> pd.DataFrame:
    """A JSON-lines log (a kind's train_log.jsonl, rl_metrics.jsonl) as a table."""
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def save(fig, path: Path) -> Path:
    """A kind's figure as PNG, written atomically; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def examples(task, rng: random.Random, n: int) -> list[Example]:
    """`n` evaluation examples from the task's first eval set (fresh tables, trained facts…)."""
    return next(iter(task.eval_sets(rng, n).values()))


# -- rates within a run and across seeds ---------------------------------------------------------

def rates(samples: pd.DataFrame, keys: list[str], measures: list[str]) -> pd.DataFrame:
    """Per group: n, and for each boolean measure its rate with a Wilson 95% interval."""
    frame = samples.assign(**{m: samples[m].astype(int) for m in measures})
    out = frame.groupby(keys, sort=True).agg(n=(measures[0], "size"), **{f"n_{m}": (m, "sum") for m in measures})
    out = out.reset_index()
    n = out["n"].to_numpy(float)
    for m in measures:
        out[m] = out[f"n_{m}"] / out["n"]
        out[f"{m}_low"], out[f"{m}_high"] = wilson_arrays(out[f"n_{m}"].to_numpy(float), n)
    return out


def spread(per_seed: pd.DataFrame, keys: list[str], measures: list[str]) -> pd.DataFrame:
    """Per group over seeds: the mean, the spread between seeds (std, min, max, 95% t-interval) and,
    next to it, sampling error (the mean per-seed Wilson half-width and the pooled Wilson interval),
    so run-to-run variance is never mistaken for sampling noise or the other way round."""
    frame = per_seed.copy()
    aggs: dict[str, tuple[str, str]] = {"n_seeds": ("seed", "nunique"), "n": ("n", "sum")}
    for m in measures:
        frame[f"{m}_half"] = (frame[f"{m}_high"] - frame[f"{m}_low"]) / 2
        aggs |= {f"{m}_mean": (m, "mean"), f"{m}_std": (m, "std"), f"{m}_min": (m, "min"), f"{m}_max": (m, "max"),
                 f"{m}_halfwidth": (f"{m}_half", "mean"), f"_{m}_count": (f"n_{m}", "sum")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # std of a single seed
        out = frame.groupby(keys, sort=True).agg(**aggs).reset_index()
    for m in measures:
        out[f"{m}_seed_low"], out[f"{m}_seed_high"] = between_seed_interval(out[f"{m}_mean"], out[f"{m}_std"],
                                                                             out["n_seeds"])
        out[f"{m}_pooled_low"], out[f"{m}_pooled_high"] = wilson_arrays(out.pop(f"_{m}_count").to_numpy(float),
                                                                  out["n"].to_numpy(float))
    return out


def band(summary: pd.DataFrame, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """The between-seed t-interval where there are two seeds or more, else the pooled Wilson interval."""
    low, high = summary[f"{measure}_seed_low"].to_numpy(float), summary[f"{measure}_seed_high"].to_numpy(float)
    pooled_low, pooled_high = summary[f"{measure}_pooled_low"].to_numpy(float), summary[f"{measure}_pooled_high"].to_numpy(float)
    missing = ~np.isfinite(low)
    return np.where(missing, pooled_low, np.clip(low, 0, 1)), np.where(missing, pooled_high, np.clip(high, 0, 1))


def seed_bars(ax, x: np.ndarray, rows: pd.DataFrame, per_seed: pd.DataFrame, measure: str, key: str,
              groups: list[str], width: float, *, colour, alpha: float, label: str, dot_size: float) -> None:
    """One bar per group at `x`: the mean over seeds (`rows`, indexed like `groups`), whiskers from
    `band`, and each seed's own value (`per_seed`, matched on column `key`) as a black dot."""
    mean = rows[f"{measure}_mean"].to_numpy(float)
    low, high = band(rows, measure)
    ax.bar(x, mean, width, color=colour, alpha=alpha, label=label)
    ax.errorbar(x, mean, yerr=[np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)], fmt="none",
                ecolor="black", capsize=2, lw=0.8)
    for i, group in enumerate(groups):
        values = per_seed.loc[per_seed[key] == group, measure]
        ax.scatter(np.full(len(values), x[i]), values, s=dot_size, color="black", zorder=3)
