"""Stream the Lichess puzzle CSV (plain or .zst) into a seeded sample of puzzles.

The full file holds millions of rows, so it is read row by row and never held whole: every row gets
the cheap checks (column count, numeric rating, UCI syntax of the moves) and the filters; only rows
that enter the reservoir sample are checked in full with python-chess (the FEN parses and is a legal
position, every move is legal in turn). A malformed row is skipped and counted in a `LoadReport`,
never fatal; the report counts skips per kind of problem, keeps the first few reasons (line and
problem) for the caller to show, and every skipped line for the run folder's `skipped.jsonl`.

Columns are read by the header's names, in any order, so the exports Lichess has shipped over the
years all load: the 10-column file, an 11-column one (`SortKey`, `DailyDate`), the older dump
without `OpeningTags`, or a reduced file holding only what the task needs (`NEEDED`). A file
without a header row is read by position, in `COLUMNS` order (the older 9-column dump included).

What is fatal is a file that cannot give a sample: a damaged compressed stream (a truncated download
would otherwise give a sample of its first part that looks like a sample of the whole), or too few
usable puzzles. Both raise `PuzzleFileError`, naming the file, the lines skipped and the fix.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import chess
import zstandard

from transferlab.tasks.chess.puzzle import Puzzle, PuzzleFilter

COLUMNS = ("PuzzleId", "FEN", "Moves", "Rating", "RatingDeviation", "Popularity", "NbPlays", "Themes",
           "GameUrl", "OpeningTags")
NEEDED = ("PuzzleId", "FEN", "Moves", "Rating")  # what a puzzle is made of; Themes too when filtering by theme
OTHER_COLUMNS = ("SortKey", "DailyDate")  # in some exports: a first row naming any known column is a header
DOWNLOAD_HINT = ("download lichess_db_puzzle.csv.zst from https://database.lichess.org/#puzzles (it can be "
                 "read compressed), or leave path unset (None) to use generated puzzles")
_UCI = re.compile(r"^[a-h][1-8][a-h][1-8][qrbn]?$")
_RATING = re.compile(r"-?[0-9]{1,6}")  # ASCII digits only: "²" is a digit to str.isdigit, not to int()
MAX_REASONS = 5
MAX_REASON_CHARS = 200


def _clip(text: str, limit: int = 80) -> str:
    """Cut short for a reason: a 100 kB garbage field is named, not printed."""
    return text if len(text) <= limit else text[:limit] + "…"


class PuzzleFileError(ValueError):
    """The puzzle file cannot give a sample: the message names the file, what went wrong where, and the fix."""


class RowProblem(ValueError):
    """Why one row cannot become a puzzle; `kind` is the short name it is counted under."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


@dataclass
class LoadReport:
    """What reading a puzzle file did: rows read, kept by the filters, sampled, and skipped (why)."""

    path: str
    rows: int = 0         # data rows read (the header excluded)
    matched: int = 0      # well-formed rows that passed the filters
    checked: int = 0      # rows checked in full with python-chess (those that entered the sample)
    sampled: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)  # the first MAX_REASONS reasons
    skip_counts: Counter = field(default_factory=Counter)  # kind of problem -> rows skipped for it
    skipped_lines: list[tuple[int, str, str]] = field(default_factory=list, repr=False)  # every (line, kind, why)

    def skip(self, line: int, reason: str, kind: str = "malformed row") -> None:
        self.skipped += 1
        self.skip_counts[kind] += 1
        reason = _clip(reason, MAX_REASON_CHARS)
        self.skipped_lines.append((line, kind, reason))
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"line {line}: {reason}")

    def summary(self) -> str:
        text = (f"{self.path}: {self.rows} rows, {self.matched} matched the filters, {self.sampled} sampled, "
                f"{self.skipped} skipped")
        if self.skip_counts:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in self.skip_counts.most_common()) + ")"
        return text + ("" if not self.reasons else "; first skipped: " + "; ".join(self.reasons))

    def skipped_rows(self) -> list[dict]:
        """Every skipped line, for the run folder's skipped.jsonl."""
        return [{"file": self.path, "line": line, "kind": kind, "reason": reason}
                for line, kind, reason in self.skipped_lines]

    def shortfall(self, found: int, needed: int) -> PuzzleFileError:
        """The error for a file that gave `found` usable puzzles when `needed` are wanted: why, and what to do."""
        head = f"only {found} usable puzzle(s) in {self.path}, need at least {needed}"
        if self.rows == 0:
            return PuzzleFileError(f"{head}: it holds no puzzle rows; expected the Lichess puzzle CSV "
                                   f"({','.join(COLUMNS[:4])},...). {DOWNLOAD_HINT}")
        if self.skipped:
            return PuzzleFileError(
                f"{head}: {self.skipped} of {self.rows} rows are malformed and were skipped ("
                + "; ".join(self.reasons) + "). Fix or drop those rows, point path at the Lichess puzzle file "
                f"({','.join(COLUMNS[:4])},...), or widen min_rating/max_rating, themes or min_moves/max_moves")
        return PuzzleFileError(f"{head}: {self.matched} of {self.rows} rows match the filters; widen "
                               f"min_rating/max_rating, themes or min_moves/max_moves")


