"""Data sets: synthetic generator (skew, determinism, recoverable structure), shipped data,
readers for the public formats, and downloads over loopback HTTP."""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.server
import io
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alsresearch import datasets, paths
from alsresearch.als import ALSModel
from alsresearch.baselines import PopularityModel
from alsresearch.data import Interactions
from alsresearch.datasets import synthetic, synthetic_events
from alsresearch.evaluate import evaluate
from alsresearch.split import random_holdout

SMALL = {"n_users": 3000, "n_items": 800, "nnz": 45_000}


def _top_share(counts: np.ndarray, fraction: float) -> float:
    """Share of all events held by the top ``fraction`` of items."""
    ranked = np.sort(counts)[::-1]
    top = max(1, round(fraction * len(ranked)))
    return ranked[:top].sum() / ranked.sum()


def _gini(counts: np.ndarray) -> float:
    """Gini coefficient from the textbook formula on sorted values."""
    x = np.sort(counts.astype(np.float64))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


# ---------------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def small_synthetic() -> Interactions:
    return synthetic(**SMALL, seed=7)


def test_synthetic_shape_nnz_and_timestamps(small_synthetic):
    X = small_synthetic
    assert X.shape == (SMALL["n_users"], SMALL["n_items"])
    assert abs(X.nnz - SMALL["nnz"]) <= 0.005 * SMALL["nnz"]
    assert np.array_equal(X.user_ids, np.arange(SMALL["n_users"]))
    assert np.array_equal(X.item_ids, np.arange(SMALL["n_items"]))
    assert X.timestamps is not None and X.timestamps.shape == (X.nnz,)
    start = 1_704_067_200  # 2024-01-01 UTC
    assert X.timestamps.min() >= start and X.timestamps.max() < start + 365 * 86_400
    # every user has at least one event; counts are whole numbers of events
    assert (np.diff(X.matrix.indptr) >= 1).all()
    assert np.array_equal(X.matrix.data, np.round(X.matrix.data)) and X.matrix.data.min() >= 1


def test_synthetic_is_the_events_table_aggregated():
    """The fast direct build equals Interactions.from_events on the events table."""
    events = synthetic_events(**SMALL, seed=3)
    assert list(events.columns) == ["user_id", "item_id", "event", "timestamp"]
    assert set(events["event"].cat.categories) == {"view", "click", "purchase"}
    assert events["timestamp"].is_monotonic_increasing
    weights = {"view": 1.0, "click": 2.0, "purchase": 5.0}
    direct = synthetic(**SMALL, seed=3, event_weights=weights)
    built = Interactions.from_events(
        events, event_col="event", event_weights=weights, timestamp_col="timestamp"
    )
    # from_events keeps only touched items; map its columns back into the full id space
    cols = direct.item_index(built.item_ids)
    untouched = np.ones(SMALL["n_items"], dtype=bool)
    untouched[cols] = False
    assert direct.matrix[:, untouched].nnz == 0
    assert np.array_equal(built.user_ids, direct.user_ids)
    assert np.array_equal(direct.matrix[:, cols].toarray(), built.matrix.toarray())
    frame_direct = direct.to_frame().sort_values(["user_id", "item_id"]).reset_index(drop=True)
    frame_built = built.to_frame().sort_values(["user_id", "item_id"]).reset_index(drop=True)
    assert np.array_equal(frame_direct["timestamp"], frame_built["timestamp"])
    # nnz counts distinct (user, item) cells; the events table is longer
    assert direct.nnz == events.groupby(["user_id", "item_id"]).ngroups < len(events)


def test_synthetic_is_deterministic():
    a = synthetic(500, 200, 6000, seed=11)
    b = synthetic(500, 200, 6000, seed=11)
    c = synthetic(500, 200, 6000, seed=12)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    # not just different timestamps: the cells themselves differ
    assert (a.matrix != c.matrix).nnz > 0.5 * a.nnz


