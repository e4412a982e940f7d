"""``alsresearch run``: execute an experiment file's notebooks with papermill
(:func:`alsresearch.runner.run_experiment`)."""

from __future__ import annotations

import yaml

from alsresearch.cli._options import HelpFormatter


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run an experiment file: notebooks executed by papermill",
        description=(
            "Execute the notebooks of an experiment file (YAML) with their parameter sets into "
            "experiments/runs/<UTC time>-<name>/ under the working directory (or "
            "$ALSRESEARCH_HOME): one executed notebook and one results.json per run, and "
            "summary.csv. A failing notebook is reported with its failing cell; the other runs "
            "still run unless --fail-fast. Exit code 1 when any run failed."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "experiment",
        help="experiment YAML, e.g. experiments/demo.yaml, or the name of a packaged "
        "experiment (demo)",
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing run")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a notebook parameter in every run that has it (VALUE parsed as YAML); "
        "repeatable (default: the experiment file's values)",
    )
    p.set_defaults(func=_run)


def _overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _run(args) -> int:
    from alsresearch.runner import run_experiment

    _, runs = run_experiment(
        args.experiment, fail_fast=args.fail_fast, overrides=_overrides(args.set or [])
    )
    return 1 if any(r.status != "ok" for r in runs) else 0
