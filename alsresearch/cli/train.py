"""``alsresearch train``: fit a model (ALS, or the one the parameters name, e.g. EASE) with given
parameters on the training part of a split and save it, with a record of the data source and
split it was fitted on, its seed and, for a warm start, the model it started from; with
``--backend spark``, ALS fitted by Spark MLlib (:class:`alsresearch.spark.SparkALSModel`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from alsresearch.cli._options import (
    HelpFormatter,
    add_backend_options,
    add_data_options,
    add_init_option,
    add_seed_option,
    add_split_options,
    backend_session,
    check_options,
    data_source,
    model_seed,
    split_spec,
)
from alsresearch.seeds import DEFAULT_SEED


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
            "same. The model seed is --seed, else the parameters' random_state, else "
            f"{DEFAULT_SEED}. --init warm-starts ALS from a model file's factors (users and "
            "items matched by id). --backend spark fits ALS with Spark MLlib instead (the data "
            "are read and split here, then sent to Spark; our engine's solver, cg_steps, "
            "num_threads and dtype have no Spark counterpart and are said to be dropped); the "
            "model file is an ordinary one that `evaluate`, `promote --init` and `serve` load "
            "without pyspark. The model file records the data options, the split, the seed and "
            "the --init file (path, sha256, rows matched)."
        ),
        formatter_class=HelpFormatter,
    )
    add_data_options(p)
    p.add_argument("--params", type=Path, required=True, help="best.json or a JSON parameter file")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    add_seed_option(p)
    add_init_option(p)
    add_split_options(p, fold_in=True)
    add_backend_options(p, "fits ALS")
    p.set_defaults(func=_train)


#: options of this command that have no effect in some combinations (beside the shared ones)
_RULES = {
    "init": (
        lambda a: (
            "has no effect with --backend spark (Spark's ALS starts from its own random factors)"
            if a.backend == "spark"
            else None
        ),
    ),
}

#: our engine's settings, which Spark's ALS has no counterpart for (it solves exactly, in
#: float32 factors, from its own random start)
_ENGINE_ONLY = ("solver", "cg_steps", "num_threads", "dtype", "initialization")


def _spark_model(model_type: str, params: dict):
    """A SparkALSModel with the objective of ``ALSModel(**params)``: the engine's own settings
    are dropped, saying so; a setting that changes the objective Spark cannot fit is an error."""
    from alsresearch.spark import SparkALSModel

    if model_type != "als":
        raise ValueError(f"--backend spark fits ALS only; --params names model {model_type!r}")
    params = dict(params)
    if params.pop("confidence", "hkv") != "hkv":
        raise ValueError("--backend spark: Spark's ALS has the confidence 'hkv' (1 + alpha r) only")
    dropped = {k: params.pop(k) for k in _ENGINE_ONLY if k in params}
    if dropped:
        print(f"--backend spark: our engine's settings {dropped} have no Spark counterpart")
    return SparkALSModel.from_als_params(params)


def _train(args: argparse.Namespace) -> int:
    from alsresearch.base import model_class
    from alsresearch.promote import load_init, load_model_params
    from alsresearch.records import training_record
    from alsresearch.seeds import resolve_seed
    from alsresearch.tuning.study import read_data_params

    check_options(args, _RULES)
    model_type, params = load_model_params(args.params)  # checked before the data are read
    params = resolve_seed(model_type, params, model_seed(args))
    if args.backend == "spark":
        model = _spark_model(model_type, params)
    else:
        model = model_class(model_type)(**params)
    init, init_info = (None, None)
    if args.init is not None:
        init, init_info = load_init(args.init, model, "--init")
    source, split = data_source(args), split_spec(args)
    backend_session(args)  # Spark starts (or fails) before the data are read
    tuned = read_data_params(args.params)
    source = source.with_tuned(tuned, str(args.params))
    if tuned:
        print(f"data params from {args.params}: {tuned}")
    train = split.parts(source.load()).train  # fold-in: the held-out users do not train
    t0 = time.perf_counter()
    if init is None:
        model.fit(train)
    else:
        model.fit(train, init=init)
        init_info["warm_start"] = model.warm_start
    model.training = training_record(source, split, model=model, init=init_info)
    model.save(args.out)
    part = f"the training part of {split}" if split.holds_out else "all data"
    config = ", ".join(f"{k}={v!r}" for k, v in model.get_config().items())
    started = "" if init is None else f" from {args.init} ({_matched(model.warm_start)})"
    print(
        f"trained {type(model).__name__}({config}){started} on {part} of "
        f"{source.describe()}: {train.n_users} users x {train.n_items} items, {train.nnz} "
        f"cells, in {time.perf_counter() - t0:.1f} s; wrote {args.out}"
    )
    return 0


def _matched(warm_start: dict[str, int]) -> str:
    return f"{warm_start['users']} users and {warm_start['items']} items matched"
