"""Top-k ranking metrics, one formula per function, vectorised over a block of users.

Inputs, for a block of ``b`` users:

- ``recommended``: ``(b, k)`` int array of item indices, best first; ``-1`` pads lists shorter
  than ``k`` (as :func:`alsresearch.topk.topk` returns them) and is never relevant;
- ``relevant``: a ``(b, n_items)`` scipy CSR matrix whose row ``r`` holds user ``r``'s test items
  (any stored value counts as relevant: binary relevance, counts are ignored).

Each per-user function returns a ``(b,)`` float64 array. Write ``rel_i`` for 1 when the item at
rank ``i`` (1-based) is relevant, ``R`` for the number of relevant items of the user and
``k`` for the list length. Users with ``R = 0`` have no defined score: the evaluator only scores
users with at least one test item; here NDCG, recall and MAP are NaN for them (0/0).

Conventions compared with ``implicit.evaluation.ranking_metrics_at_k`` (implicit 0.7):

- NDCG@k: the same (binary gain, ``log2(i + 1)`` discount, ideal DCG over ``min(k, R)``).
- MAP@k: the same (AP divided by ``min(k, R)``).
- recall@k: we divide by ``min(k, R)`` per user, then average over users. implicit's
  ``"precision"`` is ``sum_u hits_u / sum_u min(k, R_u)``: the same ratio pooled over users
  (micro-average) instead of averaged per user, so the two differ unless every user has
  ``R >= k``. Microsoft Recommenders' ``recall_at_k`` divides by ``R`` (no ``min``).
- precision@k: hits / k, with ``k`` the requested length even when the list is padded (a
  user with fewer than ``k`` unseen items cannot reach 1). implicit has no per-user version.
- HitRate@k, MRR@k, coverage and popularity rank: implicit does not report them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "PER_USER_METRICS",
    "coverage_at_k",
    "hit_matrix",
    "hit_rate_at_k",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "per_user_metrics",
    "popularity_rank_at_k",
    "popularity_ranks",
    "precision_at_k",
    "recall_at_k",
]


def _check_recommended(recommended) -> np.ndarray:
    recommended = np.asarray(recommended)
    if recommended.ndim != 2 or recommended.dtype.kind not in "iu":
        raise ValueError(
            f"recommended must be a 2-D integer array (users x k), got {recommended.dtype} "
            f"of shape {recommended.shape}"
        )
    if recommended.shape[1] < 1:
        raise ValueError("recommended must have at least one column (k >= 1)")
    return recommended


def hit_matrix(recommended, relevant) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, R)``: ``hits[r, i]`` is True when ``recommended[r, i]`` is in row ``r`` of
    ``relevant``; ``R[r]`` is the number of relevant items of row ``r``.

    One sorted-key lookup for the whole block: cell ``(r, j)`` has key ``r * n_items + j``.
    """
    recommended = _check_recommended(recommended)
    rel = sp.csr_matrix(relevant)
    b, k = recommended.shape
    if rel.shape[0] != b:
        raise ValueError(f"relevant has {rel.shape[0]} rows, recommended has {b}")
    n_items = rel.shape[1]
    if recommended.size and recommended.max() >= n_items:
        raise ValueError(
            f"recommended holds item index {int(recommended.max())}, but relevant has {n_items} columns"
        )
    if not rel.has_canonical_format:  # sorted indices make the keys below sorted
        rel = rel.copy()
        rel.sum_duplicates()
    n_rel = np.diff(rel.indptr).astype(np.int64)
    rows = np.repeat(np.arange(b, dtype=np.int64), n_rel)
    keys = rows * n_items + rel.indices
    query = np.arange(b, dtype=np.int64)[:, None] * n_items + recommended
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    hits = (recommended >= 0) & (keys[pos] == query) if len(keys) else np.zeros((b, k), bool)
    return hits, n_rel


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _ndcg(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """DCG / IDCG, DCG = sum_i rel_i / log2(i + 1), IDCG = sum_{i <= min(k, R)} 1 / log2(i + 1)."""
    disc = _discounts(hits.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, hits.shape[1])]
    with np.errstate(invalid="ignore", divide="ignore"):
        # a row sum, not hits @ disc: BLAS may sum in a shape-dependent order
        return np.where(hits, disc, 0.0).sum(axis=1) / np.where(n_rel > 0, ideal, np.nan)


