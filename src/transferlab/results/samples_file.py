"""Reading samples.jsonl: every complete row, and a torn last line (a killed run) left out.

A run appends one evaluation at a time and fsyncs it, so only the final line can be incomplete;
a bad line anywhere else means the file was edited or damaged, and that is an error naming it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path


def read_sample_rows(path: str | Path) -> list[dict]:
    lines = Path(path).read_text().split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # no newline after it: the write was cut off
                warnings.warn(f"{path}: left out the torn last line {number} (a run killed mid-write)",
                              stacklevel=2)
                continue
            raise ValueError(f"{path}, line {number}: not a JSON row ({err.msg}); the file is damaged — "
                             f"rerun the evaluation or remove the line") from err
    return rows
