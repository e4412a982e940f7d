"""`alsresearch train` and `alsresearch evaluate` through alsresearch.cli.main: the figures,
the training record in the model file, typed events with a temporal split end to end, and the
refusals (another data spec, another split, other cells)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alsresearch import load_model
from alsresearch.cli import main
from alsresearch.datasets import synthetic
from alsresearch.split import SplitSpec
from tests.typed_events import (
    COLUMNS,
    EVENT_WEIGHTS,
    EVENT_WEIGHTS_TEXT,
    TEST_FRACTION,
    as_interactions,
    expected_cells,
    write_typed_events,
)

ALS = {"factors": 4, "iterations": 3, "random_state": 0}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.csv"
    synthetic(400, 150, 8000, seed=2).to_frame().rename(columns={"count": "plays"}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps(ALS))
    return path


def test_train_then_evaluate_against_popularity(tmp_path, events, capsys):
    params = tmp_path / "best.json"
    als_params = {
        "factors": 8,
        "iterations": 5,
        "alpha": 2.0,
        "regularization": 0.1,
        "random_state": 0,
    }
    params.write_text(json.dumps({"params": als_params}))
    model = tmp_path / "model.npz"
    data_args = ["--events", str(events), "--weight-col", "plays"]
    assert main(["train", *data_args, "--params", str(params), "--out", str(model)]) == 0
    assert model.is_file()
    out = tmp_path / "eval"
    assert main(["evaluate", *data_args, "--model", str(model), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "popularity" in printed and "ndcg@10" in printed
    record = json.loads((out / "results.json").read_text())

    # the same figures, computed here from the library pieces
    from alsresearch.als import ALSModel
    from alsresearch.baselines import PopularityModel
    from alsresearch.data import Interactions
    from alsresearch.evaluate import evaluate
    from alsresearch.split import random_holdout

    data = Interactions.from_events(events, weight_col="plays")
    spec = SplitSpec()
    train, test = random_holdout(data, spec.test_fraction, seed=spec.seed)
    als = ALSModel(**als_params).fit(train)
    pop = PopularityModel().fit(train)
    assert record["metrics"]["als_ndcg@10"] == pytest.approx(
        evaluate(als, train, test).metrics["ndcg@10"]
    )
    assert record["metrics"]["popularity_ndcg@10"] == pytest.approx(
        evaluate(pop, train, test).metrics["ndcg@10"]
    )
    assert record["data"]["fingerprint"] == data.fingerprint()
    assert record["train"]["fingerprint"] == train.fingerprint()
    assert record["data"]["source"]["weight_col"] == "plays"
    assert record["split"] == spec.to_dict()
    assert record["parameters"] == {"model": str(model), "k": 10, "backend": "local"}
    assert record["seed"] == 0 and "unseeded" not in record  # the model's seed


def test_typed_events_with_a_temporal_split_end_to_end(tmp_path, params, capsys):
    """The issue's "done when", from the command line: train and evaluate on view / click /
    purchase events with per-type weights and a temporal split; the model saw exactly the
    weighted counts of each user's earlier cells (a pandas groupby of the file written here)."""
    frame = write_typed_events(tmp_path / "typed.csv")
    data_args = [
        "--events",
        str(tmp_path / "typed.csv"),
        *("--user-col", COLUMNS["user_col"], "--item-col", COLUMNS["item_col"]),
        *("--event-col", COLUMNS["event_col"], "--event-weights", EVENT_WEIGHTS_TEXT),
        *("--timestamp-col", COLUMNS["timestamp_col"]),
    ]
    split_args = ["--split", "temporal", "--test-fraction", str(TEST_FRACTION)]
    model_path = tmp_path / "typed.npz"
    train_args = ["--params", str(params), "--out", str(model_path)]
    assert main(["train", *data_args, *split_args, *train_args]) == 0

    cells = expected_cells(frame)
    expected_all = as_interactions(cells, cells)
    expected_train = as_interactions(cells[~cells["test"]], cells)
    assert 0 < expected_train.nnz < expected_all.nnz
    model = load_model(model_path)
    assert np.array_equal(model.user_ids, expected_all.user_ids)
    assert np.array_equal(model.item_ids, expected_all.item_ids)
    seen = expected_train.matrix.copy()
    seen.data[:] = 1
    assert (model.seen != seen).nnz == 0
    # the model file records how the data was read and split
    assert model.training["part"] == "train"
    assert model.training["split"] == {
        "kind": "temporal",
        "test_fraction": TEST_FRACTION,
        "seed": SplitSpec().seed,
    }
    recorded = model.training["data"]
    assert recorded["path"] == str((tmp_path / "typed.csv").resolve())
    assert recorded["event_weights"] == EVENT_WEIGHTS
    assert {k: recorded[k] for k in COLUMNS} == COLUMNS

    out = tmp_path / "eval"
    evaluate_args = ["--model", str(model_path), "--out", str(out)]
    assert main(["evaluate", *data_args, *split_args, *evaluate_args]) == 0
    assert f"on the test part ({int(cells['test'].sum())} cells" in capsys.readouterr().out
    record = json.loads((out / "results.json").read_text())
    # the counts the record fingerprints are the pandas groupby's, cell for cell
    assert record["data"]["fingerprint"] == expected_all.fingerprint()
    assert record["train"]["fingerprint"] == expected_train.fingerprint()
    assert record["train"]["nnz"] == int((~cells["test"]).sum())
    assert record["data"]["source"] == recorded
    assert record["split"] == model.training["split"]


