"""Optuna sweeps: the search space file, the validation protocol, trial 0, pruning, resuming,
several workers on one study, a worker killed mid-trial, determinism, best.json."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

from alsresearch import paths  # noqa: E402
from alsresearch.als import ALSModel  # noqa: E402
from alsresearch.baselines import PopularityModel  # noqa: E402
from alsresearch.datasets import synthetic  # noqa: E402
from alsresearch.evaluate import evaluate  # noqa: E402
from alsresearch.split import random_holdout  # noqa: E402
from alsresearch.tuning import SearchSpace, _Objective, tune, validation_data  # noqa: E402

#: a small space so that trials take milliseconds on the small data below
SMALL = {
    "params": {
        "alpha": {"type": "float", "low": 0.1, "high": 100.0, "log": True},
        "regularization": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
        "factors": {"type": "categorical", "choices": [4, 8]},
        "iterations": {"type": "int", "low": 2, "high": 6},
        "scaling": {"type": "categorical", "choices": ["raw", "log"]},
    },
    "defaults": {
        "alpha": 40.0,
        "regularization": 0.01,
        "factors": 8,
        "iterations": 4,
        "scaling": "raw",
    },
    "fixed": {"solver": "cg"},
    "sampler": {"n_startup_trials": 3, "multivariate": True, "constant_liar": True},
    "pruner": {"n_startup_trials": 2, "n_warmup_steps": 1},
    "validation": {"fraction": 0.2, "max_users": 150, "every": 1, "k": 10},
}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def data():
    return synthetic(300, 120, 6000, seed=3)


@pytest.fixture
def space():
    return SearchSpace.from_dict(SMALL, "small")


def finished(study) -> list:
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def open_study(url: str, name: str):
    return optuna.load_study(study_name=name, storage=url)


# ------------------------------------------------------------------ the space
def test_shipped_space_is_wide_and_trial_0_is_the_seed_defaults():
    space = SearchSpace.load()
    p = {x.name: x for x in space.params}
    assert p["alpha"].log and p["alpha"].low <= 0.1 and p["alpha"].high >= 1000
    assert p["regularization"].log and p["regularization"].low <= 1e-3
    assert p["regularization"].high >= 1e3
    assert set(p["factors"].choices) == {8, 16, 32, 64, 128, 256}
    assert set(p["scaling"].choices) == {"raw", "log"}
    assert p["iterations"].kind == "int"
    # the defaults are ALSModel's own (read from its signature, not from the file)
    signature = inspect.signature(ALSModel).parameters
    for name, value in space.defaults.items():
        assert signature[name].default == value, name
    assert space.metric == "ndcg@10"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"params": {"alpha": {"type": "float", "low": 0, "high": 10, "log": True}}},
            "log-scaled range needs low > 0",
        ),
        (
            {"params": {"alpha": {"type": "float", "low": 5, "high": 1}}},
            "low (5) must be below high (1)",
        ),
        ({"params": {"alpha": {"type": "gaussian"}}}, "params.alpha.type must be one of"),
        (
            {"params": {"alpha": {"type": "float", "low": 1, "high": 2, "step": 1}}},
            "unknown key(s) ['step']",
        ),
        (
            {"params": {"factors": {"type": "categorical", "choices": []}}},
            "params.factors.choices must be a non-empty list",
        ),
        ({"defaults": {"alpha": 40.0}}, "'defaults' must give exactly the searched params"),
        (
            {"defaults": {**SMALL["defaults"], "factors": 64}},
            "defaults.factors = 64 is outside params.factors",
        ),
        ({"fixed": {"alpha": 1.0}}, "['alpha'] are both searched and fixed"),
        ({"validation": {"fraction": 1.5}}, "validation.fraction must be in (0, 1)"),
        ({"validation": {"folds": 3}}, "unknown validation key(s) ['folds']"),
        ({"searcher": {}}, "unknown section(s) ['searcher']"),
    ],
)
def test_bad_space_is_refused_naming_the_field(change, message):
    spec = {**SMALL, **change}
    if "params" in change and "defaults" not in change:
        spec["params"] = {**SMALL["params"], **change["params"]}
    with pytest.raises(ValueError) as err:
        SearchSpace.from_dict(spec, "bad.yaml")
    assert message in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_missing_space_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        SearchSpace.load(tmp_path / "nowhere.yaml")


# ------------------------------------------------------------------ validation protocol
def test_validation_never_contains_test_cells(data, space):
    vd = validation_data(data, space, seed=5, test_fraction=0.2, split_seed=42)
    train, test = random_holdout(data, 0.2, seed=42)
    # fit + validation is exactly the training part: no test cell is ever looked at
    assert vd.fit.matrix.multiply(test.matrix).nnz == 0
    assert vd.valid.matrix.multiply(test.matrix).nnz == 0
    assert vd.fit.matrix.multiply(vd.valid.matrix).nnz == 0
    assert vd.fit.nnz + vd.valid.nnz <= train.nnz
    assert (vd.valid.matrix - train.matrix.multiply(vd.valid.matrix > 0)).nnz == 0
    # the validation users are capped at max_users
    assert np.count_nonzero(np.diff(vd.valid.matrix.indptr)) == SMALL["validation"]["max_users"]


def test_pruned_trial_stops_fitting_at_the_report(data, space):
    """The fit callback reports the validation metric and stops the fit when told to prune."""
    vd = validation_data(data, space, seed=0)
    reports = []

    class Trial:  # stands in for optuna.Trial: prunes after the second report
        number = 0
        study = type("S", (), {"get_trials": staticmethod(lambda deepcopy=False: [])})()

        def suggest_float(self, name, low, high, log=False):
            return 1.0

        def suggest_int(self, name, low, high, log=False):
            return 6

        def suggest_categorical(self, name, choices):
            return choices[-1]

        def report(self, value, step):
            reports.append((step, value))

        def should_prune(self):
            return len(reports) == 2

        def set_user_attr(self, key, value):
            pass

    with pytest.raises(optuna.TrialPruned):
        _Objective(space, vd, seed=0, n_trials=5)(Trial())
    assert [s for s, _ in reports] == [1, 2]  # iterations 3..6 never ran
    # the reported value is the validation NDCG of the model after that iteration
    model = ALSModel(
        factors=8, iterations=2, alpha=1.0, regularization=1.0, scaling="log", random_state=0
    )
    model.fit(vd.fit)
    expected = evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert reports[-1][1] == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ studies
def test_sweep_records_defaults_popularity_and_best(data, space, tmp_path):
    out = tmp_path / "out"
    result = tune(data, n_trials=6, seed=1, out_dir=out, space=space, quiet=True)
    url = f"sqlite:///{paths.experiments_dir() / (result.study_name + '.db')}"
    assert result.storage == url  # default storage: experiments/<study>.db under the home
    study = open_study(url, result.study_name)
    trials = finished(study)
    assert len(trials) == 6
    first = study.trials[0]
    assert first.params == SMALL["defaults"] and first.user_attrs["role"] == "defaults"

    best = json.loads((out / "best.json").read_text())
    csv = pd.read_csv(out / "trials.csv")
    complete = csv[csv["state"] == "COMPLETE"]
    assert best["validation"]["ndcg@10"] == pytest.approx(complete["value"].max())
    # ALSModel arguments, the seed of the initial factors included (as in every trial)
    assert best["params"] == {"solver": "cg", **study.best_trial.params, "random_state": 1}
    assert best["study"] == result.study_name and best["seed"] == 1
    assert best["data"]["fingerprint"] == data.fingerprint()
    assert best["environment"]["git"].keys() == {"commit", "dirty"}
    # popularity on the same validation split, computed here independently
    vd = validation_data(data, space, seed=1)
    pop = evaluate(PopularityModel().fit(vd.fit), vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert best["validation"]["popularity_ndcg@10"] == pytest.approx(pop)
    assert best["validation"]["defaults_ndcg@10"] == pytest.approx(first.value)
    assert best["validation"]["beats_popularity"] == (best["validation"]["ndcg@10"] > pop)
    # a trial's value is the validation NDCG of ALS fitted on the fit part with its params
    t = study.trials[0]
    model = ALSModel(**best["params"] | t.params).fit(vd.fit)
    assert t.value == pytest.approx(
        evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"], rel=1e-6
    )


def test_resume_adds_trials_and_enqueues_the_defaults_once(data, space):
    first = tune(data, n_trials=4, seed=2, space=space, quiet=True)
    url = first.storage
    before = {t.number: (t.params, t.value) for t in finished(open_study(url, first.study_name))}
    tune(data, n_trials=7, seed=2, space=space, quiet=True)
    study = open_study(url, first.study_name)
    trials = finished(study)
    assert len(trials) == 7
    assert sum(t.user_attrs.get("role") == "defaults" for t in study.trials) == 1
    for t in trials:  # nothing finished before was changed
        if t.number in before:
            assert (t.params, t.value) == before[t.number]
    # asking for fewer than are done changes nothing
    tune(data, n_trials=5, seed=2, space=space, quiet=True)
    assert len(finished(open_study(url, first.study_name))) == 7


def test_resume_refuses_other_data(data, space):
    tune(data, n_trials=2, seed=0, space=space, study_name="shared", quiet=True)
    other = synthetic(200, 100, 3000, seed=9)
    with pytest.raises(ValueError, match="was created with data"):
        tune(other, n_trials=2, seed=0, space=space, study_name="shared", quiet=True)


def test_same_seed_same_sweep(data, space, tmp_path):
    """Deterministic: one worker, one seed -> the same trials, parameters and values."""
    runs = []
    for i in range(2):
        r = tune(data, n_trials=6, seed=4, space=space, storage=tmp_path / f"s{i}.db", quiet=True)
        runs.append(
            [(t.state.name, t.params, t.value) for t in open_study(r.storage, r.study_name).trials]
        )
    assert runs[0] == runs[1]  # exact: same seed, same data, same arithmetic


@pytest.mark.slow
def test_two_workers_reach_the_exact_count(data, space, tmp_path):
    result = tune(
        data, n_trials=8, seed=0, space=space, storage=tmp_path / "two.db", workers=2, quiet=True
    )
    study = open_study(result.storage, result.study_name)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len(finished(study)) == 8
    # both workers took part (their pids are not recorded; their sampler streams differ, so
    # the only check is the count) and nothing failed apart from surplus starts
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state.name == "FAIL")


@pytest.mark.slow
def test_killed_worker_loses_no_finished_trial(tmp_path):
    """SIGKILL a worker mid-trial: every finished trial survives, the killed one is failed
    once its heartbeat is stale, and the resumed sweep ends with the requested count."""
    events = tmp_path / "events.csv"
    # big enough that a trial takes a while, so the worker is caught inside one
    synthetic(2000, 500, 80_000, seed=1).to_frame().to_csv(events, index=False)
    space_file = tmp_path / "space.yaml"
    slow = {
        **SMALL,
        "params": {**SMALL["params"], "iterations": {"type": "int", "low": 10, "high": 20}},
        "defaults": {**SMALL["defaults"], "iterations": 15},
    }
    space_file.write_text(json.dumps(slow))  # JSON is YAML
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    command = [
        sys.executable,
        "-m",
        "alsresearch",
        "tune",
        "--events",
        str(events),
        "--trials",
        "8",
        "--seed",
        "0",
        "--storage",
        url,
        "--study",
        "kill",
        "--space",
        str(space_file),
        "--heartbeat",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    env = {**os.environ, "ALSRESEARCH_HOME": str(tmp_path / "home")}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        caught = None
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                trials = open_study(url, "kill").get_trials()
            except Exception:  # the study or its tables do not exist yet
                time.sleep(0.05)
                continue
            states = [t.state.name for t in trials]
            if states.count("COMPLETE") >= 1 and "RUNNING" in states:
                os.kill(worker.pid, signal.SIGKILL)
                caught = trials
                break
            time.sleep(0.02)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
    assert caught is not None, f"never saw a running trial: {worker.stderr.read().decode()[-2000:]}"
    assert worker.returncode == -signal.SIGKILL
    done_before = {
        t.number: (t.state.name, t.params, t.value)
        for t in open_study(url, "kill").get_trials()
        if t.state.name in ("COMPLETE", "PRUNED")
    }
    killed = [t.number for t in open_study(url, "kill").get_trials() if t.state.name == "RUNNING"]
    assert len(killed) == 1 and done_before

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = open_study(url, "kill")
    trials = study.get_trials()
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == 8
    after = {t.number: (t.state.name, t.params, t.value) for t in trials}
    for number, record in done_before.items():
        assert after[number] == record
    assert after[killed[0]][0] == "FAIL"
    assert sum(t.user_attrs.get("role") == "defaults" for t in trials) == 1
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["trials"]["FAIL"] == 1


def test_failing_trials_stop_the_sweep_with_the_reason(data):
    broken = SearchSpace.from_dict({**SMALL, "fixed": {"cg_steps": 0}}, "broken")
    with pytest.raises(
        RuntimeError, match=r"3 failed trials \(more than 2\).*cg_steps must be >= 1"
    ):
        tune(data, n_trials=4, seed=0, space=broken, max_failures=2, quiet=True)
