"""Issue 13: ids are kept exactly as written, and timestamps in every common form read in one
column. Each case through read_events / Interactions.from_events (CSV, Parquet, DataFrames),
the public readers, the command line (train, promote) and the served model. Every expectation
is written by hand."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alsresearch import load_model
from alsresearch.data import Interactions, text_ids
from alsresearch.datasets import read_events, read_movielens, read_retailrocket
from tests.serve_helpers import Server

REPO = Path(__file__).resolve().parents[1]
BIG = "18446744073709551615"  # 2**64 - 1: beyond int64
BIG_MINUS_1 = "18446744073709551614"


def _csv(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _users(data: Interactions) -> list:
    return data.user_ids.tolist()


# ------------------------------------------------------------------------------ the text rule
@pytest.mark.parametrize(
    ("texts", "expected", "kind"),
    [
        (["7", "0", "-5", "9223372036854775807"], [7, 0, -5, 9223372036854775807], "i"),
        (["-9223372036854775808"], [-9223372036854775808], "i"),
        (["7", "007"], ["7", "007"], "U"),  # a leading zero: every id stays text
        (["7", "-0"], ["7", "-0"], "U"),
        (["7", "+7"], ["7", "+7"], "U"),
        (["7", " 8"], ["7", " 8"], "U"),
        (["7", "9223372036854775808"], ["7", "9223372036854775808"], "U"),  # int64 max + 1
        (["1", "a"], ["1", "a"], "U"),
    ],
)
def test_text_is_int64_only_when_every_id_round_trips(texts, expected, kind):
    ids = text_ids(pd.Series(texts, dtype="str")).to_numpy()
    assert ids.dtype.kind == {"i": "i", "U": "O"}[kind] and ids.tolist() == expected


# ------------------------------------------------------------------------------ CSV files
def test_leading_zeros_are_three_users_in_a_csv(tmp_path):
    path = _csv(tmp_path, "user_id,item_id\n007,1\n7,1\n07,2\n7,2\n")
    data = read_events(path)
    assert data.user_ids.dtype.kind == "U"
    assert _users(data) == ["007", "07", "7"]  # sorted as text
    assert data.item_ids.dtype == np.int64 and data.item_ids.tolist() == [1, 2]
    assert data.matrix.toarray().tolist() == [[1, 0], [0, 1], [1, 1]]


def test_plain_integer_ids_in_a_csv_are_int64(tmp_path):
    path = _csv(tmp_path, "user_id,item_id\n10,1\n-3,1\n10,2\n")
    data = read_events(path)
    assert data.user_ids.dtype == np.int64 and _users(data) == [-3, 10]


def test_ids_beyond_int64_stay_exact_text(tmp_path):
    # regression: these two wrapped to users -1 and -2
    path = _csv(tmp_path, f"user_id,item_id\n{BIG},1\n{BIG_MINUS_1},1\n")
    data = read_events(path)
    assert _users(data) == [BIG_MINUS_1, BIG]
    assert data.user_ids.dtype.kind == "U"


def test_sixteen_digit_ids_beside_an_empty_cell_stay_exact(tmp_path):
    # regression: the empty cell made the column float64 and merged these two users
    path = _csv(tmp_path, "user_id,item_id\n1234567890123456,1\n,1\n1234567890123457,1\n")
    with pytest.raises(
        ValueError, match=r"null id in 'user_id': 1 row\(s\), first at row\(s\) \[1\]"
    ):
        read_events(path)
    with pytest.warns(UserWarning, match="dropped 1 bad row"):
        data = read_events(path, errors="drop")
    assert data.user_ids.dtype == np.int64
    assert _users(data) == [1234567890123456, 1234567890123457]


def test_only_an_empty_cell_is_a_missing_id_in_text(tmp_path):
    path = _csv(tmp_path, "user_id,item_id\nNA,1\nnull,1\nnan,2\n")
    assert _users(read_events(path)) == ["NA", "nan", "null"]


def test_leading_zero_ids_in_a_tsv_with_weights(tmp_path):
    path = _csv(tmp_path, "u\ti\tw\n007\t1\t2\n7\t1\t3\n", name="events.tsv")
    data = read_events(path, "u", "i", weight_col="w")
    assert _users(data) == ["007", "7"] and data.matrix.toarray().tolist() == [[2.0], [3.0]]


# ------------------------------------------------------------------------------ Parquet files
def _parquet(tmp_path: Path, users: pa.Array) -> Path:
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user_id": users, "item_id": pa.array([1] * len(users))}), path)
    return path


def test_parquet_int64_ids_stay_int64(tmp_path):
    data = read_events(_parquet(tmp_path, pa.array([5, 3, 5], pa.int64())))
    assert data.user_ids.dtype == np.int64 and _users(data) == [3, 5]


def test_parquet_uint64_beyond_int64_is_exact_text(tmp_path):
    users = pa.array([2**64 - 1, 2**64 - 2], pa.uint64())
    data = read_events(_parquet(tmp_path, users))
    assert _users(data) == [BIG_MINUS_1, BIG]


def test_parquet_uint64_within_int64_is_int64(tmp_path):
    data = read_events(_parquet(tmp_path, pa.array([7, 8], pa.uint64())))
    assert data.user_ids.dtype == np.int64 and _users(data) == [7, 8]


def test_parquet_string_column_that_looks_numeric_stays_text(tmp_path):
    data = read_events(_parquet(tmp_path, pa.array(["7", "8"], pa.string())))
    assert data.user_ids.dtype.kind == "U" and _users(data) == ["7", "8"]


def test_parquet_nullable_ints_with_a_null(tmp_path):
    path = _parquet(tmp_path, pa.array([1234567890123456, None, 1234567890123457], pa.int64()))
    with pytest.raises(ValueError, match=r"null id in 'user_id': 1 row\(s\)"):
        read_events(path)
    with pytest.warns(UserWarning, match="dropped 1 bad row"):
        data = read_events(path, errors="drop")
    assert data.user_ids.dtype == np.int64
    assert _users(data) == [1234567890123456, 1234567890123457]


# ------------------------------------------------------------------------------ DataFrames
def test_dataframe_string_column_stays_text():
    df = pd.DataFrame({"u": ["007", "7", "07"], "i": [1, 1, 1]})
    assert _users(Interactions.from_events(df, "u", "i")) == ["007", "07", "7"]
    df = pd.DataFrame({"u": ["1", "2"], "i": [1, 1]})  # looks numeric, is text: stays text
    assert _users(Interactions.from_events(df, "u", "i")) == ["1", "2"]


def test_dataframe_nullable_int_with_a_null():
    df = pd.DataFrame(
        {"u": pd.array([9007199254740993, None, 9007199254740995], "Int64"), "i": [1, 1, 1]}
    )
    with pytest.warns(UserWarning, match="dropped 1 bad row"):
        data = Interactions.from_events(df, "u", "i", errors="drop")
    assert _users(data) == [9007199254740993, 9007199254740995]  # beyond 2**53, still exact


def test_dataframe_uint64_and_python_ints_beyond_int64():
    df = pd.DataFrame({"u": np.array([2**64 - 1, 2**64 - 2], np.uint64), "i": [1, 1]})
    assert _users(Interactions.from_events(df, "u", "i")) == [BIG_MINUS_1, BIG]
    df = pd.DataFrame({"u": pd.Series([2**64 - 1, 5], dtype=object), "i": [1, 1]})
    assert _users(Interactions.from_events(df, "u", "i")) == [BIG, "5"]


def test_dataframe_float_ids():
    df = pd.DataFrame({"u": [3.0, np.nan, 4.0], "i": [1, 1, 1]})
    with pytest.warns(UserWarning, match="null id in 'u'"):
        data = Interactions.from_events(df, "u", "i", errors="drop")
    assert data.user_ids.dtype == np.int64 and _users(data) == [3, 4]
    for bad in (1.5, 2.0**53 + 2, np.inf):
        df = pd.DataFrame({"u": [3.0, bad], "i": [1, 1]})
        with pytest.raises(ValueError, match=r"id column 'u' is float"):
            Interactions.from_events(df, "u", "i")


def test_dataframe_mixed_ints_and_text_are_refused():
    df = pd.DataFrame({"u": pd.Series([7, "7"], dtype=object), "i": [1, 1]})
    with pytest.raises(ValueError, match=r"id column 'u' mixes"):
        Interactions.from_events(df, "u", "i")


# ------------------------------------------------------------------------------ public readers
def test_movielens_keeps_a_17_digit_user_id_exact(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n"
        "12345678901234567,10,4.0,978300760\n"
        "12345678901234568,10,3.0,978300761\n"
    )
    data = read_movielens(path)
    assert data.user_ids.dtype == np.int64
    assert _users(data) == [12345678901234567, 12345678901234568]


def test_movielens_ids_with_leading_zeros_stay_text(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("007\t10\t4\t978300760\n7\t10\t3\t978300761\n")
    assert _users(read_movielens(path)) == ["007", "7"]


def test_retailrocket_visitor_beyond_int64_stays_exact(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        f"1433221332117,{BIG},view,355908,\n"
        f"1433224214164,{BIG_MINUS_1},view,355908,\n"
    )
    data = read_retailrocket(path)
    assert _users(data) == [BIG_MINUS_1, BIG]
    assert data.item_ids.tolist() == [355908]
    # milliseconds floored to seconds; both visitors' cells
    assert sorted(data.timestamps.tolist()) == [1433221332, 1433224214]


# ------------------------------------------------------------------------------ timestamps
def test_mixed_iso_forms_in_one_column(tmp_path):
    # regression: 2 of these 3 rows were dropped as "unparseable"
    path = _csv(
        tmp_path,
        "user_id,item_id,t\n"
        "1,1,2024-01-01T00:00:00Z\n"
        "1,2,2024-01-01T00:00:00.5Z\n"
        "1,3,2024-01-02\n"
        "1,4,2024-01-01T02:00:00+02:00\n"
        "1,5,2024-01-01T00:00:01\n",
    )
    data = read_events(path, timestamp_col="t")
    # 2024-01-01T00:00:00Z is 1704067200 (19723 days * 86400); .5 s floors; the offset form
    # is the same instant; a naive time is UTC
    assert data.timestamps.tolist() == [1704067200, 1704067200, 1704153600, 1704067200, 1704067201]


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        (["1700000000", "1700000001"], "seconds", [1700000000, 1700000001]),
        (["1700000000123", "1700000001999"], "milliseconds", [1700000000, 1700000001]),
    ],
)
def test_epoch_unit_is_inferred_and_logged(tmp_path, caplog, values, unit, expected):
    path = _csv(
        tmp_path, "user_id,item_id,t\n" + "".join(f"1,{i},{v}\n" for i, v in enumerate(values))
    )
    with caplog.at_level(logging.INFO, logger="alsresearch.data"):
        data = read_events(path, timestamp_col="t")
    assert data.timestamps.tolist() == expected
    assert f"'t': epoch {unit}" in caplog.text
    df = pd.DataFrame({"u": [1, 1], "i": [0, 1], "t": [int(v) for v in values]})
    assert Interactions.from_events(df, "u", "i", timestamp_col="t").timestamps.tolist() == expected


def test_a_column_mixing_seconds_and_milliseconds_is_refused(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,when\n1,1,1700000000\n1,2,1700000000000\n")
    with pytest.raises(ValueError, match=r"timestamp column 'when' is ambiguous.*seconds.*milli"):
        read_events(path, timestamp_col="when")


def test_a_column_mixing_numbers_and_iso_text_is_refused(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,when\n1,1,1700000000\n1,2,2024-01-01\n")
    with pytest.raises(ValueError, match=r"timestamp column 'when' mixes epoch numbers and ISO"):
        read_events(path, timestamp_col="when")


def test_microseconds_are_refused():
    df = pd.DataFrame({"u": [1], "i": [1], "t": [1700000000000000]})
    with pytest.raises(ValueError, match=r"timestamp column 't'.*beyond milliseconds"):
        Interactions.from_events(df, "u", "i", timestamp_col="t")


def test_unparseable_timestamps_are_bad_rows(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,t\n1,1,2024-01-01\n1,2,yesterday\n1,3,\n")
    with pytest.raises(
        ValueError, match=r"timestamp in 't': 2 row\(s\), first at row\(s\) \[1, 2\]"
    ):
        read_events(path, timestamp_col="t")


def test_datetime_columns_are_utc_seconds():
    stamps = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-02 00:00:00"])
    df = pd.DataFrame({"u": [1, 1], "i": [1, 2], "t": stamps})
    assert Interactions.from_events(df, "u", "i", timestamp_col="t").timestamps.tolist() == [
        1704067200,
        1704153600,
    ]


# ------------------------------------------------------------------------------ end to end
SMALL = {"factors": 2, "iterations": 2, "random_state": 0}


def _string_id_events(tmp_path: Path) -> Path:
    """Users 007, 7 and 07 (three people) and eight more, each with five items of twelve."""
    users = ["007", "7", "07", *(f"{n:03d}" for n in range(100, 108))]
    rows = ["user_id,item_id"]
    for k, user in enumerate(users):
        rows += [f"{user},{(k + j) % 12}" for j in range(5)]
    return _csv(tmp_path, "\n".join(rows) + "\n")


def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALSRESEARCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "alsresearch", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done


def _three_string_users(model) -> None:
    users = model.user_ids.tolist()
    assert model.user_ids.dtype.kind == "U"
    assert {"007", "7", "07"} <= set(users) and len(users) == 11


@pytest.mark.slow
def test_train_command_keeps_string_ids(tmp_path):
    events = _string_id_events(tmp_path)
    params = tmp_path / "params.json"
    params.write_text(json.dumps(SMALL))
    out = tmp_path / "model.npz"
    _cli(tmp_path, "train", "--events", str(events), "--params", str(params), "--out", str(out))
    model = load_model(out)
    _three_string_users(model)
    items, _ = model.recommend("007", n=3)
    assert len(items) == 3 and items.dtype == np.int64  # int item ids stay ints


@pytest.mark.slow
@pytest.mark.serve
def test_promote_and_serve_keep_string_ids(tmp_path):
    events = _string_id_events(tmp_path)
    params = tmp_path / "params.json"
    params.write_text(json.dumps(SMALL))
    models = tmp_path / "models"
    _cli(
        tmp_path,
        *("promote", "--events", str(events), "--params", str(params)),
        *("--models-dir", str(models), "--force"),
    )
    model_path = models / "als_baseline.npz"
    _three_string_users(load_model(model_path))
    card = json.loads((models / "als_baseline.json").read_text())
    assert card["data"]["source"]["path"] == str(events.resolve())
    with Server(model_path) as server:
        for user in ("007", "7", "07"):
            answer = httpx.get(f"{server.url}/recommendations/{user}", params={"n": 2})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["user_id"] == user and body["source"] == "als"
            assert all(type(r["item_id"]) is int for r in body["recommendations"])
        # "0007" is nobody: the popularity list, the id echoed as written
        body = httpx.get(f"{server.url}/recommendations/0007").json()
        assert body["user_id"] == "0007" and body["source"] == "popularity"
