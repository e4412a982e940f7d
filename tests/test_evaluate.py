"""evaluate(): agrees with a plain per-user Python loop, with implicit, and on MovieLens ALS
beats popularity; metrics at their own cut-offs; interval columns in compare; the fold-in
protocol against hand-computed and float64 closed-form references."""

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
from alsresearch.errors import SpecMismatchError, UnknownIdError
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


# ---------------------------------------------------------------------- cut-offs
def test_metrics_at_their_own_cut_offs_agree_with_the_naive_loop(random_case):
    """A name with "@j" is measured on the first j items; bare names at k."""
    model, train, test = random_case
    wanted = ["ndcg", "recall@20", "precision@5", "coverage@20", "popularity_rank@20", "mrr@3"]
    result = evaluate(model, train, test, k=3, metrics=wanted)
    assert list(result.metrics) == [
        "ndcg@3", "recall@20", "precision@5", "coverage@20", "popularity_rank@20", "mrr@3",
    ]  # fmt: skip
    assert result.recommended.shape == (result.n_users, 20)
    naive = {k: naive_evaluation(model.user_factors, model.item_factors, train.matrix,
                                 test.matrix, k) for k in (3, 5, 20)}  # fmt: skip
    for column, (name, k) in {
        "ndcg@3": ("ndcg", 3),
        "recall@20": ("recall", 20),
        "precision@5": ("precision", 5),
        "popularity_rank@20": ("popularity_rank", 20),
        "mrr@3": ("mrr", 3),
    }.items():
        np.testing.assert_allclose(result.per_user[column], naive[k][name], atol=1e-9, rtol=0)
    shown = {i for top in naive[20]["top"] for i in top}
    assert result.metrics["coverage@20"] == pytest.approx(len(shown) / train.n_items)


@pytest.mark.parametrize(
    "metrics, match",
    [
        (["ndcg@0"], r"the cut-off of 'ndcg@0' must be an integer in \[1, 100000\], got 0"),
        (["ndcg@ten"], r"metric 'ndcg@ten': the cut-off after '@' must be an integer"),
        (["recall@100001"], r"must be an integer in \[1, 100000\], got 100001"),
        (["auc@10"], r"unknown metric\(s\) \['auc@10'\]"),
    ],
)
def test_bad_cut_offs_are_clear_errors(small_interactions, metrics, match):
    train, test = random_holdout(small_interactions, seed=0)
    model = PopularityModel().fit(train)
    with pytest.raises(ValueError, match=match):
        evaluate(model, train, test, metrics=metrics)


# ---------------------------------------------------------------------- intervals in compare
def test_compare_adds_bootstrap_intervals_next_to_each_per_user_metric(random_case):
    from alsresearch.evaluate import compare, flat_metrics, mean_interval

    model, train, test = random_case
    popularity = PopularityModel().fit(train)
    table, results = compare({"m": model, "pop": popularity}, train, test, k=5, n_boot=300)
    assert list(table.columns[:3]) == ["ndcg@5", "ndcg@5_low", "ndcg@5_high"]
    assert "coverage@5" in table.columns and "coverage@5_low" not in table.columns
    for name, result in results.items():
        for metric, value in result.metrics.items():
            assert table.loc[name, metric] == value  # the existing columns are unchanged
            if metric.startswith("coverage"):
                continue
            interval = mean_interval(result, metric, 0.95, 300, 0)
            assert table.loc[name, f"{metric}_low"] == interval.low
            assert table.loc[name, f"{metric}_high"] == interval.high
            assert interval.low <= value <= interval.high
    plain, _ = compare({"m": model}, train, test, k=5, confidence=None)
    assert list(plain.columns) == list(results["m"].metrics)
    assert "m_ndcg@5_low" in flat_metrics(table)


def test_by_history_intervals_cover_each_group(random_case):
    model, train, test = random_case
    result = evaluate(model, train, test, k=5)
    table = result.by_history(confidence=0.9, n_boot=200)
    plain = result.by_history()
    pd.testing.assert_frame_equal(table[plain.columns], plain)
    assert (table["ndcg@5_low"] <= table["ndcg@5"]).all()
    assert (table["ndcg@5"] <= table["ndcg@5_high"]).all()
    assert "coverage@5_low" not in table.columns


