"""Benchmark: ``ALSModel.fit`` against implicit's CPU ALS (CG and Cholesky), same data and threads.

Synthetic power-law data from :func:`alsresearch.datasets.synthetic` (seed 0) at

    S  50k users x  5k items, ~1M cells
    M 200k users x 20k items, ~5M cells
    L 500k users x 50k items, ~10M cells

with 64 factors, 15 iterations, alpha 40, regularization 0.01. implicit takes ``c = alpha * r``,
so it gets the matrix ``1 + 40 r`` with its alpha = 1: the same objective. Every fit runs in a
fresh process (so its peak resident memory is its own, data included) with BLAS limited to one
thread; ours and implicit's get the same number of threads. Printed per size and method: the
median fit time of ``--repeats`` runs, its ratio to implicit CG and Cholesky, the final loss
(OUR exact objective, :func:`alsresearch.als.objective`, evaluated on each library's factors so
losses are comparable), the median process CPU time (all threads; steadier than wall time on a
busy machine), the median peak RSS of the worker process (``VmHWM``: the counts, the model and
everything the fit allocates; the interpreter and libraries alone are ~150 MiB) and its RSS
with the counts loaded, just before the fit ("data MiB"). Numba's first-call time (compiling,
or loading the on-disk cache) is measured before the timed fit and printed apart.

    .venv/bin/python benchmarks/bench_als.py                      # S,M,L, 3 repeats (long)
    .venv/bin/python benchmarks/bench_als.py --sizes S --repeats 2
    # the README figures (about 20 minutes):
    .venv/bin/python benchmarks/bench_als.py --sizes S,M,L --repeats 3 \
        --implicit-cholesky-sizes S --ours-cholesky-sizes S,M
    # only the exact solvers, ours against implicit's, at M:
    .venv/bin/python benchmarks/bench_als.py --sizes M --repeats 1 \
        --methods ours-cholesky,implicit-cholesky --implicit-cholesky-sizes M --ours-cholesky-sizes M

Targets (2 cores): our default solver at most 0.5x implicit CG's time with a loss no worse than
implicit CG's, at every size; peak memory at L under 2 GiB; our Cholesky faster than implicit's.
The machine is shared: timings are noisy, read the medians.
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
from _common import median, peak_rss_mib, report_and_exit, rss_mib, run_isolated

SIZES = {
    "S": (50_000, 5_000, 1_000_000),
    "M": (200_000, 20_000, 5_000_000),
    "L": (500_000, 50_000, 10_000_000),
}
FACTORS, ITERATIONS, ALPHA, REG = 64, 15, 40.0, 0.01
METHODS = ("ours-default", "ours-cholesky", "implicit-cg", "implicit-cholesky")


def make_data(size: str, directory: Path) -> Path:
    """Generate a size's counts once and store them for the workers (scipy .npz)."""
    from alsresearch.datasets import synthetic

    path = directory / f"counts_{size}.npz"
    if not path.exists():
        n_users, n_items, nnz = SIZES[size]
        sp.save_npz(path, synthetic(n_users, n_items, nnz, seed=0).matrix)
    return path


# ---------------------------------------------------------------------- one fit, in a worker
def worker(method: str, data_path: str, threads: int) -> None:
    import numba
    from threadpoolctl import threadpool_limits

    from alsresearch.als import ALSModel, objective

    counts = sp.load_npz(data_path).tocsr()
    rss_before = rss_mib()
    jit = None
    if method.startswith("ours"):
        solver = "cholesky" if method == "ours-cholesky" else ALSModel().config.solver
        params = dict(factors=FACTORS, alpha=ALPHA, regularization=REG, solver=solver)
        start = time.perf_counter()  # first call: compile or load numba's on-disk cache
        ALSModel(iterations=1, num_threads=threads, random_state=0, **params).fit(counts[:200])
        jit = time.perf_counter() - start
        model = ALSModel(iterations=ITERATIONS, num_threads=threads, random_state=0, **params)
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(counts)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        users, items = model.user_factors, model.item_factors
        assert abs(model.loss_history[-1] - objective(counts, users, items, ALPHA, REG)) <= (
            1e-4 * model.loss_history[-1]
        )
        label = f"ours-{solver}"
    else:
        from implicit.cpu.als import AlternatingLeastSquares

        confidence = counts.astype(np.float32)
        confidence.data = 1 + ALPHA * confidence.data
        model = AlternatingLeastSquares(
            factors=FACTORS,
            regularization=REG,
            alpha=1.0,
            iterations=ITERATIONS,
            use_cg=method == "implicit-cg",
            num_threads=threads,
            random_state=0,
            dtype=np.float32,
        )
        with threadpool_limits(limits=1, user_api="blas"):
            start, cpu = time.perf_counter(), time.process_time()
            model.fit(confidence, show_progress=False)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
        label = method
    peak = peak_rss_mib()
    loss = objective(counts, users, items, ALPHA, REG)
    report_and_exit(
        {
            "label": label,
            "seconds": seconds,
            "cpu": cpu,
            "jit": jit,
            "loss": loss,
            "peak_mib": peak,
            "data_mib": rss_before,
            "threads": numba.get_num_threads() if threads == 0 else threads,
        }
    )


