"""Benchmark: ``alsresearch.evaluate.evaluate`` against ``implicit.evaluation.ranking_metrics_at_k``.

Same factors, same split, same process: 100k users x 50k items, k = 10, 64 factors by default,
from an ALSModel fitted on the train split (``--factors-from random`` for N(0, 0.1^2) factors,
the worst case for ALSModel's screen: no long items to rank first, scores packed together).
Prints the median wall time of each (several alternating runs), their ratio (target <= 0.5),
the peak extra memory of each call (resident set size sampled every few milliseconds, minus
the RSS just before the call) and both libraries' metrics where their definitions agree.

    .venv/bin/python benchmarks/bench_eval.py    # full size: 3 x 2 runs, several minutes
    .venv/bin/python benchmarks/bench_eval.py --factors-from random
    .venv/bin/python benchmarks/bench_eval.py --users 5000 --items 4000 --nnz 100000 --repeats 2

The machine is shared: timings are noisy, read the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings

import numpy as np

from alsresearch.als import ALSModel
from alsresearch.datasets import synthetic
from alsresearch.evaluate import evaluate
from alsresearch.split import random_holdout

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


class PeakRSS:
    """Highest RSS seen while the block runs (sampled every ``interval`` seconds)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def ours(model, train, test, k):
    result = evaluate(model, train, test, k=k)
    hits = result.per_user[f"precision@{k}"] * k
    pooled = hits.sum() / np.minimum(result.per_user["n_test"], k).sum()
    return {
        "ndcg": result.metrics[f"ndcg@{k}"],
        "map": result.metrics[f"map@{k}"],
        "pooled hits / sum min(k, R)": pooled,
        "hit_rate": result.metrics[f"hit_rate@{k}"],
        "coverage": result.metrics[f"coverage@{k}"],
        "users": result.n_users,
    }


def theirs(model, train, test, k):
    from implicit.evaluation import ranking_metrics_at_k

    m = ranking_metrics_at_k(model, train.matrix, test.matrix, K=k, show_progress=False)
    return {"ndcg": m["ndcg"], "map": m["map"], "pooled hits / sum min(k, R)": m["precision"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--nnz", type=int, default=2_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--factors-from",
        choices=("trained", "random"),
        default="trained",
        help="trained: ALSModel fitted on the train split (defaults, seeded), what an "
        "evaluation measures; random: N(0, 0.1^2) factors, the worst case for ALSModel's "
        "screen (no long items to rank first, scores packed together)",
    )
    args = parser.parse_args(argv)

    # implicit warns that OpenBLAS threads slow its *training*; scoring here is a plain gemm
    warnings.filterwarnings("ignore", message="OpenBLAS is configured", category=RuntimeWarning)
    from implicit.cpu.als import AlternatingLeastSquares

    t0 = time.perf_counter()
    data = synthetic(args.users, args.items, args.nnz, seed=args.seed)
    train, test = random_holdout(data, 0.2, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    if args.factors_from == "trained":
        model = ALSModel(factors=args.factors, random_state=args.seed).fit(train)
        U, V = model.user_factors, model.item_factors
    else:  # our ALSModel holding random factors, through the same hooks load_model uses
        U = rng.normal(scale=0.1, size=(args.users, args.factors)).astype(np.float32)
        V = rng.normal(scale=0.1, size=(args.items, args.factors)).astype(np.float32)
        model = ALSModel(factors=args.factors)
        model._set_training_data(train)
        model.set_state({"user_factors": U, "item_factors": V})
    print(
        f"data: {data.n_users} users x {data.n_items} items, train {train.nnz} cells, "
        f"test {test.nnz} cells, {args.factors} {args.factors_from} factors, k={args.k} "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    reference = AlternatingLeastSquares(factors=args.factors, random_state=args.seed)
    reference.user_factors, reference.item_factors = U, V

    # warm up both (numba compilation, page faults) on a slice of users
    few = rng.choice(data.n_users, size=min(500, data.n_users), replace=False)
    evaluate(model, train, test, k=args.k, users=train.user_ids[few])
    theirs(reference, train, test.with_matrix(_only_rows(test, few)), args.k)

    times = {"alsresearch": [], "implicit": []}
    memory = {"alsresearch": [], "implicit": []}
    metrics = {}
    for _ in range(args.repeats):
        for name, fn, obj in (
            ("alsresearch", ours, model),
            ("implicit", theirs, reference),
        ):
            with PeakRSS() as peak:
                start = time.perf_counter()
                metrics[name] = fn(obj, train, test, args.k)
                times[name].append(time.perf_counter() - start)
            memory[name].append(peak.extra_mib)

    ours_t = statistics.median(times["alsresearch"])
    theirs_t = statistics.median(times["implicit"])
    print(f"\n{'':<14}{'median s':>10}{'runs (s)':>28}{'peak extra RSS MiB':>22}")
    for name in times:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(
            f"{name:<14}{statistics.median(times[name]):>10.2f}{runs:>28}{max(memory[name]):>22.0f}"
        )
    print(f"ratio alsresearch / implicit = {ours_t / theirs_t:.2f} (target <= 0.5)")
    print(f"process max RSS: {_max_rss_mib():.0f} MiB (data, factors and both libraries)")

    print(f"\n{'metric':<30}{'alsresearch':>16}{'implicit':>16}{'abs diff':>12}")
    for key, value in metrics["alsresearch"].items():
        other = metrics["implicit"].get(key)
        if other is None:
            print(f"{key:<30}{value:>16.8g}{'-':>16}")
        else:
            print(f"{key:<30}{value:>16.8g}{other:>16.8g}{abs(value - other):>12.1e}")


def _only_rows(x, rows):
    """Test matrix with only ``rows`` kept (the warm-up evaluates a few users in implicit)."""
    keep = np.zeros(x.n_users, dtype=bool)
    keep[rows] = True
    return x.matrix.multiply(keep[:, None]).tocsr()


def _max_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
