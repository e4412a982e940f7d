"""evaluate(): agrees with a plain per-user Python loop, with implicit, and on MovieLens ALS
beats popularity."""

from __future__ import annotations

import time
from math import log2

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch.base import Recommender
from alsresearch.baselines import PopularityModel
from alsresearch.data import Interactions
from alsresearch.errors import UnknownIdError
from alsresearch.evaluate import ALL_METRICS, evaluate
from alsresearch.split import random_holdout
from tests.conftest import random_interactions


class FactorModel(Recommender):
    """Test-only model: given user and item factors, scores u . v in float64."""

    model_type = "test-factors"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray) -> None:
        self.user_factors = np.asarray(user_factors, dtype=np.float64)
        self.item_factors = np.asarray(item_factors, dtype=np.float64)

    def fit(self, X, **kwargs):
        self._set_training_data(X)
        return self

    def score_rows(self, rows):
        return self.user_factors[rows] @ self.item_factors.T

    def history_scores(self, item_idx, weights):  # not needed by evaluate
        raise NotImplementedError

    def get_config(self):
        return {}

    def get_state(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def set_state(self, state):
        self.user_factors, self.item_factors = state["user_factors"], state["item_factors"]


def naive_evaluation(U, V, train: sp.csr_matrix, test: sp.csr_matrix, k: int) -> pd.DataFrame:
    """Per user, in plain Python: rank every unseen item by u . v (ties: lower index), then
    score the top k against the test items with the textbook formulas."""
    train, test = train.tolil(), test.tolil()
    n_items = V.shape[0]
    pop = [0] * n_items
    for row in train.rows:
        for i in row:
            pop[i] += 1
    by_pop = sorted(range(n_items), key=lambda i: (-pop[i], i))
    pop_rank = {item: r + 1 for r, item in enumerate(by_pop)}
    out = []
    for u in range(train.shape[0]):
        relevant = set(test.rows[u])
        if not relevant:
            continue
        seen = set(train.rows[u])
        scores = {i: float(np.dot(U[u], V[i])) for i in range(n_items) if i not in seen}
        top = sorted(scores, key=lambda i: (-scores[i], i))[:k]
        rel = [1 if i in relevant else 0 for i in top]
        dcg = sum(r / log2(pos + 2) for pos, r in enumerate(rel))
        idcg = sum(1 / log2(pos + 2) for pos in range(min(k, len(relevant))))
        hits_so_far, ap = 0, 0.0
        for pos, r in enumerate(rel):
            if r:
                hits_so_far += 1
                ap += hits_so_far / (pos + 1)
        first = next((pos for pos, r in enumerate(rel) if r), None)
        out.append(
            {
                "row": u,
                "history": len(seen),
                "ndcg": dcg / idcg,
                "hit_rate": float(any(rel)),
                "precision": sum(rel) / k,
                "recall": sum(rel) / min(k, len(relevant)),
                "map": ap / min(k, len(relevant)),
                "mrr": 0.0 if first is None else 1 / (first + 1),
                "popularity_rank": sum(pop_rank[i] for i in top) / len(top),
                "top": top,
            }
        )
    return pd.DataFrame(out)


@pytest.fixture(params=[0, 1, 2])
def random_case(request):
    rng = np.random.default_rng(1000 + request.param)
    data = random_interactions(rng, n_users=70, n_items=45)
    train, test = random_holdout(data, 0.3, seed=request.param)
    factors = 8
    U = rng.normal(size=(data.n_users, factors))
    V = rng.normal(size=(data.n_items, factors))
    return FactorModel(U, V).fit(train), train, test


@pytest.mark.parametrize("k", [1, 5, 10])
def test_evaluate_agrees_with_a_naive_loop(random_case, k):
    model, train, test = random_case
    result = evaluate(model, train, test, k=k, chunk_size=16)
    naive = naive_evaluation(model.user_factors, model.item_factors, train.matrix, test.matrix, k)
    assert result.n_users == len(naive) > 0
    np.testing.assert_array_equal(result.per_user["user_id"], train.user_ids[naive["row"]])
    np.testing.assert_array_equal(result.per_user["history"], naive["history"])
    for name in ("ndcg", "hit_rate", "precision", "recall", "map", "mrr", "popularity_rank"):
        np.testing.assert_allclose(
            result.per_user[f"{name}@{k}"], naive[name], rtol=0, atol=1e-9, err_msg=name
        )
        assert result.metrics[f"{name}@{k}"] == pytest.approx(naive[name].mean(), abs=1e-9)
    shown = {i for top in naive["top"] for i in top}
    assert result.metrics[f"coverage@{k}"] == pytest.approx(len(shown) / train.n_items, abs=1e-12)


def test_chunking_does_not_change_the_result(random_case):
    model, train, test = random_case
    a = evaluate(model, train, test, k=7, chunk_size=1)
    b = evaluate(model, train, test, k=7)
    pd.testing.assert_frame_equal(a.per_user, b.per_user, check_exact=True)
    assert a.metrics == b.metrics


def test_evaluate_matches_implicit_where_definitions_agree(random_case):
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k

    model, train, test = random_case
    U32 = model.user_factors.astype(np.float32)
    V32 = model.item_factors.astype(np.float32)
    reference = AlternatingLeastSquares(factors=U32.shape[1], random_state=0)
    reference.user_factors, reference.item_factors = U32, V32
    theirs = ranking_metrics_at_k(reference, train.matrix, test.matrix, K=10, show_progress=False)

    ours = evaluate(FactorModel(U32, V32).fit(train), train, test, k=10)
    assert ours.metrics["ndcg@10"] == pytest.approx(theirs["ndcg"], abs=1e-6)
    assert ours.metrics["map@10"] == pytest.approx(theirs["map"], abs=1e-6)
    # implicit's "precision": hits pooled over users / sum of min(k, R)
    hits = ours.per_user["precision@10"] * 10
    pooled = hits.sum() / np.minimum(ours.per_user["n_test"], 10).sum()
    assert pooled == pytest.approx(theirs["precision"], abs=1e-9)


def test_cold_items_are_kept_and_counted():
    # item 3 is only in test (users 0 and 1); items 0 and 2 are in train and test
    train_m = np.array([[1.0, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 1, 0, 0]])
    test_m = np.array([[0, 0, 1.0, 1, 0], [1, 0, 0, 1, 0], [0, 0, 0, 0, 0]])
    train = Interactions(sp.csr_matrix(train_m))
    test = train.with_matrix(sp.csr_matrix(test_m))
    model = PopularityModel().fit(train)
    result = evaluate(model, train, test, k=2)
    assert result.n_cold_items == 1 and result.n_cold_cells == 2
    assert result.per_user["n_cold"].tolist() == [1, 1]
    assert result.n_test_cells == 4
    # cold item 3 stays relevant and can be hit: popularity is [2, 2, 2, 0, 0], so user 0
    # (seen 0, 1) gets [2, 3] (3 beats 4 on index) and user 1 (seen 1, 2) gets [0, 3]
    assert result.recommended[0].tolist() == [2, 3]
    assert result.per_user["hit_rate@2"].tolist() == [1.0, 1.0]


def test_users_restricts_the_evaluation(random_case):
    model, train, test = random_case
    full = evaluate(model, train, test)
    some = full.per_user["user_id"].to_numpy()[[4, 0, 9]]
    without_test = train.user_ids[np.diff(test.matrix.indptr) == 0][:1]
    part = evaluate(model, train, test, users=[*some.tolist(), *without_test.tolist()])
    assert part.n_users == 3
    expected = full.per_user.set_index("user_id").loc[sorted(some)]
    np.testing.assert_allclose(part.per_user["ndcg@10"], expected["ndcg@10"])
    with pytest.raises(UnknownIdError):
        evaluate(model, train, test, users=[-12345])


def test_by_history_breaks_down_the_per_user_table(random_case):
    model, train, test = random_case
    result = evaluate(model, train, test, buckets=(5, 20))
    table = result.by_history()
    per_user = result.per_user
    groups = {"1-5": (1, 5), "6-20": (6, 20), "21+": (21, 10**9)}
    assert set(table.index) <= {"0", *groups}
    assert table["n_users"].sum() == result.n_users
    for label, (lo, hi) in groups.items():
        mask = per_user["history"].between(lo, hi)
        if not mask.any():
            assert label not in table.index
            continue
        assert table.loc[label, "n_users"] == mask.sum()
        assert table.loc[label, "ndcg@10"] == pytest.approx(per_user.loc[mask, "ndcg@10"].mean())
        shown = np.unique(result.recommended[mask.to_numpy()])
        assert table.loc[label, "coverage@10"] == pytest.approx(
            len(shown[shown >= 0]) / train.n_items
        )
    other = result.by_history(buckets=(10,))
    assert set(other.index) <= {"0", "1-10", "11+"}


def test_metric_subset_and_names():
    data = random_interactions(np.random.default_rng(5))
    train, test = random_holdout(data, seed=1)
    model = PopularityModel().fit(train)
    result = evaluate(model, train, test, k=3, metrics=["ndcg@3", "coverage"])
    assert list(result.metrics) == ["ndcg@3", "coverage@3"]
    assert list(evaluate(model, train, test, k=3).metrics) == [f"{m}@3" for m in ALL_METRICS]
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, train, test, metrics=["auc"])
    assert set(result.to_dict()) >= {"metrics", "n_users", "n_cold_items", "k"}


