"""The research-depth table of the README: popularity, EASE and ALS tuned three ways on each data
set, test NDCG@10 with 95% bootstrap intervals over the test users, and each sweep's wall time.

For each data set (the shipped MovieLens, and a synthetic stand-in from
:func:`alsresearch.datasets.synthetic` with timestamps): the default test split (random 80/20,
seed 42; ``--split temporal`` for each user's latest 20%), then

- popularity (nothing to tune);
- EASE, tuned over its own space (``experiments/search_space_ease.yaml``);
- ALS tuned as before this version: the shipped ALS space without ``regularization_scaling``
  and ``half_life`` ("ALS");
- ALS tuned with regularization scaling (``regularization_scaling`` and its exponent):
  "ALS + scaling";
- where the data have timestamps, also with ``half_life``: "ALS + scaling + decay".

Every sweep has the same number of trials and seed and sees only the training part (tune's
own validation split inside it); the best parameters are refitted on the whole training part
and scored once on the test part. Printed: NDCG@10 [low, high] per model, the paired difference
of each tuned ALS against plain-tuned ALS, and the sweep's seconds.

    .venv/bin/python scripts/research_table.py --trials 30            # both data sets
    .venv/bin/python scripts/research_table.py --data movielens --trials 30 --split temporal
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from alsresearch.base import model_class
from alsresearch.baselines import PopularityModel
from alsresearch.datasets import load_default, synthetic
from alsresearch.evaluate import evaluate, mean_interval, paired_difference
from alsresearch.split import SplitSpec
from alsresearch.tuning import SearchSpace, tune

REPO = Path(__file__).resolve().parent.parent
ALS_SPACE = REPO / "experiments" / "search_space.yaml"
EASE_SPACE = REPO / "experiments" / "search_space_ease.yaml"
SEED = 0


def data_sets(names: list[str]) -> dict:
    out = {}
    if "movielens" in names:
        out["MovieLens (ml-latest-small)"] = load_default()
    if "synthetic" in names:
        out["synthetic 20k x 4k, 400k cells"] = synthetic(20_000, 4_000, 400_000, seed=0)
    return out


def spaces(data) -> dict[str, SearchSpace]:
    als = SearchSpace.load(ALS_SPACE)
    plain = als.without("regularization_exponent").without("regularization_scaling")
    plain = plain.without("half_life")
    scaled = als.without("half_life")
    out = {"ALS": plain, "ALS + scaling": scaled}
    if data.timestamps is not None:
        out["ALS + scaling + decay"] = als
    out["EASE"] = SearchSpace.load(EASE_SPACE)
    return out


def run(data, name: str, split: SplitSpec, trials: int) -> None:
    train, test = split.apply(data)
    print(f"\n## {name}: {data!r}; split {split}; {trials} trials per sweep, seed {SEED}")
    results, seconds = {}, {}
    popularity = PopularityModel().fit(train)
    results["popularity"] = evaluate(popularity, train, test, k=10)
    for label, space in spaces(data).items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            found = tune(
                data, split=split, space=space, n_trials=trials, seed=SEED, out_dir=tmp,
                storage=Path(tmp) / "study.db", quiet=True,
            )  # fmt: skip
            seconds[label] = time.perf_counter() - start
        fitted_on = train
        if found.data_params.get("half_life") is not None:
            fitted_on = train.decayed(found.data_params["half_life"])
        cls = model_class(found.model)
        params = dict(found.best_params)
        if "random_state" in cls.__init__.__code__.co_varnames:
            params.setdefault("random_state", SEED)
        model = cls(**params).fit(fitted_on)
        results[label] = evaluate(model, train, test, k=10)
        print(f"   {label}: best {found.best_params} {found.data_params or ''}", flush=True)
    print(f"{'model':24} {'NDCG@10':>8} {'95% interval':>18} {'vs ALS':>26} {'sweep s':>8}")
    for label, result in results.items():
        ci = mean_interval(result, "ndcg@10", seed=SEED)
        lift = ""
        if label.startswith("ALS +"):
            d = paired_difference(result, results["ALS"], "ndcg@10", seed=SEED)
            lift = f"{d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
        took = f"{seconds[label]:.0f}" if label in seconds else "-"
        print(
            f"{label:24} {result.metrics['ndcg@10']:8.4f} [{ci.low:.4f}, {ci.high:.4f}]  "
            f"{lift:>26} {took:>8}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="movielens,synthetic")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--split", default="random", choices=["random", "temporal"])
    args = parser.parse_args()
    split = SplitSpec(kind=args.split)
    for name, data in data_sets(args.data.split(",")).items():
        run(data, name, split, args.trials)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
