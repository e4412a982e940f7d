"""The ``alsresearch`` command. Each sub-command lives beside the logic it drives.

A module listed in :data:`COMMAND_MODULES` defines ``add_command(subparsers)``, which adds its
parser(s) and sets ``func`` (called with the parsed arguments, returning an exit code). Heavy
optional dependencies (optuna, papermill, fastapi) are imported inside ``func``, so
``alsresearch --help`` works with the core install.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: modules contributing sub-commands, in the order --help lists them
COMMAND_MODULES = (
    "alsresearch.experiments",  # run, train, evaluate
    "alsresearch.tuning",  # tune
    "alsresearch.export",  # promote
    "alsresearch.serve",  # serve
    "alsresearch.datasets",  # download
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alsresearch",
        description="Implicit-feedback ALS: run notebook experiments, tune, train, evaluate, "
        "promote and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that piece is not written yet
                continue
            raise
        module.add_command(sub)
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
