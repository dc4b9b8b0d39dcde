"""RealTime QA data: the public weekly news-quiz JSONL files, read into clean questions.

Each row holds `question_id`, `question_date` (`2024/03/22` or `2024-03-22`), `question_source`,
`question_url`, `question_sentence`, `choices`, `answer` (`["2"]`: a 0-based index as a string) and
`evidence` (often empty, sometimes HTML). The files are hand-made and a little untidy, so reading
never stops halfway: a malformed row is skipped and counted in a `LoadReport` with its reason, and a
row that is only irregular (a bare `"2"` answer, a choice listed twice, an id reused by another
question) is mended and counted there too. A URL is downloaded once into a cache folder.

The public repository holds more than quizzes: `*_qa_nota.jsonl` repeats each question of the week
with one option replaced by "None of the above" (id `<base>_nota`), and the retrieval and baseline
files (`*_gcs.jsonl`, `*_dpr.jsonl`, `*_qa_closed_gpt3.jsonl`, ...) hold search results or
predictions, no questions. A `_nota` variant keeps its base question's `group`, so the split puts both
on the same side; a file of retrieval results or predictions is named once in the report and not read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx

FIELDS = ("question_id", "question_date", "question_source", "question_url", "question_sentence",
          "choices", "answer", "evidence")
DATE_FORMATS = ("%Y/%m/%d", "%Y-%m-%d")
PUBLIC_DATA = "https://github.com/realtimeqa/realtimeqa_public"
MAX_REASONS = 5  # reasons kept verbatim in a report's summary; the run folder's skipped.jsonl keeps all
NOTA_SUFFIX = "_nota"  # a "None of the above" variant's id: its base question's id and this
NOT_QUESTIONS = {"search_result": "retrieval results", "prediction": "model predictions"}  # key -> what the file holds


class DataUnavailable(ValueError):
    """The data `path` names cannot be had, or holds too few usable questions. A ValueError, so config
    checks report it like a bad knob; the message names the file (and the skipped lines) and the fix."""


class RowError(ValueError):
    """Why one row cannot become a question; `kind` is the short name it is counted under."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True)
class Question:
    id: str
    date: date
    source: str
    url: str
    sentence: str
    choices: tuple[str, ...]
    answer_index: int
    evidence: str  # plain text, HTML stripped; may be empty
    group: str = ""  # questions of one group (a question and its _nota variants) share a side of the split

    @property
    def answer(self) -> str:
        return self.choices[self.answer_index]

    @property
    def split_group(self) -> str:
        return self.group or self.id


@dataclass
class LoadReport:
    """What loading did to every row: `rows == loaded + skipped + outside_dates`."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    loaded: int = 0
    skipped: int = 0
    outside_dates: int = 0
    skip_counts: Counter = field(default_factory=Counter)  # kind -> rows skipped for it
    reasons: list[str] = field(default_factory=list)  # the first few, as "file:line: why"
    repairs: Counter = field(default_factory=Counter)  # irregularity -> rows mended and kept
    not_questions: list[str] = field(default_factory=list)  # files passed over whole: "name (what it holds)"
    skipped_lines: list[tuple[str, int, str, str]] = field(default_factory=list, repr=False)  # every one

    def skip(self, file: Path, line: int, err: RowError) -> None:
        self.skipped += 1
        self.skip_counts[err.kind] += 1
        self.skipped_lines.append((str(file), line, err.kind, _clip(str(err))))
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(_clip(f"{file.name}:{line}: {err}"))

    def skipped_rows(self) -> list[dict]:
        """Every skipped line, for the run folder's skipped.jsonl."""
        return [{"file": file, "line": line, "kind": kind, "reason": reason}
                for file, line, kind, reason in self.skipped_lines]

    def summary(self) -> str:
        text = (f"{self.loaded} questions from {self.rows} rows in {len(self.files)} file(s); "
                f"{self.outside_dates} outside the dates, {self.skipped} skipped")
        if self.skip_counts:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in self.skip_counts.most_common()) + ")"
        if self.repairs:
            text += "; mended: " + ", ".join(f"{k}: {v}" for k, v in self.repairs.most_common())
        if self.reasons:
            text += "; first skipped: " + "; ".join(self.reasons)
        if self.not_questions:
            text += "; not question files, passed over: " + ", ".join(self.not_questions)
        return text