def test_evaluate_refuses_a_model_trained_with_other_event_weights(tmp_path, params, capsys):
    write_typed_events(tmp_path / "typed.csv")
    base = [
        "--events",
        str(tmp_path / "typed.csv"),
        *("--user-col", COLUMNS["user_col"], "--item-col", COLUMNS["item_col"]),
        *("--event-col", COLUMNS["event_col"], "--timestamp-col", COLUMNS["timestamp_col"]),
    ]
    model = tmp_path / "m.npz"
    trained = [*base, "--event-weights", EVENT_WEIGHTS_TEXT, "--split", "temporal"]
    assert main(["train", *trained, "--params", str(params), "--out", str(model)]) == 0
    other = [*base, "--event-weights", "view=1,click=2,purchase=10", "--split", "temporal"]
    assert main(["evaluate", *other, "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert "event_weights" in err and str(model) in err
    assert "'purchase': 5.0" in err and "'purchase': 10.0" in err
    # the same data read the same way, but split another way, is refused too, naming the field
    assert main(["evaluate", *trained[:-2], "--split", "random", "--model", str(model)]) == 1
    assert "kind 'temporal' there, 'random' here" in capsys.readouterr().err
    # the recorded spec matches: it is scored
    assert main(["evaluate", *trained, "--model", str(model)]) == 0


def test_evaluate_refuses_a_model_trained_on_other_cells(tmp_path, events, params, capsys):
    data_args = ["--events", str(events), "--weight-col", "plays"]
    model = tmp_path / "all.npz"
    everything = ["--test-fraction", "0"]
    assert (
        main(["train", *data_args, "--params", str(params), "--out", str(model), *everything]) == 0
    )
    assert load_model(model).training["part"] == "all"
    assert main(["evaluate", *data_args, "--model", str(model)]) == 1
    assert "test_fraction 0.0 there" in capsys.readouterr().err
    # another split seed than the one it was trained with is refused too
    trained = tmp_path / "seed1.npz"
    assert (
        main(
            [
                "train",
                *data_args,
                "--params",
                str(params),
                "--out",
                str(trained),
                "--split-seed",
                "1",
            ]
        )
        == 0
    )
    assert main(["evaluate", *data_args, "--model", str(trained), "--split-seed", "2"]) == 1
    assert "seed 1 there, 2 here" in capsys.readouterr().err
    # the file changed under the same name and options: the cells differ, and it is refused
    synthetic(400, 150, 8000, seed=3).to_frame().rename(columns={"count": "plays"}).to_csv(
        events, index=False
    )
    assert main(["evaluate", *data_args, "--model", str(trained), "--split-seed", "1"]) == 1
    assert "was not trained on the training part of this split" in capsys.readouterr().err


def test_evaluate_refuses_a_split_with_no_test_part(tmp_path, events, params, capsys):
    model = tmp_path / "m.npz"
    assert (
        main(["train", "--events", str(events), "--params", str(params), "--out", str(model)]) == 0
    )
    code = main(
        ["evaluate", "--events", str(events), "--model", str(model), "--test-fraction", "0"]
    )
    assert code == 1
    assert "--test-fraction 0 leaves no test set" in capsys.readouterr().err


def test_train_names_a_bad_parameter(tmp_path, events, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"factor": 4}))
    code = main(
        [
            "train",
            "--events",
            str(events),
            "--params",
            str(params),
            "--out",
            str(tmp_path / "m.npz"),
        ]
    )
    assert code == 1
    assert "unknown ALS parameter(s) ['factor']" in capsys.readouterr().err