def test_synthetic_item_popularity_is_skewed(small_synthetic):
    item_events = np.asarray(small_synthetic.matrix.sum(axis=0)).ravel()
    # Zipf(1) over 800 items: the top 1% (8 items) would hold H(8)/H(800) = 0.37 of events
    # under pure popularity sampling; the taste part spreads events a little
    assert _top_share(item_events, 0.01) > 0.25
    assert _gini(item_events) > 0.6
    flat = synthetic(**SMALL, seed=7, zipf_exponent=0.0)
    flat_events = np.asarray(flat.matrix.sum(axis=0)).ravel()
    assert _top_share(flat_events, 0.01) < 0.05
    assert _gini(flat_events) < 0.3


def test_synthetic_user_activity_is_log_normal(small_synthetic):
    events_per_user = np.asarray(small_synthetic.matrix.sum(axis=1)).ravel()
    # log-normal activity (sigma 1): a long right tail, mean well above the median
    assert events_per_user.mean() > 1.3 * np.median(events_per_user)
    assert events_per_user.max() > 10 * np.median(events_per_user)
    even = synthetic(**SMALL, seed=7, activity_sigma=0.0)
    even_per_user = np.asarray(even.matrix.sum(axis=1)).ravel()
    assert even_per_user.max() < 3 * np.median(even_per_user)


def test_synthetic_event_type_shares():
    events = synthetic_events(**SMALL, seed=5, event_probs={"view": 0.6, "purchase": 0.4})
    shares = events["event"].value_counts(normalize=True)
    assert shares["view"] == pytest.approx(0.6, abs=0.01)
    assert shares["purchase"] == pytest.approx(0.4, abs=0.01)


def test_alias_sampler_matches_its_distribution(rng):
    p = rng.dirichlet(np.full(50, 0.3))
    prob, alias = datasets._alias_table(p)
    n = 400_000
    draws = datasets._alias_draw(rng, prob, alias, n)
    freq = np.bincount(draws, minlength=len(p)) / n
    # binomial standard error of each frequency; 5 sigma
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-9)
    # a slice of concatenated tables (alias positions absolute) draws only from its slice
    q = rng.dirichlet(np.full(20, 0.5))
    prob_q, alias_q = datasets._alias_table(q)
    both_prob = np.concatenate([prob, prob_q])
    both_alias = np.concatenate([alias, alias_q + len(p)])
    draws = datasets._alias_draw(rng, both_prob, both_alias, n, start=len(p), size=len(q))
    assert draws.min() >= len(p)
    freq = np.bincount(draws - len(p), minlength=len(q)) / n
    assert np.all(np.abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / n) + 1e-9)


def test_synthetic_structure_is_recoverable_by_als():
    """The planted topics are what ALS learns and a popularity ranking cannot see."""

    def ndcg(model, X):
        train, test = random_holdout(X, 0.2, seed=0)
        return evaluate(model.fit(train), train, test, k=10).metrics["ndcg@10"]

    def als():
        # as many factors as planted topics; mild confidence (the data are ~25 cells per user)
        return ALSModel(factors=8, alpha=1.0, regularization=1.0, iterations=10, random_state=0)

    X = synthetic(2000, 400, 50_000, seed=1, n_factors=8)
    # measured: ALS 0.37, popularity 0.24 (ratio 1.5 to 1.65 over seeds 1-4)
    assert ndcg(als(), X) > 1.3 * ndcg(PopularityModel(), X)
    # control: with taste switched off (every event follows popularity) the advantage is gone
    # (measured: ALS 0.28, popularity 0.37)
    Y = synthetic(2000, 400, 50_000, seed=1, n_factors=8, popularity_mix=1.0)
    assert ndcg(als(), Y) < ndcg(PopularityModel(), Y)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0, "n_items": 10, "nnz": 10},
        {"n_users": 10, "n_items": 10, "nnz": 5},  # fewer cells than users
        {"n_users": 10, "n_items": 10, "nnz": 80},  # more than half the matrix
        {"n_users": 10, "n_items": 4, "nnz": 12, "n_factors": 5},
        {"n_users": 10, "n_items": 10, "nnz": 20, "popularity_mix": 1.5},
        {"n_users": 10, "n_items": 10, "nnz": 20, "event_probs": {"view": -1.0}},
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic(**kwargs)


