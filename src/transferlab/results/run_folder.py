"""The run folder a researcher reopens: config, samples, metrics, training log, checkpoints.

Every file that is rewritten is written atomically (temp file, fsync, rename); append-only files
are flushed and fsynced per batch of rows, so a killed run leaves whole rows only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from transferlab.results.samples_file import read_sample_rows


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

    def create(self, config_toml: str) -> None:
        if self.samples.exists() or (self.path / "config.toml").exists():
            raise FileExistsError(
                f"{self.path} already holds a run; choose another --out or remove the folder")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / "config.toml", config_toml)

    def append_jsonl(self, path: Path, rows: list[dict]) -> None:
        with path.open("a") as f:
            f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            f.flush()
            os.fsync(f.fileno())

    def append_samples(self, rows: list[dict]) -> None:
        self.append_jsonl(self.samples, rows)

    def append_train_log(self, row: dict) -> None:
        new = not self.train_log.exists()
        with self.train_log.open("a") as f:
            if new:
                f.write(",".join(row) + "\n")
            f.write(",".join(str(v) for v in row.values()) + "\n")

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

    def save_checkpoint(self, backend, name: str = "latest") -> Path:
        """Write into a temporary folder, then swap it in, so `latest` is never half-written."""
        final = self.checkpoints / name
        tmp = self.checkpoints / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.check_free_space(checkpoint_bytes(backend))
        backend.save_state(tmp)
        old = self.checkpoints / f".{name}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final


def checkpoint_bytes(backend) -> int:
    """Weights plus AdamW's two moments (fp32) plus 10% for the tokenizer and metadata."""
    parameters = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    return int(parameters * 3 * 1.1)
