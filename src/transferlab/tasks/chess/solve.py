"""Forced mates: exact python-chess search, or Stockfish where it is installed.

Mate in one is always found by python-chess (every checking move, played and tested). For mate in
two the exact search tries every first move against every reply; Stockfish, where installed, first
screens out positions without one, and the exact search still proves the key unique. On the
generator's small endgames the exact search alone is about twice as fast (Stockfish's round trip
costs more than the search it saves), and it gives the same puzzles on every machine, so it is the
task's default; "auto" picks Stockfish where it is installed.
"""

from __future__ import annotations

import os
import shutil

import chess
import chess.engine

STOCKFISH_PATHS = ("/usr/games/stockfish", "/usr/bin/stockfish", "/usr/local/bin/stockfish")


def may_check(board: chess.Board, move: chess.Move, king: int) -> bool:
    """A cheap necessary condition for `move` giving check to the king on `king`: the piece lands on
    a square that attacks it (blockers ignored), or leaves a line through it (a discovery). Castling,
    promotion and en passant always pass; the exact test is left to the caller."""
    if move.promotion or board.is_castling(move) or board.is_en_passant(move):
        return True
    if chess.BB_RAYS[king][move.from_square]:
        return True
    piece = board.piece_type_at(move.from_square)
    to = move.to_square
    if piece == chess.KNIGHT:
        return bool(chess.BB_KNIGHT_ATTACKS[to] & chess.BB_SQUARES[king])
    if piece == chess.PAWN:
        return bool(chess.BB_PAWN_ATTACKS[board.turn][to] & chess.BB_SQUARES[king])
    if piece == chess.KING or not chess.BB_RAYS[to][king]:
        return False
    straight = chess.square_file(to) == chess.square_file(king) or chess.square_rank(to) == chess.square_rank(king)
    return piece == chess.QUEEN or (piece == chess.ROOK) == straight


def mating_moves(board: chess.Board, limit: int | None = None) -> list[chess.Move]:
    """Moves that checkmate at once (the first `limit` found, if given)."""
    found = []
    king = board.king(not board.turn)
    for move in board.legal_moves:
        if may_check(board, move, king):
            board.push(move)
            mate = board.is_checkmate()
            board.pop()
            if mate:
                found.append(move)
                if limit is not None and len(found) >= limit:
                    break
    return found


def forces_mate_in_two(board: chess.Board, move: chess.Move) -> bool:
    """After `move`, every reply allows a mate in one (a move that ends the game is no key)."""
    board.push(move)
    try:
        replies = list(board.legal_moves)
        if not replies:
            return False
        for reply in replies:
            board.push(reply)
            answered = bool(mating_moves(board, 1))
            board.pop()
            if not answered:
                return False
        return True
    finally:
        board.pop()


class Search:
    """Exact search: every first move against every reply."""

    name = "search"

    def mate_in_two_keys(self, board: chess.Board, limit: int = 2) -> list[chess.Move]:
        """First moves that force mate in exactly two (none where a mate in one exists)."""
        if mating_moves(board, 1):
            return []
        keys = []
        for move in list(board.legal_moves):
            if forces_mate_in_two(board, move):
                keys.append(move)
                if len(keys) >= limit:
                    break
        return keys

    def close(self) -> None:
        pass


class Stockfish:
    """Stockfish screens positions for a mate in two (one thread, fixed depth, a new game each time:
    repeatable); the exact search then proves the key unique, since Stockfish's second-best line is
    no proof that a second key does not exist."""

    name = "stockfish"

    def __init__(self, path: str, depth: int = 4):
        self.engine = chess.engine.SimpleEngine.popen_uci(path)
        self.engine.configure({"Threads": 1, "Hash": 16})
        self.depth = depth

    def mate_in_two_keys(self, board: chess.Board, limit: int = 2) -> list[chess.Move]:
        info = self.engine.analyse(board, chess.engine.Limit(depth=self.depth), game=object())
        if info["score"].relative.mate() != 2:
            return []
        return Search().mate_in_two_keys(board, limit)

    def close(self) -> None:
        self.engine.quit()


def find_stockfish() -> str | None:
    """Stockfish on PATH, or where Debian puts it (/usr/games is not on PATH everywhere)."""
    return shutil.which("stockfish") or next((p for p in STOCKFISH_PATHS if os.access(p, os.X_OK)), None)


def open_solver(engine: str) -> Search | Stockfish:
    """`engine` is "auto" (Stockfish if installed, else search), "stockfish" or "search"."""
    path = find_stockfish() if engine in ("auto", "stockfish") else None
    if engine == "stockfish" and path is None:
        raise ValueError("engine='stockfish' but no stockfish was found on PATH or in /usr/games; "
                         "install it (apt-get install stockfish) or set engine='auto' or 'search'")
    return Stockfish(path) if path else Search()
