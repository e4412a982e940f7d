"""Benchmark: a warm-started retrain (``ALSModel.fit(data, init=previous)``) against a full one.

The daily loop retrains on the latest history. A warm start begins from the previous model's
factors (users and items matched by external id; new ones from the usual random draw), so it
should need fewer iterations than a cold fit from random factors. Measured on two data sets,
each replayed by timestamp (:mod:`alsresearch.replay`: train on the cells before day ``d``,
then before ``d + P``, score on ``[d + P, d + 2P)``; ``P = --period-days``, 30 by default,
and ``d + 2P`` the UTC midnight after the latest cell):

    movielens  the shipped MovieLens ml-latest-small (every rating one interaction)
    M          the synthetic generator (:func:`alsresearch.datasets.synthetic`, seed 0),
               200k users x 20k items, 5M cells; its cells carry timestamps (the latest of
               their events, spread over 2024), replayed like MovieLens

The previous model is a cold 15-iteration fit on the cells before ``d`` (64 factors, alpha 40,
regularization 0.01, seed 0), fitted once and saved. Then, with the cells before ``d + P``:

    cold  a 15-iteration fit from random factors (seed 0); its final loss is the target
    warm  a fit from the previous model (``init=``), stopped by its callback at the first
          iteration whose loss (``loss_history``: OUR exact objective, on the same new data)
          is within ``--tolerance`` (0.5%) of that cold run's final loss, or after
          ``--max-warm-iterations``

Printed per data set: the periods and their sizes (the next period's cells of users or items
the models never saw cannot be ranked and are counted, not scored), then per fit the median
time of ``--repeats`` runs (the whole ``fit`` call, data preparation included), process CPU
time, iterations, final loss, NDCG@10 and Recall@10 on the next period
(:func:`alsresearch.evaluate.evaluate`, train items excluded), and the warm start's matched
users and items; "cold @tol" is how many iterations the cold fit itself needed to come within
the tolerance of its own final loss (from its loss history, not a separate run). Then the
ratios warm / cold: iterations, time (of the medians, and the median of each warm run against
the cold run just before it), NDCG@10.

Every fit runs in a fresh process (``run_isolated``) with BLAS limited to one thread inside the
kernels, after an untimed one-iteration fit that compiles or loads numba's cache; repeats are
interleaved (cold, warm, cold, warm, ...) so both see the same machine load, and each run
prints the 1-minute load average before it and "others", the CPU seconds per second other
processes used during the fit (from /proc/stat; 2.0 means both cores of a 2-core machine were
busy with other work).

    .venv/bin/python benchmarks/bench_retrain.py                          # both, 3 repeats
    nice -n 10 .venv/bin/python benchmarks/bench_retrain.py --datasets movielens --repeats 5
    nice -n 10 .venv/bin/python benchmarks/bench_retrain.py --datasets M --repeats 1
    # weekly retrains of the shipped data, a tighter target:
    .venv/bin/python benchmarks/bench_retrain.py --datasets movielens --period-days 7 \
        --tolerance 0.001

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
from _common import median, report_and_exit, run_isolated

DATASETS = ("movielens", "M")
SYNTHETIC_M = (200_000, 20_000, 5_000_000)
FACTORS, ITERATIONS, ALPHA, REG, SEED = 64, 15, 40.0, 0.01, 0
K = 10


def _busy_jiffies() -> int:
    """CPU time all processes have spent busy since boot, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


# ---------------------------------------------------------------------- data, saved for workers
def save_data(data, path: Path) -> None:
    m = data.matrix
    np.savez(
        path,
        data=m.data,
        indices=m.indices,
        indptr=m.indptr,
        shape=np.asarray(m.shape),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        timestamps=data.timestamps,
    )


def load_data(path: str):
    from alsresearch.data import Interactions

    with np.load(path, allow_pickle=False) as f:
        matrix = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        return Interactions(matrix, f["user_ids"], f["item_ids"], f["timestamps"])


def make_data(name: str, directory: Path) -> Path:
    from alsresearch.datasets import load_default, synthetic

    data = load_default() if name == "movielens" else synthetic(*SYNTHETIC_M, seed=0)
    path = directory / f"{name}.npz"
    save_data(data, path)
    return path


def _params(threads: int, iterations: int = ITERATIONS) -> dict:
    return dict(
        factors=FACTORS,
        iterations=iterations,
        alpha=ALPHA,
        regularization=REG,
        random_state=SEED,
        num_threads=threads,
    )


