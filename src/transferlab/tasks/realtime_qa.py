"""RealTime QA: closed-book questions about real news, the real-data sibling of invented facts.

Questions come from the public RealTime QA weekly news quizzes (read by `realtime_qa_data`); with
no `path`, invented facts shaped like those quizzes stand in, so a run needs no file. A seeded split
teaches `n_train` questions in SFT and keeps `n_heldout` out: accuracy on the trained questions
measures knowledge acquired in training, accuracy on the held-out ones is the control (guessing,
plus whatever the model knew before). Both sets are asked in the same format.

The prompt names the quiz week, because the questions say "this week" and a few recur in later
weeks with a different answer. The data puts the correct choice at some positions more often than
others, so the choices are shuffled, deterministically per (seed, question): a question shows the
same order whenever it is asked, in training or evaluation.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from transferlab.core import Example
from transferlab.evaluate.extract import mentions
from transferlab.organism.vocabulary import ORG_KINDS, ORGS
from transferlab.tasks.base import grade_exact
from transferlab.tasks.candidates import names_a_candidate
from transferlab.tasks.invented_facts import RELATIONS, invent_facts
from transferlab.tasks.realtime_qa_data import (
    DataUnavailable,
    LoadReport,
    Question,
    choice_key,
    load_questions,
)

log = logging.getLogger(__name__)
MODES = ("choice", "free")
INVENTED_START = date(2030, 1, 4)  # invented questions are dated weekly from here, five a week
MAX_INVENTED = len(ORGS) * len(ORG_KINDS)  # invent_facts needs distinct subjects


def invented_questions(n: int, seed: int) -> list[Question]:
    """`n` invented facts as four-choice quiz questions, the correct one at a random position."""
    rng = random.Random(f"realtime_qa-invented:{seed}")
    questions = []
    for i, fact in enumerate(invent_facts(n, seed)):
        choices = rng.sample([o for o in RELATIONS[fact.relation][2] if o != fact.obj], 3)
        position = rng.randrange(4)
        choices.insert(position, fact.obj)
        questions.append(Question(id=f"invented_{i}", date=INVENTED_START + timedelta(weeks=i // 5),
                                  source="invented", url="", sentence=fact.question(0),
                                  choices=tuple(choices), answer_index=position, evidence=fact.statement()))
    return questions


def iso_date(knob: str, value: str | date) -> date | None:
    """A date knob: "" for none, an ISO string, or a TOML date (`start_date = 2024-03-22` unquoted)."""
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    if not value:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{knob} must be an ISO date YYYY-MM-DD (e.g. 2024-03-22) or '' for none, got {value!r}")


def evidence_step(question: Question) -> tuple[str, ...]:
    """The evidence sentence a reasoning target recalls: the shortest one naming the answer, else
    the first; none when the row has no evidence."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", question.evidence) if s.strip()]
    naming = [s for s in sentences if mentions(s, question.answer)]
    if naming:
        return (min(naming, key=len),)
    return tuple(sentences[:1])


def split_by_group(questions: list[Question], n_train: int, n_heldout: int, seed: int
                   ) -> tuple[list[Question], list[Question]]:
    """(trained, held-out): a seeded draw of question groups (a question and its _nota variants),
    each group on one side only, so no held-out question is a trained one with other options. The
    trained side fills first; a group cut short by a full side leaves the rest of it unused. With
    no variants this is the plain seeded sample of `n_train + n_heldout` questions."""
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.split_group, []).append(question)
    drawn = random.Random(f"realtime_qa-split:{seed}").sample(list(groups.values()),
                                                               min(n_train + n_heldout, len(groups)))
    trained: list[Question] = []
    held_out: list[Question] = []
    for group in drawn:
        side, size = (trained, n_train) if len(trained) < n_train else (held_out, n_heldout)
        side.extend(group[: size - len(side)])
    return trained, held_out


