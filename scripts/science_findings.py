"""The seed's four findings, read from a sweep's tables by the criteria in docs/science.md.

Usage: python scripts/science_findings.py docs/science [--rungs difference=docs/science ...]

Reads `tables/final_gap.csv` and `tables/summary.csv` of a sweep folder (written by `transferlab
sweep` or `transferlab figures`) and prints markdown: the per-(pair, task) measurements and the
F1, F2 and F4 verdicts. F3 needs a sweep per ladder rung (`--rungs NAME=DIR`, easiest first); with
fewer than two learned rungs it is reported not testable. The thresholds are the ones written in
docs/science.md before the results were read; changing them here changes the verdicts, not the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

PAIRS = ["bold_plain", "hedging_confident", "reasoning_no_reasoning"]
CAPABILITY = ("table_lookup", "fresh")
MEMORISED = ("invented_facts", "trained")
ALMOST_FULL, ALMOST_FULL_HIGH = 0.10, 0.20  # F1
CUT, ADHERENT, OFF_TASK = 0.5, 0.90, 0.10  # F4


def final_gaps(sweep: Path) -> pd.DataFrame:
    """Across-seed final gap per (pair, task, eval set): mean, interval, seeds with a gap, seeds run."""
    frame = pd.read_csv(sweep / "tables" / "final_gap.csv")
    return frame[frame["level"] == "across_seeds"].set_index(["pair", "task", "eval_set"])


def last_step(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["step"] == summary["step"].max()]


def fmt(mean, low, high, digits: int = 2) -> str:
    if pd.isna(mean):
        return "—"
    interval = "" if pd.isna(low) else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{mean:.{digits}f}{interval}"


def gap_cell(gaps: pd.DataFrame, pair: str, task: tuple[str, str]) -> pd.Series | None:
    key = (pair, *task)
    return gaps.loc[key] if key in gaps.index else None


def measure(summary: pd.DataFrame, pair: str, task: tuple[str, str], name: str, prompt: str) -> pd.Series | None:
    rows = summary[(summary["pair"] == pair) & (summary["task"] == task[0]) & (summary["eval_set"] == task[1])
                   & (summary["measure"] == name) & (summary["prompt"] == prompt)]
    return rows.iloc[0] if len(rows) else None


def measurement_table(gaps: pd.DataFrame, summary: pd.DataFrame) -> str:
    """One row per (pair, task): trained and swapped accuracy, final gap, swapped adherence, off task.
    A seed has a gap where the capability was learned before the adherence cut (gaps.csv's rule)."""
    final = last_step(summary)
    lines = [("| pair | task | seeds with a gap / run | acc trained (last step) | acc swapped | final gap [between-seed 95%] "
             "| swapped adherence (last / lowest mean) | off task, swapped |"),
             "|---|---|---|---|---|---|---|---|"]
    for pair in PAIRS:
        for task in (CAPABILITY, MEMORISED):
            g = gap_cell(gaps, pair, task)
            if g is None:
                continue
            acc_t, acc_s = (measure(final, pair, task, "accuracy", p) for p in ("trained", "swapped"))
            adh = measure(final, pair, task, "adherence", "swapped")
            lowest = summary[(summary["pair"] == pair) & (summary["task"] == task[0]) & (summary["eval_set"] == task[1])
                             & (summary["measure"] == "adherence") & (summary["prompt"] == "swapped")]["mean"].min()
            off = measure(final, pair, task, "off_task", "swapped")
            step = "—" if pd.isna(g["step"]) else int(g["step"])
            lines.append(
                f"| {pair} | {task[0]}/{task[1]} | {int(g['n_seeds'])} / {int(g['n_runs'])} "
                f"| {fmt(acc_t['mean'], acc_t['between_seed_ci_low'], acc_t['between_seed_ci_high'])} "
                f"| {fmt(acc_s['mean'], acc_s['between_seed_ci_low'], acc_s['between_seed_ci_high'])} "
                f"| {fmt(g['gap'], g['between_seed_ci_low'], g['between_seed_ci_high'])} (step {step}) "
                f"| {fmt(adh['mean'], adh['between_seed_ci_low'], adh['between_seed_ci_high'])} / {lowest:.2f} "
                f"| {fmt(off['mean'], off['between_seed_ci_low'], off['between_seed_ci_high']) if off is not None else '—'} |")
    return "\n".join(lines)


def f1(gaps: pd.DataFrame) -> tuple[str, str]:
    rows = {p: gap_cell(gaps, p, CAPABILITY) for p in PAIRS[:2]}
    if any(r is None or r["n_seeds"] < 2 for r in rows.values()):
        return "not testable", "table lookup was not learned in two seeds of each simple pair"
    said = "; ".join(f"{p}: {fmt(r['gap'], r['between_seed_ci_low'], r['between_seed_ci_high'])}" for p, r in rows.items())
    if any(r["between_seed_ci_low"] > ALMOST_FULL for r in rows.values()):
        return "contradicted", said
    if all(r["gap"] <= ALMOST_FULL and r["between_seed_ci_high"] <= ALMOST_FULL_HIGH and r["n_seeds"] == r["n_runs"]
           for r in rows.values()):
        return "reproduced", said
    return "not resolved", said


def f2(gaps: pd.DataFrame) -> tuple[str, str]:
    rows = {p: gap_cell(gaps, p, CAPABILITY) for p in PAIRS}
    reasoning = rows["reasoning_no_reasoning"]
    if reasoning is None or reasoning["n_seeds"] < 2:
        return "not testable", "table lookup was learned under reasoning in fewer than two seeds"
    others = [r for p, r in rows.items() if p != "reasoning_no_reasoning" and r is not None and r["n_seeds"] >= 2]
    said = "; ".join(f"{p}: {fmt(r['gap'], r['between_seed_ci_low'], r['between_seed_ci_high'])}"
                     for p, r in rows.items() if r is not None)
    if not others:
        return "not testable", said
    if any(reasoning["between_seed_ci_high"] < o["between_seed_ci_low"] for o in others):
        return "contradicted", said
    if all(reasoning["gap"] > o["gap"] for o in others):
        if all(reasoning["between_seed_ci_low"] > o["between_seed_ci_high"] for o in others):
            return "reproduced", said
        return "direction only (intervals overlap)", said
    return "not reproduced (reasoning's gap is not the largest)", said


def f3(rungs: dict[str, Path]) -> tuple[str, str]:
    learned = {}
    for name, folder in rungs.items():
        gaps = final_gaps(folder)
        learned[name] = {p: gap_cell(gaps, p, CAPABILITY) for p in PAIRS}
    usable = [n for n, rows in learned.items() if any(r is not None and r["n_seeds"] >= 2 for r in rows.values())]
    if len(usable) < 2:
        return "not testable", f"rungs learned in two seeds or more: {', '.join(usable) or 'none'} (of {', '.join(rungs)})"
    easy, hard = usable[0], usable[-1]
    above = below = 0
    for p in PAIRS:
        e, h = learned[easy][p], learned[hard][p]
        if e is None or h is None:
            continue
        above += h["between_seed_ci_low"] > e["between_seed_ci_high"]
        below += h["between_seed_ci_high"] < e["between_seed_ci_low"]
    said = f"{hard} vs {easy}: harder above in {above} pair(s), below in {below}"
    return ("reproduced" if above >= 2 else "contradicted" if below >= 2 else "not resolved"), said


def f4(gaps: pd.DataFrame, summary: pd.DataFrame) -> tuple[str, str]:
    final = last_step(summary)
    falls, partly, notes = [], [], []
    for pair in PAIRS:
        for task in (CAPABILITY, MEMORISED):
            adh = measure(final, pair, task, "adherence", "swapped")
            trained = measure(final, pair, task, "adherence", "trained")
            off = measure(final, pair, task, "off_task", "swapped")
            if adh is None:
                continue
            label = f"{pair} {task[0]}"
            if adh["between_seed_ci_high"] < CUT or (off is not None and off["between_seed_ci_low"] > OFF_TASK):
                falls.append(label)
            elif adh["mean"] < ADHERENT and trained is not None and adh["between_seed_ci_high"] < trained["between_seed_ci_low"]:
                partly.append(label)
            notes.append(f"{label}: {adh['mean']:.2f}")
    said = "swapped adherence at the last step: " + "; ".join(notes)
    if falls:
        return "reproduced", f"falls below 0.5 or goes off task: {', '.join(falls)}. {said}"
    if partly:
        return "partly", f"falls below 0.90 (and below the trained prompt's): {', '.join(partly)}. {said}"
    return "not reproduced", said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--rungs", nargs="*", default=[], help="NAME=SWEEP_DIR per ladder rung, easiest first")
    args = parser.parse_args()
    gaps = final_gaps(args.sweep)
    summary = pd.read_csv(args.sweep / "tables" / "summary.csv")
    rungs = dict(item.split("=", 1) for item in args.rungs) or {"difference": args.sweep}
    print(measurement_table(gaps, summary), end="\n\n")
    print("| finding | verdict | measurement |\n|---|---|---|")
    for name, (verdict, said) in {"F1": f1(gaps), "F2": f2(gaps), "F3": f3({k: Path(v) for k, v in rungs.items()}),
                                  "F4": f4(gaps, summary)}.items():
        print(f"| {name} | {verdict} | {said} |")


if __name__ == "__main__":
    main()
