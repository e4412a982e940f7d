"""Sweeps on a real PostgreSQL server: workers started on their own (separate processes,
working directories and homes; only the URL and the study name shared) reach the asked count
together, a SIGKILLed worker's trial is failed and run again, a server restart costs nothing
finished, one seeded worker draws the same trials as on SQLite, a fit longer than three grace
periods keeps its heartbeat, and notebook 03 and optuna-dashboard read the shared study.

A throwaway cluster (initdb in a temp dir, a free loopback port, password authentication over
TCP) runs as the ``postgres`` system user when the tests run as root (the server refuses root);
each test gets a database of its own. Every URL carries a password, so every test also checks
that it never reaches a log line, best.json or results.json.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
psycopg = pytest.importorskip("psycopg", reason="psycopg 3 missing: pip install '.[postgres]'")

from alsresearch.datasets import synthetic  # noqa: E402
from alsresearch.tuning import GRACE_BEATS, SearchSpace, load_study, tune  # noqa: E402
from alsresearch.tuning.storage import open_storage  # noqa: E402
from tests.tuning_helpers import SMALL, write_space  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

USER, PASSWORD = "sweeper", "s3cret-Pw0rd"
FINISHED = ("COMPLETE", "PRUNED")


# ------------------------------------------------------------------ the server
def _bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A throwaway cluster: ``url(db)`` for a database, ``restart``/``stop``/``start``."""

    def __init__(self, bindir: Path, root: Path):
        self.bindir, self.root = bindir, root
        self.data, self.log = root / "data", root / "server.log"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        self.databases = 0

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        self.run(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
        )  # fmt: skip
        self.start()

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        return self.run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *args,
            check=check,
        )  # fmt: skip

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def ensure_running(self) -> None:
        if self.pg_ctl("status", check=False).returncode != 0:
            self.start()

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        self.databases += 1
        name = f"sweeps{self.databases}"
        dsn = f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def server():
    bindir = _bindir()
    missing = [
        n for n in ("initdb", "pg_ctl", "postgres") if not bindir or not (bindir / n).exists()
    ]
    if missing:
        pytest.skip(
            f"PostgreSQL server binaries missing ({', '.join(missing)} not in "
            "/usr/lib/postgresql/*/bin or on PATH): apt-get install postgresql (.ci/run does)"
        )
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root and runuser missing: cannot start PostgreSQL as 'postgres'")
    root = Path(tempfile.mkdtemp(prefix="alsresearch-pg-"))
    os.chmod(root, 0o755)
    srv = Server(bindir, root)
    try:
        srv.init()
        yield srv
    finally:
        srv.pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def url(server):
    server.ensure_running()
    return server.new_database()


# ------------------------------------------------------------------ workers
@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Small enough that a trial takes about a second (iterations 10 to 20)."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    synthetic(2000, 500, 80_000, seed=1).to_frame().to_csv(path, index=False)
    return path


SLOWER = {
    **SMALL,
    "params": {**SMALL["params"], "iterations": {"type": "int", "low": 10, "high": 20}},
    "defaults": {**SMALL["defaults"], "iterations": 15},
}


def worker(tmp: Path, name: str, url: str | None, study: str, trials: int, events: Path, *extra):
    """`alsresearch tune` started on its own, in its own working directory and home (the URL in
    ALSRESEARCH_STORAGE when ``url`` is None, as the environment of a machine would hold it)."""
    cwd = tmp / name
    cwd.mkdir(parents=True, exist_ok=True)
    space = write_space(cwd / "space.yaml", SLOWER)
    command = [
        sys.executable, "-m", "alsresearch", "tune", "--events", str(events),
        "--space", str(space), "--trials", str(trials), "--seed", "0", "--study", study,
        "--heartbeat", "1", "--out", str(cwd / "out"), *extra,
    ]  # fmt: skip
    if url is not None:
        command += ["--storage", url]
    env = {**os.environ, "ALSRESEARCH_HOME": str(cwd / "home"), "NUMBA_NUM_THREADS": "1"}
    env.pop("ALSRESEARCH_STORAGE", None)
    return command, env, cwd


def start(command, env, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"worker still running after {timeout} s: {err[-2000:]}")
    assert PASSWORD not in out + err, "the password reached a worker's output"
    return proc.returncode, out, err


def trials_of(url: str, study: str) -> list:
    return load_study(url, study).get_trials()


