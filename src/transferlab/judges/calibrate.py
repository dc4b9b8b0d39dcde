"""How far two judges agree on adherence: accuracy and Cohen's kappa on a labelled set.

The shipped sets (`judges/labelled/<pair>.jsonl`) were written and labelled by hand; each row is a
response, the propensity it is judged against, and whether it follows it. A judge is `labels`
(the hand labels), `heuristic` (each propensity's offline judge: regex or heuristics) or `llm`
(an LLM behind an OpenAI-compatible endpoint, see `transferlab.judges.llm`).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pandas as pd

from transferlab.judges import HeuristicJudge, LLMAdherenceJudge, judge_each
from transferlab.propensities import PAIRS

COLUMNS = ("id", "pair", "propensity", "question", "answer", "response", "follows", "case")
JudgeFn = Callable[[pd.DataFrame], list[bool]]


def labelled_dir() -> Path:
    return Path(str(resources.files("transferlab.judges").joinpath("labelled")))


def holdout_dir() -> Path:
    """A second hand-labelled set, written by someone who never saw the judges and never used to tune
    them: agreement on it is the honest estimate."""
    return Path(str(resources.files("transferlab.judges").joinpath("holdout")))


def load_labelled(paths: list[Path] | None = None, pair: str | None = None) -> pd.DataFrame:
    """The labelled rows, checked: every column present, known propensities, boolean labels."""
    paths = paths or sorted(labelled_dir().glob("*.jsonl"))
    frames = []
    for path in paths:
        try:
            frame = pd.read_json(path, lines=True, dtype=False)
        except ValueError as err:
            raise ValueError(f"{path} is not JSON lines ({err}); each line must be one JSON object") from err
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing}; each row needs {', '.join(COLUMNS)}")
        unknown = sorted(set(frame["pair"]) - set(PAIRS))
        if unknown:
            raise ValueError(f"{path}: unknown pairs {unknown}; known: {', '.join(PAIRS)}")
        wrong = frame[[p not in PAIRS[pr] for p, pr in zip(frame["propensity"], frame["pair"])]]
        if len(wrong):
            raise ValueError(f"{path}: row {wrong.iloc[0]['id']} judges {wrong.iloc[0]['propensity']!r}, "
                             f"which is not in its pair {wrong.iloc[0]['pair']!r}")
        if frame["follows"].map(type).ne(bool).any():
            raise ValueError(f"{path}: `follows` must be true or false in every row")
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    return rows[rows["pair"] == pair].reset_index(drop=True) if pair else rows


def _verdicts(judge, rows: pd.DataFrame) -> list[bool]:
    return judge_each(judge, list(rows["propensity"]), list(rows["response"]), list(rows["answer"]),
                      list(rows["question"]))


def heuristic_judge(rows: pd.DataFrame) -> list[bool]:
    return _verdicts(HeuristicJudge(), rows)


def labels_judge(rows: pd.DataFrame) -> list[bool]:
    return list(rows["follows"])


def llm_judge(cache_dir: str | Path = ".transferlab-cache/judge") -> JudgeFn:
    """The LLM judge on the endpoint named by TRANSFERLAB_LLM_* environment variables."""
    judge = LLMAdherenceJudge(cache_dir, progress=True)
    return lambda rows: _verdicts(judge, rows)


JUDGES: dict[str, Callable[[], JudgeFn]] = {
    "labels": lambda: labels_judge, "heuristic": lambda: heuristic_judge, "llm": llm_judge}


def cohen_kappa(a: list[bool], b: list[bool]) -> float:
    """Agreement beyond what two judges with these yes-rates would reach by chance."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def agreement(rows: pd.DataFrame, a: list[bool], b: list[bool]) -> pd.DataFrame:
    """Accuracy and kappa per pair, per propensity and overall."""
    frame = rows.assign(a=a, b=b)
    out = []
    groups = [("all", frame)] + [(p, g) for p, g in frame.groupby("pair")] + [
        (f"{g['pair'].iloc[0]}/{p}", g) for p, g in frame.groupby("propensity")]
    for name, g in groups:
        out.append({"subset": name, "n": len(g), "accuracy": (g["a"] == g["b"]).mean(),
                    "kappa": cohen_kappa(list(g["a"]), list(g["b"]))})
    return pd.DataFrame(out)


def calibrate(first: str, second: str, *, pair: str | None = None,
              paths: list[Path] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(agreement table, disagreeing rows) between judges `first` and `second`."""
    for name in (first, second):
        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r}; allowed: {', '.join(JUDGES)}")
    rows = load_labelled(paths, pair)
    a, b = JUDGES[first]()(rows), JUDGES[second]()(rows)
    table = agreement(rows, a, b)
    disagreements = rows.assign(**{first: a, second: b})[[x != y for x, y in zip(a, b)]]
    return table, disagreements
