"""Baselines every model must beat: item popularity, seeded random scores and EASE.

All are :class:`~alsresearch.base.Recommender` subclasses, so evaluation, tuning, export and
serving take them exactly as they take :class:`~alsresearch.als.ALSModel`.

- :class:`PopularityModel` scores item ``i`` by ``pop(i)`` = the number of distinct users with
  at least one interaction with ``i`` in the training data (counts are not summed: one user
  clicking an item 50 times counts once). Every user gets the same ranking, minus their seen
  items; ties go to the lower item index (the shared top-k kernel's rule). It is also the
  cold-start fallback of the service: ``recommend_for_history`` returns the most popular items
  not in the given history.
- :class:`RandomModel` gives every (user, item) pair a pseudo-random score in [0, 1) that is a
  pure function of ``(random_state, user row, item index)`` (a SplitMix64 hash), so the same
  seed gives the same lists whatever the batch size, order or chunking, and after save/load.
- :class:`EASEModel` is Steck's (2019) closed-form item-item linear model: a strong baseline
  with one parameter, exact rather than iterative, whose cost is set by the number of items
  (dense ``n_items x n_items`` matrices), not the number of users.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotri

from alsresearch import limits
from alsresearch.base import Recommender
from alsresearch.checks import check_float, check_int
from alsresearch.data import coerce_interactions

__all__ = ["EASEModel", "PopularityModel", "RandomModel", "ease_memory_bytes"]


class PopularityModel(Recommender):
    """Recommend the items the most distinct training users interacted with.

    After ``fit``, ``popularity[i]`` (float64) is the number of distinct training users of item
    ``i``. The score of item ``i`` is its share of the training users, ``popularity[i] /
    n_users`` in [0, 1] (as float32): a fixed scale whatever the size of the data, so the
    service's fallback answers are comparable across models and days (a raw count is not).
    """

    model_type = "popularity"

    popularity: np.ndarray

    def fit(self, X, **kwargs) -> Self:
        """Count distinct users per item in ``X`` (Interactions or a scipy sparse matrix)."""
        if kwargs:
            raise TypeError(f"PopularityModel.fit got unexpected arguments {sorted(kwargs)}")
        interactions = coerce_interactions(X)
        m = interactions.matrix
        self.popularity = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
        self._set_training_data(interactions)
        return self

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        return np.broadcast_to(self._share(), (len(rows), self.n_items)).copy()

    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self._share()

    def _share(self) -> np.ndarray:
        """The scores: each item's share of the training users (0 for a model of no users)."""
        return (self.popularity / max(self.n_users, 1)).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        pop = np.asarray(state.get("popularity"), dtype=np.float64)
        if pop.shape != (self.n_items,):
            raise ValueError(
                f"popularity must have one entry per item ({self.n_items}), got shape {pop.shape}"
            )
        if not np.all(np.isfinite(pop)) or np.any(pop < 0):
            raise ValueError("popularity must be finite and >= 0")
        self.popularity = pop


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
#: user key of anonymous users (recommend_for_history): outside every real row number
_ANONYMOUS = np.uint64(2**63 - 1)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (wrapping arithmetic): a well-mixed hash of ``x``."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _uniform(seed: int, users: np.ndarray, n_items: int) -> np.ndarray:
    """``(len(users), n_items)`` float32 in [0, 1), a pure function of (seed, user, item)."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed) ^ _splitmix64(users.astype(np.uint64)))
        h = _splitmix64(key[:, None] ^ np.arange(n_items, dtype=np.uint64)[None, :] * _GOLDEN)
    return ((h >> np.uint64(40)).astype(np.float32)) * np.float32(2.0**-24)


class RandomModel(Recommender):
    """Random scores, reproducible from ``random_state``.

    ``random_state=None`` draws a seed at ``fit`` time; it is stored with the model, so a saved
    and reloaded model gives the same lists.
    """

    model_type = "random"

    def __init__(self, random_state: int | None = 0) -> None:
        if random_state is not None:
            random_state = check_int(random_state, "random_state", low=0, high=2**63 - 1)
        self.random_state = random_state

    def fit(self, X, **kwargs) -> Self:
        """Remember the id space of ``X``; nothing is learned."""
        if kwargs:
            raise TypeError(f"RandomModel.fit got unexpected arguments {sorted(kwargs)}")
        interactions = coerce_interactions(X)
        if self.random_state is None:
            self.seed_ = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        else:
            self.seed_ = self.random_state
        self._set_training_data(interactions)
        return self

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return _uniform(self.seed_, np.asarray(rows, dtype=np.int64), self.n_items)

    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return _uniform(self.seed_, np.array([_ANONYMOUS]), self.n_items)[0]

    def get_config(self) -> dict[str, Any]:
        return {"random_state": self.random_state}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"seed": np.array(self.seed_, dtype=np.int64)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        seed = np.asarray(state.get("seed"))
        if seed.shape != () or seed.dtype.kind not in "iu" or int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer scalar, got {seed!r}")
        self.seed_ = int(seed)


#: target bytes of one block of rows of the dense matrices (the scratch of a fit)
_BLOCK_BYTES = 32 * 2**20
_GIB = 2**30


def ease_memory_bytes(n_items: int) -> int:
    """Bytes an :class:`EASEModel` fit on ``n_items`` items holds at its peak: the float64
    Gram matrix, inverted in place, and the float32 weights, plus a block of scratch rows."""
    return 12 * n_items * n_items + 2 * _BLOCK_BYTES


def _check_ease_size(n_items: int, n_catalogue: int) -> None:
    """Raise ValueError before anything dense is allocated when ``n_items`` is over
    :data:`~alsresearch.limits.MAX_EASE_ITEMS` or its matrices would not fit in the memory available now."""
    what = f"n_items = {n_items:,} (items with training interactions, of {n_catalogue:,})"
    if n_items > limits.MAX_EASE_ITEMS:
        raise ValueError(
            f"EASE needs dense n_items x n_items matrices, and {what} is over the limit of "
            f"MAX_EASE_ITEMS = {limits.MAX_EASE_ITEMS:,} items (alsresearch.limits); use ALS for "
            "a catalogue this large, or fit on fewer items"
        )
    need, available = ease_memory_bytes(n_items), limits.available_memory()
    if need > available:
        raise ValueError(
            f"EASE with {what} needs {need / _GIB:.2f} GiB (float64 Gram/inverse and float32 "
            f"weights), but only {available / _GIB:.2f} GiB of memory is available"
        )


def _block_rows(n: int) -> int:
    """Rows of an ``n``-column float64 block of about :data:`_BLOCK_BYTES`."""
    return max(1, _BLOCK_BYTES // (8 * max(n, 1)))


def _ease_weights(x: sp.csr_matrix, regularization: float) -> np.ndarray:
    """Steck's closed form on a binary users x items CSR ``x`` (float64, every column used):
    ``B = I - P / diag(P)`` column-wise with ``P = (x^T x + lambda I)^-1``, ``diag(B) = 0``,
    returned as float32. Work is in float64, in place: Cholesky (LAPACK potrf) and the inverse
    from it (potri) of the symmetric positive definite ``x^T x + lambda I``."""
    n = x.shape[1]
    if n == 0:  # no item has a training interaction: LAPACK refuses empty matrices
        return np.zeros((0, 0), dtype=np.float32)
    step = _block_rows(n)
    xt = x.T.tocsr()
    gram = np.empty((n, n), dtype=np.float64)
    for a in range(0, n, step):  # the Gram matrix block of rows by block: no sparse n x n copy
        (xt[a : a + step] @ x).toarray(out=gram[a : a + step])
    gram[np.diag_indices(n)] += regularization
    # gram is symmetric, so its transpose is the same matrix in Fortran order: LAPACK works on
    # it in place, and the upper triangle it writes is the lower triangle of the C-order array
    factor, info = dpotrf(gram.T, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        inverse, info = dpotri(factor, lower=False, overwrite_c=True)
        if not (np.shares_memory(gram, factor) and np.shares_memory(gram, inverse)):
            raise RuntimeError("LAPACK did not invert the Gram matrix in place")  # never expected
    if info != 0:
        raise ValueError(
            f"regularization = {regularization} is too small: x^T x + lambda I is not "
            f"numerically positive definite (LAPACK info {info}); use a larger regularization"
        )
    for a in range(0, n, step):  # copy the lower triangle (valid) onto the upper one
        b = min(a + step, n)
        gram[a:b, b:] = gram[b:, a:b].T
        block = gram[a:b, a:b]
        upper = np.triu_indices(b - a, 1)
        block[upper] = block.T[upper]
    scale = -1.0 / np.diag(gram)  # column j divided by P_jj, negated
    weights = np.empty((n, n), dtype=np.float32)
    for a in range(0, n, step):
        np.multiply(gram[a : a + step], scale, out=weights[a : a + step], casting="same_kind")
    del gram
    weights[np.diag_indices(n)] = 0.0
    if not np.all(np.isfinite(weights)):
        raise ValueError(
            f"regularization = {regularization} gives non-finite EASE weights; use a larger one"
        )
    return weights


class EASEModel(Recommender):
    """EASE, "Embarrassingly Shallow Autoencoders for Sparse Data" (Steck, WWW 2019).

    An item-item weight matrix ``B`` with a zero diagonal, fitted in closed form to reproduce
    the binary training matrix ``X`` (``x_ui = 1`` when user ``u`` has item ``i``, whatever
    the count, as Steck does for implicit data):
    ``min_B |X - X B|_F^2 + lambda |B|_F^2`` subject to ``diag(B) = 0`` has the solution
    ``P = (X^T X + lambda I)^-1``, ``B_ij = -P_ij / P_jj`` for ``i != j``, ``B_jj = 0``.
    A user's scores are ``x_u B``, the sum of the rows of ``B`` of the items they have; for a
    history (fold-in) the same, from the items given with a weight > 0.

    Counts never enter: the model sees only which items each user has (the model file keeps
    only that, so the scores after ``load`` are those after ``fit``). ``B`` is computed in
    float64 (Cholesky of ``X^T X + lambda I``, then its inverse) and stored as float32.

    Items without a training interaction have zero rows and columns in ``B`` exactly (their
    block of ``P`` is ``I / lambda``), so the dense matrices cover only the items with one:
    ``active_items`` (sorted catalogue indices) and ``weights`` (``B`` on them). At most
    :data:`~alsresearch.limits.MAX_EASE_ITEMS` of them (12 bytes x n_items^2 at the peak of a fit, checked against the
    memory available too, before anything dense is allocated): EASE is for catalogues of up
    to tens of thousands of items; fitting takes O(n_items^3) time.

    ``regularization`` (lambda, > 0; default 200): Steck uses 500 on ML-20M (20k items), 1000
    on Netflix and 200 on the Million Song Data. On the shipped ml-latest-small, 200 was the best
    of 100, 200, 500 and 1000 by NDCG@10 on a validation split of the training part (the test
    part unseen), 500 within 2% of it. Larger values shrink ``B`` towards zero.
    """

    model_type = "ease"

    active_items: np.ndarray
    weights: np.ndarray

    def __init__(self, regularization: float = 200.0) -> None:
        self.regularization = check_float(regularization, "regularization", low=0, low_open=True)

    def fit(self, X, **kwargs) -> Self:
        """Fit ``B`` on the binarised ``X`` (Interactions or a scipy sparse matrix of counts)."""
        if kwargs:
            raise TypeError(f"EASEModel.fit got unexpected arguments {sorted(kwargs)}")
        interactions = coerce_interactions(X)
        m = interactions.matrix
        active = np.flatnonzero(np.bincount(m.indices, minlength=m.shape[1]))
        _check_ease_size(len(active), m.shape[1])
        column = _columns(active, m.shape[1])
        binary = sp.csr_matrix(
            (np.ones(m.nnz), column[m.indices], m.indptr), shape=(m.shape[0], len(active))
        )
        weights = _ease_weights(binary, self.regularization)
        self._set_training_data(interactions)  # only once the fit succeeded
        self.active_items, self.weights, self._column = active, weights, column
        return self

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        return self._scores(self.seen[rows])

    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        self._check_fitted()
        item_idx = np.asarray(item_idx, dtype=np.int64)
        has = np.unique(item_idx[np.asarray(weights) > 0])  # binarised, as in fit
        x = sp.csr_matrix(
            (np.ones(len(has), np.float32), has, [0, len(has)]), shape=(1, self.n_items)
        )
        return self._scores(x)[0]

    def _scores(self, x: sp.csr_matrix) -> np.ndarray:
        """``x B`` for binary float32 rows ``x`` over the catalogue, one way for every path (so
        a user's own history scores exactly as the user does): the rows of ``B`` summed in
        float32 in item order by one sparse product. Items without training data have zero
        rows in ``B`` and are dropped from ``x``."""
        cols = self._column[x.indices]
        keep = cols >= 0
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[keep]
        x = sp.csr_matrix(
            (x.data[keep], (rows, cols[keep])), shape=(x.shape[0], len(self.active_items))
        )
        compact = np.asarray(x @ self.weights, dtype=np.float32)
        if len(self.active_items) == self.n_items:
            return compact
        scores = np.zeros((x.shape[0], self.n_items), dtype=np.float32)
        scores[:, self.active_items] = compact
        return scores

    def get_config(self) -> dict[str, Any]:
        return {"regularization": self.regularization}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"active_items": self.active_items, "weights": self.weights}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        active = np.asarray(state.get("active_items"))
        expected = np.flatnonzero(np.bincount(self.seen.indices, minlength=self.n_items))
        if active.dtype.kind not in "iu" or not np.array_equal(active, expected):
            raise ValueError(
                f"active_items must be the {len(expected):,} items with training interactions, "
                f"in order; got {active.dtype} array of shape {active.shape}"
            )
        weights = np.asarray(state.get("weights"))
        n = len(expected)
        if weights.shape != (n, n) or weights.dtype != np.float32:
            raise ValueError(
                f"weights must be a float32 array of shape ({n}, {n}), got {weights.dtype} "
                f"array of shape {weights.shape}"
            )
        if not np.all(np.isfinite(weights)) or np.any(np.diag(weights) != 0):
            raise ValueError("weights must be finite with a zero diagonal")
        self.active_items = expected
        self.weights = weights
        self._column = _columns(expected, self.n_items)


def _columns(active: np.ndarray, n_items: int) -> np.ndarray:
    """Catalogue index -> position in ``active`` (-1 for items not in it)."""
    column = np.full(n_items, -1, dtype=np.int64)
    column[active] = np.arange(len(active))
    return column