def _hit_rate(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """1 when at least one of the top k is relevant, else 0."""
    return hits.any(axis=1).astype(np.float64)


def _precision(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """(number of relevant items in the top k) / k."""
    return hits.sum(axis=1) / hits.shape[1]


def _recall(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """(number of relevant items in the top k) / min(k, R)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits.sum(axis=1) / np.where(n_rel > 0, np.minimum(n_rel, hits.shape[1]), np.nan)


def _map(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """AP@k = (1 / min(k, R)) * sum_i rel_i * P@i, with P@i = (relevant in the top i) / i."""
    k = hits.shape[1]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (precision_at_i * hits).sum(axis=1) / np.where(
            n_rel > 0, np.minimum(n_rel, k), np.nan
        )


def _mrr(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """1 / (rank of the first relevant item in the top k), 0 when there is none."""
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


#: name -> formula over (hits, R); the evaluator computes the hits once per block
PER_USER_METRICS = {
    "ndcg": _ndcg,
    "hit_rate": _hit_rate,
    "precision": _precision,
    "recall": _recall,
    "map": _map,
    "mrr": _mrr,
}


def per_user_metrics(recommended, relevant, names=tuple(PER_USER_METRICS)) -> dict[str, np.ndarray]:
    """Several per-user metrics from one hit lookup: ``{name: (b,) array}``."""
    unknown = [n for n in names if n not in PER_USER_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(PER_USER_METRICS)}")
    hits, n_rel = hit_matrix(recommended, relevant)
    return {name: PER_USER_METRICS[name](hits, n_rel) for name in names}


def ndcg_at_k(recommended, relevant) -> np.ndarray:
    """NDCG@k = DCG@k / IDCG@k with binary gains.

    ``DCG@k = sum_{i=1..k} rel_i / log2(i + 1)``, ``IDCG@k = sum_{i=1..min(k, R)} 1 / log2(i + 1)``
    (the DCG of a list with all relevant items first). In [0, 1]; 1 for a perfect list.
    """
    return _ndcg(*hit_matrix(recommended, relevant))


def hit_rate_at_k(recommended, relevant) -> np.ndarray:
    """HitRate@k = 1 if ``sum_{i=1..k} rel_i > 0`` else 0."""
    return _hit_rate(*hit_matrix(recommended, relevant))


def precision_at_k(recommended, relevant) -> np.ndarray:
    """Precision@k = ``sum_{i=1..k} rel_i / k`` (``k`` = list length, padding included)."""
    return _precision(*hit_matrix(recommended, relevant))


def recall_at_k(recommended, relevant) -> np.ndarray:
    """Recall@k = ``sum_{i=1..k} rel_i / min(k, R)`` (so a perfect list scores 1; see the
    module notes for how this compares with implicit and Microsoft Recommenders)."""
    return _recall(*hit_matrix(recommended, relevant))


def map_at_k(recommended, relevant) -> np.ndarray:
    """AP@k = ``(1 / min(k, R)) * sum_{i=1..k} rel_i * P@i``; MAP@k is its mean over users."""
    return _map(*hit_matrix(recommended, relevant))


def mrr_at_k(recommended, relevant) -> np.ndarray:
    """Reciprocal rank@k = ``1 / min{i <= k : rel_i = 1}``, 0 without a hit; MRR is its mean."""
    return _mrr(*hit_matrix(recommended, relevant))


def coverage_at_k(recommended, n_items: int) -> float:
    """Catalogue coverage@k = |distinct items in all the lists| / n_items (padding ignored).

    One figure for the whole set of users (not a per-user mean). A constant list of ``k``
    distinct items covers ``k / n_items``.
    """
    recommended = _check_recommended(recommended)
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    shown = np.zeros(n_items, dtype=bool)
    shown[recommended[recommended >= 0]] = True
    return float(shown.sum() / n_items)


def popularity_ranks(train) -> np.ndarray:
    """Popularity rank of every item in ``train`` (a users x items sparse matrix).

    Popularity = number of distinct users with the item (as in
    :class:`~alsresearch.baselines.PopularityModel`); rank 1 = most popular, ties broken by the
    lower item index (the top-k kernel's rule), so ranks are a permutation of 1..n_items.
    """
    m = sp.csr_matrix(train)
    pop = np.bincount(m.indices, minlength=m.shape[1])
    order = np.lexsort((np.arange(m.shape[1]), -pop))
    ranks = np.empty(m.shape[1], dtype=np.int64)
    ranks[order] = np.arange(1, m.shape[1] + 1)
    return ranks


def popularity_rank_at_k(recommended, item_ranks: np.ndarray) -> np.ndarray:
    """Mean popularity rank of a user's recommended items (padding ignored; NaN for an empty list).

    With ``item_ranks`` from :func:`popularity_ranks`: 1 means the single most popular training
    item. A popularity list scores about ``(k + 1) / 2``; the lower the figure, the more a model
    repeats the head of the catalogue. Compare models on the same training data only.
    """
    recommended = _check_recommended(recommended)
    valid = recommended >= 0
    ranks = np.where(valid, np.asarray(item_ranks)[np.where(valid, recommended, 0)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranks.sum(axis=1) / np.where(valid.any(axis=1), valid.sum(axis=1), np.nan)
