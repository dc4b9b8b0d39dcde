"""One puzzle in the Lichess layout, whether read from the puzzle CSV or generated offline.

`fen` is the position *before* the opponent's move and `moves[0]` is that move; the solver's line
is `moves[1:]`: the solver's moves with the opponent's replies in between, ending on a solver move.
"""

from __future__ import annotations

from dataclasses import dataclass

import chess


@dataclass(frozen=True)
class Puzzle:
    id: str
    fen: str                   # before the opponent's move
    moves: tuple[str, ...]     # UCI; moves[0] is the opponent's, the rest is the solution line
    rating: int | None         # None for generated puzzles
    themes: tuple[str, ...]
    source: str                # "lichess", "generated:search" or "generated:stockfish"

    @property
    def opponent_move(self) -> str:
        return self.moves[0]

    @property
    def solution(self) -> tuple[str, ...]:
        return self.moves[1:]

    @property
    def solver_moves(self) -> int:
        """How many moves the solver plays (the opponent's replies are not counted)."""
        return len(self.moves[1::2])

    def before(self) -> chess.Board:
        return chess.Board(self.fen)

    def position(self) -> chess.Board:
        """The position the solver faces: the opponent's move played."""
        board = chess.Board(self.fen)
        board.push_uci(self.opponent_move)
        return board

    def ends_in_mate(self) -> bool:
        board = self.position()
        for uci in self.solution:
            board.push_uci(uci)
        return board.is_checkmate()


@dataclass(frozen=True)
class PuzzleFilter:
    """Which puzzles a task keeps. Ratings filter only rated (file) puzzles; themes are any-of."""

    min_rating: int = 0
    max_rating: int = 4000
    themes: tuple[str, ...] = ()
    min_moves: int = 1
    max_moves: int = 2

    def keeps_rating(self, rating: int | None) -> bool:
        return rating is None or self.min_rating <= rating <= self.max_rating

    def keeps_themes(self, themes: tuple[str, ...] | list[str]) -> bool:
        return not self.themes or any(t in self.themes for t in themes)

    def keeps_length(self, solver_moves: int) -> bool:
        return self.min_moves <= solver_moves <= self.max_moves

    def keeps(self, puzzle: Puzzle) -> bool:
        return (self.keeps_rating(puzzle.rating) and self.keeps_themes(puzzle.themes)
                and self.keeps_length(puzzle.solver_moves))
