"""Benchmark: sweep throughput and the storage's own cost, SQLite against PostgreSQL.

On the shipped MovieLens ml-latest-small (the default test split; the package's default ALS
search space, seed 0), the same sweep of ``--trials`` trials runs on a fresh study each time:

    sqlite x1     one worker, a SQLite file (after an untimed 2-trial sweep that loads numba's
                  compiled kernels)
    postgres x1   one worker, a PostgreSQL server on loopback
    postgres x2   two worker processes on one study (each fitting with cpu_count // 2 threads)

One seeded worker draws the same trials on both storages (tests/test_postgres.py checks it), so
the first two rows do the same work; two workers draw other trials (their sampler streams
differ), so their row compares throughput, not identical work.

Printed per row: finished (COMPLETE + PRUNED) trials per minute over the whole ``tune`` call
(opening the study and the popularity baseline included), and, for one worker, the storage's
own time per trial: the seconds the sweep's thread spent inside Optuna's RDBStorage calls
(creating, reading and finishing trials, reports, pruning reads; Optuna's cache of finished
trials in front), divided by the trials, in ms; the heartbeat thread's calls are counted
apart (they run beside the fit, not in its way).

PostgreSQL: ``--postgres URL`` (an existing server; each row gets a fresh database created on
it), or by default a throwaway cluster from ``/usr/lib/postgresql/*/bin`` in a temp dir on a
free loopback port (run as the ``postgres`` user when run as root), removed afterwards.

    nice -n 10 .venv/bin/python benchmarks/bench_tune.py [--trials 48] [--postgres URL]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from alsresearch.source import DataSource


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres():
    """A PostgreSQL cluster in a temp dir on a free loopback port; yields a URL maker."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("no PostgreSQL binaries in /usr/lib/postgresql/*/bin: give --postgres")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    os.chmod(root, 0o755)
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(root, "postgres")
    port = _free_port()
    data = root / "data"

    def run(*args):
        subprocess.run([*prefix, str(bindir / args[0]), *args[1:]], check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    run("initdb", "-D", str(data), "-U", "bench", "--auth=trust")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start")
    try:
        yield f"postgresql+psycopg://bench@127.0.0.1:{port}"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server: str, name: str) -> str:
    """``server`` (a URL up to the port) with a new database ``name`` created on it."""
    import psycopg

    dsn = server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


class StorageTimer:
    """Wall time inside RDBStorage's public methods, per thread kind (outermost call only)."""

    def __init__(self):
        import optuna

        self.cls = optuna.storages.RDBStorage
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.local = threading.local()
        self.saved = {}

    def __enter__(self):
        for name in dir(self.cls):
            fn = getattr(self.cls, name)
            if name.startswith("__") or not callable(fn) or isinstance(fn, type):
                continue
            if name.startswith("_") and name != "_get_stale_trial_ids":
                continue
            self.saved[name] = self.cls.__dict__.get(name)
            setattr(self.cls, name, self._timed(fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            if fn is None:
                delattr(self.cls, name)
            else:
                setattr(self.cls, name, fn)

    def _timed(self, fn):
        timer = self

        def timed(*args, **kwargs):
            depth = getattr(timer.local, "depth", 0)
            timer.local.depth = depth + 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timer.local.depth = depth
                if depth == 0:
                    kind = "heartbeat" if fn.__name__ == "record_heartbeat" else "sweep"
                    timer.seconds[kind] += time.perf_counter() - start
                    timer.calls[kind] += 1

        timed.__name__ = fn.__name__
        return timed


def sweep(data, source, storage, trials: int, workers: int, timer: bool):
    from alsresearch.tuning import tune

    counter = StorageTimer() if timer else None
    start = time.perf_counter()
    if counter:
        with counter:
            result = tune(data, source=source, n_trials=trials, seed=0, storage=storage,
                          study_name="bench", workers=workers, quiet=True)  # fmt: skip
    else:
        result = tune(data, source=source, n_trials=trials, seed=0, storage=storage,
                      study_name="bench", workers=workers, quiet=True)  # fmt: skip
    seconds = time.perf_counter() - start
    finished = result.counts.get("COMPLETE", 0) + result.counts.get("PRUNED", 0)
    return finished, seconds, counter, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=48, help="finished trials per sweep")
    parser.add_argument(
        "--postgres", help="an existing server, postgresql+psycopg://user@host:port"
    )
    args = parser.parse_args()

    source = DataSource()
    data = source.load()
    print(f"data: {source.describe()} ({data.n_users} users x {data.n_items} items, "
          f"{data.nnz} cells); {args.trials} trials per sweep, seed 0, {os.cpu_count()} CPUs")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ALSRESEARCH_HOME"] = tmp
        server_cm = throwaway_postgres() if args.postgres is None else None
        server = args.postgres or server_cm.__enter__()
        try:
            # untimed: loads numba's compiled kernels, so the first row pays nothing extra
            sweep(data, source, Path(tmp) / "warmup.db", 2, 1, timer=False)
            rows = [
                ("sqlite x1", Path(tmp) / "bench.db", 1),
                ("postgres x1", fresh_database(server, "bench_one"), 1),
                ("postgres x2", fresh_database(server, "bench_two"), 2),
            ]
            print(f"{'storage':<13} {'finished':>8} {'seconds':>8} {'trials/min':>10} "
                  f"{'storage ms/trial':>16} {'heartbeat ms/trial':>18}  best NDCG@10")  # fmt: skip
            rates = {}
            for label, storage, workers in rows:
                finished, seconds, counter, result = sweep(
                    data, source, storage, args.trials, workers, timer=workers == 1
                )
                rate = 60 * finished / seconds
                rates[label] = rate
                own = hb = "-"
                if counter:
                    own = f"{1000 * counter.seconds['sweep'] / finished:.1f}"
                    hb = f"{1000 * counter.seconds['heartbeat'] / finished:.1f}"
                print(f"{label:<13} {finished:>8} {seconds:>8.1f} {rate:>10.1f} {own:>16} "
                      f"{hb:>18}  {result.best_value:.4f}", flush=True)  # fmt: skip
        finally:
            if server_cm is not None:
                server_cm.__exit__(None, None, None)
    print(f"ratios: postgres x1 / sqlite x1 {rates['postgres x1'] / rates['sqlite x1']:.2f}; "
          f"postgres x2 / postgres x1 {rates['postgres x2'] / rates['postgres x1']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
