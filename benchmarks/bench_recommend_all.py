"""Benchmark: ``alsresearch recommend-all`` (every user's top-n into Parquet) against implicit's
``recommend(userids, user_items, N=n)`` in batches, on the same factors and threads.

A synthetic size from :func:`alsresearch.datasets.synthetic` (seed 0; L = 500k users x 50k
items, 10M cells, by default) gives the seen items; the factors are seeded random numbers
(ranking cost does not depend on how the factors were learned), 64 factors, float32. Each side
runs in a fresh process (its peak resident memory is its own):

- ours: :func:`alsresearch.precompute.recommend_all` on the saved model file, chunks of
  ``--chunk-users`` users, Parquet written (the whole job, output included);
- implicit: ``AlternatingLeastSquares.recommend`` with the same factors, for the same users in
  batches of ``--chunk-users`` (ranking only, nothing written), ``filter_already_liked_items``.

Printed: users per second of each, the ratio, and how far ours' peak RSS grows above the
interpreter and libraries (measured before the model is read) against the model's own size
(the model file: its factors, ids and seen matrix) plus one chunk of output (target: within
1.5x; the numba kernels' code, ~40 MiB, is in the growth). ``--users`` limits both sides to the first users
(implicit at L takes long; the rate is per user).

    .venv/bin/python benchmarks/bench_recommend_all.py --size L --users 100000 --n 100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, report_and_exit, rss_mib, run_isolated

SIZES = {
    "S": (50_000, 5_000, 1_000_000),
    "M": (200_000, 20_000, 5_000_000),
    "L": (500_000, 50_000, 10_000_000),
}
FACTORS = 64


def make_model(size: str, users: int, directory: Path) -> Path:
    """The model file: the first ``users`` users of the synthetic size (their seen items), all
    its items, seeded random factors."""
    from alsresearch.als import ALSModel
    from alsresearch.data import Interactions
    from alsresearch.datasets import synthetic

    n_users, n_items, nnz = SIZES[size]
    data = synthetic(n_users, n_items, nnz, seed=0)
    data = Interactions(data.matrix[:users], data.user_ids[:users], data.item_ids)
    model = ALSModel(factors=FACTORS, iterations=1)
    model._set_training_data(data)
    rng = np.random.default_rng(0)
    model.set_state(
        {
            "user_factors": rng.standard_normal((users, FACTORS), dtype=np.float32),
            "item_factors": rng.standard_normal((n_items, FACTORS), dtype=np.float32),
        }
    )
    return model.save(directory / "model.npz")


def worker(side: str, model_path: str, n: int, chunk: int, threads: int) -> None:
    from alsresearch._jit import set_thread_limit

    set_thread_limit(threads)
    directory = Path(model_path).parent
    if side == "ours":
        from alsresearch.precompute import recommend_all

        base = rss_mib()
        start = time.perf_counter()
        result = recommend_all(
            model_path, directory / "out", n=n, chunk_users=chunk, progress=False
        )
        seconds = time.perf_counter() - start
        report_and_exit(
            {"seconds": seconds, "users": result.n_users, "peak": peak_rss_mib(), "base": base}
        )
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    data = np.load(model_path)
    users = len(data["user_ids"])
    seen = sp.csr_matrix(
        (np.ones(len(data["seen_indices"]), np.float32), data["seen_indices"],
         data["seen_indptr"]),
        shape=(users, len(data["item_ids"])),
    )  # fmt: skip
    model = AlternatingLeastSquares(factors=FACTORS, num_threads=threads, dtype=np.float32)
    model.user_factors = np.ascontiguousarray(data["state_user_factors"])
    model.item_factors = np.ascontiguousarray(data["state_item_factors"])
    base = rss_mib()
    start = time.perf_counter()
    with threadpool_limits(limits=threads, user_api="blas"):
        for lo in range(0, users, chunk):
            ids = np.arange(lo, min(users, lo + chunk))
            model.recommend(ids, seen[ids], N=n, filter_already_liked_items=True)
    seconds = time.perf_counter() - start
    report_and_exit({"seconds": seconds, "users": users, "peak": peak_rss_mib(), "base": base})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        side, path, n, chunk, threads = sys.argv[2:7]
        worker(side, path, int(n), int(chunk), int(threads))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="L", choices=sorted(SIZES))
    parser.add_argument("--users", type=int, default=100_000, help="users ranked by each side")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--chunk-users", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    n_users, n_items, nnz = SIZES[args.size]
    users = min(args.users, n_users)
    with tempfile.TemporaryDirectory(prefix="bench_recall_") as tmp:
        t0 = time.perf_counter()
        path = make_model(args.size, users, Path(tmp))
        size_mib = path.stat().st_size / 2**20
        print(
            f"# bench_recommend_all: {args.size} ({n_users} users x {n_items} items, {nnz} cells),"
            f" k={FACTORS}, n={args.n}, {users} users ranked, chunks of {args.chunk_users}, "
            f"{args.threads} threads; model file {size_mib:.0f} MiB (made in "
            f"{time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        common = [path.as_posix(), str(args.n), str(args.chunk_users)]
        runs = {}
        for side in ("ours", "implicit"):
            runs[side] = run_isolated(__file__, ["--worker", side, *common, str(args.threads)])
            r = runs[side]
            print(
                f"{side:9} {r['seconds']:8.1f} s  {r['users'] / r['seconds']:10.0f} users/s  "
                f"peak RSS {r['peak']:7.0f} MiB (after loading {r['base']:.0f} MiB)",
                flush=True,
            )
        ours, theirs = runs["ours"], runs["implicit"]
        ratio = (ours["users"] / ours["seconds"]) / (theirs["users"] / theirs["seconds"])
        chunk_mib = args.chunk_users * args.n * (8 + 4 + 8 + 4) / 2**20  # ids, rank, item, score
        print(f"users/s ours / implicit: {ratio:.2f}")
        grown = ours["peak"] - ours["base"]
        print(
            f"ours: peak RSS {ours['peak']:.0f} MiB, {grown:.0f} MiB above the interpreter and "
            f"libraries ({ours['base']:.0f} MiB, before the model is read), against the model "
            f"file {size_mib:.0f} MiB + one chunk of output {chunk_mib:.0f} MiB: "
            f"{grown / (size_mib + chunk_mib):.2f}x (target 1.5x)"
        )


if __name__ == "__main__":
    main()
