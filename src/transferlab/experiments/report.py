"""The report page of a goal-guarding, inoculation or persona folder: the seed report's page
(config, embedded figures, tables, sample browser), with every table the kind writes and the
samples of every run inside it (a persona folder holds two main runs per seed)."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2

from transferlab.report.embed import csv_table
from transferlab.report.folder import FolderInfo, RunInfo
from transferlab.report.page import REPORT_NAME, TEMPLATES, page_context
from transferlab.report.samples import read_samples, script_json
from transferlab.results.run_folder import atomic_write

PAGE_SIZE = 200


def sample_folders(root: Path) -> list[tuple[str, Path]]:
    """(cell, folder) for the folder itself and every run folder under it that holds samples."""
    found = [p.parent for p in sorted(root.rglob("samples.jsonl"))]
    return [(p.relative_to(root).as_posix() or root.name, p) for p in found]


def write_kind_report(directory: str | Path, out: str | Path | None = None) -> Path:
    root = Path(directory)
    config = root / "config.toml"
    info = FolderInfo(root, "run", [RunInfo(root, root.name, "done", config.read_text() if config.exists() else None,
                                            (root / "samples.jsonl").exists())])
    samples = read_samples(sample_folders(root), with_cell=True)
    tables = [csv_table(p, root) for p in sorted(root.glob("*.csv"))]
    path = Path(out) if out is not None else root / REPORT_NAME
    atomic_write(path, render(info, {
        "tables": tables, "n_samples": len(samples.rows), "columns": samples.columns,
        "filters": samples.filters(),
        "sample_json": script_json({"columns": samples.columns, "rows": samples.rows, "page_size": PAGE_SIZE}),
        "title": f"transferlab {kind_of(config)}: {root.resolve().name}"}))
    os.chmod(path, 0o644)
    return path


def kind_of(config: Path) -> str:
    import tomllib

    try:
        return str(tomllib.loads(config.read_text()).get("kind", "run"))
    except (OSError, tomllib.TOMLDecodeError):
        return "run"


def render(info: FolderInfo, overrides: dict) -> str:
    """The seed report's template, filled with the page context and this kind's tables and samples."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("report.html.j2").render(**{**page_context(info), **overrides})
