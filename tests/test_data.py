"""Interactions: building counts from events, ids, validation, derived matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch.data import Interactions, coerce_interactions, read_table
from alsresearch.errors import UnknownIdError

WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 5.0}


@pytest.fixture
def events():
    return pd.DataFrame(
        {
            "user": [7, 7, 3, 3, 3, 9, 7],
            "item": ["b", "a", "a", "a", "c", "b", "b"],
            "event": ["view", "click", "view", "purchase", "view", "view", "purchase"],
            "ts": [10, 20, 5, 6, 7, 1, 30],
        }
    )


def test_event_weights_sum_per_cell_with_latest_timestamp(events):
    data = Interactions.from_events(
        events, "user", "item", event_col="event", event_weights=WEIGHTS, timestamp_col="ts"
    )
    # users sorted [3, 7, 9], items sorted [a, b, c]; worked by hand from the table above
    assert data.user_ids.tolist() == [3, 7, 9] and data.user_ids.dtype == np.int64
    assert data.item_ids.tolist() == ["a", "b", "c"]
    expected = np.array([[1 + 5, 0, 1], [2, 1 + 5, 0], [0, 1, 0]], dtype=float)
    np.testing.assert_array_equal(data.matrix.toarray(), expected)
    latest = {(0, 0): 6, (0, 2): 7, (1, 0): 20, (1, 1): 30, (2, 1): 1}
    coo = data.matrix.tocoo()
    assert {(r, c): t for r, c, t in zip(coo.row, coo.col, data.timestamps, strict=True)} == latest


def test_unweighted_events_count_occurrences(events):
    data = Interactions.from_events(events, "user", "item")
    assert data.matrix.toarray().tolist() == [[2, 0, 1], [1, 2, 0], [0, 1, 0]]
    assert data.timestamps is None


def test_weight_column_times_event_weight():
    df = pd.DataFrame({"u": [1, 1], "i": [1, 1], "w": [2.5, 1.0], "e": ["click", "purchase"]})
    data = Interactions.from_events(
        df, "u", "i", weight_col="w", event_col="e", event_weights=WEIGHTS
    )
    assert data.matrix.toarray().tolist() == [[2.5 * 2 + 1.0 * 5]]


def test_datetime_strings_become_unix_seconds():
    df = pd.DataFrame({"u": [1], "i": [2], "t": ["1970-01-02T00:00:01Z"]})
    assert Interactions.from_events(df, "u", "i", timestamp_col="t").timestamps.tolist() == [86401]


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        (
            "user",
            [1, None, 2, None],
            "null id in 'user': 2 row\\(s\\), first at row\\(s\\) \\[1, 3\\]",
        ),
        (
            "w",
            [1.0, -1.0, 2.0, 3.0],
            "negative value in 'w': 1 row\\(s\\), first at row\\(s\\) \\[1\\]",
        ),
        ("w", [np.nan, 1.0, 1.0, 1.0], "missing value in 'w'"),
        ("w", [np.inf, 1.0, 1.0, 1.0], "infinite value in 'w'"),
        ("w", ["1", "x", "2", "3"], "non-numeric value in 'w'.*\\[1\\]"),
        ("e", ["view", "like", "view", "view"], "unknown event type in 'e'"),
    ],
)
def test_bad_rows_are_named(column, values, message):
    df = pd.DataFrame(
        {"user": [1, 2, 3, 4], "item": [1, 1, 2, 2], "w": [1.0] * 4, "e": ["view"] * 4}
    )
    df[column] = values
    kwargs = {"weight_col": "w", "event_col": "e", "event_weights": WEIGHTS}
    with pytest.raises(ValueError, match=message):
        Interactions.from_events(df, "user", "item", **kwargs)
    with pytest.warns(UserWarning, match="dropped 1 bad row|dropped 2 bad row"):
        data = Interactions.from_events(df, "user", "item", errors="drop", **kwargs)
    assert data.nnz >= 1


def test_missing_column_lists_what_exists(events):
    with pytest.raises(
        ValueError, match=r"missing column\(s\) item_col='movie'.*available columns"
    ):
        Interactions.from_events(events, "user", "movie")


def test_event_weights_without_event_column(events):
    with pytest.raises(ValueError, match="event_weights needs event_col"):
        Interactions.from_events(events, "user", "item", event_weights=WEIGHTS)


def test_reads_csv_and_parquet(tmp_path, events):
    events.to_csv(tmp_path / "e.csv", index=False)
    events.to_parquet(tmp_path / "e.parquet")
    a = Interactions.from_events(tmp_path / "e.csv", "user", "item")
    b = Interactions.from_events(tmp_path / "e.parquet", "user", "item")
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_table(tmp_path / "nope.csv")


def test_malformed_csv_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item\n1,2\n3,4,5,6\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*line 3"):
        read_table(path)


def test_matrix_validation():
    with pytest.raises(ValueError, match="finite and >= 0"):
        Interactions(sp.csr_matrix(np.array([[1.0, -2.0]])))
    with pytest.raises(ValueError, match="user_ids has"):
        Interactions(sp.csr_matrix(np.ones((2, 2))), user_ids=[1])
    with pytest.raises(ValueError, match="item_ids contains duplicates"):
        Interactions(sp.csr_matrix(np.ones((2, 2))), item_ids=["a", "a"])
    with pytest.raises(TypeError, match="scipy sparse"):
        Interactions(np.ones((2, 2)))


def test_explicit_zeros_are_not_interactions():
    m = sp.csr_matrix((np.array([0.0, 2.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    data = Interactions(m, timestamps=np.array([5, 6]))
    assert data.nnz == 1 and data.timestamps.tolist() == [6]


def test_id_lookup(events):
    data = Interactions.from_events(events, "user", "item")
    assert data.user_index([9, 3]).tolist() == [2, 0]
    assert data.user_index(7) == 1
    assert data.item_index(["c", "zz"], missing="ignore").tolist() == [2, -1]
    with pytest.raises(UnknownIdError, match="unknown item id\\(s\\): \\['zz'\\]"):
        data.item_index(["zz"])


def test_select_cells_keeps_the_id_space(events):
    data = Interactions.from_events(events, "user", "item", timestamp_col="ts")
    mask = data.timestamps > 6
    sub = data.select_cells(mask)
    assert sub.same_id_space(data) and sub.nnz == int(mask.sum())
    dense = data.matrix.toarray()
    coo = data.matrix.tocoo()
    dense[coo.row[~mask], coo.col[~mask]] = 0
    np.testing.assert_array_equal(sub.matrix.toarray(), dense)
    assert sorted(sub.timestamps.tolist()) == sorted(data.timestamps[mask].tolist())


def test_fingerprint_changes_with_content(events):
    a = Interactions.from_events(events, "user", "item")
    b = Interactions.from_events(events.iloc[:-1], "user", "item")
    assert a.fingerprint() != b.fingerprint()
    assert (
        a.fingerprint()
        == Interactions.from_events(
            events.sample(frac=1, random_state=1), "user", "item"
        ).fingerprint()
    )


def test_coerce_accepts_sparse_and_rejects_dense():
    assert coerce_interactions(sp.csr_matrix(np.eye(2))).shape == (2, 2)
    with pytest.raises(TypeError, match="expected Interactions"):
        coerce_interactions(np.eye(2))


def test_to_frame_round_trips(events):
    data = Interactions.from_events(events, "user", "item", timestamp_col="ts")
    frame = data.to_frame()
    again = Interactions.from_events(
        frame, "user_id", "item_id", weight_col="count", timestamp_col="timestamp"
    )
    assert again.fingerprint() == data.fingerprint()


@pytest.mark.parametrize("ids", [np.array([10, 20, 30, 40]), np.array(["a", "b", "c", "d"])])
def test_single_id_lookup_agrees_with_pandas(ids):
    # one plain int / str id is answered from a dict; pandas' indexer is the reference
    data = Interactions(sp.csr_matrix(np.ones((4, 2))), user_ids=ids, item_ids=ids[:2])
    reference = pd.Index(ids)
    for user in [*ids.tolist(), *ids, True, 20.0, "b", 10, "zz", 99, np.int64(30)]:
        want = reference.get_indexer(pd.Index([user], dtype=object))[0]
        if want < 0:
            with pytest.raises(UnknownIdError):
                data.user_index([user])
            assert data.user_index([user], missing="ignore").tolist() == [-1]
        else:
            assert data.user_index([user]).tolist() == [want]
            assert int(data.user_index(user)) == want
    assert data.item_index([ids[1].item()]).tolist() == [1]
