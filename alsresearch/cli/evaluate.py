"""``alsresearch evaluate``: score a trained model on the held-out part of the split it was
trained beside, against item popularity fitted on the same training part."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alsresearch.cli._options import (
    HelpFormatter,
    add_data_options,
    add_split_options,
    data_source,
    split_spec,
)


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained model on the held-out test split, against popularity",
        description=(
            "Re-create the test split of `alsresearch train` (same data options, --split, "
            "--test-fraction, --split-seed, --protocol), check that the model was trained on "
            "exactly its training part (a model that records another data spec or split is "
            "refused, naming what differs), and print top-k metrics of the model and of item "
            "popularity fitted on the same training part, each mean over users with its 95% "
            "bootstrap interval (_low, _high). With --protocol fold_in the held-out users, "
            "absent from training, are ranked from their fold-in histories."
        ),
        formatter_class=HelpFormatter,
    )
    add_data_options(p)
    p.add_argument("--model", type=Path, required=True, help="model file from `alsresearch train`")
    p.add_argument("--k", type=int, default=10, help="list length of the metrics")
    p.add_argument(
        "--out",
        type=Path,
        help="also write the figures to this folder's results.json (default: print only)",
    )
    add_split_options(p, fold_in=True)
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from alsresearch.base import load_model
    from alsresearch.checks import check_int
    from alsresearch.evaluate import evaluate_trained_model, flat_metrics
    from alsresearch.limits import MAX_TOP_N
    from alsresearch.records import write_results

    check_int(args.k, "--k", low=1, high=MAX_TOP_N)
    source, split = data_source(args), split_spec(args)
    if not split.holds_out:
        raise ValueError("--test-fraction 0 leaves no test set to evaluate on")
    table, data, train, test = evaluate_trained_model(
        load_model(args.model), source, split, k=args.k, what=str(args.model)
    )
    n_users = int((np.diff(test.matrix.indptr) > 0).sum())
    print(f"{args.model} on the test part ({test.nnz} cells, {n_users} users):")
    print(table.T.to_string(float_format="{:.4f}".format))
    if args.out:
        path = write_results(
            args.out,
            params={"model": str(args.model), "k": args.k},
            metrics=flat_metrics(table),
            data=data,
            source=source,
            split=split,
            train=train,
            seed=split.seed,
        )
        print(f"wrote {path}")
    return 0
