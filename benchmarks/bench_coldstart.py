"""Benchmark: a new user's first session, with an empty numba cache and then a warm one.

numba compiles our kernels on first use and keeps them in its on-disk cache; implicit ships
compiled code. This measures what a new user waits for in a fresh process on a fresh machine
(empty cache), and again once the cache is filled (warm), on the shipped MovieLens
ml-latest-small (:func:`alsresearch.datasets.load_default`, 80/20 random holdout, seed 42).

Every step runs in a fresh interpreter started in a clean temporary working folder, with
``NUMBA_CACHE_DIR`` pointed at a folder of the round's own (numba then never reads the
checkout's ``__pycache__``; ``ALSRESEARCH_HOME`` is the temporary folder too, so nothing is
written into the checkout). The steps, each timed on its own:

    import        the modules the steps need (numpy, scipy and numba included)
    load + split  load_default() and random_holdout(test_fraction=0.2, seed=42)
    fit           the first ALSModel(random_state=0).fit(train) (64 factors, 15 iterations)
    evaluate      the first evaluate(model, train, test, k=10)
    recommend     the first model.recommend(train.user_ids[0], n=10)
    tune          `python -m alsresearch tune --trials 1` on the default data, the whole
                  command, and the trial's own time as tune records it (trials.csv:
                  user_attrs_seconds, the fit with its validation scoring)
    serve         `python -m alsresearch serve --model <the fitted model>`: from process start
                  to the first 200 answer of GET /recommendations/<user>?n=10

A round runs every step with empty caches ("fresh"), then again with the caches that run
filled ("warm"). The in-process steps, tune and serve each have a cache folder of their own,
so each starts from the same empty-or-warm state. ``--repeats`` rounds, each with new empty
folders; the tables give medians. The compile column of the in-process steps is the time
numba spent compiling during the step (a ``numba:compile`` event listener; top-level compiles
only, a kernel's callees are inside their caller's time); loading a kernel from the cache is
not a compile. tune and serve run as commands, so their compile column is an estimate: the
fresh median minus the warm median.

implicit (``implicit.als.AlternatingLeastSquares``, 64 factors, 15 iterations, regularization
0.01, CPU) runs in a fresh process too, in each state of each round (it has no cache: the two
states differ only in what the operating system has cached). implicit takes ``c = alpha * r``,
so it gets the matrix ``1 + 40 r`` on the observed cells with its alpha = 1: our objective. Its
BLAS runs on one thread (threadpoolctl), as in bench_als.py; its evaluate is
``implicit.evaluation.ranking_metrics_at_k(model, train, test, K=10)``, its recommend
``model.recommend(0, train[0], N=10)``. It reads the data with our loader (not timed).

    .venv/bin/python benchmarks/bench_coldstart.py                 # 3 rounds, ~10 minutes
    .venv/bin/python benchmarks/bench_coldstart.py --repeats 1 --skip-cli --skip-implicit
    .venv/bin/python benchmarks/bench_coldstart.py --repeats 1 --keep    # inspect the folders

Target: first fit + evaluate + recommend with an empty cache under 15 s (the sum of the three
steps, median over rounds; the README quotes the figures, against implicit's).
The machine is shared: timings are noisy, read the medians and the load averages.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serve_helpers
from _common import median, report_and_exit, run_isolated

from tests.serve_helpers import Server

SCRIPT = str(Path(__file__).resolve())
STATES = ("fresh", "warm")
OUR_STEPS = ("import", "load + split", "fit", "evaluate", "recommend")
IMPLICIT_STEPS = ("import", "fit", "evaluate", "recommend")
CLI_STEPS = ("tune", "tune trial", "serve")
TARGET_STEPS = ("fit", "evaluate", "recommend")
TARGET_SECONDS = 15.0
FACTORS, ITERATIONS, ALPHA, REG = 64, 15, 40.0, 0.01
TEST_FRACTION, SPLIT_SEED, K = 0.2, 42, 10
WORKER_TIMEOUT, TUNE_TIMEOUT = 900.0, 900.0


# ---------------------------------------------------------------------- workers
class _CompileClock:
    """Seconds numba spends compiling, top-level compiles only (depth 0 -> 1), per step."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = 0.0
        self.name = ""
        self.log: list[tuple[str, float]] = []

    def on_start(self, ev) -> None:
        if self.depth == 0:
            self.started = time.perf_counter()
            dispatcher = (ev.data or {}).get("dispatcher")
            func = getattr(dispatcher, "py_func", None)
            self.name = getattr(func, "__qualname__", None) or str(dispatcher)
        self.depth += 1

    def on_end(self, ev) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.log.append((self.name, time.perf_counter() - self.started))

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> dict:
        compiles = self.log[mark:]
        slowest = sorted(compiles, key=lambda c: -c[1])[:5]
        return {
            "compile": sum(s for _, s in compiles),
            "compiles": len(compiles),
            "slowest": [[name, round(s, 2)] for name, s in slowest],
        }


