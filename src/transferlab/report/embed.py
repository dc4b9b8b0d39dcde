"""Figures and tables made into HTML that needs no other file: PNGs as data URIs, CSVs as tables."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MAX_TABLE_ROWS = 500  # a sweep's summary can hold many thousand rows; the CSV keeps them all
FIGURE_ORDER = ("gap_grid.png", "gap.png", "accuracy.png", "adherence.png", "loss.png")


@dataclass(frozen=True)
class Figure:
    name: str  # the file, relative to the folder reported on
    data_uri: str


@dataclass(frozen=True)
class Table:
    name: str  # the file, relative to the folder reported on
    html: str  # pandas' escaped HTML, or "" when the table could not be read
    n_rows: int
    n_shown: int
    problem: str = ""  # why there is no HTML


def figures(folder: Path, root: Path) -> list[Figure]:
    """Every PNG in `folder/figures`, the research figures first."""
    paths = sorted((folder / "figures").glob("*.png"), key=_figure_rank)
    return [Figure(path.relative_to(root).as_posix(), png_data_uri(path)) for path in paths]


def _figure_rank(path: Path) -> tuple[int, str]:
    return (FIGURE_ORDER.index(path.name) if path.name in FIGURE_ORDER else len(FIGURE_ORDER), path.name)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def csv_table(path: Path, root: Path, max_rows: int = MAX_TABLE_ROWS) -> Table:
    """The CSV as an HTML table of its first `max_rows` rows (a table that will not parse says so)."""
    name = path.relative_to(root).as_posix()
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' EmptyDataError and ParserError are ValueErrors
        return Table(name, "", 0, 0, f"could not read it: {err}")
    shown = frame.head(max_rows)
    html = shown.to_html(index=False, na_rep="", border=0, classes="data", float_format=_number, escape=True)
    return Table(name, html, len(frame), len(shown))


def _number(value: float) -> str:
    return f"{value:.4g}"
