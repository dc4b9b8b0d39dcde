"""A config value written two ways: as a `--set key=value` override that reads back the same value,
and as a label that is safe inside a folder name (for cell ids)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from transferlab.config import parse_value


def override(key: str, value: Any) -> str:
    """`key=value` as `--set` reads it; a string is left bare where that reads back the same."""
    if isinstance(value, str) and value == value.strip() and parse_value(value) == value:
        return f"{key}={value}"
    return f"{key}={toml_value(value)}"


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """One TOML value on one line (inline tables and arrays), as `parse_value` reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot use {value!r} ({type(value).__name__}) as a config value")


def label(value: Any) -> str:
    text = value if isinstance(value, str) else toml_value(value)
    return re.sub(r"[^A-Za-z0-9._+\-]", "_", text) or "_"
