"""Fuzzing the data loaders: any Lichess puzzle file and any RealTime QA JSONL file ends in examples
or in a named error (PuzzleFileError, DataUnavailable: ValueErrors of ours that name the file, the
lines and the fix), never in a traceback from inside csv, json, zstandard or python-chess.

The policy both loaders document: a corrupt *row* is skipped, counted, and its line and problem kept
for the warning; a corrupt *file* (a truncated .zst) or a file left with too few usable rows stops
the load with the named error, listing the first skipped lines. Rows that were not corrupted are
always kept, whatever the rows around them hold.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import tempfile
from pathlib import Path

import chess
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferlab.tasks.chess.lichess import COLUMNS, PuzzleFileError, load_puzzles
from transferlab.tasks.chess.puzzle import PuzzleFilter
from transferlab.tasks.chess_puzzles import ChessPuzzles
from transferlab.tasks.realtime_qa import RealtimeQA
from transferlab.tasks.realtime_qa_data import DataUnavailable, choice_key, load_questions

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHARED = Path(__file__).parents[2] / "shared" / "data"

# Real Lichess rows: a mate in 1, a mate in 2, a fork.
CHESS = [
    ["CJi0b", "6k1/p1p2ppp/1pqp2r1/3Q4/8/1P6/P1P2PPP/4RK2 b - - 8 22", "c6d5 e1e8", "400", "116", "81", "1125",
     "backRankMate endgame mate mateIn1 oneMove", "https://lichess.org/zhWsNjI8/black#44", ""],
    ["3IQ26", "4r1k1/2Q2ppp/2p2n2/3p4/N7/4r3/P5PP/2q2R1K w - - 0 25", "f1c1 e3e1 c1e1 e8e1", "400", "103", "68",
     "178", "backRankMate endgame mate mateIn2 short", "https://lichess.org/IcPcaawQ#49", ""],
    ["OXs05", "r2q1r2/pp3Bkp/2np4/2p1pp2/5N2/2PP3P/PP1Q1PP1/R4RK1 b - - 0 19", "f8f7 f4e6 g7h8 e6d8", "1409", "91",
     "22", "50", "crushing fork middlegame short", "https://lichess.org/JDl3YHT6/black#38", ""],
]
WIDE = PuzzleFilter(0, 4000, (), 1, 20)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def new_file(folder: Path, suffix: str, content: bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, suffix=suffix)
    with open(fd, "wb") as handle:
        handle.write(content)
    return Path(name)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8


def with_blob(draw, data: bytes) -> tuple[bytes, bytes]:
    """`data` with random bytes (maybe none) spliced in somewhere, and those bytes."""
    blob, at = draw(st.binary(max_size=24)), draw(st.integers(0, len(data)))
    return data[:at] + blob + data[at:], blob


# -- Lichess puzzle CSV --------------------------------------------------------------------------

uci = st.from_regex(r"[a-h][1-8][a-h][1-8][qrbn]?", fullmatch=True)
junk = st.text(max_size=12)


@st.composite
def puzzle_rows(draw) -> tuple[list[str], bool]:
    """(cells, intact): a real row, maybe corrupted where loaders break (FEN, moves, rating, columns)."""
    row = list(draw(st.sampled_from(CHESS)))
    edits = draw(st.lists(st.sampled_from(["fen", "moves", "rating", "id", "themes", "columns"]), max_size=2))
    for edit in sorted(edits, key=lambda e: e == "columns"):  # cells first, then cut or pad the row
        if edit == "fen":
            at = draw(st.integers(0, len(row[1])))
            row[1] = draw(st.one_of(junk, st.sampled_from([r[1] for r in CHESS]),
                                    junk.map(lambda s, at=at, fen=row[1]: fen[:at] + s + fen[at + 1:])))
        elif edit == "moves":
            row[2] = draw(st.one_of(junk, st.lists(uci, max_size=5).map(" ".join),
                                    uci.map(lambda m, moves=row[2]: moves.rsplit(" ", 1)[0] + " " + m)))
        elif edit == "rating":
            row[3] = draw(st.one_of(junk, st.integers().map(str), st.sampled_from(
                ["²", "--5", "٣٠٠", "9" * 5000, "1e3", " 1500 ", "-", "", "0x10"])))
        elif edit == "columns":
            row = draw(st.one_of(st.just(row[:draw(st.integers(0, 9))]), st.lists(junk, max_size=3).map(row.__add__)))
        else:
            row[0 if edit == "id" else 7] = draw(junk)
    return row, not edits


@st.composite
def puzzle_files(draw) -> tuple[bytes, str, set[str]]:
    """(bytes, kind, ids of intact rows that must load): a CSV of real, corrupted and junk lines,
    plain or zstd (whole, in several frames, or cut short)."""
    lines, intact, clean = [], set(), True
    for row, whole in draw(st.lists(puzzle_rows(), max_size=8)):
        how = draw(st.sampled_from(["csv", "csv", "naive", "junk"]))
        if how == "csv":
            out = io.StringIO()
            csv.writer(out, lineterminator="").writerow(row)
            lines.append(out.getvalue())
            intact |= {row[0]} if whole else set()
        else:
            lines.append(",".join(row) if how == "naive" else draw(junk))
            clean = False  # a stray quote can swallow the lines after it: nothing is promised then
    header = draw(st.sampled_from(["", ",".join(COLUMNS), "\ufeff" + ",".join(COLUMNS)]))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(([header] if header else []) + lines) + "\n"
    data, blob = with_blob(draw, encode(text))
    clean = clean and not blob and data == text.encode("utf-8", "replace")
    kind = draw(st.sampled_from(["plain", "zst", "zst-frames", "zst-cut", "zst-flip"]))
    packer = zstandard.ZstdCompressor()
    if kind == "zst":
        data = packer.compress(data)
    elif kind == "zst-frames":
        cut = draw(st.integers(0, len(data)))
        data = packer.compress(data[:cut]) + packer.compress(data[cut:])
    elif kind == "zst-cut":
        whole = packer.compress(data)
        data = whole[:draw(st.integers(1, len(whole) - 1))]
    elif kind == "zst-flip":  # one damaged byte: zstd may notice, or may decode garbage
        whole = bytearray(packer.compress(data))
        at = draw(st.integers(0, len(whole) - 1))
        whole[at] ^= draw(st.integers(1, 255))
        data, clean = bytes(whole), False
    return data, kind, intact if clean else set()


def replays(puzzle) -> bool:
    board = chess.Board(puzzle.fen)
    for move in map(chess.Move.from_uci, puzzle.moves):
        if move not in board.legal_moves:
            return False
        board.push(move)
    return board.is_valid()


@FUZZ
@given(case=puzzle_files())
def test_any_puzzle_file_gives_valid_puzzles_and_an_honest_report(folder, case):
    data, kind, intact = case
    path = new_file(folder, ".csv" if kind == "plain" else ".csv.zst", data)
    damaged = rf"{re.escape(str(path))}: the zstd stream is damaged .*truncated or is not zstd"
    if kind == "zst-cut":
        with pytest.raises(PuzzleFileError, match=damaged):
            load_puzzles(path, WIDE, 50, 0)
        return
    try:
        puzzles, report = load_puzzles(path, WIDE, 50, 0)
    except PuzzleFileError as err:
        if "the header has no" in str(err):  # a header whose needed name was damaged: named, nothing promised
            assert not intact and re.match(rf"{re.escape(str(path))}: the header has no [\w, ]+ columns?.*; it names ",
                                           str(err)), str(err)
            return
        assert kind == "zst-flip" and re.match(damaged, str(err)), str(err)
        return
    assert all(replays(p) for p in puzzles)
    assert intact <= {p.id for p in puzzles}, report.summary()
    assert report.sampled == len(puzzles) <= report.matched <= report.rows and report.skipped <= report.rows
    assert len(report.reasons) == min(report.skipped, 5)
    assert all(re.match(r"line \d+: \S", reason) and len(reason) < 260 for reason in report.reasons)


@FUZZ
@given(case=puzzle_files().filter(lambda case: case[1] not in ("zst-cut", "zst-flip")))
def test_a_puzzle_task_gives_gradable_examples_or_names_file_lines_and_fix(folder, case):
    data, kind, _ = case
    path = new_file(folder, ".csv" if kind == "plain" else ".csv.zst", data)
    task = ChessPuzzles(path=str(path), max_moves=20, sample_size=6)
    try:
        pool = task.pool
    except PuzzleFileError as err:
        message = str(err)
        if message.startswith(f"{path}: the header has no "):  # a damaged header names the missing column
            assert "A puzzle file needs PuzzleId, FEN, Moves, Rating" in message, message
            return
        assert message.startswith(f"only {len(load_puzzles(path, WIDE, 6, 0)[0])} usable puzzle(s) in {path}")
        assert ("line " in message and "Fix or drop those rows" in message) or "widen" in message \
            or "database.lichess.org" in message, message
        with pytest.raises(PuzzleFileError):  # asking again fails again: no half-built pool is left behind
            _ = task.pool
        return
    assert len(pool) >= 2
    rng = random.Random(0)
    for example in task.train_examples(rng, 3) + task.eval_sets(rng, 3)["fresh"]:
        assert task.grade(example, example.answer) and example.messages[0]["content"]


@pytest.mark.parametrize("rating", ["²", "--5", "9" * 5000, "١٢٠٠"])
def test_a_rating_that_int_cannot_read_is_a_skipped_row(tmp_path, rating):
    row = CHESS[0][:3] + [rating] + CHESS[0][4:]
    path = tmp_path / "p.csv"
    path.write_text("\n".join(",".join(r) for r in [row] + CHESS[1:]) + "\n")
    puzzles, report = load_puzzles(path, WIDE, 10, 0)
    assert len(puzzles) == 2 and report.skipped == 1
    assert report.reasons[0].startswith("line 1: rating '") and "is not a whole number" in report.reasons[0]


def test_a_truncated_download_stops_the_load_instead_of_sampling_part_of_the_file(tmp_path):
    text = "\n".join(",".join([f"P{i}", *CHESS[i % 3][1:]]) for i in range(4000)) + "\n"  # 3 zstd blocks
    whole = zstandard.ZstdCompressor().compress(text.encode())
    path = tmp_path / "lichess_db_puzzle.csv.zst"
    path.write_bytes(whole[: len(whole) * 4 // 5])
    with pytest.raises(PuzzleFileError, match=r"damaged after line \d+ \(the file ends inside a frame\), so the "
                       r"file is truncated.*database\.lichess\.org"):
        load_puzzles(path, WIDE, 10, 0)
    path.write_bytes(b"PuzzleId,FEN,Moves\n")  # a plain CSV named .zst
    with pytest.raises(PuzzleFileError, match="damaged at its start"):
        load_puzzles(path, WIDE, 10, 0)


def test_a_file_of_corrupt_rows_names_the_lines_and_the_fix(tmp_path):
    bad_fen = ["X1", "not a fen"] + CHESS[0][2:]
    path = tmp_path / "p.csv"
    path.write_text(",".join(COLUMNS) + "\n" + ",".join(bad_fen) + "\n" + ",".join(CHESS[0][:5]) + "\n")
    task = ChessPuzzles(path=str(path))
    with pytest.raises(PuzzleFileError) as err:
        _ = task.pool
    assert re.fullmatch(
        re.escape(f"only 0 usable puzzle(s) in {path}, need at least 2: 2 of 2 rows are malformed and were skipped "
                  "(line 2: bad FEN 'not a fen' (") + r"[^;]+" + re.escape(
            "); line 3: expected 10 columns, got 5). Fix or drop those rows, point path at the Lichess puzzle file "
            "(PuzzleId,FEN,Moves,Rating,...), or widen min_rating/max_rating, themes or min_moves/max_moves"),
        str(err.value)), str(err.value)
    path.write_text("")
    with pytest.raises(PuzzleFileError, match=r"holds no puzzle rows; expected the Lichess puzzle CSV"):
        _ = ChessPuzzles(path=str(path)).pool


@pytest.mark.skipif(not (SHARED / "lichess_puzzles_sample.csv").exists(), reason="no shared sample data here")
def test_the_real_lichess_sample_loads_without_a_skipped_row():
    puzzles, report = load_puzzles(SHARED / "lichess_puzzles_sample.csv", WIDE, 100_000, 0)
    assert report.skipped == 0 and len(puzzles) == report.rows > 1000 and all(map(replays, puzzles[:200]))


# -- RealTime QA JSONL ---------------------------------------------------------------------------

def quiz_row(i: int) -> dict:
    return {"question_id": f"q{i}", "question_date": "2024/03/22", "question_source": "CNN",
            "question_url": f"https://example.com/{i}", "question_sentence": f"Which thing {i} happened?",
            "choices": [f"alpha {i}", f"beta {i}", f"gamma {i}"], "answer": ["0"], "evidence": f"It was alpha {i}."}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from(["0", "2", " 1 ", "²", "٣", "9" * 5000, "2024-03-22", "22 March 2024", "<b>x</b>", "&amp;",
                       "<!", "<![CDATA[", "</", "<a href='", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


@st.composite
def quiz_lines(draw, i: int) -> tuple[str, bool]:
    """(line, intact): question i as JSON, maybe with fields dropped or replaced, or a line that is no row."""
    row = quiz_row(i)
    edits = draw(st.lists(st.sampled_from([*row, "drop"]), max_size=3))
    for key in edits:
        if key == "drop":
            row.pop(draw(st.sampled_from(sorted(quiz_row(0)))), None)
        else:
            row[key] = draw(json_values)
    shape = draw(st.sampled_from(["json", "json", "json", "text", "deep", "number"]))
    if shape == "json":
        return json.dumps(row, ensure_ascii=draw(st.booleans())), not edits
    if shape == "deep":
        return "[" * draw(st.integers(1, 100_000)), False
    if shape == "number":
        return "1" * draw(st.integers(1, 6000)), False
    return draw(st.text(max_size=30).filter(lambda s: s.strip() and "\n" not in s and "\r" not in s)), False


@st.composite
def quiz_files(draw) -> tuple[bytes, set[str]]:
    lines = [draw(quiz_lines(i)) for i in range(draw(st.integers(0, 8)))]
    text = draw(st.sampled_from(["\n", "\r\n"])).join(line for line, _ in lines) + draw(st.sampled_from(["", "\n"]))
    data, blob = with_blob(draw, encode(text))
    return data, set() if blob else {f"q{i}" for i, (_, intact) in enumerate(lines) if intact}


@FUZZ
@given(case=quiz_files())
def test_any_quiz_file_gives_clean_questions_and_an_honest_report(folder, case):
    data, intact = case
    path = new_file(folder, ".jsonl", data)
    questions, report = load_questions(str(path), folder)
    assert report.rows == report.loaded + report.skipped + report.outside_dates == len(questions) + report.skipped
    for q in questions:
        assert q.id and q.sentence and 0 <= q.answer_index < len(q.choices)
        assert len({choice_key(c) for c in q.choices}) == len(q.choices) >= 2 and "" not in q.choices
    assert intact <= {q.id.split("~")[0] for q in questions}, report.summary()
    assert len(report.reasons) == min(report.skipped, 5)
    assert all(re.match(rf"{re.escape(path.name)}:\d+: \S", reason) and len(reason) <= 201 for reason in report.reasons)


@FUZZ
@given(case=quiz_files())
def test_a_quiz_task_gives_gradable_examples_or_names_file_lines_and_fix(folder, case):
    path = new_file(folder, ".jsonl", case[0])
    try:
        task = RealtimeQA(path=str(path), cache_dir=str(folder), n_train=1, n_heldout=1)
    except DataUnavailable as err:
        message = str(err)
        assert f"questions are available in {path} (" in message and "lower n_train or n_heldout" in message
        if "skipped (" in message:
            assert f"{path.name}:" in message and "fix or drop the skipped rows" in message
        return
    rng = random.Random(0)
    examples = task.train_examples(rng, 2) + [e for es in task.eval_sets(rng, 2).values() for e in es]
    assert all(task.grade(e, e.answer) for e in examples)


@pytest.mark.parametrize("line, kind, words", [
    ("[" * 100_000, "bad JSON", "nested too deeply"),
    ("1" * 5000, "bad JSON", "Exceeds the limit (4300 digits)"),
    (json.dumps({**quiz_row(0), "answer": ["9" * 5000]}), "bad answer", "is not one index like ['2']"),
])
def test_rows_that_crash_json_or_int_are_skipped_rows(tmp_path, line, kind, words):
    path = tmp_path / "quiz.jsonl"
    path.write_text(line + "\n" + json.dumps(quiz_row(1)) + "\n")
    questions, report = load_questions(str(path), tmp_path)
    assert [q.id for q in questions] == ["q1"] and report.skip_counts == {kind: 1}
    assert report.reasons[0].startswith(f"quiz.jsonl:1: {kind}") and words in report.reasons[0]


def test_too_few_usable_questions_name_the_file_the_skipped_lines_and_the_fix(tmp_path):
    path = tmp_path / "quiz.jsonl"
    path.write_text(json.dumps(quiz_row(0)) + "\n{oops\n")
    with pytest.raises(DataUnavailable) as err:
        RealtimeQA(path=str(path), cache_dir=str(tmp_path), n_train=1, n_heldout=1)
    assert str(err.value) == (
        f"n_train + n_heldout = 2 but only 1 questions are available in {path} (1 questions from 2 rows in 1 "
        "file(s); 0 outside the dates, 1 skipped (bad JSON: 1); first skipped: quiz.jsonl:2: bad JSON: Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1)); fix or drop the skipped rows, lower "
        "n_train or n_heldout, or widen start_date/end_date")


def test_a_folder_named_like_a_data_file_is_named(tmp_path):
    (tmp_path / "week.jsonl").mkdir()
    with pytest.raises(DataUnavailable, match=r"cannot read .*week\.jsonl: Is a directory; set path to a readable"):
        load_questions(str(tmp_path), tmp_path)


@pytest.mark.skipif(not (SHARED / "realtimeqa_2024.jsonl").exists(), reason="no shared sample data here")
def test_the_real_quiz_files_load_with_every_skip_explained():
    questions, report = load_questions(str(SHARED), SHARED)
    assert len(questions) > 1000 and report.rows == report.loaded + report.skipped + report.outside_dates
    assert len(report.reasons) == min(report.skipped, 5)


# -- through the CLI: one line saying what to fix, exit code 2, no run folder that looks finished ---

def cli_run(capsys, out: Path, *argv: str) -> tuple[int, list[str]]:
    from transferlab.cli import main

    code = main(["run", *argv, "--quiet", "--out", str(out)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def corrupt_quiz(tmp_path: Path) -> Path:
    path = tmp_path / "realtimeqa_2024.jsonl"
    path.write_text(json.dumps(quiz_row(0)) + "\n{oops\n" + json.dumps({**quiz_row(2), "answer": ["7"]}) + "\n")
    return path


def test_run_on_a_corrupt_quiz_file_stops_before_any_work_naming_file_line_and_fix(tmp_path, capsys):
    code, lines = cli_run(capsys, tmp_path / "run", "facts_vs_table_lookup",
                          "--set", f"tasks.realtime_qa.path={corrupt_quiz(tmp_path)}")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: config error in [tasks.realtime_qa]: n_train + n_heldout = 200 but only 1")
    assert "realtimeqa_2024.jsonl:2: bad JSON" in lines[0] and "fix or drop the skipped rows" in lines[0]
    assert not (tmp_path / "run").exists()


def test_run_on_a_missing_puzzle_file_stops_before_any_work(tmp_path, capsys):
    code, lines = cli_run(capsys, tmp_path / "run", "chess_vs_table_lookup",
                          "--set", f"tasks.chess.path={tmp_path / 'nope.csv.zst'}")
    assert code == 2 and len(lines) == 1 and "puzzle file not found" in lines[0] and "database.lichess.org" in lines[0]
    assert not (tmp_path / "run").exists()


def test_run_on_a_corrupt_puzzle_file_prints_one_error_line_and_leaves_no_finished_folder(tmp_path, capsys):
    bad = tmp_path / "lichess_db_puzzle.csv"
    bad.write_text(",".join(COLUMNS) + "\n" + ",".join(["X1", "not a fen", *CHESS[0][2:]]) + "\n")
    code, lines = cli_run(capsys, tmp_path / "run", "chess_vs_table_lookup", "--set", f"tasks.chess.path={bad}")
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], lines
    assert f"only 0 usable puzzle(s) in {bad}" in errors[0] and "line 2: bad FEN" in errors[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()
