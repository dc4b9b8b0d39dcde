"""The run folder a researcher reopens: config, samples, metrics, training log, checkpoints.

Every file that is rewritten is written atomically (temp file, fsync, rename); append-only files
are flushed and fsynced per batch of rows. A killed run can leave at most a torn last row and
rows newer than its checkpoint; `resume_from_checkpoint` cuts both away, so a resumed run appends
exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import tomllib
from pathlib import Path

import pandas as pd

from transferlab.results.crash_points import crash_point
from transferlab.results.samples_file import read_sample_rows

STATE_FILE = "run_state.json"  # inside a checkpoint: the step it was taken after, and the clock


class ConfigMismatch(ValueError):
    """The folder holds a run of a different config; resuming it would mix two experiments."""


def atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.samples = self.path / "samples.jsonl"
        self.metrics = self.path / "metrics.csv"
        self.gaps = self.path / "gaps.csv"
        self.train_log = self.path / "train_log.csv"
        self.checkpoints = self.path / "checkpoints"
        self.figures = self.path / "figures"
        self.replaced: Path | None = None  # where --force-new moved an earlier run

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    def create(self, config_toml: str) -> None:
        if self.samples.exists() or self.config_file.exists():
            raise FileExistsError(
                f"{self.path} already holds a run; choose another --out or remove the folder")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_file, config_toml)

    def open(self, config_toml: str, *, force_new: bool = False, resolve=None) -> dict | None:
        """Start the run here, or pick up the one already here. Returns the latest checkpoint's
        state (None: start from step 0). A folder holding another config is refused, naming the
        keys that differ, unless `force_new`, which moves the old run aside (nothing is deleted).
        `resolve(path)` reads the folder's config as the current version resolves it (defaults of
        keys added since filled in), so an upgrade alone is not a difference."""
        if not self.config_file.exists():
            self.create(config_toml)
            return None
        differences = self.differences_from(tomllib.loads(config_toml), resolve)
        if differences and self.started():
            if not force_new:
                raise ConfigMismatch(
                    f"{self.path} holds a run with a different config ({differences}). Rerun with the same "
                    f"config to resume it, choose another --out, or pass --force-new to start over (the old "
                    f"run is moved aside, not deleted)")
            self.replaced = self.move_aside()
            self.create(config_toml)
            return None
        if differences:  # it stopped before any result (a bad model name, say): nothing to keep
            atomic_write(self.config_file, config_toml)
        self.recover_checkpoint()
        state = self.checkpoint_state()
        self.keep_until(state["step"] if state else None)
        return state

    def differences_from(self, config: dict, resolve=None) -> str:
        """The keys where the folder's config.toml differs from `config` ("" when none)."""
        try:
            theirs = tomllib.loads(resolve(self.config_file) if resolve else self.config_file.read_text())
        except ValueError as err:  # not TOML, or no longer a valid config
            return f"its config.toml does not load: {err}"
        return describe_differences(theirs, config)

    def started(self) -> bool:
        """Whether anything beyond the config was written (an evaluation, a step, a checkpoint)."""
        return any(p.exists() for p in (self.samples, self.train_log, self.checkpoints))

    def move_aside(self) -> Path:
        target = self.path.with_name(f"{self.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"{self.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        os.replace(self.path, target)
        return target

    def checkpoint_state(self) -> dict | None:
        path = self.checkpoints / "latest" / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def keep_until(self, step: int | None) -> None:
        """Cut every result newer than the checkpoint at `step` (None: no checkpoint, so everything
        but the config), torn rows included, so the resumed run writes them again exactly once."""
        if self.samples.exists():
            rows = [] if step is None else [r for r in read_sample_rows(self.samples) if r["step"] <= step]
            self.write_jsonl(self.samples, rows)
        if self.train_log.exists():
            header, *lines = complete_lines(self.train_log) or [""]
            kept = [line for line in lines if step is not None and int(line.split(",")[0]) <= step]
            if kept:
                atomic_write(self.train_log, "".join(f"{line}\n" for line in [header, *kept]))
            else:
                self.train_log.unlink()
        for stale in (self.metrics, self.gaps):
            stale.unlink(missing_ok=True)

    def append_jsonl(self, path: Path, rows: list[dict]) -> None:
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with path.open("a") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            crash_point("append")  # a kill here leaves a torn row, as a real one might
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())

    def write_jsonl(self, path: Path, rows: list[dict]) -> None:
        atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def write_skipped(self, rows: list[dict]) -> None:
        """Every data-file line the tasks skipped (task, file, line, kind, reason), as skipped.jsonl."""
        if rows:
            self.write_jsonl(self.path / "skipped.jsonl", rows)

    def append_samples(self, rows: list[dict]) -> None:
        self.append_jsonl(self.samples, rows)

    def append_train_log(self, row: dict) -> None:
        new = not self.train_log.exists()
        with self.train_log.open("a") as f:
            f.write((",".join(row) + "\n" if new else "") + ",".join(str(v) for v in row.values()) + "\n")

    def read_samples(self) -> pd.DataFrame:
        return pd.DataFrame(read_sample_rows(self.samples))

    def write_table(self, path: Path, frame: pd.DataFrame) -> None:
        atomic_write(path, frame.to_csv(index=False))

    def check_free_space(self, needed: int) -> None:
        """Refuse before writing rather than leave a torn checkpoint on a full disk."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.checkpoints).free
        if free < needed:
            raise OSError(f"not enough disk space for a checkpoint in {self.checkpoints}: "
                          f"{needed / 2**20:.0f} MiB needed, {free / 2**20:.0f} MiB free. Free space or "
                          f"move the run folder (--out); results so far are kept in {self.path}")

    def save_checkpoint(self, backend, state: dict | None = None, name: str = "latest") -> Path:
        """Write into a temporary folder, then swap it in, so `latest` is never half-written.
        `state` (the step, the clock) is written last, inside the folder, and travels with it."""
        final = self.checkpoints / name
        tmp = self.checkpoints / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.check_free_space(checkpoint_bytes(backend))
        backend.save_state(tmp)
        crash_point("checkpoint")
        if state is not None:
            atomic_write(tmp / STATE_FILE, json.dumps(state))
        fsync_dir(tmp)
        old = self.checkpoints / f".{name}.old"
        if final.exists():
            os.replace(final, old)
        crash_point("checkpoint-swap")  # between the two renames: only `.latest.old` exists
        os.replace(tmp, final)
        fsync_dir(self.checkpoints)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def recover_checkpoint(self, name: str = "latest") -> None:
        """A kill between the two renames of `save_checkpoint` leaves only the previous checkpoint,
        as `.latest.old`: put it back."""
        final, old = self.checkpoints / name, self.checkpoints / f".{name}.old"
        if not final.exists() and old.exists():
            os.replace(old, final)


def complete_lines(path: Path) -> list[str]:
    """The file's lines, without an unterminated last one (a write cut off by a kill)."""
    text = path.read_text()
    return text.split("\n")[:-1]


def fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_differences(old: dict, new: dict, prefix: str = "") -> str:
    """`train.steps: 1000 in the folder, 500 now; ...` for every key whose value differs."""
    parts = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            inner = describe_differences(a, b, f"{prefix}{key}.")
            parts += [inner] if inner else []
        elif a != b:
            parts.append(f"{prefix}{key}: {a!r} in the folder, {b!r} now")
    return "; ".join(parts)


def checkpoint_bytes(backend) -> int:
    """What the backend's save_state writes: its own count where it has one (a hosted backend
    writes a pointer), else the trainable weights (the LoRA adapters alone under LoRA) and AdamW's
    two moments."""
    own = getattr(backend, "checkpoint_bytes", None)
    if own is not None:
        return own()
    from transferlab.backends.lora import checkpoint_bytes as model_bytes

    return model_bytes(backend.model)
