import random
from pathlib import Path

import chess
import pytest
import zstandard
from pydantic import TypeAdapter

from transferlab.propensities import PROPENSITIES
from transferlab.tasks import TASKS
from transferlab.tasks.chess.grading import grade_line
from transferlab.tasks.chess.lichess import COLUMNS, PuzzleFileError, load_puzzles
from transferlab.tasks.chess.puzzle import Puzzle, PuzzleFilter
from transferlab.tasks.chess.solve import find_stockfish
from transferlab.tasks.chess_puzzles import ChessPuzzles, guess_chance, render_line

SAMPLE = Path(__file__).parents[2] / "shared" / "data" / "lichess_puzzles_sample.csv"

# Real Lichess rows (mate in 1, mate in 2, a fork, a 3-move line) and a made-up one with two mates.
MATE_IN_1 = ["CJi0b", "6k1/p1p2ppp/1pqp2r1/3Q4/8/1P6/P1P2PPP/4RK2 b - - 8 22", "c6d5 e1e8", "400", "116", "81",
             "1125", "backRankMate endgame mate mateIn1 oneMove", "https://lichess.org/zhWsNjI8/black#44", ""]
MATE_IN_2 = ["3IQ26", "4r1k1/2Q2ppp/2p2n2/3p4/N7/4r3/P5PP/2q2R1K w - - 0 25", "f1c1 e3e1 c1e1 e8e1", "400", "103",
             "68", "178", "backRankMate endgame mate mateIn2 short", "https://lichess.org/IcPcaawQ#49", ""]
FORK = ["OXs05", "r2q1r2/pp3Bkp/2np4/2p1pp2/5N2/2PP3P/PP1Q1PP1/R4RK1 b - - 0 19", "f8f7 f4e6 g7h8 e6d8", "1409",
        "91", "22", "50", "crushing fork middlegame short", "https://lichess.org/JDl3YHT6/black#38", ""]
LONG = ["iN6pd", "2kr3r/ppp2pp1/1b4q1/3n4/2N1N3/1Q3PPp/PP5P/3R1R1K b - - 4 20", "h8e8 d1d5 d8d5 c4b6 g6b6 b3d5",
        "2001", "76", "95", "107", "advantage attraction discoveredAttack long middlegame queensideAttack",
        "https://lichess.org/c40GXkQI/black#40", ""]
TWO_MATES = ["TWO01", "7k/2p3pp/8/8/8/8/8/3RR1K1 b - - 0 1", "c7c6 d1d8", "900", "80", "90", "100",
             "backRankMate mate mateIn1 oneMove", "", ""]
GOOD = [MATE_IN_1, MATE_IN_2, FORK, LONG, TWO_MATES]


def write_csv(path: Path, rows: list[list[str]], header: bool = True) -> Path:
    lines = ([",".join(COLUMNS)] if header else []) + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def puzzle(row: list[str]) -> Puzzle:
    return Puzzle(row[0], row[1], tuple(row[2].split()), int(row[3]), tuple(row[7].split()), "lichess")


def wide() -> PuzzleFilter:
    return PuzzleFilter(0, 4000, (), 1, 20)


# -- loading -------------------------------------------------------------------------------------

def test_loader_reads_every_well_formed_row(tmp_path):
    puzzles, report = load_puzzles(write_csv(tmp_path / "p.csv", GOOD), wide(), 100, 0)
    assert sorted(p.id for p in puzzles) == sorted(r[0] for r in GOOD)
    assert (report.rows, report.matched, report.sampled, report.skipped) == (5, 5, 5, 0)
    mate2 = next(p for p in puzzles if p.id == "3IQ26")
    assert mate2.opponent_move == "f1c1" and mate2.solution == ("e3e1", "c1e1", "e8e1")
    assert mate2.solver_moves == 2 and mate2.rating == 400 and "mateIn2" in mate2.themes
    assert mate2.position().turn == chess.BLACK and mate2.ends_in_mate()


def test_a_file_without_header_reads_the_same(tmp_path):
    puzzles, _ = load_puzzles(write_csv(tmp_path / "p.csv", GOOD, header=False), wide(), 100, 0)
    assert len(puzzles) == len(GOOD)