# ---------------------------------------------------------------------- the fold-in protocol
def fold_in_case(seed: int = 0):
    """Hand-placed held-out users: rows 0 and 1 never train; row 0 folds in items {0, 1} and
    is tested on {2, 5}; row 1 folds in {3} and is tested on {0}."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 8
    dense = (rng.random((n_users, n_items)) < 0.5) * rng.integers(1, 4, size=(n_users, n_items))
    dense[:2] = 0
    dense[2:, 6] = 0  # item 6: never in train
    fold_in = np.zeros_like(dense)
    test = np.zeros_like(dense)
    fold_in[0, [0, 1]] = [2, 1]
    fold_in[1, 3] = 3
    test[0, [2, 5]] = 1
    test[1, 0] = 1
    users = [f"u{i}" for i in range(n_users)]
    train = Interactions(sp.csr_matrix(dense.astype(float)), users, np.arange(n_items) * 10)
    return (
        train,
        train.with_matrix(sp.csr_matrix(fold_in.astype(float))),
        train.with_matrix(sp.csr_matrix(test.astype(float))),
    )


def test_fold_in_ranks_held_out_users_by_popularity_by_hand():
    train, fold_in, test = fold_in_case()
    model = PopularityModel().fit(train)
    result = evaluate(model, train, test, k=3, protocol="fold_in", fold_in=fold_in,
                      metrics=["ndcg", "recall@5", "hit_rate@1"])  # fmt: skip
    # popularity = users per item in train; ties to the lower index; fold-in items excluded
    pop = (train.matrix > 0).sum(axis=0).A1
    order = sorted(range(8), key=lambda i: (-pop[i], i))
    top0 = [i for i in order if i not in (0, 1)]
    top1 = [i for i in order if i != 3]
    assert result.recommended.tolist() == [top0[:5], top1[:5]]

    def ndcg(top, relevant, k):
        dcg = sum(1 / log2(r + 2) for r, i in enumerate(top[:k]) if i in relevant)
        return dcg / sum(1 / log2(r + 2) for r in range(min(k, len(relevant))))

    assert result.per_user["user_id"].tolist() == ["u0", "u1"]
    assert result.per_user["history"].tolist() == [2, 1]  # fold-in items, not training items
    expected = [ndcg(top0, {2, 5}, 3), ndcg(top1, {0}, 3)]
    np.testing.assert_allclose(result.per_user["ndcg@3"], expected, rtol=0, atol=1e-12)
    recall = [len({2, 5} & set(top0[:5])) / 2, float(0 in top1[:5])]
    np.testing.assert_allclose(result.per_user["recall@5"], recall, rtol=0, atol=1e-12)
    assert result.per_user["hit_rate@1"].tolist() == [float(top0[0] in {2, 5}),
                                                      float(top1[0] == 0)]  # fmt: skip
    assert result.n_cold_items == 0 and result.protocol == "fold_in"


def test_fold_in_matches_a_float64_closed_form_als_fold_in():
    """x = (Y^T Y + Y^T (C - I) Y + lambda I)^-1 Y^T C p with c = 1 + alpha r, solved in float64
    on the model's item factors; scores Y x; the fold-in items excluded."""
    from alsresearch.als import ALSModel

    train, fold_in, test = fold_in_case(3)
    model = ALSModel(factors=4, iterations=6, alpha=2.0, regularization=0.3, dtype="float64",
                     solver="cholesky", random_state=1).fit(train)  # fmt: skip
    result = evaluate(model, train, test, k=4, protocol="fold_in", fold_in=fold_in,
                      metrics=["ndcg"])  # fmt: skip
    Y = model.item_factors.astype(np.float64)
    for row, r in enumerate((0, 1)):
        counts = fold_in.matrix[r].toarray().ravel()
        c = 1 + 2.0 * counts
        p = (counts > 0).astype(float)
        A = Y.T @ (c[:, None] * Y) + 0.3 * np.eye(4)
        x = np.linalg.solve(A, Y.T @ (c * p))
        scores = Y @ x
        top = [i for i in np.lexsort((np.arange(8), -scores)) if counts[i] == 0][:4]
        assert result.recommended[row].tolist() == top
        relevant = set(test.matrix[r].indices)
        dcg = sum(1 / log2(k + 2) for k, i in enumerate(top) if i in relevant)
        idcg = sum(1 / log2(k + 2) for k in range(min(4, len(relevant))))
        assert result.per_user["ndcg@4"][row] == pytest.approx(dcg / idcg, abs=1e-12)
        # and the public path for one anonymous user gives the same list
        items = train.item_ids[fold_in.matrix[r].indices]
        listed, _ = model.recommend_for_history(items, fold_in.matrix[r].data, n=4)
        assert listed.tolist() == train.item_ids[top].tolist()


