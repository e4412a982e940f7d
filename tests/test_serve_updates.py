"""``POST /updates`` on a real server: users and items re-solved or added between retrains
without a restart, against float64 closed-form solves (tests/reference.py) on the factors the
server itself reports through its answers; off by default."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.base import load_model
from tests.reference import solve_rows
from tests.serve_helpers import SERVED_PARAMS, Server

pytestmark = pytest.mark.serve

NEW_USER, NEW_ITEM = 999_999_001, 999_999_002


@pytest.fixture(scope="module")
def updatable(artefact):
    with Server(artefact.model_path, "--allow-updates") as running:
        with httpx.Client(base_url=running.url, timeout=60.0) as client:
            yield client


def test_updates_are_off_unless_allowed(client):
    response = client.post("/updates", json={"users": []})
    assert response.status_code == 403 and "--allow-updates" in response.json()["message"]


def test_a_new_item_and_a_new_user_are_served_without_a_restart(updatable, artefact):
    model = load_model(artefact.model_path)
    alpha, lam = SERVED_PARAMS["alpha"], 0.01
    buyers = [1, 5, 42]
    version = updatable.get("/health").json()["model_version"]
    body = {
        "items": [{"item_id": NEW_ITEM, "user_ids": buyers, "counts": [1, 2, 1]}],
        "users": [{"user_id": NEW_USER, "item_ids": [1, 50, NEW_ITEM]}],
    }
    response = updatable.post("/updates", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["items_added"] == 1 and result["users_added"] == 1
    assert result["model_version"] == f"{version}+1"
    # the new item's factors: one exact solve against the user factors (float64 reference)
    rows = model.user_index(buyers)
    column = sp.csr_matrix(([1.0, 2.0, 1.0], (rows, [0, 0, 0])), shape=(model.n_users, 1))
    y_new = solve_rows(column.T, model.user_factors, alpha, lam)[0]
    # a user who has not bought it ranks it at score x_u . y_new
    params = {"n": 1, "candidates": str(NEW_ITEM)}
    answer = updatable.get("/recommendations/2", params=params).json()["recommendations"]
    x2 = model.user_factors[model.user_index([2])[0]].astype(np.float64)
    assert [r["item_id"] for r in answer] == [NEW_ITEM]
    assert answer[0]["score"] == pytest.approx(x2 @ y_new, rel=1e-4, abs=1e-6)
    # the new user is known now, ranked from its history, which it never gets back
    new = updatable.get(f"/recommendations/{NEW_USER}", params={"n": 10}).json()
    assert new["source"] == "als"
    assert not {1, 50, NEW_ITEM} & {r["item_id"] for r in new["recommendations"]}
    # a buyer never gets the new item recommended: it is among the items they have now
    buyer = updatable.get("/recommendations/5", params={"n": 1000}).json()
    assert NEW_ITEM not in {r["item_id"] for r in buyer["recommendations"]}


def test_bad_updates_are_422_and_change_nothing(updatable):
    version = updatable.get("/health").json()["model_version"]
    unknown = {"users": [{"user_id": 7, "item_ids": [123456789]}]}
    response = updatable.post("/updates", json=unknown)
    assert response.status_code == 422 and "123456789" in response.json()["message"]
    twice = {"users": [{"user_id": 7, "item_ids": [1]}, {"user_id": 7, "item_ids": [2]}]}
    assert updatable.post("/updates", json=twice).status_code == 422
    negative = {"users": [{"user_id": 7, "item_ids": [1], "counts": [-1]}]}
    assert updatable.post("/updates", json=negative).status_code == 422
    mismatch = {"users": [{"user_id": 7, "item_ids": [1, 2], "counts": [1]}]}
    assert updatable.post("/updates", json=mismatch).status_code == 422
    assert updatable.get("/health").json()["model_version"] == version
