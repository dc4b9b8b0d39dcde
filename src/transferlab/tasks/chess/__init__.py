"""Chess puzzles, piece by piece: the puzzle record, the Lichess loader, the offline generator, the
grader and the reasoning steps. `transferlab.tasks.chess_puzzles` puts them together as a task."""
