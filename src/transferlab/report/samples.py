"""The sample browser's data: every evaluated answer as a compact row, and the values to filter by.

Rows are lists in the order of `columns` (not dicts), which keeps a 50k-sample sweep to a few MB.
The prompt kept is the last user message: the system prompt repeats the task's tables on every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RUN_COLUMNS = ["step", "task", "eval_set", "trained", "prompted", "prompt", "response", "answer", "correct",
               "adherent"]  # fmt: skip
FILTER_COLUMNS = ["cell", "step", "task", "eval_set", "prompted", "correct", "adherent"]
FILTER_LABELS = {"cell": "cell", "step": "step", "task": "task", "eval_set": "eval set",
                 "prompted": "prompted propensity", "correct": "correct", "adherent": "adherent"}
BOOLEAN_COLUMNS = ("correct", "adherent")


@dataclass
class SampleTable:
    columns: list[str]
    rows: list[list]
    unreadable: int = 0  # lines of samples.jsonl that were not JSON (a run killed mid-write leaves one)

    def filters(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """(column, label, [(key, label)]) for each filter column present, its values sorted."""
        out = []
        for column in (c for c in FILTER_COLUMNS if c in self.columns):
            index = self.columns.index(column)
            values = sorted({row[index] for row in self.rows}, key=_value_order)
            out.append((column, FILTER_LABELS[column], [(value_key(v), value_key(v) or "(none)") for v in values]))
        return out


def value_key(value) -> str:
    """A filter's option value; browser.js computes the same key from the JSON value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_order(value) -> tuple:
    return (value is None, not isinstance(value, (int, float)), value if isinstance(value, (int, float)) else str(value))


def read_samples(folders: list[tuple[str, Path]], with_cell: bool) -> SampleTable:
    """The rows of every `(cell, run folder)`'s samples.jsonl; `with_cell` adds the cell column."""
    columns = (["cell"] if with_cell else []) + RUN_COLUMNS
    table = SampleTable(columns, [])
    for cell, folder in folders:
        path = folder / "samples.jsonl"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    sample = json.loads(line)
                except ValueError:
                    table.unreadable += 1
                    continue
                if isinstance(sample, dict):
                    table.rows.append(([cell] if with_cell else []) + _row(sample))
    return table


def _row(sample: dict) -> list:
    row = []
    for column in RUN_COLUMNS:
        value = sample.get(column)
        if column == "prompt":
            value = last_user_message(value)
        elif column == "step":
            value = _integer(value)
        elif column in BOOLEAN_COLUMNS:
            value = None if value is None else bool(value)
        elif value is not None:
            value = str(value)
        row.append(value)
    return row


def _integer(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def last_user_message(prompt) -> str:
    """The question as the model saw it: the last user turn of a chat prompt (or the prompt string)."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return "" if prompt is None else str(prompt)


def script_json(data) -> str:
    """JSON safe inside `<script type="application/json">`: no `<`, `>` or `&` can close the tag or start
    a comment, since each becomes its JSON escape (the parsed strings are unchanged)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