def worker_ours(model_path: str) -> None:
    """The in-process steps; saves the fitted model to ``model_path`` for serve (once)."""
    steps: dict[str, dict] = {}
    start = time.perf_counter()
    from numba.core import event

    clock = _CompileClock()

    class Listener(event.Listener):  # numba's abstract base: defined once numba is imported
        def on_start(self, ev) -> None:
            clock.on_start(ev)

        def on_end(self, ev) -> None:
            clock.on_end(ev)

    event.register("numba:compile", Listener())
    mark = clock.mark()
    from alsresearch.als import ALSModel
    from alsresearch.datasets import load_default
    from alsresearch.evaluate import evaluate
    from alsresearch.split import random_holdout

    steps["import"] = {"seconds": time.perf_counter() - start, **clock.since(mark)}

    def timed(name, fn):
        mark, begin = clock.mark(), time.perf_counter()
        out = fn()
        steps[name] = {"seconds": time.perf_counter() - begin, **clock.since(mark)}
        return out

    train, test = timed(
        "load + split",
        lambda: random_holdout(load_default(), test_fraction=TEST_FRACTION, seed=SPLIT_SEED),
    )
    model = timed("fit", lambda: ALSModel(random_state=0).fit(train))
    timed("evaluate", lambda: evaluate(model, train, test, k=K))
    user = train.user_ids[0]
    recs = timed("recommend", lambda: model.recommend(user, n=10))
    if not Path(model_path).exists():
        model.save(model_path)
    report_and_exit(
        {
            "steps": steps,
            "user": user.item() if hasattr(user, "item") else user,
            "n_recs": len(recs[0]) if isinstance(recs, tuple) else len(recs),
            "loss": float(model.loss_history[-1]),
            "config": model.config.to_dict(),
        }
    )


def worker_implicit() -> None:
    steps: dict[str, dict] = {}
    start = time.perf_counter()
    import implicit.als
    import implicit.evaluation
    import numpy as np
    from threadpoolctl import threadpool_limits

    steps["import"] = {"seconds": time.perf_counter() - start}
    from alsresearch.datasets import load_default  # not timed: the data are the same as ours
    from alsresearch.split import random_holdout

    train, test = random_holdout(load_default(), test_fraction=TEST_FRACTION, seed=SPLIT_SEED)
    train_csr = train.matrix.astype(np.float32).tocsr()
    test_csr = test.matrix.astype(np.float32).tocsr()
    confidence = train_csr.copy()
    confidence.data = 1 + ALPHA * confidence.data

    def timed(name, fn):
        begin = time.perf_counter()
        out = fn()
        steps[name] = {"seconds": time.perf_counter() - begin}
        return out

    with threadpool_limits(limits=1, user_api="blas"):
        model = implicit.als.AlternatingLeastSquares(
            factors=FACTORS,
            iterations=ITERATIONS,
            regularization=REG,
            alpha=1.0,
            random_state=0,
            use_gpu=False,
        )
        timed("fit", lambda: model.fit(confidence, show_progress=False))
        metrics = timed(
            "evaluate",
            lambda: implicit.evaluation.ranking_metrics_at_k(
                model, train_csr, test_csr, K=K, show_progress=False
            ),
        )
        ids, _ = timed("recommend", lambda: model.recommend(0, train_csr[0], N=10))
    report_and_exit(
        {"steps": steps, "metrics": {k: float(v) for k, v in metrics.items()}, "n_recs": len(ids)}
    )