class ZstdFrames(io.RawIOBase):
    """The decompressed bytes of every zstd frame in `raw`, and ZstdError where the file ends inside a
    frame. (zstandard's own stream reader just stops there, so a truncated download would read as a
    shorter file: a sample of its first part that looks like a sample of the whole.)"""

    def __init__(self, raw: io.BufferedIOBase, chunk: int = 1 << 20):
        self._raw, self._chunk = raw, chunk
        self._frame = None  # the frame being decompressed; None before the first
        self._out, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos == len(self._out):
            if self._frame is None or self._frame.eof:  # between frames: the file may end here
                data = (self._frame.unused_data if self._frame is not None else b"") or self._raw.read(self._chunk)
                if not data:
                    return 0
                self._frame = zstandard.ZstdDecompressor().decompressobj()
            elif not (data := self._raw.read(self._chunk)):
                raise zstandard.ZstdError("the file ends inside a frame")
            self._out, self._pos = self._frame.decompress(data), 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n


@contextmanager
def open_text(path: Path) -> Iterator[io.TextIOBase]:
    """A text stream over `path`, decompressing `.zst` on the fly."""
    if not path.is_file():
        raise FileNotFoundError(f"puzzle file not found: {path}; {DOWNLOAD_HINT}")
    with open(path, "rb") as raw:
        if path.suffix == ".zst":
            binary = io.BufferedReader(ZstdFrames(raw))
        else:
            binary = raw
        with io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="") as text:
            yield text


@dataclass(frozen=True)
class Layout:
    """Where each column sits in a row: from the header's names, or by position without a header."""

    index: dict[str, int]  # column name -> position in the row
    width: tuple[int, ...]  # the row lengths accepted

    @classmethod
    def positional(cls) -> Layout:
        """Today's rule for a file without a header: COLUMNS in order, OpeningTags possibly absent
        (the older 9-column dump)."""
        return cls({name: i for i, name in enumerate(COLUMNS)}, (len(COLUMNS), len(COLUMNS) - 1))

    @classmethod
    def from_header(cls, cells: list[str], path: Path, needs_themes: bool) -> Layout | None:
        """The layout a header row names, or None when `cells` is no header (a data row). A header
        lacking a needed column is PuzzleFileError, naming what is missing and what is there."""
        names = [c.strip().lstrip("\ufeff").strip() for c in cells]
        known = {n.lower(): n for n in COLUMNS + OTHER_COLUMNS}
        if not any(n.lower() in known for n in names):
            return None
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(known.get(name.lower(), name), i)
        needed = NEEDED + (("Themes",) if needs_themes else ())
        if missing := [n for n in needed if n not in index]:
            why = " (themes is set, so the file must name each puzzle's themes)" if missing == ["Themes"] else ""
            raise PuzzleFileError(
                f"{path}: the header has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}{why}; it "
                f"names {_clip(','.join(names), 160)}. A puzzle file needs {', '.join(NEEDED)} (and Themes to "
                f"filter by theme), in any order; {DOWNLOAD_HINT}")
        return cls(index, (len(names),))

    def pick(self, row: list[str]) -> list[str]:
        """The row's cells in COLUMNS order ("" where the file has no such column), or RowProblem."""
        if len(row) not in self.width:
            also = f" (or {self.width[1]}, without OpeningTags)" if len(self.width) > 1 else ""
            raise RowProblem("wrong column count", f"expected {self.width[0]} columns{also}, got {len(row)}")
        return [row[i] if (i := self.index.get(name, len(row))) < len(row) else "" for name in COLUMNS]


