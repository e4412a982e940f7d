"""``alsresearch train``: fit ALS with given parameters on the training part of a split and
save the model, with a record of the data source and split it was fitted on."""

from __future__ import annotations

import time
from pathlib import Path

from alsresearch.cli._options import (
    HelpFormatter,
    add_data_options,
    add_split_options,
    data_source,
    split_spec,
)


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="fit ALS with given parameters (e.g. tune's best.json) and save the model",
        description=(
            "Fit ALS with the parameters in --params (tune's best.json, or a JSON object of "
            "ALSModel arguments) and save the model (.npz). By default it fits on the training "
            "part of the test split (--split, --test-fraction, --split-seed), so `alsresearch "
            "evaluate` can score it on the held-out part; --test-fraction 0 fits on all data "
            "(for serving; such a model cannot be evaluated on this data). A best.json that "
            "chose a half-life (recency weighting) applies it, unless --half-life gives the "
            "same. The model file records the data options and the split."
        ),
        formatter_class=HelpFormatter,
    )
    add_data_options(p)
    p.add_argument("--params", type=Path, required=True, help="best.json or a JSON parameter file")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    add_split_options(p, fold_in=True)
    p.set_defaults(func=_train)


def _train(args) -> int:
    from alsresearch.als import ALSModel
    from alsresearch.promote import load_params
    from alsresearch.records import training_record
    from alsresearch.tuning.study import read_data_params

    params = load_params(args.params)
    source, split = data_source(args), split_spec(args)
    tuned = read_data_params(args.params)
    source = source.with_tuned(tuned, str(args.params))
    if tuned:
        print(f"data params from {args.params}: {tuned}")
    train = split.parts(source.load()).train  # fold-in: the held-out users do not train
    model = ALSModel(**params)
    t0 = time.perf_counter()
    model.fit(train)
    model.training = training_record(source, split)
    model.save(args.out)
    part = f"the training part of {split}" if split.holds_out else "all data"
    print(
        f"trained {model!r} on {part} of {source.describe()}: {train.n_users} users x "
        f"{train.n_items} items, {train.nnz} cells, in {time.perf_counter() - t0:.1f} s; "
        f"wrote {args.out}"
    )
    return 0
