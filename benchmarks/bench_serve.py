"""Benchmark: serving latency, in process (against implicit) and over HTTP on loopback.

A 100k-item, 64-factor ALS model, by default fitted with ``ALSModel``'s defaults on seeded
synthetic data (100k users, 3M cells: the model a promotion produces); with ``--factors-from
random``, seeded random factors (N(0, 0.1^2)) and 10..300 seen items a user, the worst case for
the screen (item norms all alike, so nothing can be skipped, and scores packed together). The
same factors go into implicit's CPU ``AlternatingLeastSquares``:

1. in process, exact top-10 with seen items excluded: single-user ``recommend`` (median and
   p99 over many users) and a batch of 1000 users, ours and implicit's in the same run, with
   the share of users on which both return the same items. Ours twice: ``ALSModel``'s own
   path (the exact screen of :mod:`alsresearch._quantized`) and the gemm path of the base
   class (one float32 matrix product and the shared top-k kernel), with the share of measured
   users on which the screen and the gemm path return the same top-10;
2. over HTTP (``alsresearch serve`` in a subprocess, httpx clients in threads): p50/p99 latency
   and requests per second for single users and for batches of 100 users, with several
   concurrent clients, in bounded loops.

    .venv/bin/python benchmarks/bench_serve.py
    .venv/bin/python benchmarks/bench_serve.py --factors-from random
    .venv/bin/python benchmarks/bench_serve.py --items 20000 --users 20000 --nnz 400000 --repeats 2
    .venv/bin/python benchmarks/bench_serve.py --screen all --skip-http
    .venv/bin/python benchmarks/bench_serve.py --compat --skip-http

``--compat`` also fits :class:`alsresearch.compat.implicit.AlternatingLeastSquares` on the same
data (implicit's input ``1 + 40 r`` with alpha 1: the same objective and seed, so the same
factors) and times its ``recommend(user, user_items[user], N=10)`` (and the batch call) beside
``ALSModel.recommend``, the ``user_items`` rows sliced before the clock starts (implicit's
column slices them inside its timing, as its callers must).

The screen's code path (:func:`alsresearch._simd.screen_path`: AVX-512 VNNI, AVX2 or portable)
is printed in the header and with every table. By default it is the best the CPU runs, or the
one ``ALSRESEARCH_SCREEN`` names. ``--screen vnni,avx2,portable`` (or ``all``) builds the model
once and measures each path in a worker process of its own (the in-process tables only; HTTP,
unless skipped, runs afterwards in this process on the default path), with
``ALSRESEARCH_SCREEN`` set; the ``avx2`` worker also compiles for an AVX2-only CPU
(``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=``, so numba emits no AVX-512 instruction, and
``OPENBLAS_CORETYPE=Haswell`` for the BLAS of the gemm path and implicit), so an AVX-512
machine measures what an AVX2-only one would run.

The machine is shared: timings are noisy; the tables quote medians of several runs, with the
load average when each starts.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serve_helpers

from alsresearch import _simd
from alsresearch._jit import kernel_threads, set_thread_limit
from alsresearch.als import ALSModel
from alsresearch.artefact import artefact_paths
from alsresearch.base import Recommender
from alsresearch.baselines import PopularityModel
from alsresearch.data import Interactions
from alsresearch.datasets import synthetic


def trained(n_users: int, n_items: int, nnz: int, factors: int, seed: int):
    """(our ALSModel fitted with its defaults on seeded synthetic data, the interactions)."""
    data = synthetic(n_users, n_items, nnz, seed=seed)
    return ALSModel(factors=factors, random_state=seed).fit(data), data


def build(n_users: int, n_items: int, factors: int, seed: int):
    """(our ALSModel, the interactions) with seeded random factors and seen items."""
    rng = np.random.default_rng(seed)
    user_factors = (rng.standard_normal((n_users, factors)) * 0.1).astype(np.float32)
    item_factors = (rng.standard_normal((n_items, factors)) * 0.1).astype(np.float32)
    per_user = rng.integers(10, 301, size=n_users)
    indptr = np.concatenate([[0], np.cumsum(per_user)])
    indices = np.concatenate(
        [np.sort(rng.choice(n_items, size=k, replace=False)) for k in per_user]
    ).astype(np.int32)
    seen = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n_users, n_items))
    data = Interactions(seen, np.arange(n_users), np.arange(n_items))
    model = ALSModel(factors=factors)
    model._set_training_data(data)  # what load_model does with a file's arrays
    model.set_state({"user_factors": user_factors, "item_factors": item_factors})
    return model, data


def implicit_model(model: ALSModel, threads: int = 0):
    from implicit.cpu.als import AlternatingLeastSquares

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's OpenBLAS thread advice
        other = AlternatingLeastSquares(
            factors=model.config.factors, num_threads=threads, random_state=0
        )
    other.user_factors = model.user_factors
    other.item_factors = model.item_factors
    return other


def timed(fn, calls) -> np.ndarray:
    """Seconds per call of ``fn(arg)`` for each arg in ``calls``."""
    out = np.empty(len(calls))
    for i, arg in enumerate(calls):
        start = time.perf_counter()
        fn(arg)
        out[i] = time.perf_counter() - start
    return out


class PlainALS:
    """``recommend`` / ``recommend_batch`` of ``model`` through the base class's gemm path."""

    def __init__(self, model: ALSModel) -> None:
        self.model = model

    def recommend(self, user, n):
        rows = self.model.user_index([user])
        idx, val = Recommender.rank_rows(self.model, rows, n, self.model.seen)
        return self.model._to_external(idx[0], val[0])

    def recommend_batch(self, users, n):
        rows = self.model.user_index(list(users))
        idx, val = Recommender.rank_rows(self.model, rows, n, self.model.seen)
        return [self.model._to_external(i, v) for i, v in zip(idx, val, strict=True)]


