"""RetailRocket's ``events.csv``: the reader, ``DataSource(format="retailrocket")`` and
``alsresearch download``'s pointer to Kaggle.

The fixture is a dozen lines of the real layout (ms timestamps, all three event types, a
transaction with its transaction id, repeated visitor/item pairs, events out of time order);
counts and timestamps are checked against a pandas groupby of the weighted events.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from alsresearch import datasets
from alsresearch.cli import main
from alsresearch.data import Interactions
from alsresearch.source import DataSource

HEADER = "timestamp,visitorid,event,itemid,transactionid\n"
EVENTS = [
    "1433221332117,257597,view,355908,",
    "1433224214164,992329,view,248676,",
    "1433221999827,257597,view,355908,",
    "1433222276276,257597,addtocart,355908,",
    "1433223236124,257597,transaction,355908,4000",
    "1433221955914,483717,view,253185,",
    "1433221337106,992329,addtocart,248676,",
    "1433224086234,483717,view,253185,",
    "1433223000001,483717,view,355908,",
    "1433225000500,992329,transaction,248676,17193",
    "1433221400999,111016,view,461686,",  # the pair's latest event comes first in the file
    "1433221080000,111016,addtocart,461686,",
    "1433221078505,111016,view,253185,",
]
KAGGLE = "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset"


def _write(tmp_path, lines=EVENTS, header=HEADER):
    path = tmp_path / "events.csv"
    path.write_text(header + "".join(line + "\n" for line in lines))
    return path


def _groupby(lines, weights) -> pd.DataFrame:
    """The reference: each event weighted by its type, summed per (visitor, item); the latest
    event's time in whole seconds."""
    events = pd.DataFrame(
        [line.split(",") for line in lines],
        columns=["timestamp", "visitorid", "event", "itemid", "transactionid"],
    )
    events = events.astype({"timestamp": "int64", "visitorid": "int64", "itemid": "int64"})
    events["weight"] = events["event"].map(weights)
    cells = events.groupby(["visitorid", "itemid"]).agg(
        count=("weight", "sum"), timestamp=("timestamp", "max")
    )
    cells["timestamp"] //= 1000
    return cells.reset_index().rename(columns={"visitorid": "user_id", "itemid": "item_id"})


def _cells(X: Interactions) -> pd.DataFrame:
    return X.to_frame().sort_values(["user_id", "item_id"]).reset_index(drop=True)


def _assert_matches(X: Interactions, reference: pd.DataFrame) -> None:
    got = _cells(X)
    assert got[["user_id", "item_id"]].to_numpy().tolist() == (
        reference[["user_id", "item_id"]].to_numpy().tolist()
    )
    assert got["count"].to_numpy() == pytest.approx(reference["count"].to_numpy())
    assert got["timestamp"].tolist() == reference["timestamp"].tolist()


def test_counts_equal_a_groupby_of_the_weighted_events(tmp_path):
    X = datasets.read_retailrocket(_write(tmp_path))
    reference = _groupby(EVENTS, {"view": 1.0, "addtocart": 3.0, "transaction": 5.0})
    _assert_matches(X, reference)
    assert X.user_ids.tolist() == [111016, 257597, 483717, 992329]
    assert X.item_ids.tolist() == [248676, 253185, 355908, 461686]
    # by hand: two views, an add-to-cart and the transaction; the transaction is the latest
    # event, 1433223236124 ms, floored to seconds
    first = _cells(X).set_index(["user_id", "item_id"]).loc[(257597, 355908)]
    assert (first["count"], first["timestamp"]) == (1 + 1 + 3 + 5, 1433223236)
    # the defaults are the documented ones
    assert datasets.RETAILROCKET_EVENT_WEIGHTS == {"view": 1, "addtocart": 3, "transaction": 5}


def test_data_source_reads_the_same(tmp_path):
    path = _write(tmp_path)
    reference = _groupby(EVENTS, datasets.RETAILROCKET_EVENT_WEIGHTS)
    _assert_matches(DataSource(path=str(path), format="retailrocket").load(), reference)
    custom = DataSource(
        path=str(path), format="retailrocket", event_weights="view=1,addtocart=2,transaction=4"
    )
    weights = {"view": 1.0, "addtocart": 2.0, "transaction": 4.0}
    _assert_matches(custom.load(), _groupby(EVENTS, weights))


