"""Benchmark: ``ALSModel.fit`` against implicit's CPU ALS (CG and Cholesky), same data and threads.

Synthetic power-law data from :func:`alsresearch.datasets.synthetic` (seed 0) at the sizes

    S  50k users x  5k items, ~1M cells
    M 200k users x 20k items, ~5M cells
    L 500k users x 50k items, ~10M cells

in one or more shapes, named sets of the generator's parameters
(:class:`alsresearch.datasets.generator.SyntheticParams`; ``--shape-param`` adds one of your own):

    default  the generator's defaults: item popularity ~ rank^-1.0, user activity log-normal(1.0)
    heavy    heavier-tailed user activity (sigma 1.5) and flatter items (rank^-0.9): more very
             short and more very long user rows, fewer very long item rows
    flat     even users (sigma 0.5), flat items (rank^-0.7): short user rows, mid-length items

with 64 factors, 15 iterations, alpha 40, regularization 0.01. implicit takes ``c = alpha * r``,
so it gets the matrix ``1 + 40 r`` with its alpha = 1: the same objective. Every fit runs in a
fresh process (so its peak resident memory is its own, data included) with BLAS limited to one
thread; ours and implicit's get the same number of threads. The methods' repeats are
interleaved (ours, implicit, ours, implicit, ...) so both see the same machine load; each run
prints its time and the load it saw: the 1-minute load average before it started and "others",
the CPU seconds per second that other processes used during the fit (from /proc/stat; 2.0 means
both cores of a 2-core machine were busy with other work). Printed per size, shape and method:
the median fit time of ``--repeats`` runs, its ratio to implicit CG and Cholesky, the median of
the paired ratios (each run against the implicit CG run next to it), the final loss (OUR exact
objective, :func:`alsresearch.als.objective`, evaluated on each library's factors so losses are
comparable), the median process CPU time (all threads; steadier than wall time on a busy
machine), the median peak RSS of the worker process (``VmHWM``: the counts, the model and
everything the fit allocates; the interpreter and libraries alone are ~150 MiB) and its RSS with
the counts loaded, just before the fit ("data MiB"). Numba's first-call time (compiling, or
loading the on-disk cache) is measured before the timed fit and printed apart. A last table
puts the shapes side by side (our default solver against implicit CG).

    .venv/bin/python benchmarks/bench_als.py                      # S,M,L, default shape (long)
    # the shapes side by side at S, 5 interleaved repeats, CG only (about 3 minutes):
    .venv/bin/python benchmarks/bench_als.py --sizes S --shapes default,heavy,flat --repeats 5 \
        --methods ours-default,implicit-cg
    # a shape of your own (any SyntheticParams field), beside the default:
    .venv/bin/python benchmarks/bench_als.py --sizes S --shapes default \
        --methods ours-default,implicit-cg --shape-param zipf_exponent=0.8 \
        --shape-param activity_sigma=2
    # the README figures (about 20 minutes):
    .venv/bin/python benchmarks/bench_als.py --sizes S,M,L --repeats 3 \
        --implicit-cholesky-sizes S --ours-cholesky-sizes S,M
    # only the exact solvers, ours against implicit's, at M:
    .venv/bin/python benchmarks/bench_als.py --sizes M --repeats 1 \
        --methods ours-cholesky,implicit-cholesky --implicit-cholesky-sizes M --ours-cholesky-sizes M

Targets (2 cores): our default solver at most 0.4x implicit CG's time with a loss no worse than
implicit CG's, at every size and shape; peak memory at L under 2 GiB; our Cholesky faster than
implicit's; the regularization scalings (``ours-count``, ``ours-frequency``: our default solver
with ``regularization_scaling="count"`` / ``"frequency"``) at most 5% slower than ``"none"``
(``ours-default``; the "final loss" column is the unscaled objective for every method); the
implicit-style class ``compat`` (:mod:`alsresearch.compat.implicit`, given implicit's input
``1 + 40 r`` with alpha 1: ours-default's objective) at most 5% slower than ``ours-default``:

    .venv/bin/python benchmarks/bench_als.py --sizes S --shapes default,heavy --repeats 5 \
        --methods ours-default,ours-count,ours-frequency
    .venv/bin/python benchmarks/bench_als.py --sizes S --repeats 3 --methods ours-default,compat

The machine is shared: timings are noisy, read the medians and the load columns.
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
#: named shapes: keyword arguments of the generator (SyntheticParams fields)
SHAPES: dict[str, dict[str, float]] = {
    "default": {},
    "heavy": {"zipf_exponent": 0.9, "activity_sigma": 1.5},
    "flat": {"zipf_exponent": 0.7, "activity_sigma": 0.5},
}
FACTORS, ITERATIONS, ALPHA, REG = 64, 15, 40.0, 0.01
METHODS = (
    "ours-default",
    "ours-cholesky",
    "implicit-cg",
    "implicit-cholesky",
    "ours-count",  # our default solver with regularization_scaling="count"
    "ours-frequency",  # ... and "frequency" (exponent 1)
    "compat",  # alsresearch.compat.implicit.AlternatingLeastSquares, implicit's input and alpha
)


def make_data(size: str, shape: str, params: dict, directory: Path) -> Path:
    """Generate a size and shape's counts once and store them for the workers (scipy .npz)."""
    from alsresearch.datasets import synthetic

    path = directory / f"counts_{size}_{shape}.npz"
    if not path.exists():
        n_users, n_items, nnz = SIZES[size]
        sp.save_npz(path, synthetic(n_users, n_items, nnz, seed=0, **params).matrix)
    return path


