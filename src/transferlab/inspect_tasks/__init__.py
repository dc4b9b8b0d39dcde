"""transferlab's tasks, graders and judges for inspect_ai (post-hoc evaluation of any model).

Importing this package registers `transferlab/<task>` for every task in `transferlab.tasks.TASKS`;
inspect_ai imports it through the `inspect_ai` entry point in pyproject.toml, so
`inspect eval transferlab/table_lookup -T propensity=bold --model ...` works once transferlab is
installed with the `inspect` extra. See `tasks.py` for the parameters.

(Named `inspect_tasks`, not `inspect`, so nothing here can be mistaken for the standard library.)
"""

from __future__ import annotations

from transferlab.inspect_tasks.scorers import adherent, correct
from transferlab.inspect_tasks.tasks import INSPECT_TASKS, transferlab_dataset, transferlab_task

__all__ = ["INSPECT_TASKS", "adherent", "correct", "transferlab_dataset", "transferlab_task"]