# ---------------------------------------------------------------------- the command-line steps
class StepFailed(RuntimeError):
    pass


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


def run_tune(work: Path, env: dict, tag: str) -> dict:
    """One-trial `alsresearch tune` with its own study database and output folder."""
    out, storage = work / f"tune-{tag}", work / f"tune-{tag}.db"
    cmd = [sys.executable, "-m", "alsresearch", "tune", "--trials", "1", "--seed", "0"]
    cmd += ["--out", str(out), "--storage", str(storage)]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TUNE_TIMEOUT
    )
    seconds = time.perf_counter() - start
    (work / f"tune-{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise StepFailed(
            f"tune ({tag}) failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-1000:]}{proc.stderr[-3000:]}"
        )
    trial = None
    trials_csv = out / "trials.csv"
    if trials_csv.exists():
        with open(trials_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
        values = [r.get("user_attrs_seconds") for r in rows if r.get("user_attrs_seconds")]
        trial = float(values[0]) if values else None
    return {"tune": seconds, "tune trial": trial}


def run_serve(work: Path, env: dict, tag: str, model_path: Path, user) -> dict:
    """Start `alsresearch serve` (tests.serve_helpers.Server: up once /health answers) and time
    it until GET /recommendations/<user> has answered."""
    start = time.perf_counter()
    try:
        with Server(model_path, env=env, cwd=work) as server:
            answer = httpx.get(
                f"{server.url}/recommendations/{quote(str(user), safe='')}?n=10", timeout=60
            )
            seconds = time.perf_counter() - start
    except RuntimeError as exc:  # died or never answered /health: the reason and its stderr
        raise StepFailed(f"serve ({tag}): {exc}") from exc
    if answer.status_code != 200 or not answer.json().get("recommendations"):
        raise StepFailed(f"serve ({tag}) answered {answer.status_code}: {answer.text[:500]}")
    return {"serve": seconds, "serve source": answer.json().get("source")}


# ---------------------------------------------------------------------- one round
def child_env(cache: Path, work: Path) -> dict:
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache)
    env["ALSRESEARCH_HOME"] = str(work)
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def run_round(folder: Path, skip_cli: bool, skip_implicit: bool) -> dict:
    """Every step fresh, then warm; returns ``{state: {"ours": ..., "cli": ..., "implicit": ...}}``."""
    work = folder / "work"
    caches = {name: folder / f"numba-cache-{name}" for name in ("steps", "tune", "serve")}
    for path in (work, *caches.values()):
        path.mkdir(parents=True)
    model_path = work / "model.npz"
    result: dict[str, dict] = {}
    sources = source_stamp()
    for state in STATES:
        if state == "fresh":
            for cache in caches.values():
                assert not any(cache.iterdir()), f"{cache} is not empty"
        r: dict = {}
        r["ours"] = run_isolated(
            SCRIPT,
            ["--worker", "ours", str(model_path)],
            timeout=WORKER_TIMEOUT,
            env=child_env(caches["steps"], work),
            cwd=str(work),
        )
        if not skip_cli:
            r["cli"] = run_tune(work, child_env(caches["tune"], work), state)
            r["cli"].update(
                run_serve(
                    work, child_env(caches["serve"], work), state, model_path, r["ours"]["user"]
                )
            )
        if not skip_implicit:
            r["implicit"] = run_isolated(
                SCRIPT,
                ["--worker", "implicit", "-"],
                timeout=WORKER_TIMEOUT,
                env=child_env(folder / "numba-cache-implicit", work),
                cwd=str(work),
            )
        result[state] = r
    after = source_stamp()
    result["sources_changed"] = sorted(
        name for name in sources.keys() | after.keys() if sources.get(name) != after.get(name)
    )
    return result