def test_mismatched_id_spaces_are_clear_errors(small_interactions):
    train, test = random_holdout(small_interactions, seed=0)
    model = PopularityModel().fit(train)
    other = Interactions(test.matrix, test.user_ids[::-1].copy(), test.item_ids)
    with pytest.raises(ValueError, match="same id space"):
        evaluate(model, train, other)
    elsewhere = PopularityModel().fit(Interactions(train.matrix[:, :-1]))
    with pytest.raises(ValueError, match="fit the model on the train split"):
        evaluate(elsewhere, train, test)


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 2.5}, {"buckets": (20, 5)}, {"chunk_size": 0}])
def test_bad_arguments_are_clear_errors(small_interactions, kwargs):
    train, test = random_holdout(small_interactions, seed=0)
    model = PopularityModel().fit(train)
    with pytest.raises(ValueError):
        evaluate(model, train, test, **kwargs)


@pytest.mark.realdata
@pytest.mark.slow
def test_als_beats_popularity_on_movielens(movielens):
    from alsresearch.als import ALSModel

    train, test = random_holdout(movielens, 0.2, seed=42)
    start = time.perf_counter()
    als = evaluate(ALSModel(random_state=0).fit(train), train, test, k=10).metrics
    popular = evaluate(PopularityModel().fit(train), train, test, k=10).metrics
    elapsed = time.perf_counter() - start
    print(f"ALS {als}\npopularity {popular}\n({elapsed:.1f} s)")
    assert als["ndcg@10"] > popular["ndcg@10"] * 1.1
    assert als["hit_rate@10"] > popular["hit_rate@10"] * 1.1
    assert als["coverage@10"] > popular["coverage@10"] * 5
    assert als["popularity_rank@10"] > popular["popularity_rank@10"]
