"""``alsresearch tune``: sweep a model's hyperparameters (ALS by default; the search space names
the model, e.g. EASE) with Optuna on the training part of the test split, scored on a validation
split carved out of it (:func:`alsresearch.tuning.tune`)."""

from __future__ import annotations

import sys
from pathlib import Path

from alsresearch import paths
from alsresearch.checks import check_int
from alsresearch.cli._options import (
    HelpFormatter,
    add_data_options,
    add_split_options,
    data_source,
    split_spec,
)
from alsresearch.limits import MAX_HEARTBEAT, MAX_TRIALS, MAX_WORKERS
from alsresearch.tuning import GRACE_BEATS, SearchSpace, default_study_name, tune


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="sweep ALS (or EASE) hyperparameters with Optuna (validation NDCG@10, test set "
        "untouched)",
        description=(
            "Sweep the hyperparameters of the model the search space names (--space, default "
            "the package's search_space.yaml, ALS; experiments/search_space_ease.yaml sweeps "
            "EASE) with a seeded TPE sampler and, for ALS, per-iteration median pruning (an "
            "EASE trial is one fit and one score). "
            "Trials fit on the training part of the test split (--split, --test-fraction, "
            "--split-seed) minus a validation split and are scored by NDCG@10 on that "
            "validation split; the test part is never looked at (use `alsresearch evaluate` "
            "with the same data and split options). Re-running the same command resumes the "
            "study until --trials trials are complete or pruned; a study made with other data "
            "or split options is refused. Writes trials.csv and best.json (for `alsresearch "
            "train --params` and `alsresearch promote --params`) into --out; best.json records "
            "the model type, the data options and the split. "
            "A half_life param in the space (recency weighting) is searched when the data have "
            "timestamps: each trial recomputes the training counts in memory; best.json keeps "
            "the chosen one in data_params."
        ),
        formatter_class=HelpFormatter,
    )
    add_data_options(p)
    p.add_argument("--trials", type=int, default=50, help="COMPLETE or PRUNED trials to reach")
    p.add_argument(
        "--seed", type=int, default=0, help="sampler, validation split and (ALS) model seed"
    )
    p.add_argument(
        "--out", type=Path, help="output directory (default experiments/runs/tune-<study>)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes on the one study")
    p.add_argument(
        "--storage", help="Optuna storage URL or SQLite file (default experiments/<study>.db)"
    )
    p.add_argument(
        "--study", help="study name (default <model>-<data fingerprint>-s<seed>, e.g. als-...)"
    )
    p.add_argument(
        "--space",
        type=Path,
        help="search space YAML (default: the package's search_space.yaml, ALS); its model: "
        "key names the model swept",
    )
    add_split_options(p, fold_in=True)
    p.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help=f"seconds between worker heartbeats; a dead worker's trial is failed after "
        f"{GRACE_BEATS}x that without a beat",
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    p.set_defaults(func=_tune)


def _tune(args) -> int:
    # sizes and the search space are checked before the data are read
    check_int(args.trials, "--trials", low=1, high=MAX_TRIALS)
    check_int(args.workers, "--workers", low=1, high=MAX_WORKERS)
    check_int(args.heartbeat, "--heartbeat", low=1, high=MAX_HEARTBEAT)
    space = SearchSpace.load(args.space)
    source, split = data_source(args), split_spec(args)
    data = source.load()
    name = args.study or default_study_name(data, args.seed, space.model)
    result = tune(
        data,
        split=split,
        source=source,
        n_trials=args.trials,
        seed=args.seed,
        out_dir=args.out or paths.runs_dir() / f"tune-{name}",
        storage=args.storage,
        study_name=name,
        space=space,
        workers=args.workers,
        heartbeat=args.heartbeat,
        quiet=args.quiet,
    )
    if not result.beats_popularity:
        print(
            f"warning: no {space.model} configuration beat popularity on validation; consider "
            "more trials or serving the popularity baseline",
            file=sys.stderr,
        )
    return 0