# The layouts Lichess exports have come in: (header, the cells of a row in COLUMNS order -> the file's row).
LAYOUTS = {
    "11 columns, SortKey": (COLUMNS + ("SortKey",), lambda r: r + ["00001"]),
    "11 columns, DailyDate first": (("DailyDate",) + COLUMNS, lambda r: ["2024-01-05"] + r),
    "9 columns, no OpeningTags": (COLUMNS[:9], lambda r: r[:9]),
    "reduced, reordered": (("Moves", "Themes", "Rating", "FEN", "PuzzleId"), lambda r: [r[2], r[7], r[3], r[1], r[0]]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_columns_are_read_by_the_header_in_any_layout(tmp_path, layout):
    header, shape = LAYOUTS[layout]
    path = tmp_path / "p.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(shape(list(r))) for r in GOOD]) + "\n")
    puzzles, report = load_puzzles(path, PuzzleFilter(0, 4000, ("mateIn2", "fork"), 1, 20), 100, 0)
    assert report.skipped == 0, report.summary()
    assert sorted(puzzles, key=lambda p: p.id) == sorted(
        (puzzle(r) for r in (MATE_IN_2, FORK)), key=lambda p: p.id)


def test_a_header_without_a_needed_column_names_it_and_what_is_there(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("PuzzleId,FEN,Rating,Themes\n" + ",".join(MATE_IN_1[i] for i in (0, 1, 3, 7)) + "\n")
    with pytest.raises(PuzzleFileError, match=r"p\.csv: the header has no Moves column; it names "
                                              r"PuzzleId,FEN,Rating,Themes\. A puzzle file needs PuzzleId, FEN"):
        load_puzzles(path, wide(), 10, 0)
    path.write_text("PuzzleId,FEN,Moves,Rating\n" + ",".join(MATE_IN_1[:4]) + "\n")  # no Themes: fine unless filtered
    assert [p.id for p in load_puzzles(path, wide(), 10, 0)[0]] == ["CJi0b"]
    with pytest.raises(PuzzleFileError, match="no Themes column .themes is set"):
        load_puzzles(path, PuzzleFilter(0, 4000, ("fork",), 1, 20), 10, 0)


def test_a_file_without_header_keeps_the_positional_rule_with_or_without_opening_tags(tmp_path):
    rows = [r[:9] for r in GOOD[:2]] + GOOD[2:] + [MATE_IN_1[:8]]
    puzzles, report = load_puzzles(write_csv(tmp_path / "p.csv", rows, header=False), wide(), 100, 0)
    assert len(puzzles) == len(GOOD) and report.skipped == 1
    assert report.reasons == ["line 6: expected 10 columns (or 9, without OpeningTags), got 8"]


def test_skips_are_counted_per_kind_and_every_skipped_line_is_kept(tmp_path):
    bad = [["BADFEN", "not a fen"] + MATE_IN_1[2:]] * 3 + [MATE_IN_1[:5]] * 7 + [
        ["NORATING", MATE_IN_1[1], MATE_IN_1[2], "high"] + MATE_IN_1[4:]]
    path = write_csv(tmp_path / "p.csv", bad + [MATE_IN_1, MATE_IN_2])
    _, report = load_puzzles(path, wide(), 100, 0)
    assert report.skip_counts == {"bad FEN": 3, "wrong column count": 7, "bad rating": 1}
    assert "11 skipped (wrong column count: 7, bad FEN: 3, bad rating: 1); first skipped: line 2:" in report.summary()
    rows = report.skipped_rows()
    assert [r["line"] for r in rows] == list(range(2, 13)) and len(report.reasons) == 5
    assert rows[-1] == {"file": str(path), "line": 12, "kind": "bad rating",
                        "reason": "rating 'high' is not a whole number"}


def test_filters_on_rating_themes_and_line_length(tmp_path):
    path = write_csv(tmp_path / "p.csv", GOOD)

    def ids(keep):
        return sorted(p.id for p in load_puzzles(path, keep, 100, 0)[0])

    assert ids(PuzzleFilter(1000, 4000, (), 1, 20)) == ["OXs05", "iN6pd"]
    assert ids(PuzzleFilter(0, 4000, ("fork", "mateIn2"), 1, 20)) == ["3IQ26", "OXs05"]
    assert ids(PuzzleFilter(0, 4000, (), 1, 1)) == ["CJi0b", "TWO01"]
    assert ids(PuzzleFilter(0, 4000, (), 3, 3)) == ["iN6pd"]


def test_seeded_sample_is_repeatable_and_a_subset(tmp_path):
    rows = [[f"P{i:03d}"] + MATE_IN_1[1:] for i in range(60)]
    path = write_csv(tmp_path / "p.csv", rows)
    first, report = load_puzzles(path, wide(), 10, seed=1)
    again, _ = load_puzzles(path, wide(), 10, seed=1)
    other, _ = load_puzzles(path, wide(), 10, seed=2)
    assert first == again and len(first) == 10 and report.sampled == 10 and report.matched == 60
    assert {p.id for p in first} != {p.id for p in other}
    assert len({p.id for p in first}) == 10


def test_malformed_rows_are_skipped_counted_and_explained(tmp_path):
    bad = [
        ["BADFEN", "not a fen"] + MATE_IN_1[2:],
        ["ILLEGAL", MATE_IN_1[1], "c6d5 a1a8"] + MATE_IN_1[3:],  # no white piece on a1
        MATE_IN_1[:5],
        ["NORATING", MATE_IN_1[1], MATE_IN_1[2], "high"] + MATE_IN_1[4:],
        ["NOTUCI", MATE_IN_1[1], "c6d5 Re8#"] + MATE_IN_1[3:],
        ["NULLMOVE", MATE_IN_1[1], "a1a1 a1a1"] + MATE_IN_1[3:],  # UCI in form, from = to: no move
    ]
    path = write_csv(tmp_path / "p.csv", [MATE_IN_1] + bad + [MATE_IN_2])
    puzzles, report = load_puzzles(path, wide(), 100, 0)
    assert [p.id for p in puzzles] == ["CJi0b", "3IQ26"]
    assert report.skipped == 6 and report.rows == 8 and report.matched == 2
    reasons = " | ".join(report.reasons)
    for words in ("bad FEN", "(a1a8) is illegal", "expected 10 columns, got 5", "rating 'high'", "'Re8#' is not UCI"):
        assert words in reasons
    assert (8, "move not UCI", "move 1 ('a1a1') is not a UCI move") in report.skipped_lines  # past the kept five
    assert reasons.startswith("line 3:")
    assert "6 skipped" in report.summary()


def test_only_the_first_few_reasons_are_kept(tmp_path):
    path = write_csv(tmp_path / "p.csv", [MATE_IN_1[:3]] * 12 + [MATE_IN_1])
    puzzles, report = load_puzzles(path, wide(), 100, 0)
    assert len(puzzles) == 1 and report.skipped == 12 and len(report.reasons) == 5


def test_zst_file_reads_like_the_plain_one(tmp_path):
    plain = write_csv(tmp_path / "p.csv", GOOD)
    packed = tmp_path / "p.csv.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    assert load_puzzles(packed, wide(), 100, 3)[0] == load_puzzles(plain, wide(), 100, 3)[0]


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nope.csv.zst"
    with pytest.raises(ValueError, match=r"path: puzzle file not found: .*nope\.csv\.zst.*database\.lichess\.org"):
        ChessPuzzles(path=str(missing))
    with pytest.raises(FileNotFoundError, match="leave path unset"):
        load_puzzles(missing, wide(), 10, 0)


# -- grading -------------------------------------------------------------------------------------

def grade(row: list[str], response: str) -> bool:
    p = puzzle(row)
    return grade_line(p.position(), p.solution, response)


@pytest.mark.parametrize("response", [
    "e1e8", "Re8#", "Re8", "Re8+", "**Re8#**", "**e1e8**", "Answer: e1e8", "I think it is Re8#, but I am not certain.",
    "It is definitely e1e8.", "Step by step: the rook on e1 attacks e8. Re8 is mate. Answer: Re8#",
])
def test_mate_in_one_accepts_uci_san_and_any_decoration(response):
    assert grade(MATE_IN_1, response)


@pytest.mark.parametrize("response", ["e1e2", "Re2", "Qd8", "d1d8", "e1e9", "", "no idea", "Re8# Kf8"])
def test_wrong_or_illegal_or_missing_moves_are_wrong(response):
    assert not grade(MATE_IN_1, response)


@pytest.mark.parametrize("response", [
    "e3e1 c1e1 e8e1", "Re1+ Rxe1 Rxe1#", "e3e1 Rxe1 Rxe1#", "**Re1+ Rxe1 Rxe1#**", "Answer: 1... Re1+ 2. Rxe1 Rxe1#",
    "e3e1 e8e1", "Re1+ Rxe1#",
])
def test_multi_move_line_in_any_notation_with_or_without_replies(response):
    assert grade(MATE_IN_2, response)


@pytest.mark.parametrize("response", [
    "e3e1", "e3e1 c1e1", "e3e1 c1e1 e8e2", "e8e1 c1e1 e3e1", "Re1+ Kg1 Rxe1#", "e3e1 c1e1 e8e1 h1g1", "Rxe1",
])
def test_incomplete_wrong_or_illegal_lines_are_wrong(response):
    assert not grade(MATE_IN_2, response)


def test_any_mating_move_counts_where_the_puzzle_ends_in_mate():
    assert grade(TWO_MATES, "d1d8") and grade(TWO_MATES, "e1e8") and grade(TWO_MATES, "**Re8#**")
    assert not grade(TWO_MATES, "d1d7")


def test_non_mate_line_must_match_exactly():
    assert grade(FORK, "f4e6 e6d8") and grade(FORK, "Ne6+ Kh8 Nxd8")
    assert not grade(FORK, "f4e6 g7h6 e6d8") and not grade(FORK, "Nxd8")


# -- the task ------------------------------------------------------------------------------------

def file_task(tmp_path, **knobs) -> ChessPuzzles:
    rows = GOOD + [[f"M{i:02d}"] + MATE_IN_1[1:] for i in range(20)]
    return ChessPuzzles(path=str(write_csv(tmp_path / "p.csv", rows)), max_moves=3, **knobs)


def test_registered_and_validated_from_toml_values():
    task = TypeAdapter(TASKS["chess"]).validate_python({"themes": ["mate", "fork"], "notation": "san"})
    assert isinstance(task, ChessPuzzles) and task.themes == ("mate", "fork") and task.name == "chess"


@pytest.mark.parametrize("knobs, words", [
    ({"notation": "pgn"}, "notation must be"), ({"min_rating": 2000, "max_rating": 1000}, "min_rating..max_rating"),
    ({"min_moves": 0}, "min_moves..max_moves"), ({"sample_size": 1}, "sample_size"), ({"engine": "lc0"}, "engine"),
    ({"min_moves": 3, "max_moves": 4}, "must include 1 or 2"), ({"themes": ["fork"]}, "themes"),
])
def test_invalid_knobs_name_the_knob_and_the_range(knobs, words):
    with pytest.raises(ValueError, match=words):
        ChessPuzzles(**knobs)


def test_prompt_gives_the_opponent_move_and_the_position_after_it(tmp_path):
    task = file_task(tmp_path, notation="san")
    example = task.make(puzzle(MATE_IN_2))
    text = example.messages[0]["content"]
    assert "White just played Rxc1." in text and example.meta["fen"] in text and "Answer in SAN" in text
    assert "Black's replies" not in text and "White's replies" in text
    assert example.answer == "Re1+ Rxe1 Rxe1#" and example.meta["solution"] == ("e3e1", "c1e1", "e8e1")
    assert task.grade(example, example.answer)
    uci = file_task(tmp_path).make(puzzle(MATE_IN_2))
    assert uci.answer == "e3e1 c1e1 e8e1" and "played f1c1" in uci.messages[0]["content"]


def test_steps_name_the_attacks_checks_and_the_mate():
    task = ChessPuzzles(notation="san")
    steps = task.make(puzzle(MATE_IN_2)).meta["steps"]
    assert steps == ("Black's rook on e3 attacks e1", "Re1+ is check, leaving 1 legal reply", "White must play Rxe1",
                     "Black's rook on e8 can take the rook on e1",
                     "Rxe1# is check and the king on h1 has no escape: mate")


def test_every_propensity_target_grades_as_correct(tmp_path):
    task = file_task(tmp_path)
    rng = random.Random(0)
    for example in task.eval_sets(rng, 10)["fresh"] + task.train_examples(rng, 10):
        for propensity in PROPENSITIES.values():
            assert task.grade(example, propensity().render(example, rng)), (propensity.name, example.answer)


def test_train_and_eval_never_share_a_puzzle(tmp_path):
    task = file_task(tmp_path)
    train = {e.meta["puzzle_id"] for e in task.train_examples(random.Random(1), 200)}
    fresh = {e.meta["puzzle_id"] for e in task.eval_sets(random.Random(2), 100)["fresh"]}
    assert fresh and train and not train & fresh and len(train | fresh) == len(task.pool) == 25
    assert task.report.sampled == 25 and task.source == "lichess"


def test_chance_is_the_share_of_accepted_random_moves():
    assert guess_chance(puzzle(MATE_IN_1)) == pytest.approx(1 / puzzle(MATE_IN_1).position().legal_moves.count())
    two = puzzle(TWO_MATES)
    assert guess_chance(two) == pytest.approx(2 / two.position().legal_moves.count())
    assert 0 < ChessPuzzles(sample_size=20).chance() < 0.1


# -- the offline generator -----------------------------------------------------------------------

def brute_mates(board: chess.Board) -> list[chess.Move]:
    out = []
    for move in list(board.legal_moves):
        board.push(move)
        if board.is_checkmate():
            out.append(move)
        board.pop()
    return out


def brute_forces_mate(board: chess.Board, move: chess.Move) -> bool:
    board.push(move)
    replies = list(board.legal_moves)
    ok = bool(replies)
    for reply in replies:
        board.push(reply)
        ok = ok and bool(brute_mates(board))
        board.pop()
    board.pop()
    return ok


def assert_unique_forced_mate(p: Puzzle) -> None:
    board = p.position()
    if p.solver_moves == 1:
        assert [m.uci() for m in brute_mates(board)] == list(p.solution), p
    else:
        assert not brute_mates(board), p
        keys = [m.uci() for m in list(board.legal_moves) if brute_forces_mate(board, m)]
        assert keys == [p.solution[0]], p
    assert p.ends_in_mate()


@pytest.fixture(scope="module")
def generated() -> ChessPuzzles:
    task = ChessPuzzles(sample_size=24, sample_seed=7)
    assert task.pool
    return task


def test_generated_puzzles_have_one_forced_mate(generated):
    assert {p.solver_moves for p in generated.pool} == {1, 2}
    for p in generated.pool:
        assert_unique_forced_mate(p)
        assert p.before().is_valid() and chess.Move.from_uci(p.opponent_move) in p.before().legal_moves
    assert generated.source == "generated:search" and generated.report is None


def test_generator_is_deterministic_per_seed(generated):
    assert ChessPuzzles(sample_size=24, sample_seed=7).pool == generated.pool
    assert ChessPuzzles(sample_size=6, sample_seed=8).pool[0] != generated.pool[0]


def test_generator_follows_the_length_and_theme_knobs():
    assert {p.solver_moves for p in ChessPuzzles(max_moves=1, sample_size=6).pool} == {1}
    assert {p.solver_moves for p in ChessPuzzles(themes=["mateIn2"], sample_size=4).pool} == {2}


def test_generated_examples_read_like_lichess_ones(generated):
    for example in generated.eval_sets(random.Random(0), 5)["fresh"]:
        text = example.messages[0]["content"]
        assert "just played" in text and example.meta["fen"] in text
        assert example.meta["steps"][-1].endswith("mate") and generated.grade(example, example.answer)


@pytest.mark.skipif(find_stockfish() is None, reason="stockfish not installed")
def test_stockfish_screened_puzzles_are_unique_too():
    task = ChessPuzzles(engine="stockfish", themes=["mateIn2"], sample_size=4, sample_seed=3)
    assert task.source == "generated:stockfish"
    for p in task.pool:
        assert_unique_forced_mate(p)


# -- the shared Lichess sample -------------------------------------------------------------------

@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"{SAMPLE} not present")
def test_every_puzzle_of_the_shared_sample_loads_and_grades():
    puzzles, report = load_puzzles(SAMPLE, wide(), 10**6, 0)
    assert report.skipped == 0, report.summary()
    assert len(puzzles) == report.rows == 4489
    for p in puzzles:
        board = p.position()
        assert grade_line(board, p.solution, " ".join(p.solution)), p
        assert grade_line(board, p.solution, render_line(board, p.solution, "san")), p
        mates = brute_mates(board)
        wrong = next(m for m in board.legal_moves if m.uci() != p.solution[0] and m not in mates)
        assert not grade_line(board, p.solution, " ".join((wrong.uci(),) + p.solution[1:])), p
