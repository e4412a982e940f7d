"""The ``alsresearch`` command: one thin module per sub-command, and the only use of argparse.

Each module in :data:`COMMANDS` defines ``add_command(subparsers)``, which adds its parser and
sets ``func``: a function that turns the parsed options into plain values (a
:class:`~alsresearch.source.DataSource`, a :class:`~alsresearch.split.SplitSpec`, numbers and
paths), calls one library function, prints what it did and returns an exit code. The library
never sees an ``argparse.Namespace``. Heavy optional dependencies (optuna, papermill, fastapi)
are imported inside ``func``, so ``alsresearch --help`` works with the core install.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "build_parser", "main"]

#: sub-command modules of this package, in the order --help lists them
COMMANDS = ("run", "tune", "train", "evaluate", "promote", "serve", "download")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alsresearch",
        description="Implicit-feedback ALS: run notebook experiments, tune, train, evaluate, "
        "promote and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"alsresearch.cli.{name}").add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"alsresearch {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
