"""Benchmark: Spark MLlib's implicit ALS (``SparkALSModel``, local master) against ``ALSModel``
on the same objective, data and threads.

Synthetic power-law data from :func:`alsresearch.datasets.synthetic` (seed 0):

    S  50k users x  5k items, ~1M cells
    M 200k users x 20k items, ~5M cells

64 factors, 15 iterations, alpha 40, regularization 0.01 scaled by each row's count (ALS-WR,
what Spark does; ``regularization_scaling="count"`` for ours), so both minimise the same
objective, and the "final loss" column is OUR exact objective
(:func:`alsresearch.als.objective`, count-scaled) on each engine's factors. Spark runs with
master ``local[T]`` and ours with ``num_threads=T`` (T = ``--threads``, default all cores).
Every fit runs in a fresh process (:func:`_common.run_isolated`). Printed per size and method:

- fit s: the fit alone (Spark: ``ALS.fit``, after the session started and the ratings were
  cached; ours: ``ALSModel.fit``, after numba's first call, printed apart as "JIT s");
- start s: Spark's session start (JVM launch) and the preparation of the ratings DataFrame;
- collect s: collecting Spark's factors (and the seen items) into numpy;
- peak MiB: the largest resident memory of the whole process tree during the run, sampled
  every 50 ms with psutil (Python driver + Spark's JVM + Python workers; ours is one process,
  for which the kernel's exact high-water mark is printed too);
- the ratios Spark / ours of fit time and peak memory, and both final losses.

    nice -n 10 .venv/bin/python benchmarks/bench_spark.py --sizes S --repeats 1
    nice -n 10 .venv/bin/python benchmarks/bench_spark.py --sizes S,M --repeats 3 \\
        --methods ours-count,ours-cholesky-count,spark

The machine is shared: timings are noisy, read the medians. Spark is expected to be slower on
one machine (JVM, serialization, shuffles between blocks); it pays when the data does not fit
one machine's memory (see the README).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, peak_rss_mib, report_and_exit, run_isolated

SIZES = {
    "S": (50_000, 5_000, 1_000_000),
    "M": (200_000, 20_000, 5_000_000),
}
FACTORS, ITERATIONS, ALPHA, REG = 64, 15, 40.0, 0.01
METHODS = ("ours-count", "ours-cholesky-count", "spark")


def make_data(size: str, directory: Path) -> Path:
    from alsresearch.datasets import synthetic

    path = directory / f"counts_{size}.npz"
    if not path.exists():
        n_users, n_items, nnz = SIZES[size]
        sp.save_npz(path, synthetic(n_users, n_items, nnz, seed=0).matrix)
    return path


class TreePeak:
    """The peak of the summed RSS of this process and all its descendants (the Spark JVM and
    Python workers), sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except self._psutil.Error:  # a worker that just exited
                pass
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


# ---------------------------------------------------------------------- one fit, in a worker
def worker(method: str, data_path: str, threads: int, driver_memory: str) -> None:
    from alsresearch.als import ALSModel, objective
    from alsresearch.data import Interactions

    counts = Interactions(sp.load_npz(data_path).tocsr())
    result: dict = {"method": method, "jit": None, "start": None, "collect": None}
    with TreePeak() as tree:
        if method.startswith("ours"):
            solver = "cholesky" if method == "ours-cholesky-count" else ALSModel().config.solver
            params = dict(
                factors=FACTORS, alpha=ALPHA, regularization=REG, solver=solver,
                regularization_scaling="count", num_threads=threads, random_state=0,
            )  # fmt: skip
            start = time.perf_counter()
            ALSModel(**{**params, "iterations": 1}).fit(counts.matrix[:200])
            result["jit"] = time.perf_counter() - start
            model = ALSModel(iterations=ITERATIONS, **params)
            start = time.perf_counter()
            model.fit(counts)
            result["seconds"] = time.perf_counter() - start
            result["label"] = f"ours-{solver}-count"
        else:
            from alsresearch.spark import SparkALSModel, get_session, stop_session

            start = time.perf_counter()
            conf = {"spark.driver.memory": driver_memory, "spark.ui.enabled": "false"}
            session = get_session(f"local[{threads}]", conf=conf)
            session.range(1).count()  # the first job starts the executors' threads
            result["start"] = time.perf_counter() - start
            model = SparkALSModel(
                factors=FACTORS, iterations=ITERATIONS, alpha=ALPHA, regularization=REG,
                random_state=0, user_blocks=2 * threads, item_blocks=2 * threads,
            )  # fmt: skip
            model.fit(counts)
            info = model.spark_info
            result["seconds"] = info["fit_seconds"]
            result["collect"] = info["collect_seconds"]
            result["start"] += info["prepare_seconds"]
            result["label"] = f"spark {info['spark_version']} {info['master']}"
            stop_session()
        users, items = model.user_factors, model.item_factors
    result["loss"] = objective(counts, users, items, ALPHA, REG, "raw", "count")
    result["peak_tree_mib"] = tree.peak_mib
    result["peak_self_mib"] = peak_rss_mib()
    report_and_exit(result)


