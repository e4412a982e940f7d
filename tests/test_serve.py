"""The service, through a real uvicorn process on loopback, talking HTTP with httpx.

The independent sources of truth are the shipped ratings.csv read with pandas (what each user
has, how many distinct users each movie has) and the factor arrays read straight from the .npz
file and ranked in float64 NumPy.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import httpx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch import paths
from alsresearch.als import ALSModel
from alsresearch.artefact import artefact_paths
from alsresearch.cli import build_parser, main
from alsresearch.data import Interactions
from alsresearch.limits import MAX_BATCH, MAX_N
from alsresearch.promote import promote
from tests.serve_helpers import SERVED_PARAMS, Server, failed_start

pytestmark = pytest.mark.serve

OTHER = {"factors": 8, "iterations": 4, "alpha": 2.0, "regularization": 0.1}
UNKNOWN_USER = 987_654_321


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    path = paths.resource("ml-latest-small", "ratings.csv")
    if not path.is_file():
        pytest.skip(f"shipped data missing at {path}")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def seen_by_user(ratings) -> dict[int, set[int]]:
    return ratings.groupby("userId")["movieId"].apply(set).to_dict()


def reference_top(model_path, user, seen: set, n: int):
    """Float64 ranking from the factor arrays in the file, seen items removed: (ids, scores)."""
    with np.load(model_path, allow_pickle=False) as f:
        users, items = f["user_ids"], f["item_ids"]
        x = f["state_user_factors"].astype(np.float64)[np.flatnonzero(users == user)[0]]
        scores = f["state_item_factors"].astype(np.float64) @ x
    scores[np.isin(items, list(seen))] = -np.inf
    order = np.argsort(-scores, kind="stable")[:n]
    return items[order], scores[order], dict(zip(items.tolist(), scores.tolist(), strict=True))


def assert_best_unseen(answer, model_path, seen, n):
    """The answer is a correct top-n: its scores are the n best unseen reference scores, and
    every item's score is its reference score (tie order may differ in the last float bit)."""
    _, best, by_item = reference_top(model_path, answer["user_id"], seen, n)
    got = answer["recommendations"]
    assert len(got) == n
    np.testing.assert_allclose([r["score"] for r in got], best, rtol=1e-4, atol=1e-5)
    for r in got:
        assert r["score"] == pytest.approx(by_item[r["item_id"]], rel=1e-4, abs=1e-5)


# ---------------------------------------------------------------------- contract
def test_health_and_model_card(client, artefact, movielens):
    sha = hashlib.sha256(artefact.model_path.read_bytes()).hexdigest()
    health = client.get("/health").json()
    loaded_at = health.pop("loaded_at")
    assert health == {
        "status": "ok",
        "model": "als_baseline",
        "model_version": sha[:12],
        "model_type": "als",
        "users": movielens.n_users,
        "items": movielens.n_items,
    }
    card = client.get("/model").json()
    live = card.pop("live")
    assert card == json.loads(artefact.card_path.read_text())
    assert card["params"]["factors"] == SERVED_PARAMS["factors"]
    assert live == {
        "model_file": str(artefact.model_path),
        "model_sha256": sha,
        "model_version": sha[:12],
        "card_file": str(artefact.card_path),
        "popularity_file": str(artefact.popularity_path),
        "card_created": card["created"],
        "loaded_at": loaded_at,
    }
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        "/recommendations/{user_id}",
        "/recommendations/batch",
        "/recommendations/history",
        "/health",
        "/model",
    }
    assert client.get("/docs").status_code == 200