# ---------------------------------------------------------------------- one fit, in a worker
def worker(kind: str, data_path: str, cuts: list[int], threads: int, extra: list[str]) -> None:
    """``base``: fit the previous model and save it to ``extra[0]``; ``cold``: the timed cold
    fit; ``warm``: the timed warm fit from ``extra[0]`` with target loss ``extra[1]``,
    tolerance ``extra[2]`` and at most ``extra[3]`` iterations."""
    import numba

    from alsresearch.als import ALSModel
    from alsresearch.evaluate import evaluate
    from alsresearch.replay import period_split

    data = load_data(data_path)
    if kind == "base":
        model = ALSModel(**_params(threads)).fit(period_split(data, cuts[0], cuts[1]).train)
        model.save(extra[0])
        report_and_exit({"loss": model.loss_history[-1]})
    period = period_split(data, cuts[1], cuts[2])
    train, test = period.train, period.test
    # first call: compile or load numba's on-disk cache (untimed)
    ALSModel(**_params(threads, 1)).fit(train.matrix[:200])
    init = target = None
    if kind == "warm":
        init = ALSModel.load(extra[0])
        target = float(extra[1]) * (1 + float(extra[2]))
        model = ALSModel(**_params(threads, int(extra[3])))
    else:
        model = ALSModel(**_params(threads))

    def callback(iteration: int, fitted: ALSModel) -> bool:
        return target is not None and fitted.loss_history[-1] <= target

    tick = os.sysconf("SC_CLK_TCK")
    busy = _busy_jiffies()
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train, callback=callback, init=init)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    busy = (_busy_jiffies() - busy) / tick
    scored = evaluate(model, train, test, k=K, metrics=["ndcg", "recall"])
    history = model.loss_history
    report_and_exit(
        {
            "seconds": seconds,
            "cpu": cpu,
            "others": max(0.0, busy - cpu) / seconds,
            "iterations": len(history),
            "reached": target is None or history[-1] <= target,
            "loss": history[-1],
            "history": history,
            "ndcg": scored.metrics[f"ndcg@{K}"],
            "recall": scored.metrics[f"recall@{K}"],
            "test_users": scored.n_users,
            "matched": model.warm_start,
            "threads": numba.get_num_threads() if threads == 0 else threads,
        }
    )


# ---------------------------------------------------------------------- the driver
def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _within(history: list[float], target: float, tolerance: float) -> int | None:
    """The first iteration (1-based) whose loss is within ``tolerance`` of ``target``."""
    for i, loss in enumerate(history, start=1):
        if loss <= target * (1 + tolerance):
            return i
    return None