def wait_for(url: str, study: str, condition, timeout: float = 90, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = trials_of(url, study)
        except KeyError:  # not created yet
            trials = None
        if trials is not None and condition(trials):
            return trials
        if procs and all(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    pytest.fail(f"condition never met on study {study!r}")


def check_shared_study(url: str, study: str, n: int) -> list:
    trials = trials_of(url, study)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == len(trials)
    assert numbers == list(range(len(trials)))
    assert sum(t.state.name in FINISHED for t in trials) == n
    assert sum(t.user_attrs.get("role") == "defaults" for t in trials) == 1
    return trials


def check_best(path: Path, url: str, study: str) -> dict:
    """best.json describes the shared study and holds no password."""
    text = path.read_text()
    assert PASSWORD not in text
    best = json.loads(text)
    db = load_study(url, study)
    assert best["study"] == study and best["best_trial"] == db.best_trial.number
    assert best["validation"]["ndcg@10"] == pytest.approx(db.best_value)
    assert best["storage"] == url.replace(PASSWORD, "***")
    return best


@pytest.fixture(scope="module")
def three_workers(server, events, tmp_path_factory):
    """Test 1's sweep, shared with the notebook and dashboard tests: three workers started at
    once, one study, 12 trials; the third reads the URL from ALSRESEARCH_STORAGE."""
    server.ensure_running()
    url = server.new_database()
    tmp = tmp_path_factory.mktemp("three")
    specs = [worker(tmp, f"w{i}", url, "three", 12, events) for i in range(2)]
    command, env, cwd = worker(tmp, "w2", None, "three", 12, events)
    specs.append((command, {**env, "ALSRESEARCH_STORAGE": url}, cwd))
    procs = [start(*spec) for spec in specs]
    results = [finish(p) for p in procs]
    return {"url": url, "study": "three", "results": results, "dirs": [s[2] for s in specs]}


def test_three_workers_reach_exactly_the_asked_count(three_workers):
    url, study = three_workers["url"], three_workers["study"]
    for code, out, err in three_workers["results"]:
        assert code == 0, err[-2000:]
        assert "***@127.0.0.1" in out  # the study line names the masked storage
    trials = check_shared_study(url, study, 12)
    # nothing failed except surplus starts (a trial started when 12 were finished or running)
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name == "FAIL")
    # each worker exported the shared study; all three drew trials (distinct worker slots)
    bests = [check_best(d / "out" / "best.json", url, study) for d in three_workers["dirs"]]
    assert all(b["trials"] == bests[-1]["trials"] for b in bests)
    assert load_study(url, study).user_attrs["worker_slots"] == 3
    params = [tuple(sorted(t.params.items())) for t in trials if t.state.name in FINISHED]
    assert len(set(params)) == len(params)  # no configuration drawn twice


def test_two_process_trees_started_together_share_one_study(url, events, tmp_path):
    """`--workers 2` twice, in separate working directories, started in the same instant on
    an empty database: both create the tables and the study without a race."""
    specs = [
        worker(tmp_path, f"tree{i}", url, "trees", 8, events, "--workers", "2") for i in (0, 1)
    ]
    procs = [start(*spec) for spec in specs]
    for code, _, err in (finish(p) for p in procs):
        assert code == 0, err[-2000:]
    check_shared_study(url, "trees", 8)
    assert load_study(url, "trees").user_attrs["worker_slots"] == 4
    for _, _, cwd in specs:
        check_best(cwd / "out" / "best.json", url, "trees")
        assert not (cwd / "home" / "experiments").exists()  # nothing went to a local SQLite


def test_sigkilled_worker_trial_is_failed_retried_and_nothing_finished_is_lost(
    url, events, tmp_path
):
    specs = [worker(tmp_path, f"k{i}", url, "kill", 10, events) for i in (0, 1)]
    victim, survivor = (start(*spec) for spec in specs)
    try:
        wait_for(url, "kill", lambda ts: sum(t.state.name == "COMPLETE" for t in ts) >= 2)
        # freeze the victim, then look: with two trials RUNNING (parameters drawn) one is
        # surely the frozen victim's, so the SIGKILL lands inside a trial; else thaw, retry
        deadline = time.monotonic() + 60
        while True:
            os.kill(victim.pid, signal.SIGSTOP)
            running = [t for t in trials_of(url, "kill") if t.state.name == "RUNNING"]
            if len(running) == 2 and all(t.params for t in running):
                os.kill(victim.pid, signal.SIGKILL)
                break
            os.kill(victim.pid, signal.SIGCONT)
            assert time.monotonic() < deadline and victim.poll() is None, "never caught it"
            time.sleep(0.05)
        victim.wait()
        before = {
            t.number: (t.state.name, t.params, t.value)
            for t in trials_of(url, "kill")
            if t.state.name in FINISHED
        }
        code, _, err = finish(survivor)
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
    assert victim.returncode == -signal.SIGKILL
    assert code == 0, err[-2000:]
    trials = check_shared_study(url, "kill", 10)
    after = {t.number: (t.state.name, t.params, t.value) for t in trials}
    for number, record in before.items():
        assert after[number] == record  # every finished trial is still there, unchanged
    dead = [t for t in trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")]
    assert len(dead) == 1  # the killed worker's trial, failed by the survivor
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead[0].number]
    # the same configuration: every parameter the killed trial had drawn (it may have died
    # halfway through drawing them)
    assert len(retries) == 1 and dead[0].params.items() <= retries[0].params.items()
    assert retries[0].state.name in FINISHED
    check_best(tmp_path / "k1" / "out" / "best.json", url, "kill")


def test_server_restart_and_outage(server, url, events, tmp_path):
    """A restart mid-sweep is waited out and the sweep completes; a server that stays away
    longer than --storage-retry stops the worker with one line naming the masked storage, and
    the same command, rerun once the server is back, completes the sweep."""
    command, env, cwd = worker(tmp_path, "r", url, "restart", 8, events, "--storage-retry", "60")
    proc = start(command, env, cwd)
    try:
        wait_for(url, "restart", lambda ts: sum(t.state.name in FINISHED for t in ts) >= 2)
        server.restart()
        code, _, err = finish(proc)
    finally:
        server.ensure_running()
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err[-2000:]
    trials = check_shared_study(url, "restart", 8)
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name == "FAIL")

    command, env, cwd = worker(tmp_path, "o", url, "outage", 8, events, "--storage-retry", "3")
    proc = start(command, env, cwd)
    try:
        wait_for(url, "outage", lambda ts: sum(t.state.name in FINISHED for t in ts) >= 2)
        server.stop()
        code, _, err = finish(proc)
        assert code == 1
        last = err.strip().splitlines()[-1]
        masked = url.replace(PASSWORD, "***")
        assert last.startswith(f"alsresearch tune: error: storage {masked} unreachable for 3 s: ")
        assert "OperationalError" in last and "Traceback" not in err
    finally:
        server.ensure_running()
        if proc.poll() is None:
            proc.kill()
    before = {
        t.number: (t.params, t.value) for t in trials_of(url, "outage") if t.state.name in FINISHED
    }
    assert len(before) >= 2
    code, _, err = finish(start(command, env, cwd))
    assert code == 0, err[-2000:]
    trials = check_shared_study(url, "outage", 8)
    for t in trials:
        if t.number in before:
            assert (t.params, t.value) == before[t.number]


