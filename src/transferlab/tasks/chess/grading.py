"""Grading an answer line against a puzzle's solution.

Markup is dropped first, so bold moves grade as plain ones. The answer is read from the final
answer (the clause after "Answer:", else the whole response): every token that looks like a move,
in UCI (`e3e1`) or SAN (`Re1+`, `Rxe1#`, `O-O`), with move numbers and annotations dropped,
notations mixed freely, in ALL CAPS too (`E3E1`, `RXE1#`: the one legal move they spell). The
line must replay legally from the puzzle position and match the solution, the opponent's replies
included; the replies may also be left out (then the solution's replies are played in between).
Lichess's rule for mates holds: a solver move that checkmates is correct wherever it differs from
the solution, so any mating move counts where the puzzle ends in mate.
"""

from __future__ import annotations

import re

import chess

from transferlab.evaluate.extract import final_answer, strip_markup

_UCI = re.compile(r"^[a-h][1-8][a-h][1-8][qrbn]?$")
_MOVE = re.compile(r"^(?:[KQRBN]?[a-h]?[1-8]?[x-]?[a-h][1-8](?:=?[QRBNqrbn])?|[a-h][1-8][a-h][1-8][qrbn]?"
                   r"|O-O(?:-O)?|0-0(?:-0)?)[+#]?$")
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*([^\n]*)", re.IGNORECASE)


def readings(token: str) -> list[str]:
    """How a token may be read: as written, and for an ALL CAPS token (`E3E1`, `RXE1#`, `E8=Q`) the
    lower-case move and the piece move (`e3e1`, `rxe1#`/`Rxe1#`, `e8=q`/`E8=Q`)."""
    if not token.isupper():
        return [token]
    low = token.lower()
    promotion = re.sub(r"=([qrbn])", lambda m: m[0].upper(), low)
    return list(dict.fromkeys([token, low, low[0].upper() + low[1:], promotion]))


def move_tokens(text: str) -> list[str]:
    """The tokens of `text` that look like moves, in order ("1... Qh4#" gives ["Qh4#"])."""
    tokens = []
    for raw in re.split(r"[\s,;]+", text):
        token = re.sub(r"^\d+\.+", "", raw.strip(".()[]{}'\"`*"))
        token = token.rstrip("!?")
        if any(_MOVE.match(reading) for reading in readings(token)):
            tokens.append(token)
    return tokens


def answer_tokens(response: str) -> list[str]:
    """Moves of the final answer; where that clause holds none (a move number cut it short, as in
    "Answer: 1... Re1+ 2. Rxe1 Rxe1#"), the moves of the rest of the answer's line."""
    response = strip_markup(response)
    tokens = move_tokens(final_answer(response))
    if not tokens and (marks := list(_ANSWER_LINE.finditer(response))):
        tokens = move_tokens(marks[-1].group(1))
    return tokens


def parse_one(board: chess.Board, token: str) -> chess.Move | None:
    """A legal move from a UCI or SAN token as written, or None (illegal, ambiguous or not a move)."""
    text = token.rstrip("+#")
    if _UCI.match(text):
        move = chess.Move.from_uci(text)
        return move if move in board.legal_moves else None
    try:
        move = board.parse_san(text)
    except ValueError:
        return None
    return move if move else None  # a null move is no answer


def parse_move(board: chess.Board, token: str) -> chess.Move | None:
    """The legal move `token` spells: as written, else the one legal move its case readings give
    (an ALL CAPS `BXC3` that is both a bishop and a pawn capture is ambiguous: None)."""
    if (move := parse_one(board, token)) is not None:
        return move
    moves = {m for reading in readings(token)[1:] if (m := parse_one(board, reading)) is not None}
    return moves.pop() if len(moves) == 1 else None


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