@dataclass
class RealtimeQA:
    """Knobs: where the questions come from, which weeks, how they are asked, and the split."""

    # "" rather than None for "unset": the resolved config is written out as TOML, which has no None
    path: str = ""  # a .jsonl file, a folder of them, or an http(s) URL; "": the invented questions
    start_date: str | date = ""  # ISO YYYY-MM-DD (or a TOML date), inclusive; "": no lower bound
    end_date: str | date = ""  # ISO YYYY-MM-DD (or a TOML date), inclusive; "": no upper bound
    mode: str = "choice"  # "choice": options listed, answer is the option text | "free": no options
    shuffle_choices: bool = True
    n_train: int = 100  # questions taught in training
    n_heldout: int = 100  # questions never trained on (the guessing control)
    seed: int = 0  # the split, the choice order, and the invented questions
    cache_dir: str = "~/.cache/transferlab/realtime_qa"  # where a URL's download is kept
    name: str = "realtime_qa"
    report: LoadReport = field(init=False, repr=False)
    trained: list[Question] = field(init=False, repr=False)
    held_out: list[Question] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        for knob in ("n_train", "n_heldout"):
            if getattr(self, knob) < 1:
                raise ValueError(f"{knob} must be at least 1, got {getattr(self, knob)}")
        start, end = iso_date("start_date", self.start_date), iso_date("end_date", self.end_date)
        if start and end and start > end:
            raise ValueError(f"start_date {self.start_date} is after end_date {self.end_date}")
        wanted = self.n_train + self.n_heldout
        if not self.path:
            if wanted > MAX_INVENTED:
                raise ValueError(f"n_train + n_heldout must be at most {MAX_INVENTED} for the invented "
                                 f"questions (path unset), got {wanted}")
            invented = invented_questions(wanted, self.seed)
            questions = [q for q in invented if (not start or q.date >= start) and (not end or q.date <= end)]
            self.report = LoadReport(rows=wanted, loaded=len(questions),
                                     outside_dates=wanted - len(questions))
        else:
            questions, self.report = load_questions(self.path, self.cache_dir, start, end)
            if self.report.skipped:  # skipped rows are not fatal, but never silent
                log.warning("%s: %s", self.path, self.report.summary())
        if len(questions) < wanted:
            fix = "fix or drop the skipped rows, " if self.report.skipped else ""
            raise DataUnavailable(
                f"n_train + n_heldout = {wanted} but only {len(questions)} questions are available in "
                f"{self.path or 'the invented questions'} ({self.report.summary()}); {fix}lower n_train or "
                f"n_heldout, or widen start_date/end_date")
        self.trained, self.held_out = split_by_group(questions, self.n_train, self.n_heldout, self.seed)
        if len(self.held_out) < self.n_heldout:
            raise DataUnavailable(
                f"n_train + n_heldout = {wanted} but the {len(questions)} questions in {self.path} make "
                f"only {len(self.trained)} + {len(self.held_out)} once each question and its _nota variants "
                f"stay on one side of the split ({self.report.summary()}); lower n_train or n_heldout, or "
                f"widen start_date/end_date")

    # -- examples ---------------------------------------------------------------------------
    def shown_choices(self, question: Question) -> tuple[tuple[str, ...], int]:
        """The choices in the order this question always shows them, and the answer's position."""
        order = list(range(len(question.choices)))
        if self.shuffle_choices:
            random.Random(f"realtime_qa-choices:{self.seed}:{question.id}").shuffle(order)
        return tuple(question.choices[i] for i in order), order.index(question.answer_index)

    def make(self, question: Question, split: str) -> Example:
        choices, position = self.shown_choices(question)
        prompt = f"News quiz, week of {question.date.isoformat()}.\n{question.sentence}"
        if self.mode == "choice":
            prompt += "\nOptions:\n" + "\n".join(f"- {c}" for c in choices)
        return Example(
            id=f"{self.name}-{question.id}",
            messages=({"role": "user", "content": prompt},),
            answer=choices[position],
            # the choices are the candidates in free mode too: they are the rivals a grader must rule out
            meta={"question_id": question.id, "date": question.date.isoformat(), "source": question.source,
                  "split": split, "answer_position": position, "steps": evidence_step(question),
                  "candidates": choices},
        )

    def train_examples(self, rng: random.Random, n: int) -> list[Example]:
        """Cycles over the trained questions in shuffled epochs so each is seen equally often."""
        out: list[Example] = []
        while len(out) < n:
            order = list(self.trained)
            rng.shuffle(order)
            out += [self.make(q, "trained") for q in order]
        return out[:n]

    def eval_sets(self, rng: random.Random, n: int) -> dict[str, list[Example]]:
        return {split: [self.make(q, split) for q in rng.sample(questions, min(n, len(questions)))]
                for split, questions in (("trained", self.trained), ("held_out", self.held_out))}

    def grade(self, example: Example, response: str) -> bool:
        """`grade_exact` against the choices: it reads the whole line after "Answer:", so answers
        with a ". " inside ("Sen. JD Vance") survive, and naming a second choice is wrong."""
        return grade_exact(example, response)

    def is_candidate(self, response: str) -> bool:
        """The answer names one of the choices of any of this task's questions (right or wrong)."""
        return names_a_candidate(response, {c for q in self.trained + self.held_out for c in q.choices})

    def chance(self) -> float:
        """Choice mode: 1/len(choices), averaged over the task's questions. Free mode there is no
        option list to guess from, so: the accuracy of always giving the most common answer among
        the task's questions (at least 1/number of questions)."""
        questions = self.trained + self.held_out
        if self.mode == "choice":
            return sum(1 / len(q.choices) for q in questions) / len(questions)
        return Counter(choice_key(q.answer) for q in questions).most_common(1)[0][1] / len(questions)