# -- cleaning ----------------------------------------------------------------------------------

def _clip(text: str, limit: int = 200) -> str:
    """Short enough to read in a reason: a megabyte-long cell is named, not printed."""
    return text if len(text) <= limit else text[:limit] + "…"


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def strip_html(text: str) -> str:
    """Visible text of an HTML fragment, entities decoded and whitespace collapsed."""
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())


def parse_date(text: str) -> date:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise RowError("bad date", f"{_clip(repr(text), 80)} is neither YYYY/MM/DD nor YYYY-MM-DD")


def choice_key(text: str) -> str:
    """What makes two choices the same choice: case, outer punctuation and spacing ignored."""
    return " ".join(text.split()).strip(" .,!?;:'\"`").lower()


def parse_row(row: object) -> tuple[Question, list[str]]:
    """One JSON row as a Question and the mends it needed, or RowError saying why not."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object", type(row).__name__)
    missing = [f for f in FIELDS if f not in row and f != "evidence"]
    if missing:
        raise RowError("missing field", ", ".join(missing))
    choices, answer = row["choices"], row["answer"]
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise RowError("bad choices", "not a list of strings")
    mends = []
    if isinstance(answer, (str, int)) and not isinstance(answer, bool):
        mends.append("answer given as a bare index, not a list")
        answer = [answer]
    if not (isinstance(answer, list) and len(answer) == 1 and str(answer[0]).strip().isdecimal()
            and len(str(answer[0]).strip()) <= 9):  # int() refuses past 4300 digits; no quiz has 10**9 choices
        raise RowError("bad answer", f"{_clip(repr(row['answer']), 80)} is not one index like ['2']")
    index = int(str(answer[0]))
    if index >= len(choices):
        raise RowError("answer index out of range", f"index {index} with {len(choices)} choices")
    cleaned = [strip_html(c) for c in choices]
    if len(cleaned) > index + 1 and cleaned[-1] == "":
        while len(cleaned) > index + 1 and cleaned[-1] == "":
            cleaned.pop()
        mends.append("a trailing empty choice (dropped)")
    correct = choice_key(cleaned[index])
    distinct: dict[str, str] = {}
    for c in cleaned:
        distinct.setdefault(choice_key(c), c)
    if len(distinct) < len(cleaned):
        mends.append("a choice listed twice (merged)")
    if "" in distinct or len(distinct) < 2:
        raise RowError("bad choices", "an empty choice or fewer than two distinct ones")
    sentence = strip_html(str(row["question_sentence"]))
    if not sentence:
        raise RowError("empty question")
    question_id = str(row["question_id"] or "").strip()
    if not question_id:
        raise RowError("missing field", "question_id is empty")
    question = Question(id=question_id, date=parse_date(str(row["question_date"])),
                        source=str(row["question_source"] or ""), url=str(row["question_url"] or ""),
                        sentence=sentence, choices=tuple(distinct.values()),
                        answer_index=list(distinct).index(correct),
                        evidence=strip_html(str(row.get("evidence") or "")),
                        group=question_id.removesuffix(NOTA_SUFFIX) if question_id.endswith(NOTA_SUFFIX) else "")
    return question, mends


# -- finding the files -------------------------------------------------------------------------

def fetch(url: str, cache_dir: str | Path) -> Path:
    """The file at `url`, downloaded once into `cache_dir` (atomically: a killed download leaves
    no half file behind to be mistaken for data)."""
    name = re.sub(r"[^\w.-]", "_", url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]) or "data.jsonl"
    target = Path(cache_dir).expanduser() / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, follow_redirects=True, timeout=30) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_bytes():
                out.write(chunk)
        os.replace(tmp, target)
    except httpx.HTTPStatusError as err:
        raise DataUnavailable(f"downloading {url} failed: HTTP {err.response.status_code}. Check the URL, "
                              f"or download the file yourself and set path to it") from err
    except httpx.TransportError as err:
        raise DataUnavailable(
            f"cannot download {url}: no network connection ({type(err).__name__}: {err}). Download the "
            f"JSONL file(s) on a machine with network access (from {PUBLIC_DATA}), copy them here and set "
            f"path to the local file or folder; or leave path unset to use the offline invented questions"
        ) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def data_files(path: str, cache_dir: str | Path) -> list[Path]:
    """The JSONL files `path` names: one file, every `*.jsonl` in a folder, or a URL's download."""
    if path.startswith(("http://", "https://")):
        return [fetch(path, cache_dir)]
    where = Path(path).expanduser()
    if where.is_dir():
        files = sorted(where.glob("*.jsonl"))
        if not files:
            raise DataUnavailable(f"no *.jsonl files in the folder {where}: put the RealTime QA weekly files "
                                  f"there, or set path to one file")
        return files
    if not where.exists():
        raise DataUnavailable(
            f"RealTime QA data not found at {where.absolute()}. Set path to a .jsonl "
            f"file, a folder of them or an http(s) URL (the files are at {PUBLIC_DATA}), or leave path "
            f"unset to use the offline invented questions")
    return [where]


