"""Ranking metrics: hand-computed values on small cases, and hypothesis properties."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from alsresearch.metrics import (
    coverage_at_k,
    hit_matrix,
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_user_metrics,
    popularity_rank_at_k,
    popularity_ranks,
    precision_at_k,
    recall_at_k,
)

N_ITEMS = 12


def relevant_rows(sets: list[set[int]], n_items: int = N_ITEMS) -> sp.csr_matrix:
    rows = [r for r, s in enumerate(sets) for _ in s]
    cols = [c for s in sets for c in sorted(s)]
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(sets), n_items))


# Four users, k = 5. Worked by hand:
#  0: list 3 1 7 2 9, relevant {1, 2, 4} (R=3): hits at ranks 2 and 4
#  1: list 5 (padded), relevant {5}: hit at rank 1, nothing else to show
#  2: list 0 1 2 3 4, relevant {8, 9}: no hit
#  3: list 6 10 0 11 1, relevant {0..6} (R=7 > k): hits at ranks 1, 3, 5
RECOMMENDED = np.array(
    [
        [3, 1, 7, 2, 9],
        [5, -1, -1, -1, -1],
        [0, 1, 2, 3, 4],
        [6, 10, 0, 11, 1],
    ]
)
RELEVANT = relevant_rows([{1, 2, 4}, {5}, {8, 9}, set(range(7))])

EXPECTED = {
    ndcg_at_k: [
        (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4)),
        1.0,
        0.0,
        (1 + 1 / log2(4) + 1 / log2(6)) / sum(1 / log2(i + 1) for i in range(1, 6)),
    ],
    hit_rate_at_k: [1.0, 1.0, 0.0, 1.0],
    precision_at_k: [2 / 5, 1 / 5, 0.0, 3 / 5],
    recall_at_k: [2 / 3, 1.0, 0.0, 3 / 5],
    map_at_k: [(1 / 2 + 2 / 4) / 3, 1.0, 0.0, (1 / 1 + 2 / 3 + 3 / 5) / 5],
    mrr_at_k: [1 / 2, 1.0, 0.0, 1.0],
}


@pytest.mark.parametrize("metric", list(EXPECTED), ids=lambda f: f.__name__)
def test_hand_computed_values(metric):
    np.testing.assert_allclose(metric(RECOMMENDED, RELEVANT), EXPECTED[metric], rtol=1e-12)


def test_per_user_metrics_equals_the_single_functions():
    together = per_user_metrics(RECOMMENDED, RELEVANT)
    for metric, expected in EXPECTED.items():
        name = metric.__name__.removesuffix("_at_k")
        np.testing.assert_allclose(together[name], expected, rtol=1e-12)


def test_hits_ignore_padding_and_counts():
    rel = RELEVANT.copy()
    rel.data[:] = 7.0  # counts do not matter: binary relevance
    hits, n_rel = hit_matrix(RECOMMENDED, rel)
    assert hits.tolist()[0] == [False, True, False, True, False]
    assert hits.tolist()[1] == [True, False, False, False, False]
    assert n_rel.tolist() == [3, 1, 2, 7]


def test_users_without_relevant_items_are_undefined():
    rec = np.array([[0, 1]])
    empty = relevant_rows([set()])
    assert np.isnan(ndcg_at_k(rec, empty)[0])
    assert np.isnan(recall_at_k(rec, empty)[0])
    assert np.isnan(map_at_k(rec, empty)[0])
    assert hit_rate_at_k(rec, empty)[0] == 0.0


def test_coverage_hand_computed():
    assert coverage_at_k(np.array([[0, 1, 2], [2, 3, -1]]), 10) == pytest.approx(4 / 10)


def test_popularity_ranks_hand_computed():
    # distinct users per item: [2, 3, 0, 3] (user 0 has item 1 with count 5: counts once)
    train = sp.csr_matrix(
        np.array(
            [
                [1, 5, 0, 1],
                [1, 1, 0, 1],
                [0, 1, 0, 1],
            ],
            dtype=float,
        )
    )
    ranks = popularity_ranks(train)
    assert ranks.tolist() == [3, 1, 4, 2]  # items 1 and 3 tie: lower index ranks first
    np.testing.assert_allclose(
        popularity_rank_at_k(np.array([[1, 2], [0, -1]]), ranks), [(1 + 4) / 2, 3.0]
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([1, 2, 3]), "2-D integer"),
        (np.array([[0.5, 1.0]]), "2-D integer"),
        (np.array([[0, 99]]), "item index 99"),
    ],
)
def test_bad_input_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(bad, relevant_rows([{1}]))


def test_row_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="relevant has 2 rows"):
        ndcg_at_k(np.array([[0, 1]]), relevant_rows([{1}, {2}]))


# ---------------------------------------------------------------------- properties


@st.composite
def ranked_case(draw):
    n_items = draw(st.integers(2, 40))
    k = draw(st.integers(1, n_items))
    n_users = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    recommended = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    sets = [
        set(rng.choice(n_items, size=rng.integers(1, n_items + 1), replace=False).tolist())
        for _ in range(n_users)
    ]
    return recommended, sets, n_items


@settings(max_examples=150, deadline=None)
@given(ranked_case())
def test_every_metric_lies_in_0_1(case):
    recommended, sets, n_items = case
    values = per_user_metrics(recommended, relevant_rows(sets, n_items))
    for name, v in values.items():
        assert np.all((v >= 0) & (v <= 1 + 1e-12)), name


@settings(max_examples=150, deadline=None)
@given(ranked_case())
def test_a_perfect_list_scores_1(case):
    recommended, sets, n_items = case
    k = recommended.shape[1]
    # put each user's relevant items first, then the rest
    perfect = np.stack(
        [np.array(sorted(s) + [i for i in range(n_items) if i not in s])[:k] for s in sets]
    )
    values = per_user_metrics(perfect, relevant_rows(sets, n_items))
    for name in ("ndcg", "hit_rate", "recall", "map", "mrr"):
        np.testing.assert_allclose(values[name], 1.0, rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(values["precision"], [min(len(s), k) / k for s in sets])


@settings(max_examples=150, deadline=None)
@given(ranked_case())
def test_no_hits_score_0(case):
    recommended, _, n_items = case
    k = recommended.shape[1]
    if k == n_items:
        return  # every item is shown: there is no room for a relevant item outside the list
    sets = [set(range(n_items)) - set(row.tolist()) for row in recommended]
    values = per_user_metrics(recommended, relevant_rows(sets, n_items))
    for name, v in values.items():
        np.testing.assert_array_equal(v, 0.0, err_msg=name)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.integers(0, 50), st.integers(1, 20), st.integers(0, 10_000))
def test_coverage_of_a_constant_list_is_k_over_n_items(k, extra, n_users, seed):
    n_items = k + extra
    row = np.random.default_rng(seed).permutation(n_items)[:k]
    assert coverage_at_k(np.tile(row, (n_users, 1)), n_items) == pytest.approx(k / n_items)
