"""What a report folder holds: one run or a sweep of runs, and which of their outputs are missing.

Missing figures and tables are drawn from the samples before the page is written, so the report of a
folder that was never aggregated still shows them; whatever cannot be drawn is named on the page
instead of stopping the report (a sweep is often reported while cells still run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"  # written by transferlab.sweep.manifest
RUN_TABLES = ("metrics.csv", "gaps.csv")
SWEEP_TABLES = ("summary.csv", "final_gap.csv", "peak_gap.csv")  # written by results.aggregate
SWEEP_FIGURE = "gap_grid.png"
MOVED_ASIDE = "interrupted"  # where a sweep keeps unfinished attempts; not cells of the sweep


@dataclass
class RunInfo:
    """One run folder as the report sees it."""

    folder: Path
    cell: str  # the folder relative to the sweep folder; the folder's name for a single run
    state: str  # the manifest's state for a sweep cell, else what the folder's files say
    config_text: str | None  # config.toml as written: the resolved config
    has_samples: bool
    manifest_entry: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what is missing, said to the reader


@dataclass
class FolderInfo:
    """A run folder (kind `run`, one entry in `runs`) or a sweep folder (kind `sweep`)."""

    root: Path
    kind: str
    runs: list[RunInfo]
    manifest: dict | None = None
    notes: list[str] = field(default_factory=list)


def inspect_folder(directory: str | Path, *, draw_missing: bool = True) -> FolderInfo:
    """Read what `directory` holds; with `draw_missing`, first draw the figures and tables it lacks."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give a run folder or a sweep folder")
    if (root / "config.toml").is_file():
        info = FolderInfo(root, "run", [_run_info(root, root.name, {})])
    else:
        info = _sweep_info(root)
    if draw_missing:
        _draw_missing(info)
    for run in info.runs:
        run.notes += _missing_files(run, info.kind)
    if info.kind == "sweep":
        info.notes += _missing_sweep_outputs(root)
    return info


def _sweep_info(root: Path) -> FolderInfo:
    """The manifest's cells in its order, then any other run folder found under `root`."""
    manifest = _read_manifest(root)
    notes = []
    if manifest is None and (root / MANIFEST_NAME).exists():
        notes.append(f"{MANIFEST_NAME} could not be read (not valid JSON); cells are listed from the folders")
    runs, seen = [], set()
    for entry in (manifest or {}).get("cells", []):
        folder = root / entry.get("folder", f"cells/{entry.get('id')}")
        runs.append(_run_info(folder, entry.get("id") or folder.name, entry))
        seen.add(folder.resolve())
    on_disk = sorted(p.parent for p in root.rglob("config.toml") if p.parent.resolve() not in seen)
    moved_aside = [p for p in on_disk if p.relative_to(root).parts[0] == MOVED_ASIDE]
    runs += [_run_info(p, p.relative_to(root).as_posix(), {}) for p in on_disk if p not in moved_aside]
    if moved_aside:
        notes.append(f"{len(moved_aside)} moved-aside attempt(s) under {MOVED_ASIDE}/ are not shown")
    if not runs:
        raise FileNotFoundError(f"{root} holds no run folder (config.toml) and no sweep {MANIFEST_NAME}")
    return FolderInfo(root, "sweep", runs, manifest, notes)


def _read_manifest(root: Path) -> dict | None:
    try:
        data = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _run_info(folder: Path, cell: str, entry: dict) -> RunInfo:
    config = folder / "config.toml"
    samples = folder / "samples.jsonl"
    has_samples = samples.is_file() and samples.stat().st_size > 0
    return RunInfo(folder, cell, entry.get("state") or _state_from_files(folder, has_samples),
                   config.read_text() if config.is_file() else None, has_samples, entry)


def _state_from_files(folder: Path, has_samples: bool) -> str:
    if not folder.is_dir():
        return "not started"
    if all((folder / name).is_file() for name in RUN_TABLES):
        return "done"
    return "evaluated, not finished" if has_samples else "no samples yet"


def _draw_missing(info: FolderInfo) -> None:
    """Aggregate a sweep that lacks its tables or grid figure; draw each run's figures if it has none."""
    from transferlab.results.aggregate import aggregate, write_run_figures

    evaluated = [run for run in info.runs if run.has_samples]
    if info.kind == "sweep" and evaluated and _missing_sweep_outputs(info.root):
        try:
            aggregate(info.root, run_figures=False)
        except Exception as err:  # noqa: BLE001 - a report of a broken sweep still shows what there is
            info.notes.append(f"could not aggregate the sweep: {err}")
    for run in evaluated:
        if not list((run.folder / "figures").glob("*.png")):
            try:
                write_run_figures(run.folder)
            except Exception as err:  # noqa: BLE001 - same: name the failure on the page
                run.notes.append(f"could not draw the figures from samples.jsonl: {err}")


def _missing_files(run: RunInfo, kind: str) -> list[str]:
    where = "" if kind == "run" else f"{run.cell}: "
    if not run.folder.is_dir():
        return [f"{where}no run folder yet ({run.state})"]
    missing = [name for name in ("config.toml", "samples.jsonl", *RUN_TABLES) if not (run.folder / name).is_file()]
    if not run.has_samples and "samples.jsonl" not in missing:
        missing.append("samples.jsonl (empty)")
    if not list((run.folder / "figures").glob("*.png")):
        missing.append("figures/*.png")
    return [f"{where}missing {', '.join(missing)}"] if missing else []


def _missing_sweep_outputs(root: Path) -> list[str]:
    missing = [f"tables/{name}" for name in SWEEP_TABLES if not (root / "tables" / name).is_file()]
    if not (root / "figures" / SWEEP_FIGURE).is_file():
        missing.append(f"figures/{SWEEP_FIGURE}")
    return [f"sweep: missing {', '.join(missing)}"] if missing else []
