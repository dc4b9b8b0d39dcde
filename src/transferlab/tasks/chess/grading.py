"""Grading an answer line against a puzzle's solution.

The answer is read from the final answer (after "Answer:", else the last bold span, else the whole
response): every token that looks like a move, in UCI (`e3e1`) or SAN (`Re1+`, `Rxe1#`, `O-O`),
with move numbers and annotations dropped, notations mixed freely. The line must replay legally
from the puzzle position and match the solution, the opponent's replies included; the replies may
also be left out (then the solution's replies are played in between). Lichess's rule for mates
holds: a solver move that checkmates is correct wherever it differs from the solution, so any
mating move counts where the puzzle ends in mate.
"""

from __future__ import annotations

import re

import chess

from transferlab.evaluate.extract import final_answer

_UCI = re.compile(r"^[a-h][1-8][a-h][1-8][qrbn]?$")
_MOVE = re.compile(r"^(?:[KQRBN]?[a-h]?[1-8]?[x-]?[a-h][1-8](?:=?[QRBNqrbn])?|[a-h][1-8][a-h][1-8][qrbn]?"
                   r"|O-O(?:-O)?|0-0(?:-0)?)[+#]?$")
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*([^\n]*)", re.IGNORECASE)


def move_tokens(text: str) -> list[str]:
    """The tokens of `text` that look like moves, in order ("1... Qh4#" gives ["Qh4#"])."""
    tokens = []
    for raw in re.split(r"[\s,;]+", text):
        token = re.sub(r"^\d+\.+", "", raw.strip(".()[]{}'\"`*"))
        token = token.rstrip("!?")
        if _MOVE.match(token):
            tokens.append(token)
    return tokens


def answer_tokens(response: str) -> list[str]:
    """Moves of the final answer; where that clause holds none (a move number cut it short, as in
    "Answer: 1... Re1+ 2. Rxe1 Rxe1#"), the moves of the rest of the answer's line."""
    tokens = move_tokens(final_answer(response))
    if not tokens and (marks := list(_ANSWER_LINE.finditer(response))):
        tokens = move_tokens(marks[-1].group(1))
    return tokens


def parse_move(board: chess.Board, token: str) -> chess.Move | None:
    """A legal move from a UCI or SAN token, or None (illegal, ambiguous or not a move)."""
    text = token.rstrip("+#")
    if _UCI.match(text):
        move = chess.Move.from_uci(text)
        return move if move in board.legal_moves else None
    try:
        move = board.parse_san(text)
    except ValueError:
        return None
    return move if move else None  # a null move is no answer


def plays_solution(board: chess.Board, solution: tuple[str, ...], tokens: list[str]) -> bool:
    """`tokens` (the full line, replies included) solve the puzzle from `board` (the solver to move)."""
    board = board.copy(stack=False)
    if not tokens or len(tokens) > len(solution):
        return False
    for i, token in enumerate(tokens):
        move = parse_move(board, token)
        if move is None:
            return False
        board.push(move)
        if board.is_checkmate():  # the solution's mate, or (on a solver move) any other mate
            return i == len(tokens) - 1 and (i % 2 == 0 or move.uci() == solution[i])
        if move.uci() != solution[i]:
            return False
    return len(tokens) == len(solution)


def with_replies(solution: tuple[str, ...], solver_tokens: list[str]) -> list[str]:
    """The solver's moves with the solution's replies put back in between."""
    line = []
    for k, token in enumerate(solver_tokens):
        if k:
            line.append(solution[2 * k - 1] if 2 * k - 1 < len(solution) else "")
        line.append(token)
    return line


def grade_line(board: chess.Board, solution: tuple[str, ...], response: str) -> bool:
    """Whether `response` solves the puzzle at `board` whose solution line is `solution` (UCI)."""
    tokens = answer_tokens(response)
    return plays_solution(board, solution, tokens) or plays_solution(
        board, solution, with_replies(solution, tokens))
