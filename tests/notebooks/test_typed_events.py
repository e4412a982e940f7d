"""Notebook 02 through papermill on typed, timestamped events with per-type weights and a
temporal split (the issue's "done when", from a notebook): the counts its record fingerprints
are a pandas groupby of the weighted events of the file written here."""

from __future__ import annotations

import json

import pytest

from alsresearch import records, runner
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec
from tests.layout import NOTEBOOKS
from tests.typed_events import (
    COLUMNS,
    EVENT_WEIGHTS,
    EVENT_WEIGHTS_TEXT,
    TEST_FRACTION,
    as_interactions,
    expected_cells,
    write_typed_events,
)

pytest.importorskip("papermill")

pytestmark = pytest.mark.notebooks


def test_02_on_typed_events_with_a_temporal_split(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    frame = write_typed_events(tmp_path / "typed.csv")
    parameters = {
        "EVENTS": str(tmp_path / "typed.csv"),
        "USER_COL": COLUMNS["user_col"],
        "ITEM_COL": COLUMNS["item_col"],
        "EVENT_COL": COLUMNS["event_col"],
        "EVENT_WEIGHTS": EVENT_WEIGHTS_TEXT,
        "TIMESTAMP_COL": COLUMNS["timestamp_col"],
        "SPLIT": "temporal",
        "TEST_FRACTION": TEST_FRACTION,
        "FACTORS": 4,
        "ITERATIONS": 3,
    }
    spec = {
        "name": "typed-notebook",
        "steps": [
            {"notebook": str(NOTEBOOKS / "02_train_evaluate.ipynb"), "parameters": parameters}
        ],
    }
    (tmp_path / "typed.yaml").write_text(json.dumps(spec))
    _, runs = runner.run_experiment(tmp_path / "typed.yaml")
    assert runs[0].status == "ok", runs[0].error
    record = records.read_results(runs[0].output_dir)

    cells = expected_cells(frame)
    assert record["data"]["fingerprint"] == as_interactions(cells, cells).fingerprint()
    assert record["data"]["nnz"] == len(cells)
    train = cells[~cells["test"]]
    assert record["train"]["fingerprint"] == as_interactions(train, cells).fingerprint()
    assert record["train"]["nnz"] == len(train)
    expected_source = DataSource(
        path=str(tmp_path / "typed.csv"), **COLUMNS, event_weights=EVENT_WEIGHTS
    )
    assert record["data"]["source"] == expected_source.to_dict()
    assert record["split"] == SplitSpec(kind="temporal", test_fraction=TEST_FRACTION).to_dict()
    assert len(record["loss_history"]) == 3
