"""Reasoning steps for a puzzle's line, computed on the board: what each solver move attacks or
takes, whether it checks or mates, what it threatens, and how the opponent replies."""

from __future__ import annotations

import chess

from transferlab.tasks.chess.solve import mating_moves


def side(colour: chess.Color) -> str:
    return "White" if colour == chess.WHITE else "Black"


def name_move(board: chess.Board, move: chess.Move, notation: str) -> str:
    return board.san(move) if notation == "san" else move.uci()


def piece_on(board: chess.Board, square: int) -> str:
    return f"{chess.piece_name(board.piece_type_at(square))} on {chess.square_name(square)}"


def reach(board: chess.Board, move: chess.Move) -> str:
    """Where the moving piece goes: "Black's queen on d8 attacks h4", "... can take the rook on e1"."""
    who = f"{side(board.turn)}'s {piece_on(board, move.from_square)}"
    if board.is_en_passant(move):
        return f"{who} takes the pawn en passant on {chess.square_name(move.to_square)}"
    if board.is_capture(move):
        return f"{who} can take the {piece_on(board, move.to_square)}"
    if board.is_castling(move):
        return f"{side(board.turn)} can castle"
    if board.piece_type_at(move.from_square) == chess.PAWN:
        return f"{who} can advance to {chess.square_name(move.to_square)}"
    return f"{who} attacks {chess.square_name(move.to_square)}"


def effect(board: chess.Board, move: chess.Move, notation: str) -> str:
    """What the move does, seen after playing it on a copy: mate, check, a mate threat, or attacks."""
    named = name_move(board, move, notation)
    after = board.copy(stack=False)
    after.push(move)
    if after.is_checkmate():
        king = chess.square_name(after.king(after.turn))
        return f"{named} is check and the king on {king} has no escape: mate"
    if after.is_check():
        n = after.legal_moves.count()
        return f"{named} is check, leaving {n} legal {'reply' if n == 1 else 'replies'}"
    threat = after.copy(stack=False)
    threat.push(chess.Move.null())
    if mates := mating_moves(threat, 1):
        return f"{named} threatens {name_move(threat, mates[0], notation)} with mate"
    targets = [piece_on(after, s) for s in after.attacks(move.to_square)
               if after.color_at(s) == after.turn and after.piece_type_at(s) != chess.PAWN]
    if targets:
        return f"{named} attacks the {' and the '.join(targets)}"
    return f"{named} is the best move here"


def line_steps(board: chess.Board, solution: tuple[str, ...], notation: str) -> tuple[str, ...]:
    """One or two steps per solver move and one per reply, all true of the position they describe."""
    board = board.copy(stack=False)
    steps: list[str] = []
    for i, uci in enumerate(solution):
        move = chess.Move.from_uci(uci)
        if i % 2 == 0:
            steps += [reach(board, move), effect(board, move, notation)]
        else:
            forced = board.legal_moves.count() == 1
            steps.append(f"{side(board.turn)} {'must play' if forced else 'replies'} {name_move(board, move, notation)}")
        board.push(move)
    return tuple(steps)
