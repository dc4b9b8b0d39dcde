"""A disk cache of LLM results: one JSON file per entry, so a killed run loses nothing it finished.

An entry is keyed by a hash of its key parts (model, prompt messages, purpose, temperature,
prompt-template version, ... whatever decides the result) and stores those parts beside the
value, so a person can open any file and see what produced it. Entries are written to a temporary
file and moved into place with `os.replace`, which is atomic: a reader sees a whole entry or none.
Never put an API key in the key parts; nothing here needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class DiskCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        """A stable hash of the key parts: JSON with sorted keys, so dict order does not matter."""
        canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def path(self, parts: dict[str, Any]) -> Path:
        digest = self.key(parts)
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, parts: dict[str, Any]) -> Any | None:
        """The stored value, or None when absent, unreadable, or stored under different parts."""
        try:
            entry = json.loads(self.path(parts).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        # A round trip through JSON makes tuples lists; compare in that form.
        if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(parts)):
            return None
        return entry.get("value")

    def put(self, parts: dict[str, Any], value: Any) -> Path:
        path = self.path(parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"key": parts, "value": value}, ensure_ascii=False, indent=1)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0
