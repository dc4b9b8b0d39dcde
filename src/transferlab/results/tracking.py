"""Follow a run in an experiment tracker: TensorBoard, Weights & Biases or trackio (`[track]`).

The run folder stays the record; a tracker is a live view of it for researchers who watch runs in
their tracker of choice. Opening the tracker logs the resolved config; then the training loop
calls three hooks: `log_train` after each step (loss, learning rate, tokens), `log_eval` after each
evaluation (accuracy and adherence per task, eval set and prompted propensity, and the point
performance gap 1 - acc(swapped) / acc(trained) where the capability was learned, by gaps.csv's rule;
gaps.csv keeps the bootstrap intervals), and `finish` at the end (the figures and a table of the last
evaluation's samples).

A killed run resumes into the same tracker run: TensorBoard writes into the same log dir with
`purge_step` just after the checkpoint, so the steps the killed process logged past its checkpoint
are dropped and logged again once; wandb and trackio reopen the run whose id `tracking.json` in the
run folder keeps (`resume="allow"`).
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.results.metrics import learned, wilson_interval
from transferlab.results.run_folder import RunFolder, atomic_write

STATE = "tracking.json"  # in the run folder: which tracker run this folder logs to
SAMPLE_COLUMNS = ("step", "task", "eval_set", "trained", "prompted", "prompt", "response", "answer", "correct",
                  "adherent")


def eval_scalars(rows: list[dict], chance: dict[str, float]) -> dict[str, float]:
    """One evaluation's numbers by tag: `accuracy/<task>/<eval_set>/<prompted>`, `adherence/...`,
    and `gap/<task>/<eval_set>` (1 - acc(swapped) / acc(trained)) only where the capability was learned
    by the rule gaps.csv follows (`metrics.learned`: the trained prompt's Wilson lower bound above the
    task's chance), so a tracker never plots the ratio of two noises."""
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    trained_prompt: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (row["task"], row["eval_set"], row["prompted"])
        totals[key][0] += bool(row["correct"])
        totals[key][1] += bool(row["adherent"])
        totals[key][2] += 1
        trained_prompt[key[:2]] = row["trained"]
    scalars = {}
    for (task, eval_set, prompted), (correct, adherent, n) in sorted(totals.items()):
        scalars[f"accuracy/{task}/{eval_set}/{prompted}"] = correct / n
        scalars[f"adherence/{task}/{eval_set}/{prompted}"] = adherent / n
    for (task, eval_set), trained in sorted(trained_prompt.items()):
        correct, _, n = totals[(task, eval_set, trained)]
        swapped = [v for k, v in scalars.items()
                   if k.startswith(f"accuracy/{task}/{eval_set}/") and not k.endswith(f"/{trained}")]
        if n and swapped and learned(wilson_interval(correct, n)[0], chance.get(task, np.nan)):
            scalars[f"gap/{task}/{eval_set}"] = 1 - swapped[0] / (correct / n)
    return scalars


def sample_table(rows: list[dict], limit: int) -> pd.DataFrame:
    """The first `limit` rows of an evaluation, the columns a reader scans."""
    frame = pd.DataFrame(rows[:limit])
    return frame[[c for c in SAMPLE_COLUMNS if c in frame]]


class NoTracker:
    """`[track] backend = "none"`: every hook does nothing."""

    def log_train(self, step: int, **values: float) -> None:
        pass

    def log_eval(self, step: int, rows: list[dict], chance: dict[str, float]) -> None:
        pass

    def finish(self, folder: RunFolder) -> None:
        pass


class TensorBoardTracker(NoTracker):
    """Event files in `<run>/tensorboard`: scalars, the config and the sample table as text, the
    figures as images."""

    def __init__(self, log_dir: Path, config_toml: str, resumed_at: int | None, samples: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events of the killed process at or past it are hidden when the log is read
        self.writer = SummaryWriter(str(log_dir), purge_step=None if resumed_at is None else resumed_at + 1)
        self.samples, self.last_rows, self.last_step = samples, [], resumed_at or 0
        if resumed_at is None:
            self.writer.add_text("config", "```toml\n" + config_toml + "\n```", 0)

    def log_train(self, step: int, **values: float) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def log_eval(self, step: int, rows: list[dict], chance: dict[str, float]) -> None:
        for tag, value in eval_scalars(rows, chance).items():
            self.writer.add_scalar(tag, value, step)
        self.last_rows, self.last_step = rows, step
        self.writer.flush()  # before the checkpoint: what a resumed run keeps must be on disk

    def finish(self, folder: RunFolder) -> None:
        from PIL import Image

        for png in sorted(folder.figures.glob("*.png")):
            with Image.open(png) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(f"figures/{png.stem}", pixels, self.last_step, dataformats="HWC")
        if self.samples and self.last_rows:
            self.writer.add_text("samples", markdown(sample_table(self.last_rows, self.samples)), self.last_step)
        self.writer.close()


class WandbLikeTracker(NoTracker):
    """wandb or trackio (the same calls): the run's id is kept in the run folder so a restart
    continues the same run."""

    def __init__(self, module, folder: RunFolder, config: dict, run_id: str, project: str, offline: bool,
                 samples: int):
        self.module, self.samples, self.last_rows, self.last_step = module, samples, [], 0
        options = {"project": project, "name": folder.path.name, "config": config, "resume": "allow"}
        if module.__name__ == "wandb":
            options |= {"id": run_id, "dir": str(folder.path), "mode": "offline" if offline else "online"}
        self.run = module.init(**options)

    def log_train(self, step: int, **values: float) -> None:
        self.module.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def log_eval(self, step: int, rows: list[dict], chance: dict[str, float]) -> None:
        self.module.log(eval_scalars(rows, chance), step=step)
        self.last_rows, self.last_step = rows, step

    def finish(self, folder: RunFolder) -> None:
        logged = {f"figures/{png.stem}": self.module.Image(str(png)) for png in sorted(folder.figures.glob("*.png"))}
        if self.samples and self.last_rows:
            logged["samples"] = self.module.Table(dataframe=sample_table(self.last_rows, self.samples))
        if logged:
            self.module.log(logged, step=self.last_step)
        self.module.finish()


def markdown(frame: pd.DataFrame) -> str:
    """`frame` as a Markdown table (TensorBoard's text tab renders it)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [list(frame.columns), ["---"] * len(frame.columns), *frame.values.tolist()]
    return "\n".join("| " + " | ".join(map(cell, line)) + " |" for line in lines)


def open_tracker(track, folder: RunFolder, config_toml: str, config: dict, resumed_at: int | None):
    """The tracker `track` (the config's [track] section) names, logging the resolved config; a
    resumed run (`resumed_at`: its checkpoint's step) reopens the tracker run the folder names."""
    if track.backend == "none":
        return NoTracker()
    state_file = folder.path / STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state.get("backend") != track.backend:
        state = {"backend": track.backend, "run_id": uuid.uuid4().hex[:12]}
        atomic_write(state_file, json.dumps(state))
    if track.backend == "tensorboard":
        return TensorBoardTracker(folder.path / "tensorboard", config_toml, resumed_at, track.samples)
    module = importlib.import_module(track.backend)  # wandb or trackio: the config checked it is installed
    return WandbLikeTracker(module, folder, config, state["run_id"], track.project, track.offline, track.samples)