def test_fold_in_reports_the_deeper_metrics_by_default():
    train, fold_in, test = fold_in_case()
    model = PopularityModel().fit(train)
    result = evaluate(model, train, test, protocol="fold_in", fold_in=fold_in)
    assert list(result.metrics) == [f"{m}@10" for m in ALL_METRICS] + [
        "recall@20", "recall@50", "ndcg@100",
    ]  # fmt: skip
    assert result.recommended.shape == (2, 100) and (result.recommended[:, 8:] == -1).all()
    assert result.to_dict()["protocol"] == "fold_in"
    assert "ndcg@100" not in evaluate(model, train, test).metrics  # the standard protocol


def test_fold_in_errors_name_the_problem():
    train, fold_in, test = fold_in_case()
    model = PopularityModel().fit(train)
    with pytest.raises(ValueError, match="protocol 'fold_in' needs fold_in="):
        evaluate(model, train, test, protocol="fold_in")
    with pytest.raises(ValueError, match="fold_in is only used by protocol='fold_in'"):
        evaluate(model, train, test, fold_in=fold_in)
    with pytest.raises(ValueError, match=r"protocol must be one of \['fold_in', 'standard'\]"):
        evaluate(model, train, test, protocol="strong", fold_in=fold_in)
    # a test user who trains is not held out
    leaky = test.with_matrix(test.matrix + sp.csr_matrix(([1.0], ([5], [6])), shape=(12, 8)))
    with pytest.raises(
        ValueError, match=r"1 evaluated users have training cells \(e.g. user 'u5'\)"
    ):
        evaluate(model, train, leaky, protocol="fold_in", fold_in=fold_in)
    no_history = fold_in.with_matrix(fold_in.matrix.multiply(np.arange(12)[:, None] != 1).tocsr())
    with pytest.raises(ValueError, match=r"no fold-in history to rank from \(e.g. user 'u1'\)"):
        evaluate(model, train, test, protocol="fold_in", fold_in=no_history)
    other = Interactions(fold_in.matrix, fold_in.user_ids[::-1].copy(), fold_in.item_ids)
    with pytest.raises(ValueError, match="not in train's id space"):
        evaluate(model, train, test, protocol="fold_in", fold_in=other)


@pytest.mark.realdata
def test_fold_in_never_refits_and_matches_recommend_for_history_on_movielens_users(movielens):
    """user_holdout -> fit once -> evaluate: each held-out user's list is what
    recommend_for_history gives for their fold-in history."""
    from alsresearch.als import ALSModel
    from alsresearch.split import user_holdout

    train, fold_in, test = user_holdout(movielens, 15, seed=0)
    model = ALSModel(factors=8, iterations=3, random_state=0).fit(train)
    factors = model.item_factors.copy()
    result = evaluate(model, train, test, k=10, protocol="fold_in", fold_in=fold_in, chunk_size=4)
    np.testing.assert_array_equal(model.item_factors, factors)  # nothing was refitted
    assert result.n_users == 15
    rows = train.user_index(result.per_user["user_id"].tolist())
    for r, row in enumerate(rows):
        history = fold_in.matrix[row]
        listed, _ = model.recommend_for_history(
            train.item_ids[history.indices], history.data, n=100
        )
        assert train.item_ids[result.recommended[r]].tolist() == listed.tolist()


@pytest.mark.realdata
def test_a_saved_model_is_scored_under_the_fold_in_protocol_it_was_trained_for(movielens):
    from alsresearch.evaluate import evaluate_trained_model
    from alsresearch.records import training_record
    from alsresearch.source import DataSource
    from alsresearch.split import SplitSpec, user_holdout

    source, split = DataSource(), SplitSpec(protocol="fold_in", holdout_users=50)
    train, fold_in, test = user_holdout(source.load(), 50, fold_in_fraction=0.8, seed=42)
    model = PopularityModel().fit(train)
    model.training = training_record(source, split)
    table, _, _, scored_test = evaluate_trained_model(model, source, split)
    expected = evaluate(model, train, test, protocol="fold_in", fold_in=fold_in).metrics
    assert scored_test.nnz == test.nnz
    assert table.loc["popularity", list(expected)].to_dict() == pytest.approx(expected)
    assert "ndcg@100_low" in table.columns
    with pytest.raises(SpecMismatchError, match="protocol 'fold_in' there, 'standard' here"):
        evaluate_trained_model(model, source, SplitSpec())