def test_train_then_evaluate_an_ease_model_named_by_its_parameters(tmp_path, events, capsys):
    """A parameter file naming ``"model": "ease"`` (bare, or in best.json's layout) trains an
    EASEModel; `evaluate` scores it like any model."""
    from alsresearch.baselines import EASEModel
    from alsresearch.data import Interactions
    from alsresearch.evaluate import evaluate
    from alsresearch.split import random_holdout

    data_args = ["--events", str(events), "--weight-col", "plays"]
    data = Interactions.from_events(events, weight_col="plays")
    spec = SplitSpec()
    train, test = random_holdout(data, spec.test_fraction, seed=spec.seed)
    layouts = {
        "bare": {"model": "ease", "regularization": 30.0},
        "best": {"model": "ease", "params": {"regularization": 30.0}, "study": "s"},
    }
    for name, layout in layouts.items():
        params = tmp_path / f"{name}.json"
        params.write_text(json.dumps(layout))
        model_file = tmp_path / f"{name}.npz"
        assert main(["train", *data_args, "--params", str(params), "--out", str(model_file)]) == 0
        model = load_model(model_file)
        assert isinstance(model, EASEModel) and model.regularization == 30.0, name
    out = tmp_path / "eval"
    assert main(["evaluate", *data_args, "--model", str(model_file), "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    reference = EASEModel(regularization=30.0).fit(train)
    assert record["metrics"]["ease_ndcg@10"] == pytest.approx(
        evaluate(reference, train, test).metrics["ndcg@10"]
    )
    assert record["metrics"]["ease_ndcg@10"] > record["metrics"]["popularity_ndcg@10"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (  # an ALS argument given to EASE
            {"model": "ease", "params": {"regularization": 30.0, "factors": 8}},
            "unknown EASE parameter(s) ['factors']; valid names: ['regularization']",
        ),
        ({"model": "ease", "regularization": -1.0}, "regularization must be"),
        ({"model": "xgboost", "params": {}}, "model must be one of"),
    ],
)
def test_train_names_a_bad_model_or_parameter(tmp_path, events, capsys, layout, message):
    params = tmp_path / "p.json"
    params.write_text(json.dumps(layout))
    out = tmp_path / "m.npz"
    code = main(["train", "--events", str(events), "--params", str(params), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and str(params) in err
    assert not out.exists()


def test_help_of_every_command_works_without_optional_imports(capsys):
    for command in ("run", "train", "evaluate", "tune"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "usage: alsresearch " + command in capsys.readouterr().out


def test_evaluate_scores_held_out_users_under_the_fold_in_protocol(tmp_path, capsys):
    """A model fitted on the train part of a fold-in split (users held out whole) is scored
    by `evaluate --protocol fold_in`; under the standard split it is refused."""
    from alsresearch.baselines import PopularityModel
    from alsresearch.evaluate import evaluate
    from alsresearch.records import training_record
    from alsresearch.source import DataSource
    from alsresearch.split import user_holdout

    source, split = DataSource(), SplitSpec(protocol="fold_in", holdout_users=40)
    train, fold_in, test = user_holdout(source.load(), 40, fold_in_fraction=0.8, seed=42)
    model = PopularityModel().fit(train)
    model.training = training_record(source, split)
    path = model.save(tmp_path / "pop.npz")
    fold_in_args = ["--protocol", "fold_in", "--holdout-users", "40"]
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(path), *fold_in_args, "--out", str(out)]) == 0
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    expected = evaluate(model, train, test, protocol="fold_in", fold_in=fold_in).metrics
    assert metrics["popularity_ndcg@100"] == pytest.approx(expected["ndcg@100"])
    assert metrics["popularity_recall@50_low"] <= expected["recall@50"]
    assert "40 users" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(path)]) == 1
    assert "protocol 'fold_in' there, 'standard' here" in capsys.readouterr().err