def test_synthetic_warns_when_skew_leaves_too_few_cells():
    # Zipf(2) over 100 items: the tail items are drawn so rarely that half the matrix
    # cannot be filled in 20 rounds
    with pytest.warns(UserWarning, match="distinct cells of the 5000 asked for"):
        X = synthetic(100, 100, 5000, zipf_exponent=2.0)
    assert 0.8 * 5000 < X.nnz < 5000


def test_synthetic_event_weights_must_cover_every_type():
    with pytest.raises(ValueError, match="purchase"):
        synthetic(100, 50, 500, event_weights={"view": 1.0, "click": 2.0})


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


# ---------------------------------------------------------------------------------- download
class _Server:
    """Files served from memory on 127.0.0.1 (a free port), counting requests per path."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buffer.getvalue()


def _tar_gz_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


U_DATA = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS if float(r).is_integer())
ML100K_ZIP = _zip_bytes({"ml-100k/u.data": U_DATA, "ml-100k/README": "fixture"})


@pytest.fixture
def server():
    s = _Server({"/ml-100k.zip": ML100K_ZIP})
    yield s
    s.close()


def _fixture_spec(server, **kwargs) -> datasets.RemoteDataset:
    fields = {
        "name": "fixture-100k",
        "url": server.url + "/ml-100k.zip",
        "member": "ml-100k/u.data",
        "reader": datasets.read_movielens,
        "md5": hashlib.md5(ML100K_ZIP).hexdigest(),
    }
    return datasets.RemoteDataset(**{**fields, **kwargs})


def test_download_verifies_caches_and_never_downloads_twice(server, tmp_path):
    spec = _fixture_spec(server)
    path = datasets.download(spec, tmp_path)
    assert path == tmp_path / "fixture-100k" / "ml-100k" / "u.data"
    assert path.read_text() == U_DATA
    assert server.hits == {"/ml-100k.zip": 1}
    X = datasets.load(spec, tmp_path)
    assert X.nnz == U_DATA.count("\n")
    assert server.hits == {"/ml-100k.zip": 1}  # the verified cached copy was used
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "fixture-100k").rglob("*")) == [
        "ml-100k",
        "ml-100k.zip",
        "u.data",
    ]


def test_load_passes_reader_options(server, tmp_path):
    X = datasets.load(_fixture_spec(server), tmp_path, min_rating=4.0)
    assert sorted(zip(X.to_frame()["user_id"], X.to_frame()["item_id"], strict=True)) == [
        (1, 10),
        (2, 10),
    ]


def test_download_command(server, tmp_path, monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    datasets.add_command(parser.add_subparsers())
    args = parser.parse_args(["download", "ml-100k", "--cache-dir", str(tmp_path)])
    args.base_url = server.url
    # the fixture archive is not GroupLens' ml-100k: a clear error and exit code 1
    assert args.func(args) == 1
    assert "published md5" in capsys.readouterr().err
    monkeypatch.setitem(datasets.REGISTRY, "ml-100k", _fixture_spec(server, name="ml-100k"))
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "ml-100k" / "ml-100k" / "u.data")


def test_download_rejects_an_archive_that_fails_the_published_checksum(server, tmp_path):
    # the registry's ml-100k entry carries GroupLens' published md5; our fixture is not it
    with pytest.raises(datasets.ChecksumError, match="0e33842e24a9c977be4e0107933c0723"):
        datasets.download("ml-100k", tmp_path, base_url=server.url)
    assert list(tmp_path.rglob("*.zip")) == [] and list(tmp_path.rglob("*.part")) == []
    assert not (tmp_path / "ml-100k" / "ml-100k" / "u.data").exists()


def test_download_replaces_a_corrupted_cached_copy(server, tmp_path):
    spec = _fixture_spec(server)
    datasets.download(spec, tmp_path)
    (tmp_path / "fixture-100k" / "ml-100k.zip").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="downloading it again"):
        path = datasets.download(spec, tmp_path)
    assert path.read_text() == U_DATA
    assert server.hits == {"/ml-100k.zip": 2}


def test_download_checks_a_published_member_checksum_in_a_tar_gz(tmp_path):
    plays = "u1\tmbid-1\tsome band\t10\nu2\t\tother band\t3\n"
    member = "lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv"
    s = _Server({"/lastfm-dataset-360K.tar.gz": _tar_gz_bytes({member: plays})})
    try:
        # the registry's lastfm-360k entry checks the file MD5 its README publishes
        with pytest.raises(datasets.ChecksumError, match="be672526eb7c69495c27ad27803148f1"):
            datasets.download("lastfm-360k", tmp_path, base_url=s.url)
        assert list((tmp_path / "lastfm-360k").rglob("*.*")) == []
        spec = datasets.RemoteDataset(
            "fixture-360k",
            s.url + "/lastfm-dataset-360K.tar.gz",
            member,
            datasets.read_lastfm_360k,
            member_md5=hashlib.md5(plays.encode()).hexdigest(),
        )
        X = datasets.load(spec, tmp_path)
        assert X.matrix.toarray().tolist() == [[0.0, 10.0], [3.0, 0.0]]
    finally:
        s.close()


def test_download_without_a_published_checksum_warns(server, tmp_path):
    spec = _fixture_spec(server, md5=None, checksum_source="no published checksum found")
    with pytest.warns(UserWarning, match="could not be verified"):
        datasets.download(spec, tmp_path)


def test_download_errors_are_clear(server, tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'ml-7m'.*ml-100k"):
        datasets.download("ml-7m", tmp_path)
    with pytest.raises(OSError, match="404"):
        datasets.download(_fixture_spec(server, url=server.url + "/gone.zip"), tmp_path)
    with pytest.raises(ValueError, match=r"no member 'ml-100k/ratings\.dat'"):
        datasets.download(_fixture_spec(server, member="ml-100k/ratings.dat"), tmp_path)
    assert list(tmp_path.rglob("*.part")) == []


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ALSRESEARCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_cache_dir() == tmp_path / "xdg" / "alsresearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_cache_dir() == tmp_path / "home" / ".cache" / "alsresearch"
    monkeypatch.setenv("ALSRESEARCH_CACHE", str(tmp_path / "mine"))
    assert datasets.default_cache_dir() == tmp_path / "mine"


def test_registry_entries_are_complete():
    for name, spec in datasets.REGISTRY.items():
        assert spec.name == name and spec.url.startswith("http") and spec.member
        assert spec.checksum_source, f"{name}: say where the checksum comes from, or why none"
        for value in (spec.md5, spec.member_md5):
            assert value is None or re.fullmatch(r"[0-9a-f]{32}", value)


if __name__ == "__main__":
    # Timing print (never asserted): python -m tests.test_datasets
    import resource
    import time

    for n_users, n_items, nnz in [(50_000, 5_000, 1_000_000), (500_000, 50_000, 10_000_000)]:
        wall, cpu = time.perf_counter(), time.process_time()
        X = synthetic(n_users, n_items, nnz, seed=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counts = np.asarray(X.matrix.sum(axis=0)).ravel()
        print(
            f"synthetic({n_users}, {n_items}, {nnz}): {wall:.2f} s wall, {cpu:.2f} s CPU, "
            f"{X.nnz} cells, {int(X.matrix.sum())} events, "
            f"top 1% items hold {_top_share(counts, 0.01):.1%}, Gini {_gini(counts):.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
