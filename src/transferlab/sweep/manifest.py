"""`<sweep>/manifest.json`: what the sweep is, every cell, and where each cell stands.

Only the process driving the sweep writes it, after every change of state, atomically (temp file,
fsync, rename), so a killed sweep leaves the last whole manifest. The run folders are the truth about
what finished; the manifest adds what they cannot say: errors, wall times, moved-aside attempts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transferlab.results.run_folder import atomic_write
from transferlab.sweep.cell import is_finished
from transferlab.sweep.spec import Cell, Sweep, SweepError

STATES = ("pending", "running", "done", "failed")
MANIFEST_NAME = "manifest.json"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def cell_folder(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.id


class Manifest:
    def __init__(self, path: Path, data: dict):
        self.path = path
        self.data = data
        self.cells = {entry["id"]: entry for entry in data["cells"]}

    @classmethod
    def read(cls, out: Path) -> Manifest | None:
        path = out / MANIFEST_NAME
        return cls(path, json.loads(path.read_text())) if path.exists() else None

    @classmethod
    def for_sweep(cls, sweep: Sweep, out: Path) -> Manifest:
        """The manifest for this sweep in `out`: a new one, or the old one brought up to date.

        A finished cell whose settings have changed since it ran (other overrides, another base
        config) cannot be reused under the same name: that is an error, not a silent skip."""
        old = cls.read(out)
        old_cells = old.cells if old else {}
        changed = [cell.id for cell in sweep.cells
                   if cell.id in old_cells and is_finished(cell_folder(out, cell))
                   and (old_cells[cell.id]["overrides"] != cell.overrides
                        or old.data["sweep"]["base_sha256"] != sweep.base_sha256)]
        if changed:
            raise SweepError(
                f"{out} holds finished cells that ran with other settings than this sweep file gives them "
                f"({', '.join(map(repr, changed[:3]))}{' ...' if len(changed) > 3 else ''}): run the changed "
                f"sweep into another --out, or restore the sweep file and its base config")
        data = {
            "sweep": {"name": sweep.name, "file": str(sweep.path), "sha256": sweep.sha256,
                      "base": str(sweep.base) if sweep.base else None, "base_sha256": sweep.base_sha256,
                      "axes": [axis.key for axis in sweep.axes]},
            "created_at": old.data["created_at"] if old else now(),
            "updated_at": now(),
            "cells": [],
        }
        for cell in sweep.cells:
            entry = {"id": cell.id, "values": cell.values, "overrides": cell.overrides,
                     "folder": str(cell_folder(out, cell).relative_to(out)), "state": "pending", "error": None,
                     "wall_s": None, "started_at": None, "finished_at": None, "moved_aside": []}
            previous = old_cells.get(cell.id, {})
            entry.update({k: previous[k] for k in ("state", "error", "wall_s", "started_at", "finished_at",
                                                   "moved_aside") if k in previous})
            data["cells"].append(entry)
        return cls(out / MANIFEST_NAME, data)

    def update(self, cell_id: str, **fields) -> None:
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown cell state {fields['state']!r}; allowed: {', '.join(STATES)}")
        self.cells[cell_id].update(fields)
        self.save()

    def save(self) -> None:
        self.data["updated_at"] = now()
        atomic_write(self.path, json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")

    def counts(self) -> dict[str, int]:
        return {state: sum(e["state"] == state for e in self.data["cells"]) for state in STATES}