def rows(path: Path, report: LoadReport, needs_themes: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells in COLUMNS order) for each data row; a row that cannot be read, or has the
    wrong number of columns, is reported and skipped."""
    layout = Layout.positional()
    with open_text(path) as text:
        reader = csv.reader(text)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                report.rows += 1
                report.skip(reader.line_num, f"unreadable CSV ({err})", "unreadable CSV")
                continue
            except zstandard.ZstdError as err:  # not a row's fault: the rest of the file is lost
                where = f"after line {reader.line_num}" if reader.line_num else "at its start"
                raise PuzzleFileError(
                    f"{path}: the zstd stream is damaged {where} ({err}), so the file is truncated or is not "
                    f"zstd; {DOWNLOAD_HINT}") from None
            if not row:
                continue
            if reader.line_num == 1 and (header := Layout.from_header(row, path, needs_themes)):
                layout = header
                continue
            report.rows += 1
            try:
                yield reader.line_num, layout.pick(row)
            except RowProblem as err:
                report.skip(reader.line_num, str(err), err.kind)


def quick_check(row: list[str]) -> RowProblem | None:
    """Why a row (cells in COLUMNS order) is malformed on its face (rating, move syntax), or None."""
    if not _RATING.fullmatch(row[3].strip()):
        return RowProblem("bad rating", f"rating {_clip(repr(row[3]))} is not a whole number")
    moves = row[2].split()
    if len(moves) < 2 or len(moves) % 2:
        return RowProblem("bad moves", f"moves {_clip(repr(row[2]))}: need the opponent's move and the solution, "
                                       "an even count")
    if bad := next((m for m in moves if not _UCI.match(m)), None):
        return RowProblem("move not UCI", f"move {_clip(repr(bad))} is not UCI")
    return None


def full_check(row: list[str]) -> Puzzle:
    """The row as a Puzzle once python-chess accepts its position and every move; RowProblem if not."""
    try:
        board = chess.Board(row[1])
    except ValueError as err:
        raise RowProblem("bad FEN", f"bad FEN {_clip(repr(row[1]))} ({_clip(str(err), 100)})") from None
    if not board.is_valid():
        raise RowProblem("illegal position", f"FEN {_clip(repr(row[1]))} is not a legal position ({board.status()!r})")
    moves = tuple(row[2].split())
    for i, uci in enumerate(moves):
        try:
            move = chess.Move.from_uci(uci)
        except ValueError:  # UCI in form yet no move (a1a1: from and to the same square)
            raise RowProblem("move not UCI", f"move {i + 1} ({_clip(repr(uci))}) is not a UCI move") from None
        if move not in board.legal_moves:
            raise RowProblem("illegal move", f"move {i + 1} ({uci}) is illegal in {board.fen()}")
        board.push(move)
    return Puzzle(id=row[0], fen=row[1], moves=moves, rating=int(row[3]), themes=tuple(row[7].split()),
                  source="lichess")


def load_puzzles(path: str | Path, keep: PuzzleFilter, sample_size: int, seed: int
                 ) -> tuple[list[Puzzle], LoadReport]:
    """A uniform seeded sample (reservoir) of at most `sample_size` valid puzzles that `keep` accepts."""
    path = Path(path)
    report = LoadReport(str(path))
    rng = random.Random(f"lichess-sample-{seed}")
    sample: list[Puzzle] = []
    for line, row in rows(path, report, needs_themes=bool(keep.themes)):
        if problem := quick_check(row):
            report.skip(line, str(problem), problem.kind)
            continue
        if not (keep.keeps_rating(int(row[3])) and keep.keeps_themes(row[7].split())
                and keep.keeps_length(len(row[2].split()) // 2)):
            continue
        report.matched += 1
        slot = len(sample) if len(sample) < sample_size else rng.randrange(report.matched)
        if slot >= sample_size:
            continue
        report.checked += 1
        try:
            puzzle = full_check(row)
        except RowProblem as err:
            report.matched -= 1
            report.skip(line, str(err), err.kind)
            continue
        if slot == len(sample):
            sample.append(puzzle)
        else:
            sample[slot] = puzzle
    report.sampled = len(sample)
    return sample, report