def row_lengths(matrix: sp.csr_matrix) -> str:
    """Median, 99th percentile and longest row of the users and of the items, and the share of
    the cells in user rows shorter than 16 cells: the numbers that tell shapes apart."""
    users = np.diff(matrix.indptr)
    items = np.bincount(matrix.indices, minlength=matrix.shape[1])
    short = users[users < 16].sum() / max(1, matrix.nnz)
    parts = [
        f"{name} rows median/p99/max {np.median(n):.0f}/{np.percentile(n, 99):.0f}/{n.max()}"
        for name, n in (("user", users), ("item", items))
    ]
    return "; ".join(parts) + f"; cells in user rows < 16: {short:.0%}"


def _busy_jiffies() -> int:
    """CPU time all processes have spent busy since boot, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


# ---------------------------------------------------------------------- one fit, in a worker
def worker(method: str, data_path: str, threads: int) -> None:
    import numba
    from threadpoolctl import threadpool_limits

    from alsresearch.als import ALSModel, objective

    counts = sp.load_npz(data_path).tocsr()
    rss_before = rss_mib()
    jit = None
    tick = os.sysconf("SC_CLK_TCK")
    if method.startswith("ours"):
        solver = "cholesky" if method == "ours-cholesky" else ALSModel().config.solver
        mode = method.removeprefix("ours-") if method in ("ours-count", "ours-frequency") else None
        params = dict(factors=FACTORS, alpha=ALPHA, regularization=REG, solver=solver)
        params["regularization_scaling"] = mode or "none"
        start = time.perf_counter()  # first call: compile or load numba's on-disk cache
        ALSModel(iterations=1, num_threads=threads, random_state=0, **params).fit(counts[:200])
        jit = time.perf_counter() - start
        model = ALSModel(iterations=ITERATIONS, num_threads=threads, random_state=0, **params)
        busy = _busy_jiffies()
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(counts)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        busy = (_busy_jiffies() - busy) / tick
        users, items = model.user_factors, model.item_factors
        own = objective(counts, users, items, ALPHA, REG, "raw", params["regularization_scaling"])
        assert abs(model.loss_history[-1] - own) <= 1e-4 * model.loss_history[-1]
        label = f"ours-{solver}" + (f"-{mode}" if mode else "")
    elif method == "compat":
        # the implicit-style class on implicit's input (1 + 40 r, alpha 1): ours-default's
        # objective, through the compat layer
        from alsresearch.compat.implicit import AlternatingLeastSquares as Compat

        confidence = counts.astype(np.float32)
        confidence.data = 1 + ALPHA * confidence.data
        params = dict(factors=FACTORS, regularization=REG, alpha=1.0, num_threads=threads)
        start = time.perf_counter()  # first call: compile or load numba's on-disk cache
        Compat(iterations=1, random_state=0, **params).fit(confidence[:200], show_progress=False)
        jit = time.perf_counter() - start
        model = Compat(iterations=ITERATIONS, random_state=0, **params)
        busy = _busy_jiffies()
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(confidence, show_progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        busy = (_busy_jiffies() - busy) / tick
        users, items = model.user_factors, model.item_factors
        label = "compat"
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
            busy = _busy_jiffies()
            start, cpu = time.perf_counter(), time.process_time()
            model.fit(confidence, show_progress=False)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            busy = (_busy_jiffies() - busy) / tick
        users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
        label = method
    peak = peak_rss_mib()
    loss = objective(counts, users, items, ALPHA, REG)
    report_and_exit(
        {
            "label": label,
            "seconds": seconds,
            "cpu": cpu,
            "others": max(0.0, busy - cpu) / seconds,
            "jit": jit,
            "loss": loss,
            "peak_mib": peak,
            "data_mib": rss_before,
            "threads": numba.get_num_threads() if threads == 0 else threads,
        }
    )


# ---------------------------------------------------------------------- the driver
def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _shape_params(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, float]:
    """``--shape-param name=value`` pairs as generator keyword arguments (checked here)."""
    from alsresearch.datasets.generator import SyntheticParams

    params: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            params[name.strip()] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            sep = ""
        if not sep:
            parser.error(f"--shape-param takes name=number, got {pair!r}")
    try:
        SyntheticParams(**params)
    except (TypeError, ValueError) as exc:
        parser.error(f"--shape-param: {exc}")
    return params


def _paired_ratio(runs: list[dict], base: list[dict], key: str) -> float:
    """Median over repeats of run / base run of the same repeat (adjacent in time)."""
    return median([a[key] / b[key] for a, b in zip(runs, base, strict=False)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="S,M,L", help="comma-separated among S, M, L")
    parser.add_argument(
        "--shapes", default="default", help=f"comma-separated among {', '.join(SHAPES)}"
    )
    parser.add_argument(
        "--shape-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a generator parameter (SyntheticParams field) of an extra shape 'custom'; "
        "repeat for several",
    )
    parser.add_argument("--repeats", type=int, default=5, help="fits per method, size, shape")
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
    sizes = [s.upper() for s in _names(args.sizes)]
    for s in sizes:
        if s not in SIZES:
            parser.error(f"unknown size {s!r}; choose among {', '.join(SIZES)}")
    shapes = {}
    for name in _names(args.shapes):
        if name not in SHAPES:
            parser.error(f"unknown shape {name!r}; choose among {', '.join(SHAPES)}")
        shapes[name] = SHAPES[name]
    if args.shape_param:
        shapes["custom"] = _shape_params(args.shape_param, parser)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chosen = _names(args.methods)
    for m in chosen:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose among {', '.join(METHODS)}")
    threads = args.threads or os.cpu_count() or 1
    slow = {
        "implicit-cholesky": {s.upper() for s in _names(args.implicit_cholesky_sizes)},
        "ours-cholesky": {s.upper() for s in _names(args.ours_cholesky_sizes)},
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
        f"{'size':4} {'shape':8} {'method':18} {'fit s (median)':>14} {'runs':>26} "
        f"{'/impl CG':>8} {'paired':>6} {'/impl chol':>10} {'CPU s':>7} {'CPU/impl CG':>11} "
        f"{'final loss':>12} {'/our chol':>9} {'loss/impl CG':>12} {'peak MiB':>8} "
        f"{'data MiB':>8} {'JIT s':>5} {'others':>6}"
    )
    side_by_side = []
    with tempfile.TemporaryDirectory(prefix="bench_als_") as tmp:
        for size in sizes:
            for shape, params in shapes.items():
                n_users, n_items, _ = SIZES[size]
                t0 = time.perf_counter()
                data = make_data(size, shape, params, Path(tmp))
                matrix = sp.load_npz(data).tocsr()
                described = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
                print(
                    f"\n## {size} {shape} ({described}): {n_users} users x {n_items} items, "
                    f"{matrix.nnz} cells (generated in {time.perf_counter() - t0:.1f} s)\n"
                    f"   {row_lengths(matrix)}",
                    flush=True,
                )
                methods = [m for m in chosen if m not in slow or size in slow[m]]
                if not methods:
                    continue
                runs: dict[str, list[dict]] = {m: [] for m in methods}
                for rep in range(args.repeats):  # interleaved: drifting load hits every method
                    for m in methods:
                        load = os.getloadavg()[0]
                        run = run_isolated(__file__, ["--worker", m, str(data), str(threads)])
                        run["load"] = load
                        runs[m].append(run)
                        print(
                            f"   run {rep + 1} {m:18} {run['seconds']:7.2f} s, CPU "
                            f"{run['cpu']:6.2f} s, loss {run['loss']:.6g}; load average "
                            f"{load:.2f}, others {run['others']:.2f}",
                            flush=True,
                        )
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
                        "others": median([x["others"] for x in r]),
                        "load": median([x["load"] for x in r]),
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
                    paired = (
                        f"{_paired_ratio(runs[m], runs['implicit-cg'], 'seconds'):.2f}"
                        if cg
                        else "-"
                    )
                    cpu_vs_cg = f"{s['cpu'] / cg['cpu']:.2f}" if cg else "-"
                    loss_vs_cg = f"{s['loss'] / cg['loss']:.4f}" if cg else "-"
                    jit = f"{s['jit']:.1f}" if s["jit"] is not None else "-"
                    vs_exact = f"{s['loss'] / exact['loss']:.4f}" if exact else "-"
                    all_runs = ",".join(f"{x:.2f}" for x in s["all"])
                    print(
                        f"{size:4} {shape:8} {s['label']:18} {s['seconds']:14.2f} "
                        f"{all_runs:>26} {vs_cg:>8} {paired:>6} {vs_chol:>10} "
                        f"{s['cpu']:7.1f} {cpu_vs_cg:>11} {s['loss']:12.6g} {vs_exact:>9} "
                        f"{loss_vs_cg:>12} {s['peak']:8.0f} {s['data']:8.0f} {jit:>5} "
                        f"{s['others']:6.2f}",
                        flush=True,
                    )
                ours = summary.get("ours-default")
                for mode in ("ours-count", "ours-frequency", "compat"):
                    if ours and mode in summary:
                        print(
                            f"   {mode}: fit time / ours-default {summary[mode]['seconds'] / ours['seconds']:.3f}"
                            f" (paired {_paired_ratio(runs[mode], runs['ours-default'], 'seconds'):.3f};"
                            " target at most 1.05)"
                        )
                if ours and cg:
                    side_by_side.append(
                        (size, shape, ours, cg, runs["ours-default"], runs["implicit-cg"])
                    )
    if side_by_side:
        print(
            "\n## side by side: our default solver / implicit CG (medians; 'paired' is the "
            "median of each run's ratio to the implicit run next to it)"
        )
        print(
            f"{'size':4} {'shape':8} {'ours s':>7} {'impl s':>7} {'wall':>5} {'paired':>6} "
            f"{'CPU':>5} {'loss':>7} {'load avg':>8} {'others':>6}"
        )
        for size, shape, ours, cg, ours_runs, cg_runs in side_by_side:
            print(
                f"{size:4} {shape:8} {ours['seconds']:7.2f} {cg['seconds']:7.2f} "
                f"{ours['seconds'] / cg['seconds']:5.2f} "
                f"{_paired_ratio(ours_runs, cg_runs, 'seconds'):6.2f} "
                f"{ours['cpu'] / cg['cpu']:5.2f} {ours['loss'] / cg['loss']:7.4f} "
                f"{median([ours['load'], cg['load']]):8.2f} "
                f"{median([ours['others'], cg['others']]):6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