def source_stamp() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every package source file: numba's cache is keyed on its source file's
    stamp, so a file edited during a round makes the warm run compile again."""
    import alsresearch

    package = Path(alsresearch.__file__).resolve().parent
    return {
        str(p.relative_to(package)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in package.rglob("*.py")
    }


# ---------------------------------------------------------------------- reporting
def _fmt(x: float | None, width: int = 8) -> str:
    return f"{x:{width}.2f}" if x is not None else f"{'-':>{width}}"


def target_sum(r: dict) -> float:
    return sum(r["ours"]["steps"][s]["seconds"] for s in TARGET_STEPS)


def print_round(i: int, rounds: dict) -> None:
    for state in STATES:
        r = rounds[state]
        ours = r["ours"]["steps"]
        parts = [
            f"{s} {ours[s]['seconds']:.2f}"
            + (f" (compile {ours[s]['compile']:.2f})" if ours[s]["compiles"] else "")
            for s in OUR_STEPS
        ]
        if "cli" in r:
            trial = r["cli"]["tune trial"]
            parts.append(
                f"tune {r['cli']['tune']:.2f}"
                + (f" (trial {trial:.2f})" if trial is not None else "")
            )
            parts.append(f"serve {r['cli']['serve']:.2f}")
        line = f"round {i + 1} {state:5}: " + ", ".join(parts)
        line += f"; fit+evaluate+recommend {target_sum(r):.2f}"
        if "implicit" in r:
            imp = r["implicit"]["steps"]
            line += " | implicit: " + ", ".join(
                f"{s} {imp[s]['seconds']:.2f}" for s in IMPLICIT_STEPS
            )
        print(line, flush=True)
    if rounds["sources_changed"]:
        print(
            f"round {i + 1} WARNING: package sources changed during the round "
            f"({', '.join(rounds['sources_changed'])}): its warm figures include recompiles",
            flush=True,
        )
    warm = sum(rounds["warm"]["ours"]["steps"][s]["compile"] for s in OUR_STEPS)
    if warm > 0.5:
        print(
            f"round {i + 1} WARNING: the warm run compiled for {warm:.1f} s: the cache was not "
            "(fully) reused",
            flush=True,
        )
    fresh = rounds["fresh"]["ours"]["steps"]
    slow = [
        f"{s}: {fresh[s]['compiles']} compiles, "
        + ", ".join(f"{n} {t:.1f}" for n, t in fresh[s]["slowest"])
        for s in OUR_STEPS
        if fresh[s]["compiles"]
    ]
    if slow:
        print(f"round {i + 1} fresh, slowest compiles (s): " + "; ".join(slow), flush=True)


def print_tables(rounds: list[dict], skip_cli: bool, skip_implicit: bool) -> None:
    def med(values):
        values = [v for v in values if v is not None]
        return median(values) if values else None

    cli = (
        {
            state: {step: med([r[state]["cli"][step] for r in rounds]) for step in CLI_STEPS}
            for state in STATES
        }
        if not skip_cli
        else None
    )
    for state in STATES:
        print(
            f"\n## {state} numba cache ({'empty' if state == 'fresh' else 'filled by the fresh run'}), "
            f"medians of {len(rounds)} round(s), seconds"
        )
        print(f"{'step':24} {'ours':>8} {'compile':>9} {'implicit':>9}")
        for step in OUR_STEPS:
            ours = med([r[state]["ours"]["steps"][step]["seconds"] for r in rounds])
            comp = med([r[state]["ours"]["steps"][step]["compile"] for r in rounds])
            imp = (
                med([r[state]["implicit"]["steps"][step]["seconds"] for r in rounds])
                if not skip_implicit and step in IMPLICIT_STEPS
                else None
            )
            print(f"{step:24} {_fmt(ours)} {_fmt(comp, 9)} {_fmt(imp, 9)}")
        if cli is not None:
            labels = {
                "tune": "tune, 1 trial (command)",
                "tune trial": "  its trial (trials.csv)",
                "serve": "serve start -> 1st 200",
            }
            for step in CLI_STEPS:
                comp = None
                if (
                    state == "fresh"
                    and cli["fresh"][step] is not None
                    and cli["warm"][step] is not None
                ):
                    comp = cli["fresh"][step] - cli["warm"][step]
                comp_text = f"~{comp:.2f}*" if comp is not None else "-"
                print(f"{labels[step]:24} {_fmt(cli[state][step])} {comp_text:>9} {_fmt(None, 9)}")
        total = med([target_sum(r[state]) for r in rounds])
        imp_total = (
            med(
                [
                    sum(r[state]["implicit"]["steps"][s]["seconds"] for s in TARGET_STEPS)
                    for r in rounds
                ]
            )
            if not skip_implicit
            else None
        )
        print(f"{'fit+evaluate+recommend':24} {_fmt(total)} {'':>9} {_fmt(imp_total, 9)}")
    if cli is not None:
        print(
            "* tune and serve run as commands: their compile figure is fresh minus warm (medians)"
        )
    edited = [i + 1 for i, r in enumerate(rounds) if r["sources_changed"]]
    if edited:
        print(f"NOTE: package sources changed during round(s) {edited}; see the warnings above")
    fresh = med([target_sum(r["fresh"]) for r in rounds])
    verdict = "met" if fresh < TARGET_SECONDS else "NOT met"
    print(
        f"\nfirst fit + evaluate + recommend, fresh cache: {fresh:.1f} s "
        f"(target < {TARGET_SECONDS:.0f} s: {verdict})"
    )


# ---------------------------------------------------------------------- the driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds (each: fresh, then warm)")
    parser.add_argument("--skip-implicit", action="store_true", help="do not run implicit")
    parser.add_argument("--skip-cli", action="store_true", help="skip the tune and serve steps")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--worker", nargs=2, metavar=("WHICH", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "ours":
            worker_ours(args.worker[1])
        else:
            worker_implicit()
        return
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    from alsresearch.provenance import environment_record

    load_start = os.getloadavg()
    env = environment_record()
    print(
        f"# bench_coldstart: ml-latest-small, {int(TEST_FRACTION * 100)}% random holdout "
        f"(seed {SPLIT_SEED}), ALSModel(random_state=0) defaults, {args.repeats} round(s); "
        f"git {env['git']['commit']} dirty={env['git']['dirty']}; numba "
        f"{env['packages'].get('numba')}, implicit {env['packages'].get('implicit')}, python "
        f"{env['python']}; {os.cpu_count()} CPUs; load average at start "
        + " ".join(f"{x:.2f}" for x in load_start)
        + "; shared machine, timings are noisy",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="bench_coldstart_"))
    rounds: list[dict] = []
    try:
        for i in range(args.repeats):
            rounds.append(run_round(root / f"round-{i + 1}", args.skip_cli, args.skip_implicit))
            print_round(i, rounds[-1])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:  # StepFailed is a RuntimeError
        print(f"\nbench_coldstart: a step failed: {exc}", file=sys.stderr)
        print(f"(temporary folders kept for inspection: {root})", file=sys.stderr)
        sys.exit(1)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print_tables(rounds, args.skip_cli, args.skip_implicit)
    load_end = os.getloadavg()
    print(f"load average at end {' '.join(f'{x:.2f}' for x in load_end)}")
    if args.keep:
        print(f"temporary folders kept: {root}")


if __name__ == "__main__":
    main()