WHO = ("ours", "plain", "implicit")

#: environment of a worker measuring each screen path: AVX2 as an AVX2-only CPU would run it
PATH_ENV = {
    "vnni": {},
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "OPENBLAS_CORETYPE": "Haswell"},
    "portable": {},
}


def screen_label() -> str:
    """The screen path this process runs, and the CPU numba compiles for."""
    name = {"vnni": "AVX-512 VNNI", "avx2": "AVX2", "portable": "portable"}[_simd.screen_path()]
    return f"{name} (numba target {_simd.target_cpu()[0]})"


def trained_compat(data, factors: int, seed: int):
    """The implicit-style class fitted as ``trained`` fits ALSModel: implicit's input
    ``1 + 40 r`` with alpha 1 is ALSModel's default objective (alpha 40, ``1 + alpha r``)."""
    from alsresearch.compat.implicit import AlternatingLeastSquares

    defaults = ALSModel().config
    confidence = data.matrix.astype(np.float32).tocsr()
    confidence.data = 1 + defaults.alpha * confidence.data
    compat = AlternatingLeastSquares(
        factors=factors, regularization=defaults.regularization, alpha=1.0, random_state=seed
    )
    compat.fit(confidence, show_progress=False)
    return compat


def in_process(
    model, data, users: np.ndarray, repeats: int, batch: int, threads: int, compat=None
) -> dict:
    other = implicit_model(model, threads)
    plain = PlainALS(model)
    user_items = data.matrix.astype(np.float32).tocsr()
    rows = users[:batch]
    single_fns = {
        "ours": lambda u: model.recommend(int(u), n=10),
        "plain": lambda u: plain.recommend(int(u), n=10),
        "implicit": lambda u: other.recommend(int(u), user_items[int(u)], N=10),
    }
    batch_fns = {
        "ours": lambda _: model.recommend_batch(rows, n=10),
        "plain": lambda _: plain.recommend_batch(rows, n=10),
        "implicit": lambda _: other.recommend(rows, user_items[rows], N=10),
    }
    who = WHO
    if compat is not None:  # rows sliced here, off the clock
        sliced = {int(u): user_items[int(u)] for u in users}
        batch_rows = user_items[rows]
        single_fns["compat"] = lambda u: compat.recommend(int(u), sliced[int(u)], N=10)
        batch_fns["compat"] = lambda _: compat.recommend(rows, batch_rows, N=10)
        who = (*WHO, "compat")
    for fn in single_fns.values():  # warm-up (numba, BLAS)
        timed(fn, users[:20])
    same = 0
    for u in users[:200]:
        a = single_fns["ours"](u)[0]
        b = single_fns["implicit"](u)[0]
        same += int(np.array_equal(a, b))
    # every measured user (singles and the batch): the screen's top-10 against the plain path's
    measured = np.unique(np.concatenate([users, rows]))
    screen_idx = np.concatenate([model.topk_rows([u], 10)[0] for u in measured])
    plain_idx = Recommender.rank_rows(model, measured, 10, model.seen)[0]
    screen_same = float((screen_idx == plain_idx).all(axis=1).mean())
    if compat is not None:
        agree = [
            np.array_equal(single_fns["compat"](u)[0], single_fns["ours"](u)[0])
            for u in users[:200]
        ]
        compat_agree = float(np.mean(agree))
    single = {name: [] for name in who}
    batches = {name: [] for name in who}
    for _ in range(repeats):  # alternate, so all see the same machine load
        for name in who:
            single[name].append(timed(single_fns[name], users))
            batches[name].append(timed(batch_fns[name], [0])[0])
    result = {
        "agree": same / min(200, len(users)),
        "screen_agree": screen_same,
        "measured": len(measured),
    }
    if compat is not None:
        result["compat_agree"] = compat_agree
    for name in who:
        runs = single[name]
        result[name] = {
            "single_median_us": statistics.median(np.median(r) for r in runs) * 1e6,
            "single_p99_us": statistics.median(np.percentile(r, 99) for r in runs) * 1e6,
            "batch_ms": statistics.median(batches[name]) * 1e3,
        }
    return result