def describe(name: str, data, cuts: np.ndarray) -> None:
    from alsresearch.data import format_time
    from alsresearch.replay import period_split

    before = period_split(data, int(cuts[0]), int(cuts[1]))
    after = period_split(data, int(cuts[1]), int(cuts[2]))
    days = [format_time(int(c))[:10] for c in cuts]
    print(
        f"\n## {name}: {data.n_users} users x {data.n_items} items, {data.nnz} cells\n"
        f"   previous model: cells before {days[0]}: {before.train.n_users} users x "
        f"{before.train.n_items} items, {before.train.nnz} cells\n"
        f"   retrain: cells before {days[1]}: {after.train.n_users} users x "
        f"{after.train.n_items} items, {after.train.nnz} cells "
        f"(+{after.train.nnz - before.train.nnz} cells, "
        f"+{after.train.n_users - before.train.n_users} users, "
        f"+{after.train.n_items - before.train.n_items} items)\n"
        f"   next period [{days[1]}, {days[2]}): {after.n_period_cells} cells; scored: "
        f"{after.test.nnz} cells of {int((np.diff(after.test.matrix.indptr) > 0).sum())} known "
        f"users; not scored: {after.n_cold_user_cells} of new users, "
        f"{after.n_cold_item_cells} of known users on new items",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help=f"comma-separated among {DATASETS}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per kind")
    parser.add_argument("--threads", type=int, default=0, help="kernel threads (0 = all)")
    parser.add_argument("--period-days", type=float, default=30.0, help="days between retrains")
    parser.add_argument(
        "--tolerance", type=float, default=0.005, help="warm target: within this share of cold"
    )
    parser.add_argument(
        "--max-warm-iterations", type=int, default=30, help="give up on the target after these"
    )
    parser.add_argument("--worker", nargs="+", metavar="ARG")
    args = parser.parse_args()
    if args.worker:
        kind, data_path, cuts, threads, *extra = args.worker
        worker(kind, data_path, [int(c) for c in cuts.split(",")], int(threads), extra)
        return
    chosen = _names(args.datasets)
    for name in chosen:
        if name not in DATASETS:
            parser.error(f"unknown data set {name!r}; choose among {', '.join(DATASETS)}")
    if args.repeats < 1 or args.max_warm_iterations < 1:
        parser.error("--repeats and --max-warm-iterations must be >= 1")
    if not 0 < args.tolerance < 1 or args.period_days <= 0:
        parser.error("--tolerance must be in (0, 1) and --period-days > 0")
    threads = args.threads or os.cpu_count() or 1

    from alsresearch.provenance import environment_record
    from alsresearch.replay import cutoffs

    env = environment_record()
    print(
        f"# bench_retrain: k={FACTORS}, cold {ITERATIONS} iterations, alpha={ALPHA}, "
        f"reg={REG}, seed {SEED}, {threads} threads, {args.repeats} repeats, periods of "
        f"{args.period_days:g} days, warm target: within {args.tolerance:.1%} of the cold "
        f"fit's final loss (at most {args.max_warm_iterations} iterations); git "
        f"{env['git']['commit']} dirty={env['git']['dirty']}; numba "
        f"{env['packages']['numba']}; shared machine, timings are noisy"
    )
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench_retrain_") as tmp:
        for name in chosen:
            t0 = time.perf_counter()
            path = make_data(name, Path(tmp))
            data = load_data(str(path))
            cuts = cutoffs(data, args.period_days, 2)
            describe(name, data, cuts)
            print(f"   (data ready in {time.perf_counter() - t0:.1f} s)", flush=True)
            common = [str(path), ",".join(str(int(c)) for c in cuts), str(threads)]
            base = Path(tmp) / f"{name}_previous.npz"
            run_isolated(__file__, ["--worker", "base", *common, str(base)])
            runs: dict[str, list[dict]] = {"cold": [], "warm": []}
            for rep in range(args.repeats):  # interleaved: drifting load hits both
                for kind in ("cold", "warm"):
                    extra = []
                    if kind == "warm":
                        target = runs["cold"][-1]["loss"]
                        extra = [str(base), repr(target), repr(args.tolerance)]
                        extra.append(str(args.max_warm_iterations))
                    load = os.getloadavg()[0]
                    run = run_isolated(__file__, ["--worker", kind, *common, *extra])
                    run["load"] = load
                    runs[kind].append(run)
                    print(
                        f"   run {rep + 1} {kind}: {run['seconds']:7.2f} s, CPU "
                        f"{run['cpu']:6.2f} s, {run['iterations']:2d} iterations, loss "
                        f"{run['loss']:.6g}, NDCG@{K} {run['ndcg']:.4f}; load average "
                        f"{load:.2f}, others {run['others']:.2f}",
                        flush=True,
                    )
            cold, warm = runs["cold"], runs["warm"]
            cold_at_tol = [_within(r["history"], r["loss"], args.tolerance) for r in cold]
            print(
                f"{'fit':5} {'s (median)':>10} {'runs':>22} {'CPU s':>7} {'iters':>5} "
                f"{'cold @tol':>9} {'final loss':>12} {'NDCG@10':>8} {'Recall@10':>9} "
                f"{'users':>6} {'matched users/items':>20} {'load avg':>8} {'others':>6}"
            )
            for kind, r in runs.items():
                matched = r[0]["matched"]
                matched = f"{matched['users']}/{matched['items']}" if matched else "-"
                at_tol = f"{median(cold_at_tol):.0f}" if kind == "cold" else "-"
                all_runs = ",".join(f"{x['seconds']:.2f}" for x in r)
                print(
                    f"{kind:5} {median([x['seconds'] for x in r]):10.2f} {all_runs:>22} "
                    f"{median([x['cpu'] for x in r]):7.1f} "
                    f"{median([x['iterations'] for x in r]):5.0f} {at_tol:>9} "
                    f"{median([x['loss'] for x in r]):12.6g} "
                    f"{median([x['ndcg'] for x in r]):8.4f} "
                    f"{median([x['recall'] for x in r]):9.4f} {r[0]['test_users']:6d} "
                    f"{matched:>20} {median([x['load'] for x in r]):8.2f} "
                    f"{median([x['others'] for x in r]):6.2f}",
                    flush=True,
                )
            missed = sum(not r["reached"] for r in warm)
            if missed:
                print(
                    f"   warm: {missed} of {len(warm)} runs did not reach the target in "
                    f"{args.max_warm_iterations} iterations"
                )
            ratios.append((name, cold, warm))
    print(
        f"\n## warm / cold (medians; 'paired' is the median of each warm run's time over the "
        f"cold run just before it); warm stops within {args.tolerance:.1%} of cold's loss"
    )
    print(
        f"{'data':9} {'iterations':>10} {'time':>6} {'paired':>6} {'CPU':>6} "
        f"{'NDCG@10':>8} {'Recall@10':>9} {'loss':>7}"
    )
    for name, cold, warm in ratios:

        def ratio(key: str, cold=cold, warm=warm) -> float:
            below = median([x[key] for x in cold])
            return median([x[key] for x in warm]) / below if below else float("nan")

        paired = median([w["seconds"] / c["seconds"] for w, c in zip(warm, cold, strict=True)])
        print(
            f"{name:9} {ratio('iterations'):10.2f} {ratio('seconds'):6.2f} {paired:6.2f} "
            f"{ratio('cpu'):6.2f} {ratio('ndcg'):8.3f} {ratio('recall'):9.3f} "
            f"{ratio('loss'):7.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
