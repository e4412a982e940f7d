"""``alsresearch tune``: typed, timestamped events with a temporal split from the command line,
the default output places, and a worker killed mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from alsresearch.cli import main  # noqa: E402
from alsresearch.data import Interactions  # noqa: E402
from alsresearch.datasets import synthetic, synthetic_events  # noqa: E402
from alsresearch.split import SplitSpec  # noqa: E402
from alsresearch.tuning import SearchSpace, load_study, validation_data  # noqa: E402
from tests.tuning_helpers import SMALL, write_space  # noqa: E402

WEIGHTS = {"view": 1.0, "purchase": 5.0}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_tune_typed_events_with_a_temporal_split(tmp_path, home, capsys):
    events = tmp_path / "f.csv"
    frame = synthetic_events(80, 40, 900, seed=2, event_probs={"view": 0.8, "purchase": 0.2})
    frame = frame.rename(columns={"timestamp": "ts"})
    frame.to_csv(events, index=False)
    out = tmp_path / "out"
    options = [
        "tune",
        "--events",
        str(events),
        "--event-col",
        "event",
        "--event-weights",
        "view=1,purchase=5",
        "--timestamp-col",
        "ts",
        "--split",
        "temporal",
        "--trials",
        "2",
    ]
    assert main([*options, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "minus the test part of SplitSpec(kind='temporal'" in printed
    best = json.loads((out / "best.json").read_text())
    assert best["data"]["source"] == {
        "path": str(events.resolve()),
        "format": "events",
        "user_col": "user_id",
        "item_col": "item_id",
        "weight_col": None,
        "event_col": "event",
        "event_weights": WEIGHTS,
        "timestamp_col": "ts",
        "errors": "raise",
    }
    assert best["split"]["kind"] == "temporal"
    assert best["split"]["test_fraction"] == SplitSpec().test_fraction
    assert best["trials"]["COMPLETE"] + best["trials"].get("PRUNED", 0) == 2

    # the data it tuned on: the weighted events, summed per (user, item) by pandas
    cells = (
        frame.assign(weight=frame["event"].map(WEIGHTS).astype(float))
        .groupby(["user_id", "item_id"])["weight"]
        .sum()
    )
    assert best["data"]["nnz"] == len(cells)
    assert best["data"]["n_users"] == frame["user_id"].nunique()
    data = Interactions.from_events(
        frame, event_col="event", event_weights=WEIGHTS, timestamp_col="ts"
    )
    coo = data.matrix.tocoo()
    keys = zip(data.user_ids[coo.row], data.item_ids[coo.col], strict=True)
    read = dict(zip(keys, coo.data, strict=True))
    assert read == pytest.approx(cells.to_dict())
    assert best["data"]["fingerprint"] == data.fingerprint()
    # trials were fitted on the temporal training part minus validation
    vd = validation_data(data, SearchSpace.load(), seed=0, split=SplitSpec(kind="temporal"))
    assert best["data"]["fit_fingerprint"] == vd.fit.fingerprint()
    # the study lives in the default storage under the home
    assert (home / "experiments" / f"{best['study']}.db").is_file()

    # without --out: the study is resumed (nothing left to run) and exported to the default
    # output folder under the home
    assert main([*options, "--quiet"]) == 0
    again = json.loads(
        (home / "experiments" / "runs" / f"tune-{best['study']}" / "best.json").read_text()
    )
    assert again["params"] == best["params"] and again["data"] == best["data"]


def test_tune_refuses_another_split_on_resume(tmp_path, capsys):
    events = tmp_path / "f.csv"
    synthetic_events(60, 30, 600, seed=5).to_csv(events, index=False)
    space = write_space(tmp_path / "space.yaml")
    base = ["tune", "--events", str(events), "--space", str(space), "--trials", "2", "--quiet"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--split-seed", "7"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("alsresearch tune: error: study ")
    assert f"seed {SplitSpec().seed} there, 7 here" in error


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_killed_worker_loses_no_finished_trial(tmp_path, kind):
    """SIGKILL a worker mid-trial: every finished trial survives, the killed one is failed
    once its heartbeat is stale and run once more, and the resumed sweep ends with the
    requested count; on a SQLite file and on a journal file (whose heartbeats alsresearch
    records itself: Optuna's journal storage has none)."""
    events = tmp_path / "events.csv"
    # big enough that a trial takes a while, so the worker is caught inside one
    synthetic(2000, 500, 80_000, seed=1).to_frame().to_csv(events, index=False)
    slow = {
        **SMALL,
        "params": {**SMALL["params"], "iterations": {"type": "int", "low": 10, "high": 20}},
        "defaults": {**SMALL["defaults"], "iterations": 15},
    }
    space_file = write_space(tmp_path / "space.yaml", slow)
    url = (
        f"sqlite:///{tmp_path / 'kill.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'j.log'}"
    )
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
                trials = load_study(url, "kill").get_trials()
            except Exception:  # the study or its tables do not exist yet
                time.sleep(0.05)
                continue
            states = [t.state.name for t in trials]
            # inside a trial: its parameters drawn (and so its configuration retried as it is)
            if states.count("COMPLETE") >= 1 and any(
                t.state.name == "RUNNING" and t.params for t in trials
            ):
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
        for t in load_study(url, "kill").get_trials()
        if t.state.name in ("COMPLETE", "PRUNED")
    }
    killed = [t.number for t in load_study(url, "kill").get_trials() if t.state.name == "RUNNING"]
    assert len(killed) == 1 and done_before

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = load_study(url, "kill")
    trials = study.get_trials()
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == 8
    after = {t.number: (t.state.name, t.params, t.value) for t in trials}
    for number, record in done_before.items():
        assert after[number] == record
    assert after[killed[0]][0] == "FAIL"
    # the killed trial's configuration was run once more
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0]]
    # (with every parameter the killed trial had drawn; it may have died halfway through them)
    assert after[killed[0]][1].items() <= retry.params.items()
    assert retry.state.name in ("COMPLETE", "PRUNED")
    assert sum(t.user_attrs.get("role") == "defaults" for t in trials) == 1
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["trials"]["FAIL"] == 1
    assert np.isfinite(best["validation"]["ndcg@10"])


