"""EASE (Steck 2019) against a dense float64 NumPy reference written here from the paper's
closed form (np.linalg.inv of the Gram matrix), a 3-item case solved by hand, and MovieLens.

The reference binarises the counts itself (``x_ui = 1[r_ui > 0]``) and inverts the whole
``n_items x n_items`` system, items without training data included: it shares no code with
the model, which inverts only the items with training data, by Cholesky, in place.
"""

from __future__ import annotations

import tracemalloc

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch import baselines, limits
from alsresearch.base import load_model
from alsresearch.baselines import EASEModel, PopularityModel
from alsresearch.data import Interactions
from alsresearch.errors import ModelFileError, NotFittedError
from alsresearch.evaluate import evaluate
from alsresearch.split import random_holdout
from tests.conftest import random_interactions
from tests.contract import RecommenderContract

LAM = 5.0


def reference_weights(counts: sp.spmatrix, lam: float) -> np.ndarray:
    """Steck's eq.: ``P = (X^T X + lambda I)^-1``, ``B = I - P diagMat(1 / diag(P))``."""
    X = (sp.csr_matrix(counts).toarray() > 0).astype(np.float64)
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    return np.eye(X.shape[1]) - P / np.diag(P)[None, :]


def binary(counts: sp.spmatrix) -> np.ndarray:
    return (sp.csr_matrix(counts).toarray() > 0).astype(np.float64)


def full_weights(model: EASEModel) -> np.ndarray:
    """The model's ``B`` over the whole catalogue (zero rows and columns for inactive items)."""
    B = np.zeros((model.n_items, model.n_items))
    B[np.ix_(model.active_items, model.active_items)] = model.weights
    return B


def reference_top(scores: np.ndarray, exclude: np.ndarray, n: int) -> np.ndarray:
    """Descending reference score, ties to the lower index, excluded items removed."""
    scores = scores.copy()
    scores[exclude] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[np.isfinite(scores[order])][:n]


@pytest.fixture
def data(rng) -> Interactions:
    """Random counts (1..5) with an empty user, and two items nobody has (columns 5 and 17)."""
    d = random_interactions(rng, n_users=60, n_items=40)
    m = d.matrix.tolil()
    m[:, [5, 17]] = 0
    return Interactions(sp.csr_matrix(m), d.user_ids, d.item_ids)


@pytest.fixture
def fitted(data) -> EASEModel:
    return EASEModel(regularization=LAM).fit(data)


# ---------------------------------------------------------------------- against the reference
def test_weights_match_the_dense_reference(data, fitted):
    ref = reference_weights(data.matrix, LAM)
    B = full_weights(fitted)
    assert fitted.weights.dtype == np.float32
    np.testing.assert_allclose(B, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    np.testing.assert_array_equal(np.diag(B), 0.0)
    # items nobody has: zero rows and columns in the reference too, left out of the model's
    assert np.abs(ref[[5, 17]]).max() < 1e-12 and np.abs(ref[:, [5, 17]]).max() < 1e-12
    assert 5 not in fitted.active_items and 17 not in fitted.active_items
    assert len(fitted.active_items) == 38


def test_counts_do_not_enter(data, fitted):
    ones = data.matrix.copy()
    ones.data[:] = 1.0
    other = EASEModel(regularization=LAM).fit(Interactions(ones, data.user_ids, data.item_ids))
    np.testing.assert_array_equal(other.weights, fitted.weights)


def test_scores_are_x_u_times_b(data, fitted):
    ref_scores = binary(data.matrix) @ reference_weights(data.matrix, LAM)
    scores = fitted.score_rows(np.arange(data.n_users))
    assert scores.shape == (data.n_users, data.n_items) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-5 * np.abs(ref_scores).max())
    np.testing.assert_array_equal(scores[0], 0.0)  # the empty user
    np.testing.assert_array_equal(scores[:, [5, 17]], 0.0)


