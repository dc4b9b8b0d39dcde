"""The `transferlab` command: run an experiment, build the organism."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def error(err: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True, highlight=False, markup=True)


def cmd_run(args: argparse.Namespace) -> int:
    from transferlab.backends import ModelNotFound, distributed
    from transferlab.config import ConfigError, load_config
    from transferlab.experiments import config_kind
    from transferlab.experiments.cli import cmd_run_kind
    from transferlab.llm.client import LLMConfigError, LLMError
    from transferlab.results.run_folder import ConfigMismatch
    from transferlab.tasks.chess.lichess import PuzzleFileError
    from transferlab.train.loop import run_experiment

    try:
        if config_kind(args.config):  # goal_guarding, inoculation, persona (docs/goal-guarding-and-inoculation.md)
            return cmd_run_kind(args)
    except ConfigError as err:
        error(err)
        return 2
    rank, size, _ = distributed.world()  # launched as one of several ranks: --processes, accelerate, torchrun
    processes = [f"model.processes={size if size > 1 else args.processes}"] if size > 1 or args.processes else []
    try:
        track = [f"track.backend={args.track}"] if getattr(args, "track", None) else []
        config = load_config(args.config, overrides=[*args.set, *processes, *track], seed=args.seed)
    except ConfigError as err:
        error(err)
        return 2
    if size == 1 and config.model.processes > 1:  # start the ranks; this process only waits for them
        return distributed.launch(["-m", "transferlab.cli", *sys.argv[1:]], config.model.processes)
    if rank > 0:  # the other ranks serve rank 0's backend calls; rank 0 runs the experiment
        try:
            return distributed.serve_config(config)
        except (ModelNotFound, OSError, RuntimeError) as err:
            error(RuntimeError(f"rank {rank}: {err}"))
            return 2
    out = Path(args.out or f"runs/{config.name}-{config.pair_name()}-seed{config.seed}")
    console.print(f"run [bold]{config.name}[/bold] seed {config.seed} -> {out}")
    try:
        folder = run_experiment(config, out, quiet=args.quiet, force_new=args.force_new)
    except (ModelNotFound, ConfigMismatch, PuzzleFileError, OSError, LLMConfigError, LLMError, RuntimeError) as err:
        error(err)
        return 2
    finally:
        distributed.stop_workers()
    console.print(f"done: {folder.path}/metrics.csv, {folder.path}/figures/gap.png")
    return 0


def cmd_organism_build(args: argparse.Namespace) -> int:
    from transferlab.backends import ModelNotFound
    from transferlab.organism.build import build_organism

    try:
        report = build_organism(Path(args.out), size=args.size, grow_to=args.grow_to,
                                retrieval_steps=args.retrieval_steps, steps=args.steps, batch_size=args.batch_size,
                                lr=args.lr, warmup=args.warmup, seed=args.seed, chained=args.chained,
                                eval_every=args.eval_every, threads=args.threads, stop_at=args.stop_at,
                                start_from=args.start_from, mix=args.mix, new_tokenizer=args.new_tokenizer,
                                command="transferlab " + " ".join(sys.argv[1:]),
                                log=lambda line: console.print(line, highlight=False))
    except (ValueError, ModelNotFound) as err:  # an unknown mix, a --from folder that is not a model
        error(err)
        return 2
    console.print(f"built {args.out} in {report['minutes']:.1f} min")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from transferlab.backends import ModelNotFound
    from transferlab.llm.serve import serve

    console.print(f"serving {args.model} at http://{args.host}:{args.port}/v1 (OpenAI-compatible)",
                  highlight=False, soft_wrap=True)
    try:
        serve(args.model, host=args.host, port=args.port, threads=args.threads)
    except ModelNotFound as err:
        error(err)
        return 2
    return 0


def cmd_judge_calibrate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from transferlab.judges.calibrate import calibrate, holdout_dir

    try:
        paths = args.paths or (sorted(holdout_dir().glob("*.jsonl")) if args.holdout else None)
        table, disagreements = calibrate(args.first, args.second, pair=args.pair, paths=paths)
    except (ValueError, OSError) as err:
        error(err)
        return 2
    view = Table(title=f"agreement: {args.first} vs {args.second}")
    for column in ("subset", "n", "accuracy", "kappa"):
        view.add_column(column, justify="left" if column == "subset" else "right")
    for row in table.itertuples():
        view.add_row(row.subset, str(row.n), f"{row.accuracy:.3f}", f"{row.kappa:.3f}")
    Console().print(view)
    for row in disagreements.head(args.show).itertuples():
        console.print(f"[yellow]{row.id}[/yellow] {row.propensity} ({row.case}): "
                      f"{args.first}={getattr(row, args.first)} {args.second}={getattr(row, args.second)} "
                      f"{row.response!r}", highlight=False, soft_wrap=True)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from transferlab.config import ConfigError
    from transferlab.experiments import write_kind_results
    from transferlab.experiments.cli import is_kind_folder
    from transferlab.results.aggregate import aggregate

    if is_kind_folder(args.dir):
        console.print(f"wrote {write_kind_results(args.dir)}", highlight=False, soft_wrap=True)
        return 0
    try:
        written = aggregate(args.dir, adherence_floor=args.adherence_floor)
    except (FileNotFoundError, ConfigError, ValueError) as err:
        error(err)
        return 2
    for path in written:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from transferlab.sweep import SweepError, load_sweep, plan_sweep, run_sweep
    from transferlab.sweep.progress import cells_table, summary_table

    try:
        sweep = load_sweep(args.sweep)
    except SweepError as err:
        error(escape(str(err)))  # the message names [set], [axes]... which are not rich markup
        return 2
    out = Path(args.out or f"sweeps/{sweep.name}")
    if args.dry_run:
        title = (f"sweep {sweep.name}: {len(sweep.cells)} cells -> {out} "
                 f"({args.executor or sweep.executor.kind}, {sweep.executor.threads_per_cell} thread(s) per cell)")
        Console().print(cells_table(plan_sweep(sweep, out), title))
        return 0
    try:
        result = run_sweep(sweep, out, executor=args.executor, workers=args.workers, quiet=args.quiet)
    except (SweepError, RuntimeError) as err:
        error(escape(str(err)))
        return 2
    except KeyboardInterrupt:
        error(f"sweep interrupted; rerun the same command to go on ({out}/manifest.json says where it stands)")
        return 130
    Console().print(summary_table(result.cells, f"sweep {sweep.name}: {len(result.ran)} ran, {len(result.skipped)} "
                                  f"already done, {len(result.failed)} failed ({result.wall_s:.0f} s) -> {out}"))
    return 0 if result.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from transferlab.experiments.cli import is_kind_folder
    from transferlab.experiments.report import write_kind_report
    from transferlab.report import write_report

    try:
        path = (write_kind_report if is_kind_folder(args.dir) else write_report)(args.dir, out=args.out)
    except (FileNotFoundError, NotADirectoryError) as err:
        error(err)
        return 2
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="transferlab", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment (the shipped default config when none is given)")
    run.add_argument("config", nargs="?", help="TOML config file, or a shipped config name "
                     "(chess_vs_table_lookup, facts_vs_table_lookup, their _offline twins); omit for the default")
    run.add_argument("--out", help="run folder (default runs/<name>-<pair>-seed<seed>); a run of the same "
                     "config already there resumes from its latest checkpoint")
    run.add_argument("--seed", type=int, help="override the config's seed")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set train.steps=100 (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--track", choices=["tensorboard", "wandb", "trackio"],
                     help="follow the run in this tracker (sets track.backend; see [track] in the README)")
    run.add_argument("--processes", type=int, metavar="N", help="data-parallel training in N processes "
                     "(gloo on CPUs, NCCL with one GPU each): the same global batch and loss curve as one; "
                     "sets model.processes")
    run.add_argument("--force-new", action="store_true",
                     help="start over in a folder that holds a run of another config (it is moved aside); "
                          "without it, a folder holding the same config resumes from its checkpoint")
    run.set_defaults(func=cmd_run)

    organism = sub.add_parser("organism", help="the base model organism")
    organism_sub = organism.add_subparsers(dest="organism_command", required=True)
    build = organism_sub.add_parser("build", help="pretrain the base organism on the primitive curriculum")
    build.add_argument("--out", required=True)
    build.add_argument("--size", default="shallow", help="starting size (see organism/model.py)")
    build.add_argument("--grow-to", type=int, help="layers after the retrieval phase (default 6; with --from, none added)")
    build.add_argument("--retrieval-steps", type=int,
                       help="most steps of each retrieval stage (default: each stage's own, see curriculum.py)")
    build.add_argument("--steps", type=int, default=3000, help="steps of the full-curriculum phase")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--lr", type=float, default=2e-3)
    build.add_argument("--warmup", type=int, default=100)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--eval-every", type=int, default=250)
    build.add_argument("--threads", type=int, default=2)
    build.add_argument("--stop-at", type=int, help="end the curriculum phase after this many steps")
    build.add_argument("--chained", action="store_true",
                       help="also ask two-step skills (symbol colour, symbol difference): rungs of the "
                            "table-lookup ladder, so never in a shipped organism")
    build.add_argument("--new-tokenizer", action="store_true",
                       help="with --from: read with a tokenizer trained by this version's code, keeping the "
                            "parent's embeddings of every surviving token")
    build.add_argument("--from", dest="start_from", metavar="DIR",
                       help="go on from this organism folder: no retrieval phase, only --steps of the curriculum")
    build.add_argument("--mix", help="weight the curriculum's questions by a named mix (see MIXES in curriculum.py: prerequisites)")
    build.set_defaults(func=cmd_organism_build)

    serve = sub.add_parser("serve", help="serve a model over the OpenAI protocol (chat completions, responses)")
    serve.add_argument("model", help="'organism', a model folder, or a hub name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    serve.set_defaults(func=cmd_serve)

    judge = sub.add_parser("judge", help="adherence judges")
    judge_sub = judge.add_subparsers(dest="judge_command", required=True)
    calibrate = judge_sub.add_parser("calibrate", help="agreement (accuracy, Cohen's kappa) of two judges "
                                     "on a labelled set (the shipped one by default)")
    calibrate.add_argument("first", nargs="?", default="heuristic", help="labels, heuristic or llm")
    calibrate.add_argument("second", nargs="?", default="labels", help="labels, heuristic or llm")
    calibrate.add_argument("--pair", help="only this pair's rows")
    calibrate.add_argument("--set", dest="paths", action="append", type=Path,
                           help="a labelled JSONL file (repeatable; default: the shipped set)")
    calibrate.add_argument("--holdout", action="store_true",
                           help="use the held-out set (judges/holdout: never used to tune the heuristics)")
    calibrate.add_argument("--show", type=int, default=10, help="print this many disagreements")
    calibrate.set_defaults(func=cmd_judge_calibrate)

    figures = sub.add_parser("figures", help="regenerate the tables and figures of a run or a sweep folder")
    figures.add_argument("dir", type=Path, help="a run folder, or a sweep folder holding run folders")
    figures.add_argument("--adherence-floor", type=float,
                         help="cut gap curves where swapped adherence falls below this (default: each run's own)")
    figures.set_defaults(func=cmd_figures)

    sweep = sub.add_parser("sweep", help="run every cell of a sweep (pairs x tasks x seeds x any key); "
                           "rerun to resume")
    sweep.add_argument("sweep", nargs="?", help="sweep TOML; omit for the shipped default sweep")
    sweep.add_argument("--out", help="sweep folder (default sweeps/<name>)")
    sweep.add_argument("--executor", choices=["local", "ray"], help="default: the sweep file's [executor] kind")
    sweep.add_argument("--workers", type=int, help="cells at once (default: what the machine or Ray cluster holds)")
    sweep.add_argument("--dry-run", action="store_true", help="list the cells and what a run would do; run nothing")
    sweep.add_argument("--quiet", action="store_true", help="no progress display")
    sweep.set_defaults(func=cmd_sweep)

    report = sub.add_parser("report", help="write one self-contained HTML page of a run or a sweep folder: "
                            "config, figures, tables and a sample browser")
    report.add_argument("dir", type=Path, help="a run folder, or a sweep folder holding run folders")
    report.add_argument("--out", type=Path, help="the page to write (default DIR/report.html)")
    report.set_defaults(func=cmd_report)
    from transferlab.experiments.cli import add_linear_transfer_parser

    add_linear_transfer_parser(sub)
    return top


def quiet_libraries() -> None:
    """Our own progress display says what happens; library progress bars would interleave with it."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet_libraries()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
