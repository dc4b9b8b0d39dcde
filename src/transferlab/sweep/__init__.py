"""Sweeps: one base config, axes over pairs, tasks, seeds or any key; a run folder per cell.

`load_sweep(path)` reads and validates a sweep file, `run_sweep(sweep, out)` runs its cells (resuming
a folder that already holds some), `plan_sweep(sweep, out)` says what a run would do.
"""

from transferlab.sweep.run import SweepResult, plan_sweep, run_sweep
from transferlab.sweep.spec import Cell, Sweep, SweepError, load_sweep

__all__ = ["Cell", "Sweep", "SweepError", "SweepResult", "load_sweep", "plan_sweep", "run_sweep"]