def test_one_seeded_worker_draws_the_same_trials_on_sqlite_and_postgres(url, tmp_path):
    data = synthetic(300, 120, 6000, seed=3)
    space = SearchSpace.from_dict(SMALL, "small")
    runs = []
    for storage in (tmp_path / "same.db", url):
        result = tune(data, n_trials=8, seed=4, space=space, storage=storage, quiet=True)
        runs.append(
            [(t.state.name, t.params) for t in load_study(storage, result.study_name).trials]
        )
    assert runs[0] == runs[1]
    assert len(runs[0]) == 8


def test_heartbeat_is_not_starved_by_a_long_fit(url, tmp_path):
    """One trial whose fit lasts longer than three grace periods, heartbeat every second,
    while this process plays the live worker that fails stale trials four times a second: the
    trial stays RUNNING to the end and completes, and the beats it wrote (read from the
    database) never lag by a grace period."""
    events = tmp_path / "big.csv"
    synthetic(20000, 3000, 400_000, seed=1).to_frame().to_csv(events, index=False)
    spec = {
        **SMALL,
        "params": {"alpha": {"type": "float", "low": 1.0, "high": 10.0, "log": True}},
        "defaults": {"alpha": 5.0},
        "fixed": {"solver": "cg", "factors": 256, "iterations": 200, "regularization": 0.1},
        "validation": {**SMALL["validation"], "every": 100},
    }
    space = write_space(tmp_path / "space.yaml", spec)
    command = [
        sys.executable, "-m", "alsresearch", "tune", "--events", str(events), "--space",
        str(space), "--trials", "1", "--seed", "0", "--study", "long", "--storage", url,
        "--heartbeat", "1", "--out", str(tmp_path / "out"), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "ALSRESEARCH_HOME": str(tmp_path / "home")}
    proc = start(command, env, tmp_path)
    grace = GRACE_BEATS * 1
    beats: list[float] = []
    states = set()
    try:
        wait_for(url, "long", lambda ts: any(t.state.name == "RUNNING" for t in ts), procs=[proc])
        watchdog = optuna.load_study(study_name="long", storage=open_storage(url, heartbeat=1))
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            while proc.poll() is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(watchdog)  # what any live worker does
                row = conn.execute(
                    "SELECT extract(epoch FROM h.heartbeat), t.state FROM trials t "
                    "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
                ).fetchone()
                if row[0] is not None and (not beats or float(row[0]) != beats[-1]):
                    beats.append(float(row[0]))
                states.add(row[1])
                time.sleep(0.25)
        code, _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err[-2000:]
    (trial,) = trials_of(url, "long")
    assert trial.state.name == "COMPLETE" and "FAIL" not in states
    assert trial.user_attrs["seconds"] > 3 * grace, "the fit was too short to prove anything"
    gaps = np.diff(beats)
    assert len(beats) >= 3 * grace
    assert gaps.max() < grace, f"heartbeat gaps {np.round(gaps, 2).tolist()} s"
    print(
        f"fit {trial.user_attrs['seconds']:.1f} s, {len(beats)} beats, longest gap {gaps.max():.2f} s"
    )


