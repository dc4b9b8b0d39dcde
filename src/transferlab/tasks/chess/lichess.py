"""Stream the Lichess puzzle CSV (plain or .zst) into a seeded sample of puzzles.

The full file holds millions of rows, so it is read row by row and never held whole: every row gets
the cheap checks (column count, numeric rating, UCI syntax of the moves) and the filters; only rows
that enter the reservoir sample are checked in full with python-chess (the FEN parses and is a legal
position, every move is legal in turn). A malformed row is skipped and counted in a `LoadReport`,
never fatal; the report keeps the first few reasons (line and problem) for the caller to show.

What is fatal is a file that cannot give a sample: a damaged compressed stream (a truncated download
would otherwise give a sample of its first part that looks like a sample of the whole), or too few
usable puzzles. Both raise `PuzzleFileError`, naming the file, the lines skipped and the fix.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import chess
import zstandard

from transferlab.tasks.chess.puzzle import Puzzle, PuzzleFilter

COLUMNS = ("PuzzleId", "FEN", "Moves", "Rating", "RatingDeviation", "Popularity", "NbPlays", "Themes",
           "GameUrl", "OpeningTags")
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

    def skip(self, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"line {line}: {_clip(reason, MAX_REASON_CHARS)}")

    def summary(self) -> str:
        text = (f"{self.path}: {self.rows} rows, {self.matched} matched the filters, {self.sampled} sampled, "
                f"{self.skipped} skipped")
        return text + ("" if not self.reasons else " (" + "; ".join(self.reasons) + ")")

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


def rows(path: Path, report: LoadReport) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for each data row; unreadable lines are reported and skipped."""
    with open_text(path) as text:
        reader = csv.reader(text)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                report.rows += 1
                report.skip(reader.line_num, f"unreadable CSV ({err})")
                continue
            except zstandard.ZstdError as err:  # not a row's fault: the rest of the file is lost
                where = f"after line {reader.line_num}" if reader.line_num else "at its start"
                raise PuzzleFileError(
                    f"{path}: the zstd stream is damaged {where} ({err}), so the file is truncated or is not "
                    f"zstd; {DOWNLOAD_HINT}") from None
            if not row or (reader.line_num == 1 and row[0].lstrip("\ufeff") == COLUMNS[0]):
                continue
            report.rows += 1
            yield reader.line_num, row


def quick_check(row: list[str]) -> str | None:
    """Why a row is malformed on its face (columns, rating, move syntax), or None."""
    if len(row) != len(COLUMNS):
        return f"expected {len(COLUMNS)} columns, got {len(row)}"
    if not _RATING.fullmatch(row[3].strip()):
        return f"rating {_clip(repr(row[3]))} is not a whole number"
    moves = row[2].split()
    if len(moves) < 2 or len(moves) % 2:
        return f"moves {_clip(repr(row[2]))}: need the opponent's move and the solution, an even count"
    if bad := next((m for m in moves if not _UCI.match(m)), None):
        return f"move {_clip(repr(bad))} is not UCI"
    return None


def full_check(row: list[str]) -> Puzzle:
    """The row as a Puzzle once python-chess accepts its position and every move; ValueError if not."""
    try:
        board = chess.Board(row[1])
    except ValueError as err:
        raise ValueError(f"bad FEN {_clip(repr(row[1]))} ({_clip(str(err), 100)})") from None
    if not board.is_valid():
        raise ValueError(f"FEN {_clip(repr(row[1]))} is not a legal position ({board.status()!r})")
    moves = tuple(row[2].split())
    for i, uci in enumerate(moves):
        move = chess.Move.from_uci(uci)
        if move not in board.legal_moves:
            raise ValueError(f"move {i + 1} ({uci}) is illegal in {board.fen()}")
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
    for line, row in rows(path, report):
        if reason := quick_check(row):
            report.skip(line, reason)
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
        except ValueError as err:
            report.matched -= 1
            report.skip(line, str(err))
            continue
        if slot == len(sample):
            sample.append(puzzle)
        else:
            sample[slot] = puzzle
    report.sampled = len(sample)
    return sample, report
