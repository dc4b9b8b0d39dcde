"""Entry points for `transferlab run` (configs with a `kind`), `transferlab report` of such a
folder, and `transferlab linear-transfer`, ready for cli.py to call."""

from __future__ import annotations

import argparse

from transferlab.experiments.linear_transfer import add_arguments, cmd_linear_transfer, linear_transfer_main


def cmd_run_kind(args: argparse.Namespace) -> int:
    """`transferlab run CONFIG` when CONFIG names a kind: the same --out, --seed, --set and --quiet."""
    from rich.console import Console
    from rich.markup import escape

    from transferlab.backends import ModelNotFound
    from transferlab.config import ConfigError
    from transferlab.experiments import load_experiment, run_kind

    console = Console(stderr=True)
    try:
        config = load_experiment(args.config, overrides=args.set, seed=args.seed)
        console.print(f"run [bold]{escape(config.name)}[/bold] ({config.kind}) seed {config.seed}")
        folder = run_kind(config, args.out, quiet=args.quiet)
    except (ConfigError, ModelNotFound, FileExistsError, OSError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True, highlight=False)
        return 2
    console.print(f"done: {folder.path}/report.html", highlight=False, soft_wrap=True)
    return 0


def is_kind_folder(directory) -> bool:
    """Whether a folder holds a run of one of these kinds (its config.toml names a kind)."""
    from pathlib import Path

    from transferlab.experiments.report import kind_of

    config = Path(directory) / "config.toml"
    return config.is_file() and kind_of(config) != "run"


def add_linear_transfer_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("linear-transfer", help="the linear-regression model of goal guarding: "
                            "how training on train prompts moves the eval output, per learning rate")
    add_arguments(parser)
    parser.set_defaults(func=cmd_linear_transfer)
    return parser


__all__ = ["add_linear_transfer_parser", "cmd_linear_transfer", "cmd_run_kind", "is_kind_folder",
           "linear_transfer_main"]
