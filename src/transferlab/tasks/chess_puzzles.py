"""Chess puzzles: find the winning line after the opponent's move.

Puzzles come from the Lichess puzzle CSV (`path`, plain or .zst, streamed and sampled) or, with no
file, from an offline generator of unique mate-in-1 and mate-in-2 endgames. As on Lichess, the
opponent's move comes first: the prompt names it and shows the position after it (FEN). The answer
is the rest of the line in the chosen notation, the opponent's replies included, space-separated:
"e3e1 c1e1 e8e1" (UCI) or "Re1+ Rxe1 Rxe1#" (SAN). Grading accepts either notation, the line
without the replies, and any mating move (see `tasks/chess/grading.py`).

Train and eval never share a puzzle: the sampled pool is split once, seeded by `sample_seed`, and
the eval set "fresh" is drawn from the held-out fifth.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import chess

from transferlab.core import Example
from transferlab.tasks.candidates import names_a_move
from transferlab.tasks.chess.explain import line_steps, name_move, side
from transferlab.tasks.chess.generate import THEMES, generate_puzzles
from transferlab.tasks.chess.grading import grade_line
from transferlab.tasks.chess.lichess import DOWNLOAD_HINT, LoadReport, load_puzzles
from transferlab.tasks.chess.puzzle import Puzzle, PuzzleFilter
from transferlab.tasks.chess.solve import find_stockfish, mating_moves, open_solver

log = logging.getLogger(__name__)
HELD_OUT_SHARE = 0.2
NOTATIONS = {"uci": "UCI (like g1f3)", "san": "SAN (like Nf3)"}


def render_line(board: chess.Board, line: tuple[str, ...], notation: str) -> str:
    """The UCI `line` from `board`, space-separated, in `notation`."""
    board = board.copy(stack=False)
    names = []
    for uci in line:
        move = chess.Move.from_uci(uci)
        names.append(name_move(board, move, notation))
        board.push(move)
    return " ".join(names)


def prompt(puzzle: Puzzle, notation: str) -> str:
    before, board = puzzle.before(), puzzle.position()
    me, them = side(board.turn), side(not board.turn)
    played = name_move(before, chess.Move.from_uci(puzzle.opponent_move), notation)
    ask = (f"Find the best move for {me}." if puzzle.solver_moves == 1 else
           f"Find the best line for {me}: your moves and {them}'s replies, separated by spaces.")
    return (f"Chess puzzle. {them} just played {played}. Position now (FEN): {board.fen()}\n"
            f"{ask} Answer in {NOTATIONS[notation]}.")


def guess_chance(puzzle: Puzzle) -> float:
    """Chance that a solver who plays uniformly random legal moves (the replies supplied) is graded
    correct: the solution move at each turn, or any other mating move, which ends the line."""
    board = puzzle.position()
    chance, alive = 0.0, 1.0
    for i, uci in enumerate(puzzle.solution):
        move = chess.Move.from_uci(uci)
        if i % 2 == 0:
            legal = board.legal_moves.count()
            chance += alive * sum(m != move for m in mating_moves(board)) / legal
            alive /= legal
        board.push(move)
    return chance + alive


@dataclass
class ChessPuzzles:
    """Knobs: puzzle file (None: generated), answer notation, filters, sample size and seed, engine."""

    path: str | None = None        # Lichess puzzle CSV, plain or .csv.zst; None: generate puzzles offline
    notation: str = "uci"          # "uci" | "san": what the prompt asks for and the target uses
    min_rating: int = 0            # rating filters apply to file puzzles (generated ones are unrated)
    max_rating: int = 4000
    themes: tuple[str, ...] = ()   # keep puzzles with any of these Lichess themes; empty: all
    min_moves: int = 1             # moves the solver must play (the opponent's replies not counted)
    max_moves: int = 2
    sample_size: int = 500         # puzzles in the pool (train + held-out eval)
    sample_seed: int = 0           # the sample, the generator and the train/eval split
    engine: str = "search"         # generator's mate-in-2 screen: "search" | "stockfish" | "auto" (see solve.py)
    name: str = "chess"
    report: LoadReport | None = field(default=None, init=False, repr=False, compare=False)
    _pool: list[Puzzle] | None = field(default=None, init=False, repr=False, compare=False)
    _examples: dict[str, Example] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.themes = tuple(self.themes)
        if self.notation not in NOTATIONS:
            raise ValueError(f"notation must be 'uci' or 'san', got {self.notation!r}")
        if not 0 <= self.min_rating <= self.max_rating <= 4000:
            raise ValueError(f"min_rating..max_rating must lie in 0..4000, got {self.min_rating}..{self.max_rating}")
        if not 1 <= self.min_moves <= self.max_moves <= 20:
            raise ValueError(f"min_moves..max_moves must lie in 1..20, got {self.min_moves}..{self.max_moves}")
        if not 2 <= self.sample_size <= 1_000_000:
            raise ValueError(f"sample_size must be in 2..1000000, got {self.sample_size}")
        if self.engine not in ("auto", "stockfish", "search"):
            raise ValueError(f"engine must be 'auto', 'stockfish' or 'search', got {self.engine!r}")
        if self.engine == "stockfish" and find_stockfish() is None:
            raise ValueError("engine='stockfish' but stockfish is neither on PATH nor in /usr/games; install it "
                             "(apt-get install stockfish) or set engine='search'")
        if self.path is not None and not Path(self.path).is_file():
            raise ValueError(f"path: puzzle file not found: {self.path}; {DOWNLOAD_HINT}")
        if self.path is None and not self.generated_depths():
            raise ValueError("with path unset, puzzles are generated as mate in 1 and mate in 2: min_moves..max_moves "
                             f"must include 1 or 2 (got {self.min_moves}..{self.max_moves}) and themes, if set, "
                             f"must name one of {sorted(set(THEMES[1] + THEMES[2]))}")

    def filter(self) -> PuzzleFilter:
        return PuzzleFilter(self.min_rating, self.max_rating, self.themes, self.min_moves, self.max_moves)

    def generated_depths(self) -> tuple[int, ...]:
        keep = self.filter()
        return tuple(d for d in (1, 2) if keep.keeps_length(d) and keep.keeps_themes(THEMES[d]))

    # -- the pool, built on first use --------------------------------------------------------
    @property
    def pool(self) -> list[Puzzle]:
        if self._pool is None:
            if self.path is None:
                solver = open_solver(self.engine)
                try:
                    pool = generate_puzzles(self.sample_size, self.sample_seed, self.generated_depths(), solver)
                finally:
                    solver.close()
            else:
                pool, self.report = load_puzzles(self.path, self.filter(), self.sample_size, self.sample_seed)
                (log.warning if self.report.skipped else log.info)(self.report.summary())
                if len(pool) < 2:  # one to train on and one held out
                    raise self.report.shortfall(len(pool), 2)
            self._pool = pool  # only once it is big enough: asking again must fail again, not train on nothing
        return self._pool

    @property
    def source(self) -> str:
        """Where the puzzles came from: "lichess", "generated:search" or "generated:stockfish"."""
        return self.pool[0].source

    def split(self) -> tuple[list[Puzzle], list[Puzzle]]:
        """(train, held-out): a seeded split of the pool, the held-out fifth never trained on."""
        order = list(self.pool)
        random.Random(f"chess-split-{self.sample_seed}").shuffle(order)
        n_held = max(1, round(len(order) * HELD_OUT_SHARE))
        return order[n_held:], order[:n_held]

    # -- examples ---------------------------------------------------------------------------
    def make(self, puzzle: Puzzle) -> Example:
        """The puzzle as an example (made once: training cycles over the same puzzles)."""
        if puzzle.id in self._examples:
            return self._examples[puzzle.id]
        board = puzzle.position()
        example = self._examples[puzzle.id] = Example(
            id=f"{self.name}-{puzzle.id}",
            messages=({"role": "user", "content": prompt(puzzle, self.notation)},),
            answer=render_line(board, puzzle.solution, self.notation),
            meta={"puzzle_id": puzzle.id, "fen": board.fen(), "fen_before": puzzle.fen,
                  "opponent_move": puzzle.opponent_move, "solution": puzzle.solution,
                  "solver_moves": puzzle.solver_moves, "rating": puzzle.rating, "themes": puzzle.themes,
                  "source": puzzle.source, "steps": line_steps(board, puzzle.solution, self.notation)},
        )
        return example

    def train_examples(self, rng: random.Random, n: int) -> list[Example]:
        """Cycles over the training puzzles in shuffled epochs, so each is seen equally often."""
        train, _ = self.split()
        out: list[Example] = []
        while len(out) < n:
            out += [self.make(p) for p in rng.sample(train, len(train))]
        return out[:n]

    def eval_sets(self, rng: random.Random, n: int) -> dict[str, list[Example]]:
        _, held_out = self.split()
        return {"fresh": [self.make(p) for p in rng.sample(held_out, min(n, len(held_out)))]}

    def grade(self, example: Example, response: str) -> bool:
        return grade_line(chess.Board(example.meta["fen"]), example.meta["solution"], response)

    def is_candidate(self, response: str) -> bool:
        """The answer holds a chess move (right, wrong or illegal)."""
        return names_a_move(response)

    def chance(self) -> float:
        """Mean over the held-out puzzles of `guess_chance`: for a one-move puzzle, the share of legal
        moves that are accepted (the solution and any other mate)."""
        _, held_out = self.split()
        return sum(map(guess_chance, held_out)) / len(held_out)