def test_top_n_is_the_reference_ranking_without_seen_items(data, fitted):
    ref_scores = binary(data.matrix) @ reference_weights(data.matrix, LAM)
    error = np.abs(fitted.score_rows(np.arange(data.n_users)) - ref_scores).max(axis=1)
    m = data.matrix
    for row, user in enumerate(data.user_ids):
        seen = m.indices[m.indptr[row] : m.indptr[row + 1]]
        want = reference_top(ref_scores[row], seen, 10)
        # the comparison is well posed: the reference's top 11 scores are further apart than
        # twice the model's float32 error (exact ties, as for the empty user, go to the lower
        # index in both), so the two orders must agree
        gaps = np.abs(np.diff(np.sort(ref_scores[row][reference_top(ref_scores[row], seen, 11)])))
        assert np.all((gaps == 0) | (gaps > 2 * error[row])), f"near-tie for user {user}"
        items, scores = fitted.recommend(user, n=10)
        assert not set(items.tolist()) & set(data.item_ids[seen].tolist())
        np.testing.assert_array_equal(items, data.item_ids[want])
        np.testing.assert_allclose(scores, ref_scores[row, want], rtol=1e-5, atol=1e-5)


def test_history_scores_are_the_reference_fold_in(data, fitted):
    ref = reference_weights(data.matrix, LAM)
    item_idx = np.array([1, 3, 5, 9, 22, 30])  # 5 has no training data
    weights = np.array([2.0, 1.0, 4.0, 0.0, 7.0, 1.0])  # a zero weight: not had
    x = np.zeros(data.n_items)
    x[item_idx[weights > 0]] = 1.0
    np.testing.assert_allclose(fitted.history_scores(item_idx, weights), x @ ref, rtol=0, atol=1e-5)
    items, _ = fitted.recommend_for_history(data.item_ids[item_idx], weights, n=8)
    want = reference_top(x @ ref, item_idx, 8)
    np.testing.assert_array_equal(items, data.item_ids[want])


def test_history_of_a_training_user_scores_like_the_user(data, fitted):
    m = data.matrix
    row = 7
    items = m.indices[m.indptr[row] : m.indptr[row + 1]]
    np.testing.assert_allclose(
        fitted.history_scores(items, m.data[m.indptr[row] : m.indptr[row + 1]]),
        fitted.score_rows(np.array([row]))[0],
        rtol=0,
        atol=1e-5,
    )


# ---------------------------------------------------------------------- by hand
def test_three_items_by_hand():
    # users: {0, 1} (item 0 clicked 5 times: counts are binarised), {1, 2}, {0, 1, 2};
    # item 3 has no interaction. X^T X = [[2,2,1],[2,3,2],[1,2,2]] on items 0..2, and with
    # lambda = 1, (X^T X + I)^-1 = [[1/2,-1/4,0],[-1/4,1/2,-1/4],[0,-1/4,1/2]] (adjugate / 16);
    # B_ij = -P_ij / P_jj = [[0,1/2,0],[1/2,0,1/2],[0,1/2,0]].
    counts = sp.csr_matrix(np.array([[5, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]], dtype=float))
    model = EASEModel(regularization=1.0).fit(
        Interactions(counts, ["a", "b", "c"], [10, 11, 12, 13])
    )
    np.testing.assert_allclose(
        full_weights(model),
        [[0, 0.5, 0, 0], [0.5, 0, 0.5, 0], [0, 0.5, 0, 0], [0, 0, 0, 0]],
        atol=1e-7,
    )
    # user a has 10, 11: scores row 0 + row 1 = [1/2, 1/2, 1/2, 0]; only 12 and 13 are unseen
    items, scores = model.recommend("a", n=5)
    assert items.tolist() == [12, 13]
    np.testing.assert_allclose(scores, [0.5, 0.0], atol=1e-7)
    # a history of items 10 and 12 scores rows 0 + 2 of B: [0, 1, 0, 0]
    np.testing.assert_allclose(
        model.history_scores(np.array([0, 2]), np.array([1.0, 3.0])), [0, 1, 0, 0], atol=1e-7
    )
    items, scores = model.recommend_for_history([10, 12], n=1)
    assert items.tolist() == [11]
    np.testing.assert_allclose(scores, [1.0], atol=1e-7)


