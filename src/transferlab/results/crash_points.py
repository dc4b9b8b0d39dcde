"""Named places where a run may be killed on purpose, so tests can prove it resumes from any of them.

Inert unless `TRANSFERLAB_CRASH_AT=name:n` is set: then the n-th time the run reaches `name` the
process sends itself SIGKILL (no cleanup, no flush: what a preempted machine does). The resumption
tests pick the places a run is most fragile: mid training step, mid checkpoint, mid append of eval
samples, mid writing of the result tables.
"""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("TRANSFERLAB_CRASH_AT", "")
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    if not _ARMED:
        return
    target, _, count = _ARMED.partition(":")
    if target != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
