"""``alsresearch promote``: the promotion gate (:func:`alsresearch.promote.promote`), or, with
``--recover``, undoing an interrupted promotion (:func:`alsresearch.artefact.recover`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alsresearch import paths
from alsresearch.artefact import named_artefact, recover
from alsresearch.checks import check_float, check_int
from alsresearch.cli._options import (
    HelpFormatter,
    add_data_options,
    add_init_option,
    add_seed_option,
    add_split_options,
    check_options,
    data_source,
    model_seed,
    split_spec,
)
from alsresearch.evaluate import DEFAULT_CONFIDENCE
from alsresearch.limits import MAX_TOP_N
from alsresearch.promote import DEFAULT_K, DEFAULT_MIN_LIFT, load_model_params, promote


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "promote",
        formatter_class=HelpFormatter,
        help="fit a model (ALS, or the one --params names, e.g. EASE) with tuned parameters, "
        "gate it against popularity and the current model on a held-out split, and write "
        "models/<name>.npz + model card",
        description=(
            "Fit the model --params names (ALS when it names none) with its parameters on the "
            "train part of the test split, evaluate "
            "NDCG@k on the test part, and refuse (exit 1) unless the paired bootstrap interval "
            "of its per-user NDCG@k difference against popularity, and against the currently "
            "promoted model refitted on the same split, lies wholly above --min-lift (0: the "
            "gain must be more than noise), or when the current model was read or split "
            "another way, unless --force. A promoted model is refitted on all the data and "
            "written with its model card (which records the intervals) and popularity "
            "fallback; the previous files are kept in models/archive/. The model seed is "
            "--seed, else the parameters' random_state, else the one default seed; --init "
            "warm-starts the candidate (both the gate's fit and the served one) from an ALS "
            "model file, which the card records (path, sha256, rows matched)."
        ),
    )
    add_data_options(p)
    add_split_options(p, fold_in=True)
    p.add_argument(
        "--params",
        type=Path,
        help='JSON file: tuning\'s best.json ({"model": "ease", "params": {...}}; without '
        '"model": ALS), or a JSON object of ALS parameters (no default: required unless '
        "--recover)",
    )
    add_seed_option(p)
    add_init_option(p)
    p.add_argument(
        "--recover",
        action="store_true",
        help="only undo a promotion that was killed between its renames (put the previous "
        "files back from models/archive/) and exit; takes only --name and --models-dir",
    )
    p.add_argument("--name", default="als_baseline", help="artefact name: <models-dir>/<name>.npz")
    p.add_argument(
        "--models-dir",
        type=Path,
        help=f"where the artefact lives (default: {paths.models_dir()}, i.e. models/ under "
        "$ALSRESEARCH_HOME or the working directory)",
    )
    p.add_argument("-k", type=int, help=f"cut-off of the gating NDCG (default {DEFAULT_K})")
    p.add_argument(
        "--confidence",
        type=float,
        help="confidence of the bootstrap intervals of the NDCG@k differences, in (0, 1) "
        f"(default {DEFAULT_CONFIDENCE})",
    )
    p.add_argument(
        "--min-lift",
        type=float,
        help="the NDCG@k lift the lower bound of each interval must exceed, >= 0 (default "
        f"{DEFAULT_MIN_LIFT}: any gain beyond noise)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even when the candidate loses the gate or the current model was read "
        "or split another way",
    )
    p.set_defaults(func=_promote_command)


def _not_with_recover(args: argparse.Namespace) -> str | None:
    if args.recover:
        return "has no effect with --recover (it only undoes an interrupted promotion)"
    return None


#: with --recover, every option but --name and --models-dir has no effect
_RECOVER_ONLY = ("recover", "name", "models_dir")


def _promote_command(args: argparse.Namespace) -> int:
    check_options(
        args,
        {dest: (_not_with_recover,) for dest in vars(args) if dest not in _RECOVER_ONLY},
    )
    if args.recover:
        restored = recover(named_artefact(args.name, args.models_dir).model)
        print(f"restored {', '.join(map(str, restored))}" if restored else "nothing to recover")
        return 0
    if args.params is None:
        raise ValueError("--params is required (unless --recover)")
    from alsresearch.seeds import resolve_seed

    model_type, params = load_model_params(args.params)  # checked before the data are read
    params = resolve_seed(model_type, params, model_seed(args))
    if args.init is not None:  # its errors name --init here; promote() reads it again
        from alsresearch.base import model_class
        from alsresearch.promote import load_init

        load_init(args.init, model_class(model_type)(**params), "--init")
    k = check_int(DEFAULT_K if args.k is None else args.k, "-k", low=1, high=MAX_TOP_N)
    confidence = DEFAULT_CONFIDENCE if args.confidence is None else args.confidence
    confidence = check_float(
        confidence, "--confidence", low=0.0, high=1.0, low_open=True, high_open=True
    )
    min_lift = DEFAULT_MIN_LIFT if args.min_lift is None else args.min_lift
    min_lift = check_float(min_lift, "--min-lift", low=0.0)
    split = split_spec(args)
    source = data_source(args)
    from alsresearch.tuning.study import read_data_params

    tuned = read_data_params(args.params)  # a sweep's half-life applies as in `train`
    source = source.with_tuned(tuned, str(args.params))
    if tuned:
        print(f"data params from {args.params}: {tuned}")
    result = promote(
        {"model": model_type, "params": params},
        source.load(),
        source=source,
        split=split,
        name=args.name,
        models_dir=args.models_dir,
        force=args.force,
        k=k,
        confidence=confidence,
        min_lift=min_lift,
        init=args.init,
    )
    figure = f"ndcg@{k}"
    print(f"candidate   {figure} = {result.metrics[figure]:.4f} ({model_type})")
    print(f"popularity  {figure} = {result.baseline_metrics[figure]:.4f}")
    if result.previous_metrics is not None:
        print(f"current     {figure} = {result.previous_metrics[figure]:.4f}")
    for what, d in result.differences.items():
        print(f"vs {what:<11} {d}")
    if not result.promoted:
        print(f"alsresearch promote: {result.reason}", file=sys.stderr)
        return 1
    print(result.reason)
    print(f"wrote {result.model_path}, {result.popularity_path}, {result.card_path}")
    for path in result.archived:
        print(f"archived {path}")
    return 0