def test_no_interactions_at_all_scores_zero(tmp_path):
    # regression: LAPACK refuses a 0 x 0 matrix; nothing to invert means B is empty
    model = EASEModel().fit(sp.csr_matrix((3, 4)))
    assert model.weights.shape == (0, 0)
    np.testing.assert_array_equal(model.score_rows(np.arange(3)), np.zeros((3, 4)))
    loaded = load_model(model.save(tmp_path / "empty.npz"))
    assert loaded.recommend(1, n=3)[0].tolist() == [0, 1, 2]  # all tie at 0: lower index


# ---------------------------------------------------------------------- files
def test_save_load_gives_identical_scores(data, fitted, tmp_path):
    loaded = load_model(fitted.save(tmp_path / "ease.npz"))
    assert isinstance(loaded, EASEModel) and loaded.regularization == LAM
    rows = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score_rows(rows), fitted.score_rows(rows))
    np.testing.assert_array_equal(loaded.weights, fitted.weights)
    for user in data.user_ids[:10]:
        np.testing.assert_array_equal(loaded.recommend(user, 10)[0], fitted.recommend(user, 10)[0])


def test_a_file_with_inconsistent_weights_is_refused(fitted, tmp_path):
    good = fitted.save(tmp_path / "good.npz")
    with np.load(good, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    n = len(fitted.active_items)
    for name, bad, what in [
        ("state_weights", np.zeros((n, n + 1), dtype=np.float32), "weights must be"),
        ("state_weights", np.ones((n, n), dtype=np.float32), "zero diagonal"),
        ("state_active_items", fitted.active_items[:-1], "active_items must be"),
    ]:
        path = tmp_path / "bad.npz"
        np.savez(path, **{**arrays, name: bad})
        with pytest.raises(ModelFileError, match=what):
            load_model(path)


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), True, "500", None])
def test_bad_regularization_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="regularization must be a finite number > 0"):
        EASEModel(regularization=bad)


def test_too_small_regularization_for_the_data_is_a_clear_error():
    # two items with the same single user: X^T X = [[1,1],[1,1]] is singular, and 1e-300 is
    # lost in 1 + 1e-300, so the Cholesky factorisation breaks down at the second pivot
    model = EASEModel(regularization=1e-300)
    with pytest.raises(ValueError, match="regularization = 1e-300 is too small"):
        model.fit(sp.csr_matrix(np.ones((1, 2))))
    assert not model.is_fitted