# -- loading -----------------------------------------------------------------------------------

def _open(file: Path):
    """`file` as text, or DataUnavailable saying why it cannot be read (a folder named *.jsonl, no permission)."""
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the first row
        return open(file, encoding="utf-8-sig", errors="replace")  # the caller's `with` closes it
    except OSError as err:
        raise DataUnavailable(f"cannot read {file}: {err.strerror or err}; set path to a readable .jsonl file "
                              f"or a folder of them") from err


def not_questions(file: Path) -> str | None:
    """What `file` holds when its first row is retrieval results or predictions keyed by question id
    (no question, choices or answer), else None: such a file is named once, not skipped row by row."""
    with _open(file) as lines:
        first = next((line for line in lines if line.strip()), "")
    try:
        row = json.loads(first)
    except (ValueError, RecursionError):
        return None
    if not isinstance(row, dict) or any(f in row for f in ("question_sentence", "choices", "answer")):
        return None
    return next((what for key, what in NOT_QUESTIONS.items() if key in row), None)


def load_questions(path: str, cache_dir: str | Path, start: date | None = None,
                   end: date | None = None) -> tuple[list[Question], LoadReport]:
    """Every well-formed question dated in [start, end], sorted by (date, id), with the report.

    A row repeating an earlier question with the same answer is skipped (a repeat in the trained and
    held-out splits would spoil the control); an id reused by a different question gets a suffix.
    """
    report = LoadReport()
    questions: list[Question] = []
    seen_content: dict[tuple[str, str], str] = {}
    seen_ids: Counter = Counter()
    for file in data_files(path, cache_dir):
        if what := not_questions(file):
            report.not_questions.append(f"{file.name} ({what})")
            continue
        report.files.append(str(file))
        with _open(file) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                report.rows += 1
                try:
                    try:
                        row = json.loads(line)
                    except ValueError as err:  # JSONDecodeError, or a number of over 4300 digits
                        raise RowError("bad JSON", str(err)) from None
                    except RecursionError:
                        raise RowError("bad JSON", "arrays or objects nested too deeply") from None
                    question, mends = parse_row(row)
                    if (start and question.date < start) or (end and question.date > end):
                        report.outside_dates += 1
                        continue
                    content = (question.sentence.lower(), choice_key(question.answer))
                    if content in seen_content:
                        raise RowError("repeated question",
                                       f"same question and answer as {seen_content[content]}")
                except RowError as err:
                    report.skip(file, number, err)
                    continue
                seen_content[content] = question.id
                seen_ids[question.id] += 1
                if seen_ids[question.id] > 1:
                    mends.append("question_id reused by another question (suffixed)")
                    question = dataclasses.replace(question, id=f"{question.id}~{seen_ids[question.id]}")
                report.repairs.update(mends)
                questions.append(question)
    report.loaded = len(questions)
    return sorted(questions, key=lambda q: (q.date, q.id)), report
