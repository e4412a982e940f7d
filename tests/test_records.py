"""results.json records and the training record of a model file (alsresearch.records)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alsresearch import records
from alsresearch.errors import SpecMismatchError
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec


def test_write_results_records_parameters_metrics_data_and_environment(
    tmp_path, small_interactions
):
    path = records.write_results(
        tmp_path / "run",
        params={"ALPHA": 1.0},
        metrics={"ndcg@10": np.float32(0.25), "missing": float("nan")},
        data=small_interactions,
        seed=7,
        durations={"fit": 1.5},
    )
    assert path == tmp_path / "run" / records.RESULTS_FILE
    record = json.loads(path.read_text())
    assert record["parameters"] == {"ALPHA": 1.0}
    assert record["metrics"] == {"ndcg@10": 0.25, "missing": None}
    assert record["data"]["fingerprint"] == small_interactions.fingerprint()
    assert record["data"]["nnz"] == small_interactions.nnz
    assert record["data"]["n_users"] == 60 and record["data"]["n_items"] == 40
    assert record["data"]["source"] is None
    assert record["split"] is None and record["train"] is None
    assert record["seed"] == 7 and record["durations"] == {"fit": 1.5}
    env = record["environment"]
    assert set(env["git"]) == {"commit", "dirty"} and "numpy" in env["packages"]
    assert "threads" in env
    assert records.read_results(tmp_path / "run") == record == records.read_results(path)


def test_write_results_records_the_source_split_and_training_part(tmp_path, small_interactions):
    events = tmp_path / "events.csv"
    source = DataSource(
        path=str(events), event_col="event", event_weights="view=1,buy=4", timestamp_col="ts"
    )
    split = SplitSpec(kind="temporal", test_fraction=0.3)
    train = small_interactions.select_cells(np.arange(small_interactions.nnz) % 3 != 0)
    record = records.read_results(
        records.write_results(
            tmp_path,
            params={},
            metrics={},
            data=small_interactions,
            source=source,
            split=split,
            train=train,
        )
    )
    assert record["data"]["source"] == {
        "path": str(events.resolve()),
        "format": "events",
        "user_col": "user_id",
        "item_col": "item_id",
        "weight_col": None,
        "event_col": "event",
        "event_weights": {"view": 1.0, "buy": 4.0},
        "timestamp_col": "ts",
        "errors": "raise",
    }
    assert record["split"] == {"kind": "temporal", "test_fraction": 0.3, "seed": split.seed}
    assert record["train"]["fingerprint"] == train.fingerprint() != record["data"]["fingerprint"]
    assert record["train"]["nnz"] == train.nnz < small_interactions.nnz
    # the records read back into the same specs
    assert DataSource.from_dict(record["data"]["source"]) == source
    assert SplitSpec.from_dict(record["split"]) == split


def test_write_results_refuses_non_numeric_metrics(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\['name'\] must be a number"):
        records.write_results(tmp_path, params={}, metrics={"name": "als"})
    with pytest.raises(ValueError, match=r"metrics\['flag'\] must be a number"):
        records.write_results(tmp_path, params={}, metrics={"flag": True})
    assert not (tmp_path / records.RESULTS_FILE).exists()


def test_write_results_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match=r"results\.extra_value: object"):
        records.write_results(tmp_path, params={}, metrics={}, extra={"extra_value": object()})


def test_read_results_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no results\.json at"):
        records.read_results(tmp_path)


def test_upper_case_parameters_keeps_only_upper_case_literals():
    namespace = {"ALPHA": 1.5, "NAME": "x", "FLAG": True, "data": 3, "X_2": None, "CLS": dict}
    assert records.upper_case_parameters(namespace) == {
        "ALPHA": 1.5,
        "NAME": "x",
        "FLAG": True,
        "X_2": None,
    }


def test_training_record_names_the_part():
    source = DataSource()
    held = records.training_record(source, SplitSpec())
    assert held == {"data": source.to_dict(), "split": SplitSpec().to_dict(), "part": "train"}
    everything = records.training_record(source, SplitSpec(test_fraction=0))
    assert everything["part"] == "all"


def test_check_training_names_what_differs(tmp_path):
    path = str(tmp_path / "events.csv")
    source = DataSource(path=path, event_col="event", event_weights={"view": 1, "buy": 4})
    split = SplitSpec(kind="temporal")
    recorded = records.training_record(source, split)
    records.check_training(recorded, source, split, "m.npz: the model was trained on")
    records.check_training(None, source, split, "m.npz")  # nothing recorded: nothing to compare

    other_weights = DataSource(path=path, event_col="event", event_weights={"view": 1, "buy": 5})
    with pytest.raises(
        SpecMismatchError, match=r"m\.npz: the model was trained on .*event_weights"
    ):
        records.check_training(recorded, other_weights, split, "m.npz: the model was trained on")
    with pytest.raises(SpecMismatchError, match=r"kind 'temporal' there, 'random' here"):
        records.check_training(recorded, source, SplitSpec(), "m.npz: the model was trained on")


def test_training_record_states_the_seed_and_the_init(tmp_path, small_interactions):
    from alsresearch.als import ALSModel
    from alsresearch.baselines import PopularityModel
    from alsresearch.files import file_digest

    seeded = ALSModel(factors=2, iterations=1, random_state=3)
    record = records.training_record(None, SplitSpec(), model=seeded)
    assert (record["random_state"], record["unseeded"]) == (3, False)
    unseeded = records.training_record(None, SplitSpec(), model=ALSModel(factors=2))
    assert (unseeded["random_state"], unseeded["unseeded"]) == (None, True)
    # a model without a seed states none
    assert "unseeded" not in records.training_record(None, SplitSpec(), model=PopularityModel())
    path = seeded.fit(small_interactions).save(tmp_path / "m.npz")
    init = records.init_record(path, "als")
    assert init == {
        "path": str(path),
        "sha256": file_digest(path),
        "model_type": "als",
        "warm_start": None,
    }
    assert records.training_record(None, SplitSpec(), init=init)["init"] == init


def test_write_results_states_an_unseeded_run(tmp_path):
    no_seed = records.read_results(records.write_results(tmp_path / "a", params={}, metrics={}))
    assert no_seed["seed"] is None and "unseeded" not in no_seed  # no seed applies
    seeded = records.write_results(tmp_path / "b", params={}, metrics={}, seed=0)
    assert records.read_results(seeded)["seed"] == 0
    unseeded = records.write_results(tmp_path / "c", params={}, metrics={}, seed=None)
    assert records.read_results(unseeded)["unseeded"] is True