def test_too_many_items_stops_before_allocating(monkeypatch):
    monkeypatch.setattr(limits, "MAX_EASE_ITEMS", 100)
    items = np.arange(2000)  # every item has one user
    counts = sp.csr_matrix((np.ones(2000), (items % 50, items)), shape=(50, 2000))
    model = EASEModel()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"n_items = 2,000 .* MAX_EASE_ITEMS = 100"):
            model.fit(counts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the dense matrices would take 12 x 2000^2 bytes = 46 MiB
    assert not model.is_fitted


def test_too_little_memory_is_a_clear_error(monkeypatch, data):
    monkeypatch.setattr(limits, "available_memory", lambda: 10_000)
    with pytest.raises(ValueError, match=r"n_items = 38 .* needs 0\.06 GiB .* only 0\.00 GiB"):
        EASEModel().fit(data)


def test_memory_estimate_counts_both_matrices():
    assert baselines.ease_memory_bytes(20_000) >= (8 + 4) * 20_000**2


def test_unfitted_model_says_so():
    model = EASEModel()
    for call in (
        lambda: model.score_rows(np.arange(2)),
        lambda: model.history_scores(np.arange(2), np.ones(2)),
        lambda: model.recommend(1),
        lambda: model.recommend_for_history([1]),
        lambda: model.save("never.npz"),
    ):
        with pytest.raises(NotFittedError, match="EASEModel is not fitted"):
            call()


def test_fit_rejects_unknown_arguments(data):
    with pytest.raises(TypeError, match="unexpected arguments"):
        EASEModel().fit(data, iterations=3)


class TestEASEContract(RecommenderContract):
    @pytest.fixture
    def make_model(self):
        return lambda: EASEModel(regularization=LAM)


# ---------------------------------------------------------------------- MovieLens
def _movies_with_ratings(data: Interactions, at_least: int) -> Interactions:
    keep = np.flatnonzero(np.bincount(data.matrix.indices, minlength=data.n_items) >= at_least)
    return Interactions(data.matrix[:, keep], data.user_ids, data.item_ids[keep])


@pytest.mark.realdata
def test_beats_popularity_on_movielens_popular_movies(movielens):
    # the movies with 20+ ratings (about 1,300): seconds, where the whole catalogue takes ~10 s
    data = _movies_with_ratings(movielens, 20)
    train, test = random_holdout(data, 0.2, seed=42)
    ease = evaluate(EASEModel().fit(train), train, test, k=10).metrics
    popular = evaluate(PopularityModel().fit(train), train, test, k=10).metrics
    assert ease["ndcg@10"] > popular["ndcg@10"] * 1.5  # measured: 0.384 against 0.198
    assert ease["hit_rate@10"] > popular["hit_rate@10"] * 1.1
    assert ease["coverage@10"] > popular["coverage@10"] * 3


@pytest.mark.realdata
@pytest.mark.slow
def test_beats_popularity_on_movielens(movielens):
    train, test = random_holdout(movielens, 0.2, seed=42)
    ease = evaluate(EASEModel().fit(train), train, test, k=10).metrics
    popular = evaluate(PopularityModel().fit(train), train, test, k=10).metrics
    print(f"EASE {ease}\npopularity {popular}")
    assert ease["ndcg@10"] > popular["ndcg@10"] * 1.5  # measured: 0.375 against 0.186
    assert ease["hit_rate@10"] > popular["hit_rate@10"] * 1.1
    assert ease["coverage@10"] > popular["coverage@10"] * 3


# ---------------------------------------------------------------------- the service
@pytest.mark.serve
def test_served_ease_model(data, fitted, tmp_path):
    from tests.serve_helpers import Server

    path = fitted.save(tmp_path / "ease.npz")  # no card, no popularity file beside it
    ref_scores = binary(data.matrix) @ reference_weights(data.matrix, LAM)
    row = 10
    user = int(data.user_ids[row])
    seen = data.matrix.indices[data.matrix.indptr[row] : data.matrix.indptr[row + 1]]
    want = reference_top(ref_scores[row], seen, 5)
    # popularity by hand: distinct users per item, ties to the lower index
    pop = (data.matrix.toarray() > 0).sum(axis=0)
    popular = np.lexsort((np.arange(data.n_items), -pop))[:5]
    with Server(path) as server, httpx.Client(base_url=server.url, timeout=60.0) as client:
        assert client.get("/health").json()["model_type"] == "ease"
        known = client.get(f"/recommendations/{user}", params={"n": 5})
        unknown = client.get("/recommendations/987654321", params={"n": 5})
    assert known.status_code == 200 and unknown.status_code == 200
    known, unknown = known.json(), unknown.json()
    assert known["user_id"] == user and known["source"] == "ease"  # the model type ranked it
    assert [r["item_id"] for r in known["recommendations"]] == data.item_ids[want].tolist()
    np.testing.assert_allclose(
        [r["score"] for r in known["recommendations"]], ref_scores[row, want], rtol=1e-5, atol=1e-5
    )
    assert unknown["source"] == "popularity"
    assert [r["item_id"] for r in unknown["recommendations"]] == data.item_ids[popular].tolist()
    np.testing.assert_allclose(
        [r["score"] for r in unknown["recommendations"]], pop[popular] / data.n_users, rtol=1e-6
    )  # shares of the training users
