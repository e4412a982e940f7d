"""``alsresearch evaluate``: score a trained model on the held-out part of the split it was
trained beside, against item popularity fitted on the same training part; with ``--backend
spark``, the model's metrics computed in Spark (:func:`alsresearch.spark.evaluate_spark`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alsresearch.cli._options import (
    HelpFormatter,
    add_backend_options,
    add_data_options,
    add_split_options,
    backend_session,
    check_options,
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
            "absent from training, are ranked from their fold-in histories. With --backend "
            "spark the model's top-k lists and NDCG, HitRate, Precision, Recall, MAP, MRR and "
            "Coverage are computed in Spark (same definitions; they agree with the local "
            "figures to 1e-9), after the same checks, but without the popularity row, without "
            "bootstrap intervals and without the fold-in protocol."
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
    add_backend_options(p, "computes the metrics")
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from alsresearch.base import load_model
    from alsresearch.checks import check_int
    from alsresearch.evaluate import evaluate_trained_model, flat_metrics
    from alsresearch.limits import MAX_TOP_N
    from alsresearch.records import write_results

    check_options(args)
    check_int(args.k, "--k", low=1, high=MAX_TOP_N)
    source, split = data_source(args), split_spec(args)
    if not split.holds_out:
        raise ValueError("--test-fraction 0 leaves no test set to evaluate on")
    if args.backend == "spark" and split.protocol == "fold_in":
        raise ValueError(
            "--protocol fold_in cannot be evaluated with --backend spark (Spark ranks users "
            "with factors; use --backend local)"
        )
    model = load_model(args.model)
    if args.backend == "spark":
        metrics, data, train, test = _evaluate_spark(args, model, source, split)
        print(f"{args.model} on the test part ({test.nnz} cells, {metrics.n_users} users), "
              "computed by Spark:")  # fmt: skip
        for name, value in metrics.metrics.items():
            print(f"{name:>16} {value:.4f}")
        flat = {f"{model.model_type}_{name}": value for name, value in metrics.metrics.items()}
    else:
        table, data, train, test = evaluate_trained_model(
            model, source, split, k=args.k, what=str(args.model)
        )
        n_users = int((np.diff(test.matrix.indptr) > 0).sum())
        print(f"{args.model} on the test part ({test.nnz} cells, {n_users} users):")
        print(table.T.to_string(float_format="{:.4f}".format))
        flat = flat_metrics(table)
    if args.out:
        config = model.get_config()
        path = write_results(
            args.out,
            params={"model": str(args.model), "k": args.k, "backend": args.backend},
            metrics=flat,
            data=data,
            source=source,
            split=split,
            train=train,
            **({"seed": config["random_state"]} if "random_state" in config else {}),
        )
        print(f"wrote {path}")
    return 0


def _evaluate_spark(args, model, source, split):
    """(the :class:`~alsresearch.spark.SparkEvaluation`, data, train, test): the checks of
    :func:`~alsresearch.evaluate.evaluate_trained_model`, then the metrics in Spark."""
    from alsresearch.evaluate import check_trained_on, require_test_users
    from alsresearch.records import check_training
    from alsresearch.spark import evaluate_spark

    what = str(args.model)
    check_training(model.training, source, split, f"{what}: the model was trained on")
    if not hasattr(model, "item_factors"):
        raise ValueError(
            f"{what}: --backend spark scores factor models (ALS), not {model.model_type!r}"
        )
    session = backend_session(args)
    data = source.load()
    parts = split.parts(data)
    train, test = parts.train, parts.test
    check_trained_on(model, train, what)
    require_test_users(test, f"the test part of {split}")
    return evaluate_spark(model, train, test, k=args.k, session=session), data, train, test
