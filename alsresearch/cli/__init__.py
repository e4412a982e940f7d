"""The ``alsresearch`` command: one thin module per sub-command, and the only use of argparse.

Each module in :data:`COMMANDS` defines ``add_command(subparsers)``, which adds its parser and
sets ``func``: a function that turns the parsed options into plain values (a
:class:`~alsresearch.source.DataSource`, a :class:`~alsresearch.split.SplitSpec`, numbers and
paths), calls one library function, prints what it did and returns an exit code. The library
never sees an ``argparse.Namespace``. Heavy optional dependencies (optuna, papermill, fastapi)
are imported inside ``func``, so ``alsresearch --help`` works with the core install.

``main`` records the options the user gave (``args.given``: dest -> flag, whatever their value),
so that a command can refuse an option that has no effect in the given combination
(:func:`alsresearch.cli._options.check_options`): nothing given is silently ignored.

Exit codes: 0 done; 1 an error with one line on stderr (a bad value, a missing file, or no
result: nothing left to evaluate, every tuning trial failed); 2 bad usage (argparse); 130
interrupted (Ctrl-C), with one line and no traceback. Outputs are written atomically
(:func:`alsresearch.files.atomic_write`), so an interrupted command leaves none half-written.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alsresearch.cli._options import given_dests
from alsresearch.errors import NoResultError, SetupError

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "build_parser", "command_module", "main"]

#: the exit code of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130

#: sub-command modules of this package, in the order --help lists them
COMMANDS = ("run", "tune", "train", "evaluate", "promote", "serve", "recommend-all", "download")


def command_module(name: str) -> str:
    """The module of a sub-command (``recommend-all``: ``alsresearch.cli.recommend_all``)."""
    return f"alsresearch.cli.{name.replace('-', '_')}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alsresearch",
        description="Implicit-feedback ALS: run notebook experiments, tune, train, evaluate, "
        "promote and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(command_module(name)).add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    command = "alsresearch"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        command = f"alsresearch {args.command}"
        args.given = given_dests(build_parser(), sys.argv[1:] if argv is None else argv)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, NoResultError, SetupError) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