def test_custom_event_weights(tmp_path):
    path = _write(tmp_path)
    weights = {"view": 0.5, "addtocart": 2.0, "transaction": 10.0}
    _assert_matches(
        datasets.read_retailrocket(path, event_weights=weights), _groupby(EVENTS, weights)
    )
    with pytest.raises(ValueError, match=r"\['purchase'\].*view, addtocart, transaction"):
        datasets.read_retailrocket(path, event_weights={"view": 1.0, "purchase": 5.0})
    with pytest.raises(ValueError, match=r"event_weights\['view'\] must be a finite number >= 0"):
        datasets.read_retailrocket(path, event_weights={"view": -1.0})
    # weights replace the defaults as a whole: a type left out is unknown
    with pytest.warns(UserWarning, match=r"dropped 11 malformed line\(s\) of 13"):
        bought = datasets.read_retailrocket(path, {"transaction": 1.0}, errors="drop")
    transactions = [line for line in EVENTS if ",transaction," in line]
    _assert_matches(bought, _groupby(transactions, {"transaction": 1.0}))


def test_an_unknown_event_type_is_an_error_naming_it_and_the_line(tmp_path):
    lines = [*EVENTS[:4], "1433221500000,257597,click,355908,", *EVENTS[4:]]
    path = _write(tmp_path, lines)
    # line 1 is the header, so the fifth event is line 6
    expected = r"line 6: event: expected one of view, addtocart, transaction, got 'click'"
    with pytest.raises(ValueError, match=expected) as err:
        datasets.read_retailrocket(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match=expected):
        DataSource(path=str(path), format="retailrocket").load()


def test_errors_drop_warns_and_drops_the_bad_lines(tmp_path):
    bad = ["1433221500000,257597,click,355908,", "1433221500000,visitor,view,355908,"]
    path = _write(tmp_path, [*EVENTS[:3], bad[0], *EVENTS[3:], bad[1]])
    with pytest.raises(
        ValueError, match=r"2 malformed line\(s\).*line 5: event.*line 16: visitorid"
    ):
        datasets.read_retailrocket(path)
    with pytest.warns(UserWarning, match=r"dropped 2 malformed line\(s\) of 15.*line 5.*line 16"):
        X = datasets.read_retailrocket(path, errors="drop")
    _assert_matches(X, _groupby(EVENTS, datasets.RETAILROCKET_EVENT_WEIGHTS))
    with pytest.warns(UserWarning, match="dropped 2 malformed"):
        Y = DataSource(path=str(path), format="retailrocket", errors="drop").load()
    assert Y.fingerprint() == X.fingerprint()


def test_the_layout_is_checked(tmp_path):
    path = _write(tmp_path, header="visitorid,timestamp,event,itemid,transactionid\n")
    with pytest.raises(ValueError, match="line 1: expected the header 'timestamp,visitorid"):
        datasets.read_retailrocket(path)
    path = _write(tmp_path, [*EVENTS, "1433221500000,257597,view"])  # a truncated line
    with pytest.raises(ValueError, match="line 15: itemid: expected an integer"):
        datasets.read_retailrocket(path)
    with pytest.raises(FileNotFoundError, match="RetailRocket events file not found"):
        datasets.read_retailrocket(tmp_path / "missing.csv")


def test_download_lists_retailrocket_with_where_to_get_it(tmp_path, capsys):
    assert main(["download", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^\s+retailrocket\s+{re.escape(KAGGLE)}$", out, re.MULTILINE)
    assert "--format retailrocket" in " ".join(out.split())


def test_download_retailrocket_says_where_to_get_it_and_exits_1(tmp_path, capsys):
    assert main(["download", "retailrocket", "--cache-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("alsresearch download: retailrocket must be fetched by hand")
    assert KAGGLE in err and "login" in err
    assert "--events path/events.csv --format retailrocket" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing fetched, nothing cached
    with pytest.raises(ValueError, match="fetched by hand"):
        datasets.load("retailrocket", tmp_path)
