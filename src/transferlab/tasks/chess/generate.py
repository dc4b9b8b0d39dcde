"""Offline puzzles: small seeded endgames in which the opponent's move allows a unique forced mate.

A position is built with the defender (the opponent) to move: its king mostly on its back rank or
an edge, a few of its pawns or pieces, and a queen/rook/minor-piece attack for the solver. The
opponent plays one of its legal moves (the Lichess convention: `moves[0]` is the opponent's move)
and the position after it is kept if the solver then has exactly one mating move (mate in 1), or
no mate in one and exactly one first move that mates against every defence (mate in 2). For a mate
in 2 the line records the defence that leaves the fewest mating answers, and the first mate.
"""

from __future__ import annotations

import random

import chess

from transferlab.tasks.chess.puzzle import Puzzle
from transferlab.tasks.chess.solve import Search, Stockfish, mating_moves

# Material drawn for each side; repeats weight the draws toward what yields unique mates in two
# most often per second of search (queen and rook, two rooks, queen and bishop).
ATTACKS = ("QR", "QR", "QR", "RR", "RR", "QB", "QB", "QP", "QN", "Q", "RP", "RN", "RB", "BBN")
DEFENCES = ("", "P", "PP", "PPP", "N", "B", "NP", "BP", "NPP", "R", "PR")
THEMES = {1: ("endgame", "mate", "mateIn1", "oneMove"), 2: ("endgame", "mate", "mateIn2", "short")}
MAX_ATTEMPTS = 200_000


def random_position(rng: random.Random) -> chess.Board | None:
    """A sparse legal position with the defender to move, or None when the draw is illegal."""
    solver = rng.choice((chess.WHITE, chess.BLACK))
    defender = not solver
    board = chess.Board(None)
    back_rank = 0 if defender == chess.WHITE else 7
    if rng.random() < 0.7:
        king = chess.square(rng.randrange(8), back_rank)
    else:
        king = rng.choice([s for s in chess.SQUARES if chess.square_file(s) in (0, 7)
                           or chess.square_rank(s) in (0, 7)])
    board.set_piece_at(king, chess.Piece(chess.KING, defender))
    shield_rank = chess.square_rank(king) + (1 if defender == chess.WHITE else -1)
    shield = [chess.square(f, shield_rank) for f in range(8)
              if abs(f - chess.square_file(king)) <= 1 and 1 <= shield_rank <= 6]
    empty = [s for s in chess.SQUARES if s != king]
    rng.shuffle(empty)
    for symbol in "K" + rng.choice(ATTACKS):
        place(board, empty, chess.Piece.from_symbol(symbol), solver)
    for symbol in rng.choice(DEFENCES):
        piece = chess.Piece.from_symbol(symbol)
        free_shield = [s for s in shield if board.piece_at(s) is None]
        if symbol == "P" and free_shield and rng.random() < 0.8:
            square = rng.choice(free_shield)
            board.set_piece_at(square, chess.Piece(chess.PAWN, defender))
            empty.remove(square)
        else:
            place(board, empty, piece, defender)
    board.turn = defender
    return board if board.is_valid() else None


def place(board: chess.Board, empty: list[int], piece: chess.Piece, colour: chess.Color) -> None:
    """Put `piece` of `colour` on the next empty square it may stand on (pawns avoid the end ranks)."""
    for i, square in enumerate(empty):
        if piece.piece_type != chess.PAWN or 1 <= chess.square_rank(square) <= 6:
            board.set_piece_at(empty.pop(i), chess.Piece(piece.piece_type, colour))
            return


def solve(board: chess.Board, depth: int, solver: Search | Stockfish) -> tuple[str, ...] | None:
    """The solution line (UCI) if the solver to move has a unique mate in `depth` (1 or 2), else None."""
    if depth == 1:
        mates = mating_moves(board, 2)
        return (mates[0].uci(),) if len(mates) == 1 else None
    keys = solver.mate_in_two_keys(board, 2)
    if len(keys) != 1:
        return None
    board = board.copy(stack=False)
    board.push(keys[0])
    answers = {}
    for reply in sorted(board.legal_moves, key=chess.Move.uci):
        board.push(reply)
        answers[reply] = sorted(mating_moves(board), key=chess.Move.uci)
        board.pop()
    reply = min(answers, key=lambda r: len(answers[r]))  # first among equals: sorted above
    return keys[0].uci(), reply.uci(), answers[reply][0].uci()


def generate_puzzles(n: int, seed: int, depths: tuple[int, ...], solver: Search | Stockfish) -> list[Puzzle]:
    """`n` distinct puzzles, mate-in-`depth` kinds in turn, the same for the same seed and solver."""
    rng = random.Random(f"chess-generate-{seed}")
    puzzles: list[Puzzle] = []
    seen: set[str] = set()
    for _ in range(MAX_ATTEMPTS):
        if len(puzzles) == n:
            return puzzles
        depth = depths[len(puzzles) % len(depths)]
        before = random_position(rng)
        if before is None:
            continue
        replies = list(before.legal_moves)
        for opponent in rng.sample(replies, min(3, len(replies))):
            board = before.copy(stack=False)
            board.push(opponent)
            key = board.board_fen() + (" w" if board.turn else " b")
            if key in seen or not any(board.legal_moves):
                continue
            line = solve(board, depth, solver)
            if line:
                seen.add(key)
                puzzles.append(Puzzle(id=f"gen{seed}-{len(puzzles):04d}", fen=before.fen(),
                                      moves=(opponent.uci(),) + line, rating=None, themes=THEMES[depth],
                                      source=f"generated:{solver.name}"))
                break
    raise RuntimeError(f"generated only {len(puzzles)} of {n} puzzles in {MAX_ATTEMPTS} attempts")
