"""Recency-weighted counts: hand-computed decayed counts, as_of, no decay = the plain sums, errors,
splits that do not leak, the data source and command-line options, and tuning a half-life
without rereading the events file."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pandas as pd
import pytest

from alsresearch import data as data_module
from alsresearch.cli import main
from alsresearch.cli._options import add_data_options, data_source
from alsresearch.data import Interactions, format_duration, parse_half_life, parse_time
from alsresearch.datasets import synthetic_events
from alsresearch.errors import SpecMismatchError
from alsresearch.source import DataSource
from alsresearch.split import random_holdout, temporal_holdout

DAY = 86_400
T0 = 1_500_000_000  # 2017-07-14T02:40:00Z


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def events() -> pd.DataFrame:
    """User 1 saw item "a" three times (now, one and two days ago, weights 1, 2, 4), item "b"
    once three days ago (weight 8); user 2 saw "b" once a day ago (weight 3)."""
    return pd.DataFrame(
        {
            "user": [1, 1, 1, 1, 2],
            "item": ["a", "a", "a", "b", "b"],
            "w": [1.0, 2.0, 4.0, 8.0, 3.0],
            "ts": [T0, T0 - DAY, T0 - 2 * DAY, T0 - 3 * DAY, T0 - DAY],
        }
    )


def build(frame, **kwargs) -> Interactions:
    return Interactions.from_events(
        frame, "user", "item", weight_col="w", timestamp_col="ts", **kwargs
    )


def cells(data: Interactions) -> dict:
    coo = data.matrix.tocoo()
    keys = zip(data.user_ids[coo.row].tolist(), data.item_ids[coo.col].tolist(), strict=True)
    return dict(zip(keys, coo.data.tolist(), strict=True))


# ------------------------------------------------------------------ reference counts
def test_decayed_counts_match_hand_computed_values(events):
    data = build(events, half_life="1D")
    # t_ref = the latest event (T0); by hand: 1 + 2/2 + 4/4 = 3, 8/8 = 1, 3/2 = 1.5
    assert cells(data) == pytest.approx({(1, "a"): 3.0, (1, "b"): 1.0, (2, "b"): 1.5}, rel=1e-15)
    assert data.half_life == DAY and data.as_of is None
    # a two-day half-life: 1 + 2 / 2**0.5 + 4 / 2 = 4.41421..., 8 / 2**1.5, 3 / 2**0.5
    two = build(events, half_life=datetime.timedelta(days=2))
    assert cells(two) == pytest.approx(
        {(1, "a"): 3 + 2**0.5, (1, "b"): 2 * 2**0.5, (2, "b"): 1.5 * 2**0.5}, rel=1e-14
    )
    # the cell timestamps stay the latest event of each cell
    assert sorted(data.timestamps.tolist()) == [T0 - 3 * DAY, T0 - DAY, T0]


def test_as_of_counts_ages_from_the_given_time(events):
    later = build(events, half_life="1D", as_of=T0 + DAY)
    # one more day of age halves every count
    assert cells(later) == pytest.approx({(1, "a"): 1.5, (1, "b"): 0.5, (2, "b"): 0.75}, rel=1e-15)
    assert later.as_of == T0 + DAY
    # the same time as text (naive = UTC) and as a Timestamp
    text = pd.Timestamp(T0 + DAY, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    for as_of in (text, pd.Timestamp(T0 + DAY, unit="s", tz="UTC"), str(T0 + DAY)):
        assert cells(build(events, half_life="1D", as_of=as_of)) == cells(later)
    # as_of exactly at the latest event is the default reference
    assert cells(build(events, half_life="1D", as_of=T0)) == cells(build(events, half_life="1D"))


def test_an_event_after_as_of_is_an_error(events):
    with pytest.raises(ValueError, match=r"as_of 2017-07-13T02:40:00Z precedes 1 event\(s\)"):
        build(events, half_life="1D", as_of=T0 - DAY)


def test_no_decay_is_exactly_the_plain_sums(rng):
    n = 3000
    frame = pd.DataFrame(
        {
            "user": rng.integers(0, 50, n),
            "item": rng.integers(0, 40, n),
            "w": rng.random(n) * 10,  # non-integral weights: summation order would show
            "ts": T0 - rng.integers(0, 400 * DAY, n),
        }
    )
    today = Interactions.from_events(frame, "user", "item", weight_col="w")  # no events kept
    kept = build(frame)
    assert kept.events is not None and kept.half_life is None
    none = build(frame, half_life=None)
    for other in (kept, none, build(frame, half_life="30D").decayed(None)):
        assert np.array_equal(other.matrix.indptr, today.matrix.indptr)
        assert np.array_equal(other.matrix.indices, today.matrix.indices)
        assert np.array_equal(other.matrix.data, today.matrix.data)  # exactly, not approx
    # and they are the sums of the weights (pandas, an independent reference)
    sums = frame.groupby(["user", "item"])["w"].sum()
    assert cells(kept) == pytest.approx(sums.to_dict(), rel=1e-12)


def test_decay_matches_a_dense_reference_on_random_events(rng):
    n = 2000
    frame = pd.DataFrame(
        {
            "user": rng.integers(0, 30, n),
            "item": rng.integers(0, 20, n),
            "w": rng.integers(1, 5, n).astype(float),
            "ts": T0 - rng.integers(0, 100 * DAY, n),
        }
    )
    data = build(frame, half_life="10D")
    t_ref = frame["ts"].max()
    decayed = frame["w"] * 0.5 ** ((t_ref - frame["ts"]) / (10 * DAY))
    reference = decayed.groupby([frame["user"], frame["item"]]).sum()
    assert cells(data) == pytest.approx(reference.to_dict(), rel=1e-12)


def test_a_very_old_event_keeps_its_cell(events):
    old = pd.concat(
        [events, pd.DataFrame({"user": [3], "item": ["c"], "w": [1.0], "ts": [T0 - 5000 * DAY]})]
    )
    data = build(old, half_life="1D")
    # 0.5 ** 5000 underflows; the cell stays an interaction with the smallest normal count
    assert cells(data)[(3, "c")] == np.finfo(np.float64).tiny
    assert data.nnz == build(old).nnz


def test_events_are_kept_compactly(events):
    one_each = build(events.drop_duplicates(["user", "item"]))
    assert one_each.events.indptr is None  # one event per cell: no index
    assert one_each.events.times is one_each.timestamps  # shared, not copied
    several = build(events)
    assert several.events.n_events == 5 and several.events.n_cells == several.nnz == 3
    assert several.events.indptr.tolist() == [0, 3, 4, 5]
    # no timestamps: nothing kept
    assert Interactions.from_events(events, "user", "item").events is None


def test_zero_weight_cells_leave_with_their_events(events):
    zero = pd.concat([events, pd.DataFrame({"user": [3], "item": ["c"], "w": [0.0], "ts": [T0]})])
    data = build(zero, half_life="1D")
    assert data.nnz == 3 and data.events.n_events == 5


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "bad", [0, -1, "0D", "-3D", float("nan"), float("inf"), True, "soon", "NaT", [30]]
)
def test_bad_half_life_is_refused(events, bad):
    with pytest.raises(ValueError, match="half_life must be a duration > 0"):
        build(events, half_life=bad)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30D", 30 * DAY),
        ("14 days", 14 * DAY),
        (" 12h ", 12 * 3600),
        (pd.Timedelta(hours=36), 36 * 3600),
        (datetime.timedelta(minutes=90), 5400),
        (np.timedelta64(2, "D"), 2 * DAY),
        (86400, DAY),
        (1.5, 1.5),
        ("86400", DAY),  # digits are seconds (pandas alone reads nanoseconds)
    ],
)
def test_half_life_durations(value, seconds):
    assert parse_half_life(value) == seconds


def test_durations_have_one_canonical_text():
    for seconds, text in ((30 * DAY, "30D"), (36 * 3600, "36h"), (5400, "90min"), (45, "45s")):
        assert format_duration(seconds) == text and parse_half_life(text) == seconds
    assert parse_half_life(format_duration(1.5)) == 1.5


@pytest.mark.parametrize("bad", [True, None, "yesterday-ish", float("nan"), 1.6e12])
def test_bad_as_of_is_refused(bad):
    with pytest.raises(ValueError, match="as_of must be a time"):
        parse_time(bad)


def test_half_life_without_timestamps_names_the_missing_column(events):
    for kwargs in ({"half_life": "7D"}, {"as_of": T0}):
        with pytest.raises(ValueError, match=r"give timestamp_col \(the timestamp column"):
            Interactions.from_events(events, "user", "item", **kwargs)
    plain = Interactions.from_events(events, "user", "item")
    with pytest.raises(ValueError, match=r"from_events\(\.\.\., timestamp_col="):
        plain.decayed("7D")


# ------------------------------------------------------------------ splits
def _two_part_events(rng, n_users=40, n_items=30, n=3000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": rng.integers(0, n_users, n),
            "item": rng.integers(0, n_items, n),
            "w": rng.integers(1, 4, n).astype(float),
            "ts": T0 - rng.integers(0, 200 * DAY, n),
        }
    )


def test_a_training_part_is_decayed_to_its_own_latest_event(rng):
    frame = _two_part_events(rng)
    data = build(frame, half_life="20D")
    train, _ = temporal_holdout(data, test_fraction=0.3)
    # reference: the training cells' events, decayed from the latest *training* event
    train_keys = set(cells(train))
    key = list(zip(frame["user"], frame["item"], strict=True))
    own = frame[[k in train_keys for k in key]]
    t_ref = own["ts"].max()
    assert t_ref < frame["ts"].max()  # the test part holds later events
    decayed = own["w"] * 0.5 ** ((t_ref - own["ts"]) / (20 * DAY))
    reference = decayed.groupby([own["user"], own["item"]]).sum()
    assert cells(train) == pytest.approx(reference.to_dict(), rel=1e-12)
    assert train.half_life == data.half_life and train.events.n_cells == train.nnz


@pytest.mark.parametrize("split", ["temporal", "random"])
def test_test_events_do_not_move_training_counts(rng, split):
    frame = _two_part_events(rng)
    parts = {
        "temporal": lambda d: temporal_holdout(d, test_fraction=0.25),
        "random": lambda d: random_holdout(d, 0.25, seed=4),
    }[split]
    train, test = parts(build(frame, half_life="20D"))
    # move every test cell's events later (and make them heavier): a changed future
    test_keys = set(cells(test))
    in_test = np.array([k in test_keys for k in zip(frame["user"], frame["item"], strict=True)])
    changed = frame.copy()
    changed.loc[in_test, "ts"] += 50 * DAY
    changed.loc[in_test, "w"] *= 7
    train2, test2 = parts(build(changed, half_life="20D"))
    assert set(cells(test2)) == test_keys  # the same cells are held out
    assert np.array_equal(train2.matrix.data, train.matrix.data)  # and training counts agree
    assert np.array_equal(train2.matrix.indices, train.matrix.indices)


def test_as_of_is_kept_by_every_part(rng):
    frame = _two_part_events(rng)
    as_of = int(frame["ts"].max()) + DAY
    data = build(frame, half_life="20D", as_of=as_of)
    train, _ = temporal_holdout(data, test_fraction=0.3)
    assert train.as_of == as_of
    # counts of kept cells are the whole data's, cell for cell (one reference time)
    whole = cells(data)
    assert all(whole[k] == v for k, v in cells(train).items())
    # re-decaying a part with another half-life keeps as_of when asked
    assert train.decayed("5D", as_of=train.as_of).as_of == as_of


# ------------------------------------------------------------------ data source and options
def test_data_source_records_canonical_decay(tmp_path, events):
    path = tmp_path / "e.csv"
    events.to_csv(path, index=False)
    source = DataSource(
        path=path,
        user_col="user",
        item_col="item",
        weight_col="w",
        timestamp_col="ts",
        half_life="24 hours",
        as_of=T0 + DAY,
    )
    assert source.half_life == "1D" and source.as_of == "2017-07-15T02:40:00Z"
    record = source.to_dict()
    assert record["half_life"] == "1D" and record["as_of"] == "2017-07-15T02:40:00Z"
    assert DataSource.from_dict(record) == source
    assert cells(source.load()) == pytest.approx({(1, "a"): 1.5, (1, "b"): 0.5, (2, "b"): 0.75})
    # another spelling of the same duration reads the data the same way
    source.check_same(DataSource.from_dict({**record, "half_life": "86400"}).to_dict(), "x")
    with pytest.raises(SpecMismatchError, match="half_life '2D' there, '1D' here"):
        source.check_same({**record, "half_life": "2D"}, "the model was trained on")
    # a record without decay (written before it existed, or without it) differs too
    plain = {k: v for k, v in record.items() if k not in ("half_life", "as_of")}
    with pytest.raises(SpecMismatchError, match="half_life None there, '1D' here"):
        source.check_same(plain, "the model was trained on")
    assert "half_life" not in DataSource(path=path).to_dict()  # unset: records as before
    params = source.to_notebook_parameters()
    assert params["HALF_LIFE"] == "1D" and DataSource.from_notebook_parameters(params) == source


def test_data_source_decay_needs_timestamps(tmp_path):
    with pytest.raises(ValueError, match=r"half_life weigh events by their age.*--timestamp-col"):
        DataSource(path=tmp_path / "e.csv", half_life="7D")
    with pytest.raises(
        ValueError, match=r"\['half_life'\] have no effect with data format 'lastfm'"
    ):
        DataSource(path=tmp_path / "x", format="lastfm", half_life="7D")
    with pytest.raises(ValueError, match="half_life must be a duration > 0"):
        DataSource(half_life="-1D")


def test_shipped_movielens_with_a_half_life(movielens):
    source = DataSource(half_life="365D")
    assert source.describe() == "the shipped MovieLens ml-latest-small (half_life=365D)"
    data = source.load()
    assert data.nnz == movielens.nnz and data.half_life == 365 * DAY
    # every rating weighs 1: its count is 0.5 ** (age in years), age from the latest rating
    expected = 0.5 ** ((movielens.timestamps.max() - movielens.timestamps) / (365 * DAY))
    np.testing.assert_allclose(data.matrix.data, expected, rtol=1e-12)


def test_with_tuned_applies_a_chosen_half_life(tmp_path):
    path = tmp_path / "e.csv"
    source = DataSource(path=path, timestamp_col="ts")
    assert source.with_tuned({"half_life": "720h"}, "best.json").half_life == "30D"
    assert source.with_tuned({"half_life": None}, "best.json") == source
    assert source.with_tuned({}, "best.json") == source
    fixed = DataSource(path=path, timestamp_col="ts", half_life="30D")
    assert fixed.with_tuned({"half_life": "30 days"}, "best.json") == fixed
    with pytest.raises(ValueError, match=r"'30D' is given, but best.json was tuned with .*'7D'"):
        fixed.with_tuned({"half_life": "7D"}, "best.json")
    with pytest.raises(ValueError, match=r"unknown data param\(s\) \['alpha'\]"):
        source.with_tuned({"alpha": 1}, "best.json")


def test_command_line_options(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_data_options(parser)
    args = parser.parse_args(
        [
            "--events",
            "e.csv",
            "--timestamp-col",
            "ts",
            "--half-life",
            "14 days",
            "--as-of",
            "2018-01-01",
        ]
    )
    source = data_source(args)
    assert source.half_life == "14D" and source.as_of == "2018-01-01T00:00:00Z"
    assert data_source(parser.parse_args([])) == DataSource()


def test_train_records_the_half_life_and_applies_a_tuned_one(tmp_path, rng):
    from alsresearch.als import ALSModel

    path = tmp_path / "e.csv"
    _two_part_events(rng).to_csv(path, index=False)
    best = tmp_path / "best.json"
    best.write_text(
        json.dumps(
            {
                "params": {"factors": 4, "iterations": 2, "random_state": 3},
                "data_params": {"half_life": "20D"},
            }
        )
    )
    options = ["train", "--events", str(path), "--user-col", "user", "--item-col", "item"]
    options += ["--weight-col", "w", "--timestamp-col", "ts", "--split", "temporal"]
    out = tmp_path / "m.npz"
    assert main([*options, "--params", str(best), "--out", str(out)]) == 0
    model = ALSModel.load(out)
    assert model.training["data"]["half_life"] == "20D"
    # the model saw the temporal training part, decayed to its own latest event
    source = DataSource(
        path=path, user_col="user", item_col="item", weight_col="w", timestamp_col="ts"
    )
    train, _ = temporal_holdout(source.load().decayed("20D"), test_fraction=0.2)
    undecayed, _ = temporal_holdout(source.load(), test_fraction=0.2)
    for part, same in ((train, True), (undecayed, False)):
        refit = ALSModel(factors=4, iterations=2, random_state=3, num_threads=1).fit(part)
        agree = np.allclose(model.user_factors, refit.user_factors, rtol=1e-4, atol=1e-6)
        assert agree == same
    # a different --half-life contradicts the tuned one
    assert main([*options, "--half-life", "7D", "--params", str(best), "--out", str(out)]) == 1


# ------------------------------------------------------------------ tuning
SPACE = {
    "params": {
        "alpha": {"type": "float", "low": 1.0, "high": 50.0, "log": True},
        "factors": {"type": "categorical", "choices": [4]},
        "half_life": {"type": "categorical", "choices": [None, "3D", "30D"]},
    },
    "defaults": {"alpha": 10.0, "factors": 4, "half_life": None},
    "fixed": {"iterations": 2, "solver": "cg"},
    "sampler": {"n_startup_trials": 10},
    "validation": {"fraction": 0.2, "max_users": 200, "every": 2, "k": 10},
}


def test_tune_searches_the_half_life_without_rereading_the_file(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from tests.tuning_helpers import open_study, write_space

    path = tmp_path / "events.csv"
    synthetic_events(120, 50, 1500, seed=6, span_days=120).to_csv(path, index=False)
    reads = []
    real = data_module.read_table

    def counting(*args, **kwargs):
        reads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "read_table", counting)
    space = write_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "out"
    options = ["tune", "--events", str(path), "--event-col", "event", "--timestamp-col"]
    options += ["timestamp", "--split", "temporal", "--space", str(space), "--trials", "6"]
    assert main([*options, "--seed", "1", "--out", str(out), "--quiet"]) == 0
    assert len(reads) == 1  # read once, however many trials and half-lives

    best = json.loads((out / "best.json").read_text())
    study = open_study(best["storage"], best["study"])
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    chosen = {t.params["half_life"] for t in trials}
    assert len(chosen) >= 2 and all("half_life" in t.params for t in trials)
    winner = study.best_trial
    assert "half_life" not in best["params"]  # ALSModel arguments only
    assert best["data_params"] == {"half_life": winner.params["half_life"]}
    assert best["search_space"]["params"]["half_life"]["choices"] == [None, "3D", "30D"]

    # a trial's value is that of a model fitted on the fit part decayed with its half-life
    from alsresearch.als import ALSModel
    from alsresearch.evaluate import evaluate
    from alsresearch.split import SplitSpec
    from alsresearch.tuning import SearchSpace, validation_data

    source = DataSource(path=path, event_col="event", timestamp_col="timestamp")
    vd = validation_data(
        source.load(), SearchSpace.from_dict(SPACE), seed=1, split=SplitSpec(kind="temporal")
    )
    decayed = next(t for t in trials if t.params["half_life"] is not None)
    fit = vd.fit.decayed(decayed.params["half_life"])
    assert not np.array_equal(fit.matrix.data, vd.fit.matrix.data)
    params = {**SPACE["fixed"], "alpha": decayed.params["alpha"], "factors": 4}
    model = ALSModel(**params, random_state=1).fit(fit)
    value = evaluate(model, fit, vd.valid, k=10).metrics["ndcg@10"]
    assert decayed.value == pytest.approx(value, rel=1e-6)


def test_tune_drops_the_half_life_when_the_data_cannot_use_it(tmp_path):
    pytest.importorskip("optuna")
    from alsresearch.datasets import synthetic
    from alsresearch.tuning import SearchSpace, tune

    space = SearchSpace.from_dict(SPACE, "space.yaml")
    plain = synthetic(80, 40, 800, seed=2)  # no timestamps
    with pytest.warns(UserWarning, match=r"half_life is not searched: the data have no timestamps"):
        result = tune(plain, n_trials=2, space=space, out_dir=tmp_path / "a", quiet=True)
    best = json.loads(result.best_json.read_text())
    assert "half_life" not in best["search_space"]["params"] and "data_params" not in best

    frame = synthetic_events(80, 40, 800, seed=2)
    fixed = Interactions.from_events(frame, timestamp_col="timestamp", half_life="10D")
    with pytest.warns(UserWarning, match=r"the data source fixes it \(--half-life\)"):
        tune(fixed, n_trials=2, space=space, out_dir=tmp_path / "b", quiet=True)
