"""One ranking, whatever the path: items by float32 score, ties to the lower item index, for
``recommend`` (through the screen and through the matrix product), ``recommend_batch``,
``topk_rows``, ``recommend_for_history`` of the user's own history, ``evaluate`` and EASE."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import alsresearch.als as als
from alsresearch.als import ALSModel
from alsresearch.baselines import EASEModel
from alsresearch.data import Interactions
from alsresearch.evaluate import evaluate
from tests.reference import ranked_items

N_ITEMS, K = 300, 8


def near_tied_model(seen: dict[int, list[int]]) -> tuple[ALSModel, Interactions]:
    """Every item's factors are 0.5 in every component except one, a float32 ulp above or
    below (alternately): every user of all-ones factors scores every item 4 +- 6e-8 in float64,
    exactly 4.0 in float32. So the list must be the lowest unseen item indices."""
    rows = [u for u, items in seen.items() for _ in items]
    cols = [i for items in seen.values() for i in items]
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(seen), N_ITEMS))
    data = Interactions(counts, user_ids=np.arange(len(seen)) + 100)
    model = ALSModel(factors=K, iterations=1, random_state=0).fit(data)
    Y = np.full((N_ITEMS, K), 0.5, dtype=np.float32)
    up, down = np.nextafter(np.float32(0.5), np.float32(1)), np.nextafter(np.float32(0.5), 0)
    for i in range(N_ITEMS):
        Y[i, i % K] = up if i % 2 else down
    state = model.get_state()
    state["item_factors"] = Y
    state["user_factors"] = np.ones((len(seen), K), dtype=np.float32)
    model.set_state(state)
    return model, data


SEEN = {0: [0, 3, 4], 1: [1, 2, 250], 2: [7]}


def expected(user: int, n: int) -> list[int]:
    return [i for i in range(N_ITEMS) if i not in SEEN[user]][:n]


@pytest.mark.parametrize("screen", [True, False])
def test_near_ties_go_to_the_lower_index_on_every_path(monkeypatch, screen):
    if screen:  # the quantized screen, otherwise only used on large models
        monkeypatch.setattr(als, "_SCREEN_MIN_ITEMS", 0)
        monkeypatch.setattr(als, "_SCREEN_MIN_SCORES", 0)
    model, _ = near_tied_model(SEEN)
    scores64 = np.ones(K) @ model.item_factors.astype(np.float64).T
    assert len(np.unique(scores64)) > 1  # the float64 scores do differ ...
    assert len(np.unique(scores64.astype(np.float32))) == 1  # ... the float32 ones do not
    for user in SEEN:
        want = expected(user, 10)
        ids, scores = model.recommend(user + 100, n=10)
        assert ids.tolist() == want
        assert np.all(scores == np.float32(4.0))
        idx, _ = model.topk_rows(np.array([user]), 10)
        assert idx[0].tolist() == want
        assert model.recommend_batch([user + 100], n=10)[0][0].tolist() == want
        # the user's own history folds in to a vector along the same direction: ties again
        history, _ = model.recommend_for_history(SEEN[user], n=10)
        assert history.tolist() == want


def test_evaluate_ranks_by_the_same_rule():
    model, data = near_tied_model(SEEN)
    test = Interactions(
        sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 1, 2], [5, 6, 8])), shape=(3, N_ITEMS)),
        user_ids=data.user_ids,
    )
    result = evaluate(model, data, test, k=10)
    for row, user in enumerate(result.per_user["user_id"] - 100):
        assert result.recommended[row].tolist() == expected(int(user), 10)


def test_ease_scores_a_history_exactly_as_its_user():
    """EASE: a training user's own history gives bit-identical scores to the user's row."""
    rng = np.random.default_rng(0)
    counts = sp.random(40, 30, density=0.3, random_state=rng, format="csr")
    counts.data[:] = 1.0
    model = EASEModel(regularization=5.0).fit(counts)
    for u in range(40):
        items = counts.indices[counts.indptr[u] : counts.indptr[u + 1]]
        if len(items) == 0:
            continue
        own = model.score_rows(np.array([u]))[0]
        np.testing.assert_array_equal(model.history_scores(items, np.ones(len(items))), own)
        assert model.recommend(u, n=5)[0].tolist() == (
            model.recommend_for_history(items.tolist(), n=5)[0].tolist()
        )


# ---------------------------------------------------------------------- candidate filters
@pytest.mark.parametrize("screen", [True, False])
def test_filters_equal_a_brute_force_reference(monkeypatch, rng, screen):
    if screen:
        monkeypatch.setattr(als, "_SCREEN_MIN_ITEMS", 0)
        monkeypatch.setattr(als, "_SCREEN_MIN_SCORES", 0)
    from tests.test_als import varied_counts

    counts = varied_counts(rng, n_users=60, n_items=200, k_max=40)
    ids = np.array([f"item{j}" for j in range(200)])
    data = Interactions(counts, user_ids=np.arange(60) + 1000, item_ids=ids)
    model = ALSModel(factors=8, iterations=3, random_state=0).fit(data)
    allow = rng.choice(200, size=25, replace=False)
    deny = rng.choice(200, size=30, replace=False)
    for u in (0, 2, 5, 17):
        user = u + 1000
        got, _ = model.recommend(user, n=10, exclude=ids[deny])
        assert [int(s[4:]) for s in got] == ranked_items(model, u, 10, deny=deny)
        got, _ = model.recommend(user, n=10, items=ids[allow])
        assert [int(s[4:]) for s in got] == ranked_items(model, u, 10, allow=allow)
        got, scores = model.recommend(user, n=50, items=ids[allow], exclude=ids[deny])
        assert [int(s[4:]) for s in got] == ranked_items(model, u, 50, allow, deny)
        assert np.all(np.diff(scores) <= 0)
        got, _ = model.recommend(user, n=10, items=ids[allow], exclude_seen=False)
        assert [int(s[4:]) for s in got] == ranked_items(model, u, 10, allow, exclude_seen=False)
    batch = model.recommend_batch([1000, 1002, 1000], n=7, items=ids[allow], exclude=ids[deny])
    assert [[int(s[4:]) for s in b[0]] for b in batch] == [
        ranked_items(model, u, 7, allow, deny) for u in (0, 2, 0)
    ]


def test_filters_name_unknown_ids_or_ignore_them(small_interactions):
    from alsresearch.errors import UnknownIdError

    model = ALSModel(factors=4, iterations=1, random_state=0).fit(small_interactions)
    user = small_interactions.user_ids[5]
    with pytest.raises(UnknownIdError, match="nope"):
        model.recommend(user, items=["nope", "i001"])
    got, _ = model.recommend(user, n=3, items=["nope", "i001"], unknown="ignore")
    assert set(got.tolist()) <= {"i001"}
    with pytest.raises(TypeError, match="lists of item ids"):
        model.recommend(user, exclude="i001")
    assert model.recommend(user, items=[])[0].size == 0