# ---------------------------------------------------------------------- the driver
def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="S,M", help="comma-separated among S, M")
    parser.add_argument("--repeats", type=int, default=3, help="fits per method and size")
    parser.add_argument("--threads", type=int, default=0, help="threads for both (0 = all)")
    parser.add_argument(
        "--methods", default="ours-count,spark", help=f"comma-separated among {', '.join(METHODS)}"
    )
    parser.add_argument(
        "--driver-memory", default="4g", help="spark.driver.memory of the local Spark (its heap)"
    )
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "DATA", "THREADS", "MEMORY"))
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]), args.worker[3])
        return
    sizes = [s.upper() for s in _names(args.sizes)]
    for s in sizes:
        if s not in SIZES:
            parser.error(f"unknown size {s!r}; choose among {', '.join(SIZES)}")
    methods = _names(args.methods)
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose among {', '.join(METHODS)}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    threads = args.threads or os.cpu_count() or 1

    from alsresearch.provenance import environment_record

    env = environment_record()
    try:
        import pyspark

        spark_version = pyspark.__version__
    except ImportError:
        spark_version = "not installed"
    print(
        f"# bench_spark: k={FACTORS}, {ITERATIONS} iterations, alpha={ALPHA}, reg={REG} x row "
        f"count, {threads} threads (Spark local[{threads}], driver memory "
        f"{args.driver_memory}), {args.repeats} repeats; git {env['git']['commit']} "
        f"dirty={env['git']['dirty']}; pyspark {spark_version}; shared machine, timings are noisy"
    )
    header = (
        f"{'size':4} {'method':34} {'fit s':>8} {'/ours':>6} {'start s':>7} {'collect s':>9} "
        f"{'peak MiB':>8} {'/ours':>6} {'self MiB':>8} {'final loss':>13} {'/ours':>7} "
        f"{'JIT s':>5}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        for size in sizes:
            t0 = time.perf_counter()
            data = make_data(size, Path(tmp))
            nnz = sp.load_npz(data).nnz
            n_users, n_items, _ = SIZES[size]
            print(
                f"\n## {size}: {n_users} users x {n_items} items, {nnz} cells "
                f"(generated in {time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
            runs: dict[str, list[dict]] = {m: [] for m in methods}
            for rep in range(args.repeats):  # interleaved, so drifting load hits both
                for m in methods:
                    worker_args = ["--worker", m, str(data), str(threads), args.driver_memory]
                    run = run_isolated(__file__, worker_args)
                    runs[m].append(run)
                    print(
                        f"   run {rep + 1} {m:20} fit {run['seconds']:8.2f} s, peak "
                        f"{run['peak_tree_mib']:.0f} MiB, loss {run['loss']:.6g}",
                        flush=True,
                    )
            keys = ("seconds", "start", "collect", "peak_tree_mib", "peak_self_mib", "loss", "jit")
            summary = {}
            for m, r in runs.items():
                summary[m] = {"label": r[0]["label"]}
                for key in keys:
                    summary[m][key] = median([x[key] for x in r]) if r[0][key] is not None else None
            base = summary.get("ours-count") or summary.get("ours-cholesky-count")
            print(header)
            for m in methods:
                s = summary[m]
                ratio = s["seconds"] / base["seconds"] if base else None
                mem = s["peak_tree_mib"] / base["peak_tree_mib"] if base else None
                loss = s["loss"] / base["loss"] if base else None
                print(
                    f"{size:4} {s['label']:34} {s['seconds']:8.2f} {_fmt(ratio, '6.2f')} "
                    f"{_fmt(s['start'], '7.1f')} {_fmt(s['collect'], '9.2f')} "
                    f"{s['peak_tree_mib']:8.0f} {_fmt(mem, '6.2f')} {s['peak_self_mib']:8.0f} "
                    f"{s['loss']:13.6g} {_fmt(loss, '7.4f')} {_fmt(s['jit'], '5.1f')}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
