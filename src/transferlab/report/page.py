"""Write the report page: gather a folder's config, figures, tables and samples, fill the template.

The page is one file (figures as data URIs, the sample browser's script and data inline), so it can
be mailed, archived next to the run, or opened offline. Every text is HTML-escaped by the template;
the samples travel as JSON in a `<script type="application/json">` tag and are shown with textContent.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import jinja2

from transferlab.report.embed import csv_table, figures
from transferlab.report.folder import RUN_TABLES, FolderInfo, inspect_folder
from transferlab.report.samples import read_samples, script_json
from transferlab.results.run_folder import atomic_write

TEMPLATES = Path(__file__).parent / "templates"
REPORT_NAME = "report.html"
PAGE_SIZE = 200  # sample rows drawn at once: enough to read, few enough to stay fast at 50k samples


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of a run or sweep folder (to `<directory>/report.html` by default); atomic."""
    info = inspect_folder(directory)
    path = Path(out) if out is not None else info.root / REPORT_NAME
    atomic_write(path, render_report(info))
    os.chmod(path, 0o644)  # a page to share: readable like any document, not the temp file's 0600
    return path


def render_report(info: FolderInfo) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("report.html.j2").render(**page_context(info))


def page_context(info: FolderInfo) -> dict:
    """Everything the template shows, as plain values."""
    root, sweep = info.root, info.kind == "sweep"
    samples = read_samples([(run.cell, run.folder) for run in info.runs], with_cell=sweep)
    notes = list(info.notes) + [note for run in info.runs for note in run.notes]
    if samples.unreadable:
        notes.append(f"{samples.unreadable} line(s) of samples.jsonl were not valid JSON and are left out")
    if sweep:
        table_paths = sorted((root / "tables").glob("*.csv"))
    else:
        table_paths = [root / name for name in RUN_TABLES if (root / name).is_file()]
    cells = [{
        "id": run.cell, "state": run.state, "config_text": run.config_text,
        "values": run.manifest_entry.get("values") or {}, "wall_s": run.manifest_entry.get("wall_s"),
        "error": run.manifest_entry.get("error"), "figures": figures(run.folder, root) if sweep else [],
    } for run in info.runs]
    return {
        "title": f"transferlab {info.kind}: {root.resolve().name}",
        "kind": info.kind,
        "folder": str(root.resolve()),
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "notes": notes,
        "config_text": info.runs[0].config_text if not sweep else None,
        "sweep": (info.manifest or {}).get("sweep"),
        "manifest": info.manifest,
        "state_counts": dict(Counter(run.state for run in info.runs)),
        "cells": cells,
        "figures": figures(root, root),  # a run's own figures; a sweep's grid
        "tables": [csv_table(path, root) for path in table_paths],
        "n_samples": len(samples.rows),
        "columns": samples.columns,
        "filters": samples.filters(),
        "sample_json": script_json({"columns": samples.columns, "rows": samples.rows, "page_size": PAGE_SIZE}),
        "browser_js": (TEMPLATES / "browser.js").read_text(),
        "style_css": (TEMPLATES / "report.css").read_text(),
    }