# ---------------------------------------------------------------------- the driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="S,M,L", help="comma-separated among S, M, L")
    parser.add_argument("--repeats", type=int, default=3, help="fits per method and size")
    parser.add_argument("--threads", type=int, default=0, help="threads for both (0 = all)")
    parser.add_argument(
        "--implicit-cholesky-sizes",
        default="S,M",
        help="sizes at which to run implicit's (slow) Cholesky solver",
    )
    parser.add_argument(
        "--ours-cholesky-sizes", default="S,M", help="sizes at which to run our exact solver"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated among {', '.join(METHODS)} (e.g. only the two Cholesky solvers)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "DATA", "THREADS"))
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            parser.error(f"unknown size {s!r}; choose among {', '.join(SIZES)}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in chosen:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose among {', '.join(METHODS)}")
    threads = args.threads or os.cpu_count() or 1
    slow = {
        "implicit-cholesky": {s.strip().upper() for s in args.implicit_cholesky_sizes.split(",")},
        "ours-cholesky": {s.strip().upper() for s in args.ours_cholesky_sizes.split(",")},
    }

    from alsresearch.provenance import environment_record

    env = environment_record()
    print(
        f"# bench_als: k={FACTORS}, {ITERATIONS} iterations, alpha={ALPHA}, reg={REG}, "
        f"{threads} threads, {args.repeats} repeats; git {env['git']['commit']} "
        f"dirty={env['git']['dirty']}; numba {env['packages']['numba']}, "
        f"implicit {env['packages']['implicit']}; shared machine, timings are noisy"
    )
    header = (
        f"{'size':4} {'method':18} {'fit s (median)':>15} {'runs':>22} {'/impl CG':>8} "
        f"{'/impl chol':>10} {'CPU s':>7} {'CPU/impl CG':>11} {'final loss':>14} {'/our chol':>9} {'loss/impl CG':>12} {'peak MiB':>9} {'data MiB':>9} {'JIT s':>6}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_als_") as tmp:
        for size in sizes:
            n_users, n_items, _ = SIZES[size]
            t0 = time.perf_counter()
            data = make_data(size, Path(tmp))
            nnz = sp.load_npz(data).nnz
            print(
                f"\n## {size}: {n_users} users x {n_items} items, {nnz} cells "
                f"(generated in {time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
            methods = [m for m in chosen if m not in slow or size in slow[m]]
            if not methods:
                continue
            runs: dict[str, list[dict]] = {m: [] for m in methods}
            for _ in range(args.repeats):  # interleaved, so drifting load hits every method
                for m in methods:
                    runs[m].append(run_isolated(__file__, ["--worker", m, str(data), str(threads)]))
            summary = {
                m: {
                    "label": r[0]["label"],
                    "seconds": median([x["seconds"] for x in r]),
                    "all": [x["seconds"] for x in r],
                    "cpu": median([x["cpu"] for x in r]),
                    "loss": median([x["loss"] for x in r]),
                    "peak": median([x["peak_mib"] for x in r]),
                    "data": median([x["data_mib"] for x in r]),
                    "jit": r[0]["jit"],
                }
                for m, r in runs.items()
            }
            print(header)
            cg = summary.get("implicit-cg")
            chol = summary.get("implicit-cholesky")
            exact = summary.get("ours-cholesky")
            for m in methods:
                s = summary[m]
                vs_chol = f"{s['seconds'] / chol['seconds']:.2f}" if chol else "-"
                vs_cg = f"{s['seconds'] / cg['seconds']:.2f}" if cg else "-"
                cpu_vs_cg = f"{s['cpu'] / cg['cpu']:.2f}" if cg else "-"
                loss_vs_cg = f"{s['loss'] / cg['loss']:.4f}" if cg else "-"
                jit = f"{s['jit']:.1f}" if s["jit"] is not None else "-"
                vs_exact = f"{s['loss'] / exact['loss']:.4f}" if exact else "-"
                all_runs = ",".join(f"{x:.1f}" for x in s["all"])
                print(
                    f"{size:4} {s['label']:18} {s['seconds']:15.2f} {all_runs:>22} "
                    f"{vs_cg:>8} {vs_chol:>10} {s['cpu']:7.1f} "
                    f"{cpu_vs_cg:>11} {s['loss']:14.6g} {vs_exact:>9} "
                    f"{loss_vs_cg:>12} {s['peak']:9.0f} {s['data']:9.0f} {jit:>6}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
