"""``alsresearch promote``: the promotion gate (:func:`alsresearch.promote.promote`), or, with
``--recover``, undoing an interrupted promotion (:func:`alsresearch.artefact.recover`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alsresearch import paths
from alsresearch.artefact import named_artefact, recover
from alsresearch.checks import check_int
from alsresearch.cli._options import (
    HelpFormatter,
    add_data_options,
    add_split_options,
    data_source,
    given_options,
    split_spec,
)
from alsresearch.limits import MAX_TOP_N
from alsresearch.promote import DEFAULT_K, load_params, promote


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "promote",
        formatter_class=HelpFormatter,
        help="fit ALS with tuned parameters, gate it against popularity and the current "
        "model on a held-out split, and write models/<name>.npz + model card",
        description=(
            "Fit ALS with the given parameters on the train part of the test split, evaluate "
            "NDCG@k on the test part, and refuse (exit 1) when it loses to popularity or to the "
            "currently promoted model on the same split, or when the current model was read or "
            "split another way, unless --force. A promoted model is refitted on all the data "
            "and written with its model card and popularity fallback; the previous files are "
            "kept in models/archive/."
        ),
    )
    add_data_options(p)
    add_split_options(p)
    p.add_argument(
        "--params",
        type=Path,
        help='JSON file: ALS parameters, or tuning\'s best.json ({"params": {...}}); required '
        "unless --recover",
    )
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
        "--force",
        action="store_true",
        help="promote even when the candidate loses the gate or the current model was read "
        "or split another way",
    )
    p.set_defaults(func=_promote_command)


def _promote_command(args: argparse.Namespace) -> int:
    if args.recover:
        own = {"--params": args.params, "-k": args.k, "--force": args.force or None}
        stray = [*given_options(args), *(flag for flag, value in own.items() if value is not None)]
        if stray:
            raise ValueError(
                f"--recover only undoes an interrupted promotion; {', '.join(stray)} cannot "
                "apply with it"
            )
        restored = recover(named_artefact(args.name, args.models_dir).model)
        print(f"restored {', '.join(map(str, restored))}" if restored else "nothing to recover")
        return 0
    if args.params is None:
        raise ValueError("--params is required (unless --recover)")
    params = load_params(args.params)  # checked before the data are read
    k = check_int(DEFAULT_K if args.k is None else args.k, "-k", low=1, high=MAX_TOP_N)
    source = data_source(args)
    result = promote(
        params,
        source.load(),
        source=source,
        split=split_spec(args),
        name=args.name,
        models_dir=args.models_dir,
        force=args.force,
        k=k,
    )
    figure = f"ndcg@{k}"
    print(f"candidate   {figure} = {result.metrics[figure]:.4f}")
    print(f"popularity  {figure} = {result.baseline_metrics[figure]:.4f}")
    if result.previous_metrics is not None:
        print(f"current     {figure} = {result.previous_metrics[figure]:.4f}")
    if not result.promoted:
        print(f"alsresearch promote: {result.reason}", file=sys.stderr)
        return 1
    print(result.reason)
    print(f"wrote {result.model_path}, {result.popularity_path}, {result.card_path}")
    for path in result.archived:
        print(f"archived {path}")
    return 0
