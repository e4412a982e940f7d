"""Readers of the public formats (MovieLens in every layout, Last.fm HetRec and 360K, generic
events files) and the shipped MovieLens data, each against counts taken independently."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alsresearch import datasets, paths


# ---------------------------------------------------------------------------------- shipped data
@pytest.mark.realdata
def test_load_default_has_the_published_counts():
    X = datasets.load_default()
    # ml-latest-small README: 100836 ratings, 9742 movies in movies.csv of which 9724 are rated,
    # 610 users
    assert (X.n_users, X.n_items, X.nnz) == (610, 9724, 100_836)
    assert np.all(X.matrix.data == 1.0)  # every rating one interaction
    assert X.timestamps is not None and X.timestamps.min() > 0


@pytest.mark.realdata
def test_load_default_min_rating_matches_a_plain_csv_count():
    path = paths.resource("ml-latest-small", "ratings.csv")
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["rating"]) >= 4.0]
    X = datasets.load_default(min_rating=4.0)
    assert X.nnz == len(rows)
    assert X.n_users == len({r["userId"] for r in rows})
    assert X.n_items == len({r["movieId"] for r in rows})
    cells = set(
        zip(X.to_frame()["user_id"].tolist(), X.to_frame()["item_id"].tolist(), strict=True)
    )
    assert cells == {(int(r["userId"]), int(r["movieId"])) for r in rows}


# ---------------------------------------------------------------------------------- readers
# The same four ratings in every MovieLens layout: user 1 rates items 10 (5 stars) and 20
# (2 stars), user 2 rates item 10 (4 stars) and 30 (3.5 stars).
RATINGS = [
    (1, 10, 5, 978300760),
    (1, 20, 2, 978302109),
    (2, 10, 4, 978301968),
    (2, 30, 3.5, 978300275),
]
LAYOUTS = {
    "u.data": ("", "{}\t{}\t{}\t{}\n"),
    "ratings.dat": ("", "{}::{}::{}::{}\n"),
    "ratings.csv": ("userId,movieId,rating,timestamp\n", "{},{},{},{}\n"),
}


def _write_ratings(directory: Path, name: str, rows=RATINGS, extra: str = "") -> Path:
    header, line = LAYOUTS[name]
    path = directory / name
    path.write_text(header + "".join(line.format(*r) for r in rows) + extra)
    return path


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_read_movielens_every_layout(tmp_path, name):
    rows = [r for r in RATINGS if name != "u.data" or float(r[2]).is_integer()]  # 100K: whole stars
    X = datasets.read_movielens(_write_ratings(tmp_path, name, rows))
    frame = X.to_frame().sort_values(["user_id", "item_id"])
    assert frame[["user_id", "item_id"]].to_numpy().tolist() == [[r[0], r[1]] for r in rows]
    assert frame["count"].tolist() == [1.0] * len(rows)  # every rating one interaction
    assert frame["timestamp"].tolist() == [r[3] for r in rows]
    # a directory holding the file works too
    assert datasets.read_movielens(tmp_path).fingerprint() == X.fingerprint()


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_read_movielens_min_rating_keeps_liked_only(tmp_path, name):
    path = _write_ratings(tmp_path, name)
    X = datasets.read_movielens(path, min_rating=4.0)
    assert sorted(zip(X.to_frame()["user_id"], X.to_frame()["item_id"], strict=True)) == [
        (1, 10),
        (2, 10),
    ]


@pytest.mark.parametrize(
    ("name", "bad_line", "expected"),
    [
        ("u.data", "3\t40\tfive\t978300000\n", "rating"),
        ("u.data", "3\t40\t5\n", "timestamp"),
        ("ratings.dat", "3::40::5::978300000::9\n", "more than"),
        ("ratings.dat", "3:40::5::978300000\n", "::"),
        ("ratings.csv", "3,forty,5,978300000\n", "item"),
        ("ratings.csv", "\n", "user"),
    ],
)
def test_read_movielens_names_the_bad_line(tmp_path, name, bad_line, expected):
    path = _write_ratings(
        tmp_path, name, extra=bad_line + LAYOUTS[name][1].format(4, 50, 1, 978300001)
    )
    line_no = len(RATINGS) + 1 + bool(LAYOUTS[name][0])  # after the good rows (and header)
    with pytest.raises(ValueError, match=rf"line {line_no}: .*{re.escape(expected)}") as err:
        datasets.read_movielens(path)
    assert str(path) in str(err.value)


def test_read_movielens_wrong_header_and_missing_files(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating,time\n1,2,3,4\n")
    with pytest.raises(ValueError, match="line 1: expected the header"):
        datasets.read_movielens(path)
    path.write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(ValueError, match="no data lines"):
        datasets.read_movielens(path)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.dat"):
        datasets.read_movielens(tmp_path / "nowhere.dat")
    with pytest.raises(FileNotFoundError, match="no MovieLens ratings file"):
        datasets.read_movielens(tmp_path / "..")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        datasets.read_events(tmp_path / "missing.csv")


def test_read_lastfm_uses_play_counts(tmp_path):
    path = tmp_path / "user_artists.dat"
    path.write_text("userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n3\t51\t7\n")
    X = datasets.read_lastfm(path)
    assert X.matrix.toarray().tolist() == [[13883.0, 11690.0], [7.0, 0.0]]
    assert X.user_ids.tolist() == [2, 3] and X.item_ids.tolist() == [51, 52]
    path.write_text("userID\tartistID\tweight\n2\t51\t-4\n")
    with pytest.raises(ValueError, match="line 2"):
        datasets.read_lastfm(path)


LASTFM_360K = (
    "00000c28\t3bd73256-3905-4f3a-97e2-8b341527f805\tbetty blowtorch\t2137\n"
    "00000c28\t\tdie \u00c4rzte\t1099\n"  # no MusicBrainz id (common in the real file)
    "00001411\t3bd73256-3905-4f3a-97e2-8b341527f805\tbetty blowtorch\t5\n"
    '00001411\t\t"weird al" yankovic\t12\n'  # a stray quote must not swallow lines
    "00001411\tab\tbroken\tline\t7\n"  # line 5: five fields
    "00002222\t\tnobody\n"  # line 6: no plays
    "00002222\t\tdie \u00c4rzte\t3\n"
)


def test_read_lastfm_360k_drops_malformed_lines_with_a_warning(tmp_path):
    path = tmp_path / "usersha1-artmbid-artname-plays.tsv"
    path.write_text(LASTFM_360K, encoding="utf-8")
    with pytest.warns(UserWarning, match=r"dropped 2 malformed line\(s\) of 7.*line 5.*line 6"):
        X = datasets.read_lastfm_360k(path)
    assert X.user_ids.tolist() == ["00000c28", "00001411", "00002222"]
    assert X.item_ids.tolist() == ['"weird al" yankovic', "betty blowtorch", "die \u00c4rzte"]
    assert X.matrix.toarray().tolist() == [[0, 2137, 1099], [12, 5, 0], [0, 0, 3]]
    with pytest.raises(ValueError, match="line 5: more than 4 fields"):
        datasets.read_lastfm_360k(path, errors="raise")
    with pytest.warns(UserWarning, match="dropped 5 malformed"):
        by_mbid = datasets.read_lastfm_360k(path, item="mbid")
    assert by_mbid.item_ids.tolist() == ["3bd73256-3905-4f3a-97e2-8b341527f805"]
    assert by_mbid.matrix.toarray().ravel().tolist() == [2137, 5]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_events_generic_file(tmp_path, suffix):
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "item_id": ["a", "a", "b", "b"],
            "event": ["view", "purchase", "click", "view"],
            "timestamp": [100, 300, 200, 50],
        }
    )
    path = tmp_path / f"events{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    X = datasets.read_events(
        path,
        event_col="event",
        event_weights={"view": 1, "click": 2, "purchase": 5},
        timestamp_col="timestamp",
    )
    assert X.matrix.toarray().tolist() == [[6.0, 2.0], [0.0, 1.0]]  # u1/a = view + purchase
    assert X.to_frame()["timestamp"].tolist() == [300, 200, 50]
