"""Candidate filters over HTTP (a real server on the promoted MovieLens model): ``exclude`` /
``candidates`` on GET, ``exclude_items`` / ``candidate_items`` in the batch body, against a
brute-force float64 ranking of the model file's factors; the popularity fallback honours them."""

from __future__ import annotations

import pytest

from alsresearch.base import load_model
from tests.reference import ranked_items

pytestmark = pytest.mark.serve

UNKNOWN_USER = 987_654_321


@pytest.fixture(scope="module")
def model(artefact):
    return load_model(artefact.model_path)


def reference(model, user, n, allow=None, deny=()):
    """Item ids of the brute-force ranking (tests/reference.py), filtered by external ids."""
    row = int(model.user_index([user])[0])
    allow = None if allow is None else model.item_index(allow)
    return model.item_ids[ranked_items(model, row, n, allow, model.item_index(list(deny)))].tolist()


def ids(answer) -> list:
    return [r["item_id"] for r in answer["recommendations"]]


def test_get_filters_equal_the_reference(client, model):
    unfiltered = ids(client.get("/recommendations/42", params={"n": 20}).json())
    deny = unfiltered[:5]
    got = client.get("/recommendations/42", params={"n": 10, "exclude": ",".join(map(str, deny))})
    assert got.status_code == 200
    assert ids(got.json()) == reference(model, 42, 10, deny=deny)
    assert not set(deny) & set(ids(got.json()))
    allow = model.item_ids[::97].tolist()  # about a hundred items
    got = client.get(
        "/recommendations/42", params={"n": 10, "candidates": ",".join(map(str, allow))}
    ).json()
    assert ids(got) == reference(model, 42, 10, allow=allow)
    assert got["source"] == "als"


def test_batch_filters_and_the_popularity_fallback(client, model):
    allow = model.item_ids[:400].tolist()
    deny = model.item_ids[:400:3].tolist()
    body = {"user_ids": [5, UNKNOWN_USER, 5], "n": 8, "candidate_items": allow,
            "exclude_items": deny}  # fmt: skip
    answers = client.post("/recommendations/batch", json=body).json()
    assert ids(answers[0]) == ids(answers[2]) == reference(model, 5, 8, allow, deny)
    fallback = answers[1]
    assert fallback["source"] == "popularity" and len(ids(fallback)) == 8
    assert set(ids(fallback)) <= set(allow) - set(deny)
    popular = ids(client.get(f"/recommendations/{UNKNOWN_USER}", params={"n": 400}).json())
    assert ids(fallback) == [i for i in popular if i in set(allow) - set(deny)][:8]


def test_filters_ignore_unknown_ids_and_refuse_bad_ones(client, model):
    got = client.get("/recommendations/42", params={"n": 5, "exclude": "999999999,1"})
    assert got.status_code == 200 and 1 not in ids(got.json())
    bad = client.get("/recommendations/42", params={"exclude": "1,abc"})
    assert bad.status_code == 422 and "exclude" in bad.json()["message"]  # names the parameter
    too_many = {"user_ids": [1], "exclude_items": list(range(10_001))}
    assert client.post("/recommendations/batch", json=too_many).status_code == 422
    empty = client.get("/recommendations/42", params={"candidates": ""}).json()
    assert empty["recommendations"] == []