# ------------------------------------------------------------------ EASE
@pytest.fixture(scope="module")
def popular_ratings(tmp_path_factory):
    """The shipped MovieLens ratings of the 1,297 movies (of 9,724) that 20 or more users rated:
    an EASE fit on them takes a fraction of a second, on the whole catalogue ~10 s or more."""
    import pandas as pd

    from alsresearch import paths

    ratings = pd.read_csv(paths.resource("ml-latest-small", "ratings.csv"))
    counts = ratings["movieId"].value_counts()
    popular = ratings[ratings["movieId"].isin(counts.index[counts >= 20])]
    path = tmp_path_factory.mktemp("ratings") / "popular.csv"
    popular.to_csv(path, index=False)
    return path


def test_ease_sweep_then_train_and_promote_from_the_command_line(tmp_path, popular_ratings, capsys):
    """`tune --space search_space_ease.yaml` on MovieLens, then `train` and `promote` with
    `--params best.json`: the best trial's score is EASE's, recomputed here on the same
    validation split; the model file is that EASE fitted on the training part; the gate
    promotes it over popularity and its card names the model."""
    from alsresearch import load_model
    from alsresearch.baselines import EASEModel, PopularityModel
    from alsresearch.evaluate import evaluate
    from alsresearch.source import DataSource
    from tests.layout import REPO_ROOT

    space_file = REPO_ROOT / "experiments" / "search_space_ease.yaml"
    source = ["--events", str(popular_ratings), "--user-col", "userId", "--item-col", "movieId"]
    out = tmp_path / "sweep"
    tune = ["tune", *source, "--space", str(space_file), "--trials", "4", "--out", str(out)]
    assert main([*tune, "--quiet"]) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["model"] == "ease" and best["study"].startswith("ease-")
    assert best["params"].keys() == {"regularization"}
    regularization = best["params"]["regularization"]
    assert 1.0 <= regularization <= 10_000.0
    assert best["trials"] == {"COMPLETE": 4}

    data = DataSource(path=str(popular_ratings), user_col="userId", item_col="movieId").load()
    vd = validation_data(data, SearchSpace.load(space_file), seed=0, split=SplitSpec())
    ease = EASEModel(regularization=regularization).fit(vd.fit)
    expected = evaluate(ease, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert best["validation"]["ndcg@10"] == pytest.approx(expected, rel=1e-6)
    popularity = PopularityModel().fit(vd.fit)
    pop = evaluate(popularity, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert best["validation"]["popularity_ndcg@10"] == pytest.approx(pop)
    assert expected > pop and best["validation"]["beats_popularity"]

    model_file = tmp_path / "ease.npz"
    train = ["train", *source, "--params", str(out / "best.json"), "--out", str(model_file)]
    assert main(train) == 0
    assert "trained EASEModel(regularization=" in capsys.readouterr().out
    model = load_model(model_file)
    assert isinstance(model, EASEModel) and model.regularization == regularization
    reference = EASEModel(regularization=regularization).fit(SplitSpec().parts(data).train)
    users = data.user_ids[:50]
    for user in users:
        items, scores = model.recommend(user, n=10)
        want_items, want_scores = reference.recommend(user, n=10)
        np.testing.assert_array_equal(items, want_items)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-6)

    promote = ["promote", *source, "--params", str(out / "best.json")]
    assert main([*promote, "--models-dir", str(tmp_path / "models")]) == 0
    printed = capsys.readouterr().out
    assert "(ease)" in printed and "promoted: NDCG@10" in printed
    card = json.loads((tmp_path / "models" / "als_baseline.json").read_text())
    assert card["model_type"] == "ease" and card["params"] == best["params"]
    assert card["gate"]["passed"] and card["gate"]["differences"]["popularity"]["low"] > 0
    served = load_model(tmp_path / "models" / "als_baseline.npz")
    assert isinstance(served, EASEModel) and served.n_users == data.n_users  # all the data