def test_single_user_contract(client, artefact, seen_by_user):
    response = client.get("/recommendations/42", params={"n": 10})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user_id", "recommendations", "model", "model_version", "source"}
    assert body["user_id"] == 42 and type(body["user_id"]) is int
    assert body["model"] == "als_baseline" and body["source"] == "als"
    sha = hashlib.sha256(artefact.model_path.read_bytes()).hexdigest()
    assert body["model_version"] == sha[:12]
    for rec in body["recommendations"]:
        assert set(rec) == {"item_id", "score"}
        assert type(rec["item_id"]) is int and type(rec["score"]) is float
    scores = [r["score"] for r in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert_best_unseen(body, artefact.model_path, seen_by_user[42], 10)


def test_default_n_is_ten_and_n_is_honoured(client):
    assert len(client.get("/recommendations/1").json()["recommendations"]) == 10
    assert len(client.get("/recommendations/1?n=1").json()["recommendations"]) == 1
    assert len(client.get(f"/recommendations/1?n={MAX_N}").json()["recommendations"]) == MAX_N


def test_seen_items_are_never_recommended(client, seen_by_user):
    users = sorted(seen_by_user)
    answers = client.post("/recommendations/batch", json={"user_ids": users, "n": 100}).json()
    assert [a["user_id"] for a in answers] == users
    for answer in answers:
        items = {r["item_id"] for r in answer["recommendations"]}
        assert len(items) == 100
        assert not items & seen_by_user[answer["user_id"]], answer["user_id"]


def test_unknown_user_gets_the_popularity_list(client, ratings):
    body = client.get(f"/recommendations/{UNKNOWN_USER}", params={"n": 20}).json()
    assert body["user_id"] == UNKNOWN_USER and body["source"] == "popularity"
    users_per_movie = ratings.groupby("movieId")["userId"].nunique().reset_index()
    expected = users_per_movie.sort_values(["userId", "movieId"], ascending=[False, True])[:20]
    assert [r["item_id"] for r in body["recommendations"]] == expected["movieId"].tolist()
    # the score is the item's share of the training users, on [0, 1] like ALS's scores
    n_users = ratings["userId"].nunique()
    np.testing.assert_allclose(
        [r["score"] for r in body["recommendations"]], expected["userId"] / n_users, rtol=1e-6
    )


def test_batch_equals_singles_in_order_with_duplicates(client):
    users = [5, 1, UNKNOWN_USER, 5, 610, 300, -3, 1]
    batch = client.post("/recommendations/batch", json={"user_ids": users, "n": 7})
    assert batch.status_code == 200
    answers = batch.json()
    assert [a["user_id"] for a in answers] == users
    for user, answer in zip(users, answers, strict=True):
        single = client.get(f"/recommendations/{user}", params={"n": 7}).json()
        assert answer["source"] == single["source"]
        assert [r["item_id"] for r in answer["recommendations"]] == [
            r["item_id"] for r in single["recommendations"]
        ]
        np.testing.assert_allclose(
            [r["score"] for r in answer["recommendations"]],
            [r["score"] for r in single["recommendations"]],
            rtol=1e-5,
            atol=1e-6,
        )


def test_largest_batch_is_accepted(client):
    users = np.resize(np.arange(1, 700), MAX_BATCH).tolist()  # includes unknown 611..699
    answers = client.post("/recommendations/batch", json={"user_ids": users, "n": 1}).json()
    assert len(answers) == MAX_BATCH
    assert {a["source"] for a in answers} == {"als", "popularity"}


def test_history_folds_in_and_reports_unknown_items(client, artefact, seen_by_user):
    from alsresearch import load_model

    model = load_model(artefact.model_path)
    history = sorted(seen_by_user[7])[:15]
    body = client.post(
        "/recommendations/history", json={"item_ids": [*history, -1, -1, -2], "n": 10}
    ).json()
    assert body["source"] == "als" and body["unknown_item_ids"] == [-1, -2]
    items = [r["item_id"] for r in body["recommendations"]]
    assert not set(items) & set(history)
    expected_items, expected_scores = model.recommend_for_history(history, n=10)
    assert items == expected_items.tolist()
    np.testing.assert_allclose(
        [r["score"] for r in body["recommendations"]], expected_scores, rtol=1e-5
    )


def test_history_of_unknown_items_only_gets_popularity(client):
    body = client.post("/recommendations/history", json={"item_ids": [-7], "n": 3}).json()
    popular = client.get(f"/recommendations/{UNKNOWN_USER}", params={"n": 3}).json()
    assert body["source"] == "popularity" and body["unknown_item_ids"] == [-7]
    assert body["recommendations"] == popular["recommendations"]


# ---------------------------------------------------------------------- bad input
TOO_MANY = list(range(MAX_BATCH + 1))
BAD_REQUESTS = [
    ("GET", "/recommendations/1?n=0", None, "n"),
    ("GET", f"/recommendations/1?n={MAX_N + 1}", None, "n"),
    ("GET", "/recommendations/1?n=-5", None, "n"),
    ("GET", "/recommendations/1?n=ten", None, "n"),
    ("GET", "/recommendations/1?n=2.5", None, "n"),
    ("GET", "/recommendations/abc", None, "user_id"),
    ("GET", "/recommendations/1.5", None, "user_id"),
    ("GET", "/recommendations/1.0", None, "user_id"),
    ("GET", "/recommendations/1e3", None, "user_id"),
    ("GET", f"/recommendations/{2**63}", None, "user_id"),
    ("POST", "/recommendations/batch", {"user_ids": []}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": TOO_MANY}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": ["1"]}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": [1.5]}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": [True]}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": [None]}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": 1}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": [2**63]}, "user_ids"),
    ("POST", "/recommendations/batch", {"user_ids": [1], "n": 0}, "n"),
    ("POST", "/recommendations/batch", {"user_ids": [1], "n": MAX_N + 1}, "n"),
    ("POST", "/recommendations/batch", {"user_ids": [1], "n": "10"}, "n"),
    ("POST", "/recommendations/batch", {"userIds": [1]}, "user_ids"),
    ("POST", "/recommendations/batch", [1, 2], "body"),
    ("POST", "/recommendations/batch", b'{"user_ids": [1,', "JSON"),
    ("POST", "/recommendations/batch", b"", "body"),
    ("POST", "/recommendations/history", {"item_ids": []}, "item_ids"),
    ("POST", "/recommendations/history", {"item_ids": ["x"]}, "item_ids"),
    ("POST", "/recommendations/history", {"item_ids": [1], "n": 0}, "n"),
    ("POST", "/recommendations/history", {"item_ids": TOO_MANY}, "item_ids"),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "names"),
    BAD_REQUESTS,
    ids=[f"{m} {u[:40]} {str(b)[:30]}" for m, u, b, _ in BAD_REQUESTS],
)
def test_bad_input_is_a_422_saying_what_was_wrong(client, method, url, body, names):
    if isinstance(body, bytes):
        response = client.request(
            method, url, content=body, headers={"content-type": "application/json"}
        )
    else:
        response = client.request(method, url, json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert names in payload["message"], payload["message"]
    assert payload["detail"] and all("msg" in d and "loc" in d for d in payload["detail"])


def test_body_without_json_content_type_says_so(client):
    response = client.post(
        "/recommendations/batch",
        content=b'{"user_ids": [1]}',
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 422
    assert "application/json" in response.json()["message"]


def test_loopback_is_the_default_bind_address():
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000


# ---------------------------------------------------------------------- life cycle
def test_restart_after_a_new_promotion_serves_the_new_model(tmp_path, movielens, seen_by_user):
    first = promote(SERVED_PARAMS, movielens, models_dir=tmp_path)
    with Server(first.model_path) as server:
        before = httpx.get(f"{server.url}/model").json()
        answer = httpx.get(f"{server.url}/recommendations/42").json()
        assert_best_unseen(answer, first.model_path, seen_by_user[42], 10)
    second = promote(OTHER, movielens, models_dir=tmp_path, force=True)
    assert second.promoted and second.model_path == first.model_path
    with Server(second.model_path) as server:
        after = httpx.get(f"{server.url}/model").json()
        answer = httpx.get(f"{server.url}/recommendations/42").json()
    assert before["params"]["factors"] == SERVED_PARAMS["factors"]
    assert after["params"]["factors"] == OTHER["factors"]
    assert after["created"] >= before["created"]
    assert_best_unseen(answer, second.model_path, seen_by_user[42], 10)
    assert sorted(p.name.split("-", 1)[1] for p in second.archived) == [
        "als_baseline.json",
        "als_baseline.npz",
        "als_baseline.popularity.npz",
    ]


def assert_one_line_naming(result, path, problem: str):
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_missing_model_file_stops_start_up_with_one_line(tmp_path):
    missing = tmp_path / "nowhere.npz"
    assert_one_line_naming(failed_start(missing), missing, "not found")


def test_corrupt_model_file_stops_start_up_with_one_line(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file\n" * 10)
    assert_one_line_naming(failed_start(garbage), garbage, "unreadable model file")


def serve_in_process(model, capfd, monkeypatch) -> subprocess.CompletedProcess:
    """``alsresearch serve`` up to the point where uvicorn would start (which must not)."""
    import uvicorn

    def must_not_start(*args, **kwargs):
        raise AssertionError("the server started on a model that should stop start-up")

    monkeypatch.setattr(uvicorn, "run", must_not_start)
    code = main(["serve", "--model", str(model)])
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess([], code, out, err)


def test_truncated_model_file_stops_start_up(tmp_path, artefact, capfd, monkeypatch):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(artefact.model_path.read_bytes()[:5000])
    result = serve_in_process(truncated, capfd, monkeypatch)
    assert_one_line_naming(result, truncated, "unreadable model file")


def test_model_that_does_not_match_its_card_stops_start_up(tmp_path, artefact, capfd, monkeypatch):
    files = artefact_paths(tmp_path / "als_baseline.npz")
    for src, dst in zip(
        (artefact.model_path, artefact.popularity_path, artefact.card_path),
        (files.model, files.popularity, files.card),
        strict=True,
    ):
        dst.write_bytes(src.read_bytes())
    data = dict(np.load(files.model, allow_pickle=False))
    data["state_item_factors"] = data["state_item_factors"] * 2
    with files.model.open("wb") as fh:
        np.savez(fh, **data)
    result = serve_in_process(files.model, capfd, monkeypatch)
    assert_one_line_naming(result, files.model, "does not match its model card")


# ---------------------------------------------------------------------- string ids, no card
@pytest.fixture(scope="module")
def string_id_model(tmp_path_factory):
    rng = np.random.default_rng(7)
    m = sp.random(40, 30, density=0.2, random_state=np.random.RandomState(7), format="csr")
    m.data = np.ceil(m.data * 3)
    users = [f"user-{i}" for i in range(40)]
    items = [f"item/{i}" for i in range(30)]
    data = Interactions(m, users, items)
    model = ALSModel(factors=4, iterations=3, random_state=int(rng.integers(100)), alpha=1.0)
    path = tmp_path_factory.mktemp("strings") / "strings.npz"
    model.fit(data).save(path)
    return path, data


def test_string_ids_stay_strings_without_a_card(string_id_model):
    path, data = string_id_model
    with Server(path) as server, httpx.Client(base_url=server.url) as c:
        body = c.get("/recommendations/user-3", params={"n": 5}).json()
        assert body["user_id"] == "user-3" and body["source"] == "als"
        assert all(isinstance(r["item_id"], str) for r in body["recommendations"])
        row = data.matrix[3]
        seen = set(data.item_ids[row.indices].tolist())
        assert not {r["item_id"] for r in body["recommendations"]} & seen
        assert c.get("/recommendations/42").json()["source"] == "popularity"
        batch = c.post("/recommendations/batch", json={"user_ids": ["user-3", 3]})
        assert batch.status_code == 422 and "user_ids" in batch.json()["message"]
        card = c.get("/model").json()
        assert card["name"] == "strings" and "no model card" in card["note"]
        assert c.get("/model").status_code == 200
