"""``alsresearch train``: fit a model (ALS, or the one the parameters name, e.g. EASE) with given
parameters on the training part of a split and save it, with a record of the data source and
split it was fitted on."""

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
        help="fit a model with given parameters (e.g. tune's best.json) and save it",
        description=(
            'Fit the model in --params with its parameters (tune\'s best.json, whose "model" '
            "names it, e.g. ease; or a JSON object of model arguments: ALSModel's unless it "
            'names another with a "model" key) and save it (.npz). By default it fits on the '
            "training part of the test split (--split, --test-fraction, --split-seed), so "
            "`alsresearch evaluate` can score it on the held-out part; --test-fraction 0 fits "
            "on all data (for serving; such a model cannot be evaluated on this data). A "
            "best.json that "
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
    from alsresearch.base import model_class
    from alsresearch.promote import load_model_params
    from alsresearch.records import training_record
    from alsresearch.tuning.study import read_data_params

    model_type, params = load_model_params(args.params)  # checked before the data are read
    source, split = data_source(args), split_spec(args)
    tuned = read_data_params(args.params)
    source = source.with_tuned(tuned, str(args.params))
    if tuned:
        print(f"data params from {args.params}: {tuned}")
    train = split.parts(source.load()).train  # fold-in: the held-out users do not train
    model = model_class(model_type)(**params)
    t0 = time.perf_counter()
    model.fit(train)
    model.training = training_record(source, split)
    model.save(args.out)
    part = f"the training part of {split}" if split.holds_out else "all data"
    config = ", ".join(f"{k}={v!r}" for k, v in model.get_config().items())
    print(
        f"trained {type(model).__name__}({config}) on {part} of {source.describe()}: "
        f"{train.n_users} users x "
        f"{train.n_items} items, {train.nnz} cells, in {time.perf_counter() - t0:.1f} s; "
        f"wrote {args.out}"
    )
    return 0