# ------------------------------------------------------------------ looking at a shared study
def test_notebook_03_loads_and_plots_the_shared_study(three_workers, tmp_path):
    papermill = pytest.importorskip("papermill")
    from alsresearch import records
    from tests.layout import NOTEBOOKS

    url, study = three_workers["url"], three_workers["study"]
    out = tmp_path / "nb"
    out.mkdir()
    env = {"ALSRESEARCH_STORAGE": url}  # the URL with its password stays out of the parameters
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        papermill.execute_notebook(
            str(NOTEBOOKS / "03_sweep_alpha_factors.ipynb"),
            str(out / "executed.ipynb"),
            parameters={"N_TRIALS": 0, "STUDY": study, "OUTPUT_DIR": str(out)},
            cwd=str(out),
            progress_bar=False,
        )
    for name in ("results.json", "best.json", "executed.ipynb"):
        assert PASSWORD not in (out / name).read_text(), name
    record = records.read_results(out)
    db = load_study(url, study)
    counts = {}
    for t in db.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    assert record["trials"] == counts
    assert record["metrics"]["best_validation_ndcg@10"] == pytest.approx(db.best_value)
    assert record["storage"] == url.replace(PASSWORD, "***")
    assert record["data"] is None  # nothing read here: the study's own record says what
    assert record["study_data"] == db.user_attrs["data"]
    assert set(record["importances"]) <= set(SMALL["params"])


def test_optuna_dashboard_serves_the_shared_study_on_loopback(three_workers, tmp_path):
    dashboard = shutil.which("optuna-dashboard") or str(
        Path(sys.executable).parent / "optuna-dashboard"
    )
    if not Path(dashboard).exists():
        pytest.skip("optuna-dashboard missing: pip install '.[notebooks]'")
    url, study = three_workers["url"], three_workers["study"]
    port = _free_port()
    proc = subprocess.Popen(
        [dashboard, url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard never answered: {proc.stderr.read()[-2000:]}")
                time.sleep(0.2)
        (summary,) = [s for s in studies if s["study_name"] == study]
        assert PASSWORD not in json.dumps(summary)  # the study's records show the masked URL
        with urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}", timeout=30) as r:
            detail = json.load(r)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    db = load_study(url, study)
    served = {t["number"]: (t["state"], t.get("values")) for t in detail["trials"]}
    assert len(served) == len(db.trials)
    for t in db.trials:
        state, values = served[t.number]
        assert state.upper() == t.state.name
        if t.state.name == "COMPLETE":
            assert values == pytest.approx([t.value])