def http_load(url: str, make_request, clients: int, per_client: int) -> dict:
    """``clients`` threads, each with its own keep-alive connection, ``per_client`` requests."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        rng = np.random.default_rng(i)
        with httpx.Client(base_url=url, timeout=120.0) as client:
            make_request(client, rng)  # connect and warm up
            barrier.wait()
            for _ in range(per_client):
                start = time.perf_counter()
                response = make_request(client, rng)
                latencies[i].append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    flat = np.concatenate([np.asarray(x) for x in latencies])
    return {
        "p50_ms": float(np.median(flat) * 1e3),
        "p99_ms": float(np.percentile(flat, 99) * 1e3),
        "rps": len(flat) / wall,
        "requests": len(flat),
    }


def over_http(model, data, args) -> dict:
    from tests.serve_helpers import Server

    n_users = model.n_users
    with tempfile.TemporaryDirectory() as tmp:
        files = artefact_paths(Path(tmp) / "bench.npz")
        model.save(files.model)
        PopularityModel().fit(data).save(files.popularity)
        with Server(files.model) as server:

            def single(client, rng):
                return client.get(f"/recommendations/{int(rng.integers(n_users))}?n=10")

            def batch(client, rng):
                users = rng.integers(n_users, size=args.http_batch).tolist()
                return client.post("/recommendations/batch", json={"user_ids": users, "n": 10})

            results = {}
            for name, fn, per in (
                ("single", single, args.http_requests),
                (f"batch of {args.http_batch}", batch, max(1, args.http_requests // 10)),
            ):
                runs = [http_load(server.url, fn, args.clients, per) for _ in range(args.repeats)]
                results[name] = {
                    key: statistics.median(r[key] for r in runs)
                    for key in ("p50_ms", "p99_ms", "rps")
                }
                results[name]["requests"] = sum(r["requests"] for r in runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--factors-from",
        choices=("trained", "random"),
        default="trained",
        help="trained: ALSModel fitted on synthetic data (--users x --items, --nnz cells); "
        "random: N(0, 0.1^2) factors with 10..300 seen items a user, the worst case for the "
        "screen (no long items to rank first, scores packed together)",
    )
    parser.add_argument("--users", type=int, help="default 100000 trained, 10000 random")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--nnz", type=int, default=3_000_000, help="trained only")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--single-users", type=int, default=500, help="users per single run")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--http-requests", type=int, default=200, help="per client and run")
    parser.add_argument("--http-batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--compat",
        action="store_true",
        help="also fit alsresearch.compat.implicit.AlternatingLeastSquares on the same data and "
        "time its recommend beside ALSModel's (trained factors, in this process only)",
    )
    parser.add_argument(
        "--screen",
        help="screen paths to measure, each in a worker process: a comma-separated list of "
        f"{', '.join(_simd.PATHS)}, or 'all' (default: this process's path only)",
    )
    parser.add_argument("--worker-model", type=Path, help=argparse.SUPPRESS)  # in_worker's
    args = parser.parse_args()
    paths = []
    if args.screen:
        paths = list(_simd.PATHS) if args.screen == "all" else args.screen.split(",")
        unknown = sorted(set(paths) - set(_simd.PATHS))
        if unknown:
            parser.error(f"--screen: unknown paths {unknown}, expected {', '.join(_simd.PATHS)}")

    if args.compat and (args.factors_from != "trained" or args.screen):
        parser.error("--compat needs --factors-from trained and no --screen")
    args.users = args.users or (100_000 if args.factors_from == "trained" else 10_000)
    if args.worker_model:
        model = ALSModel.load(args.worker_model)
        data = Interactions(model.seen, model.user_ids, model.item_ids)
    elif args.factors_from == "trained":
        model, data = trained(args.users, args.items, args.nnz, args.factors, args.seed)
    else:
        model, data = build(args.users, args.items, args.factors, args.seed)
    users = np.random.default_rng(args.seed + 1).integers(args.users, size=args.single_users)
    if args.worker_model:
        tables(model, data, users, args)
        return
    load = os.getloadavg()[0]
    print(
        f"model: {args.users} users x {args.items} items, {args.factors} {args.factors_from} "
        f"factors, {data.nnz} seen cells; {os.cpu_count()} CPUs, load average {load:.1f} at start"
    )
    runs = ", ".join(_simd.supported_paths())
    print(f"screen path: {screen_label()}; the paths numba's target runs: {runs}")
    if paths:
        print(f"measured: {', '.join(paths)}, each in a worker process")
        with tempfile.TemporaryDirectory() as tmp:
            saved = model.save(Path(tmp) / "bench.npz")
            for path in paths:
                in_worker(path, saved, args)
    else:
        compat = None
        if args.compat:
            compat = trained_compat(data, args.factors, args.seed)
            diff = np.abs(compat.user_factors - model.user_factors).max()
            print(f"compat: fitted on the same data; largest user factor difference {diff:.2g}")
        tables(model, data, users, args, compat)
    print(f"peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    if args.skip_http:
        return
    http = over_http(model, data, args)
    print(
        f"\nover HTTP on loopback, {args.clients} concurrent clients, screen path "
        f"{screen_label()} (median of {args.repeats} runs; clients share the machine with the "
        "server)"
    )
    print(f"{'':22}{'p50 (ms)':>10}{'p99 (ms)':>10}{'req/s':>9}{'users/s':>10}{'requests':>10}")
    for name, r in http.items():
        per = args.http_batch if name.startswith("batch") else 1
        print(
            f"{name:22}{r['p50_ms']:10.2f}{r['p99_ms']:10.2f}{r['rps']:9.0f}"
            f"{r['rps'] * per:10.0f}{r['requests']:10d}"
        )


def in_worker(path: str, saved: Path, args) -> None:
    """The in-process tables for screen path ``path`` (the model read from ``saved``), in a
    worker process with ``ALSRESEARCH_SCREEN=path`` and the environment of :data:`PATH_ENV`."""
    env = {**os.environ, **PATH_ENV[path], _simd.ENV: path}
    settings = " ".join(f"{k}={v}" for k, v in {_simd.ENV: path, **PATH_ENV[path]}.items())
    print(f"\n=== screen path {path}, in a worker process: {settings}", flush=True)
    options = {
        "--factors-from": args.factors_from,
        "--users": args.users,
        "--single-users": args.single_users,
        "--batch": args.batch,
        "--repeats": args.repeats,
        "--seed": args.seed,
        "--worker-model": saved,
    }
    command = [sys.executable, __file__, *(str(x) for kv in options.items() for x in kv)]
    subprocess.run(command, env=env, check=True)


def tables(model, data, users: np.ndarray, args, compat=None) -> None:
    """The in-process tables: all kernel threads, then one (as `alsresearch serve` runs);
    with ``compat``, its ``recommend`` against ALSModel's too."""
    from threadpoolctl import threadpool_limits

    all_cores = kernel_threads()
    for threads, label in ((0, f"all ({all_cores})"), (1, "1, as `alsresearch serve` runs")):
        set_thread_limit(threads)
        load = os.getloadavg()
        with threadpool_limits(limits=threads or None, user_api="blas"):
            res = in_process(model, data, users, args.repeats, args.batch, threads, compat)
        set_thread_limit(0)
        ours, plain, theirs = res["ours"], res["plain"], res["implicit"]
        print(
            f"\nin process, exact top-10, seen items excluded; BLAS and kernel threads: {label}; "
            f"screen path {screen_label()} (median of {args.repeats} runs; load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start)"
        )
        print(f"{'':28}{'ALSModel':>10}{'gemm path':>11}{'implicit':>10}{'ALSModel/implicit':>19}")
        for key, name in (
            ("single_median_us", "single user median (us)"),
            ("single_p99_us", "single user p99 (us)"),
            ("batch_ms", f"batch of {args.batch} users (ms)"),
        ):
            print(
                f"{name:28}{ours[key]:10.0f}{plain[key]:11.0f}{theirs[key]:10.0f}"
                f"{ours[key] / theirs[key]:19.2f}"
            )
        print(f"ALSModel: same top-10 items as implicit for {100 * res['agree']:.0f}% of 200 users")
        print(
            f"screen: same top-10 items as the gemm path for "
            f"{100 * res['screen_agree']:.1f}% of {res['measured']} measured users"
        )
        if compat is not None:
            mine = res["compat"]
            print(
                f"compat recommend: single median {mine['single_median_us']:.0f} us, p99 "
                f"{mine['single_p99_us']:.0f} us, batch {mine['batch_ms']:.0f} ms; compat / "
                f"ALSModel: {mine['single_median_us'] / ours['single_median_us']:.3f} median, "
                f"{mine['single_p99_us'] / ours['single_p99_us']:.3f} p99, "
                f"{mine['batch_ms'] / ours['batch_ms']:.3f} batch (target at most 1.05); same "
                f"top-10 as ALSModel for {100 * res['compat_agree']:.0f}% of 200 users"
            )


if __name__ == "__main__":
    main()
