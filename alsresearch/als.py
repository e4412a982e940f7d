"""Implicit-feedback matrix factorisation by Alternating Least Squares.

Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
For raw counts ``r_ui`` the model sets the preference ``p_ui = 1[r_ui > 0]`` and the confidence
``c_ui = 1 + alpha * r_ui`` (or ``1 + alpha * log1p(r_ui)``; ``confidence="linear"``: implicit's
``alpha * r_ui`` on observed cells and 1 elsewhere), then minimises::

    L(X, Y) = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2

with every ``lambda_u = lambda_i = lambda`` by default (``regularization_scaling`` varies them)

over user factors ``X`` (n_users x k) and item factors ``Y`` (n_items x k), alternating exact
(or conjugate-gradient) solves of every user with ``Y`` fixed and every item with ``X`` fixed.
The kernels live in :mod:`alsresearch._kernels`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  load the BLAS numba calls before ThreadpoolController
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from alsresearch import _kernels, _quantized
from alsresearch._jit import chunk_bounds, cost_bounds, kernel_threads, parallel_for
from alsresearch.base import Recommender, validate_n
from alsresearch.checks import check_choice, check_float, check_int
from alsresearch.data import Interactions, coerce_interactions
from alsresearch.limits import MAX_CG_STEPS, MAX_FACTORS, MAX_ITERATIONS, check_factor_memory
from alsresearch.topk import topk

__all__ = ["ALSConfig", "ALSModel", "confidence_minus_one", "objective"]

#: rows per scratch block in the kernels (small enough to balance power-law rows across threads)
_BLOCK = 64

#: a half-sweep runs as kernel calls on ranges of whole blocks of near-equal estimated cost
#: (``_Side.cost``), claimed by the threads as they free up (:func:`alsresearch._jit.
#: parallel_for`): at least this many ranges per thread, so a few heavy rows do not leave a
#: thread idle, and at most ``_UNIT_BLOCKS`` blocks a range on large data, so Ctrl-C (seen
#: between calls) stops a fit within milliseconds. The results are those of one call.
_UNITS_PER_THREAD = 8
_UNIT_BLOCKS = 16

#: ``_gram`` sums the products of this many rows at a time, on the kernels' threads (fixed, so
#: the sum does not depend on the number of threads)
_GRAM_ROWS = 8192

#: ``topk_rows`` answers through the exact screen of :mod:`alsresearch._quantized` for top-n up
#: to this n; a longer list ranks much of the catalogue, where the screen's candidate set grows
#: and one matrix product with the shared top-k kernel does no more work.
_SCREEN_MAX_N = 1000
#: ... and only for models where it pays for its compile (seconds, once per machine): a
#: catalogue of at least ``_SCREEN_MIN_ITEMS`` items (where one user's scan of the float
#: factors takes a few hundred microseconds), or at least ``_SCREEN_MIN_SCORES`` user x item
#: scores (what one evaluation or tuning trial of the model ranks). Below both, one matrix
#: product and the shared top-k kernel answer as fast (MovieLens ml-latest-small: 610 x 9742).
_SCREEN_MIN_ITEMS = 1 << 15
_SCREEN_MIN_SCORES = 1 << 27

Solver = Literal["cholesky", "cg"]
Scaling = Literal["raw", "log"]
Confidence = Literal["hkv", "linear"]
Initialization = Literal["normal", "uniform"]
RegularizationScaling = Literal["none", "count", "frequency"]
_DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class ALSConfig:
    """Hyperparameters of :class:`ALSModel` (Hu, Koren & Volinsky 2008). Validated on creation."""

    factors: int = 64
    """k, the number of latent factors per user and per item (rows of ``X`` and ``Y``)."""

    iterations: int = 15
    """Full sweeps (all users, then all items). Each exact sweep never increases the loss."""

    alpha: float = 40.0
    """Confidence slope: ``c_ui = 1 + alpha * r_ui`` (``scaling="raw"``), so an item seen
    ``r`` times weighs ``1 + alpha r`` times an unseen one. The paper found alpha = 40 best on
    its TV data. alpha = 0 gives plain (unweighted) least squares on the 0/1 matrix."""

    regularization: float = 0.01
    """lambda in ``lambda (|X|^2 + |Y|^2)``; it also keeps every per-user system
    ``Y^T C_u Y + lambda I`` positive definite, so it must be > 0. Not scaled by counts (the same
    convention as implicit's CPU ALS)."""

    regularization_scaling: RegularizationScaling = "none"
    """How lambda varies by row. ``"none"``: one lambda for every row, ``lambda (|X|^2 +
    |Y|^2)``. ``"count"``: row ``u`` is regularized by ``lambda * n_u``, its number of stored
    cells (ALS-WR, Zhou et al. 2008; what Spark MLlib's implicit ALS does), and item rows by
    ``lambda * n_i``; a row with no cells gets ``lambda``. ``"frequency"``: ``lambda *
    (w_u / mean_w) ** regularization_exponent``, with ``w_u = sum_i c_ui`` the row's total
    confidence weight over all items (observed or not) and ``mean_w`` its mean over the rows of
    that side (Rendle, Krichene, Zhang & Koren 2022's frequency regularization, in this model's
    weights): lambda keeps its meaning at the average row, so one lambda range serves every
    exponent, and exponent 0 is ``"none"``."""

    regularization_exponent: float = 1.0
    """nu of ``regularization_scaling="frequency"`` (ignored by the other modes; >= 0)."""

    solver: Solver = "cg"
    """``"cholesky"``: every row solved exactly, ``x_u = (Y^T C_u Y + lambda I)^{-1} Y^T C_u p_u``,
    in the basis where ``Y^T Y + lambda I`` is the identity (one Cholesky per half-sweep): a
    row with fewer cells than k solves an nnz_u x nnz_u system, O(k nnz_u^2 + nnz_u^3), a
    longer row the k x k one, O(k^2 nnz_u + k^3). ``"cg"``: ``cg_steps`` conjugate-gradient
    steps per row on the same system, warm-started from the previous factors (Takacs, Pilaszy &
    Tikk 2011) and preconditioned by the shared part ``Y^T Y + lambda I`` (a step costs
    O(k nnz_u), plus O(k^2) per row to change basis). The trade-off: CG does less work per
    row and so fits faster, but its sweeps are inexact, so its loss ends slightly above the
    exact solver's (benchmarks/bench_als.py measures both against implicit; the README quotes
    the figures). Choose ``"cholesky"`` when exact sweeps matter (it never increases the
    loss)."""

    cg_steps: int = 3
    """Conjugate-gradient steps per row and half-sweep (``solver="cg"`` only), warm-started:
    user rows with at least k/2 cells take ``cg_steps``, shorter user rows and every item row
    one fewer (at least one; a row of n cells never takes more than n + 1, which solve it
    exactly). 3 by default: from the ``"normal"`` initialization they end 15 iterations below
    implicit's CG loss (which takes 3 on every row from its uniform start) on every data
    shape benchmarks/bench_als.py reports; k steps would be exact in exact arithmetic."""

    initialization: Initialization = "normal"
    """The initial factors, from ``random_state``. ``"normal"``: independent normal entries
    with variance 1/k (rows of norm about 1, in every direction), so the first half-sweeps see
    factors that span all k dimensions; ``"uniform"``: uniform in [0, 0.01), implicit's start
    (rows nearly parallel and tiny, which the first iterations spend undoing: on the benchmarks'
    data it ends 15 iterations 3-5% higher in loss; :mod:`alsresearch.compat.implicit` uses it
    to match implicit exactly)."""

    confidence: Confidence = "hkv"
    """``"hkv"``: ``c_ui = 1 + alpha * r_ui`` on observed cells (the paper's), 1 elsewhere.
    ``"linear"``: ``c_ui = alpha * r_ui`` on observed cells, 1 elsewhere: the objective of
    implicit's ``AlternatingLeastSquares`` (which takes the matrix it is given as ``r``), for
    like-for-like comparisons and :mod:`alsresearch.compat.implicit`. Needs ``alpha > 0``; an
    observed cell with ``alpha * r < 1`` then weighs less than an unobserved one."""

    scaling: Scaling = "raw"
    """How counts become confidence: ``"raw"`` ``c = 1 + alpha * r``; ``"log"``
    ``c = 1 + alpha * log1p(r)`` (the paper's ``1 + alpha log(1 + r / epsilon)`` with
    epsilon = 1), which damps heavy repeat counts."""

    dtype: str = "float32"
    """Factor and kernel precision, ``"float32"`` (fast, the default) or ``"float64"``. The
    loss is always accumulated in float64."""

    random_state: int | None = None
    """Seed of the initial factors (see ``initialization``). Same seed and data give
    the same factors for any ``num_threads``: every row is solved independently in a fixed order
    of operations, and BLAS is limited to one thread during fit. ``None`` draws a fresh seed."""

    num_threads: int = 0
    """Threads for the kernels; 0 uses all (``NUMBA_NUM_THREADS``, see
    :func:`alsresearch._jit.kernel_threads`)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name, low, high in (
            ("factors", 1, MAX_FACTORS),
            ("iterations", 1, MAX_ITERATIONS),
            ("cg_steps", 1, MAX_CG_STEPS),
            ("num_threads", 0, None),
        ):
            set_(self, name, check_int(getattr(self, name), name, low=low, high=high))
        set_(self, "alpha", check_float(self.alpha, "alpha", low=0.0))
        if self.regularization == 0 and not isinstance(self.regularization, bool):
            raise ValueError(
                "regularization must be > 0, got 0: lambda keeps every per-row system "
                "Y^T Y + lambda I + ... positive definite, and without it a row's system is "
                "singular whenever the other side's factors do not span all k dimensions "
                "(fewer items than factors, or factors that collapse); implicit accepts 0 with "
                "CG, which then returns one of many solutions. Use a small value such as 1e-6"
            )
        set_(
            self,
            "regularization",
            check_float(self.regularization, "regularization", low=0.0, low_open=True),
        )
        check_choice(
            self.regularization_scaling, "regularization_scaling", ("none", "count", "frequency")
        )
        set_(
            self,
            "regularization_exponent",
            check_float(self.regularization_exponent, "regularization_exponent", low=0.0),
        )
        check_choice(self.solver, "solver", ("cholesky", "cg"))
        check_choice(self.scaling, "scaling", ("raw", "log"))
        check_choice(self.confidence, "confidence", ("hkv", "linear"))
        check_choice(self.initialization, "initialization", ("normal", "uniform"))
        if self.confidence == "linear" and self.alpha == 0:
            raise ValueError(
                "confidence='linear' needs alpha > 0 (c = alpha * r would give observed cells "
                "no weight), got alpha = 0"
            )
        dtype = self.dtype
        name = dtype if isinstance(dtype, str) else getattr(np.dtype(dtype), "name", None)
        if name not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        object.__setattr__(self, "dtype", name)
        if self.random_state is not None:
            set_(self, "random_state", check_int(self.random_state, "random_state", low=0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (what the model file stores)."""
        return dataclasses.asdict(self)


def confidence_minus_one(
    counts: np.ndarray, alpha: float, scaling: str, dtype, confidence: str = "hkv"
) -> np.ndarray:
    """``c - 1`` for the raw counts of observed cells: ``alpha * r`` or ``alpha * log1p(r)``
    (see ALSConfig.scaling), one less under ``confidence="linear"`` (``c = alpha * r``)."""
    counts = np.asarray(counts, dtype=np.float64)
    w = alpha * (np.log1p(counts) if scaling == "log" else counts)
    if confidence == "linear":
        w -= 1.0
    return w.astype(dtype)


def _gram(F: np.ndarray, threads: int = 1) -> np.ndarray:
    """``F^T F`` in F's precision: one BLAS product per ``_GRAM_ROWS`` rows, on ``threads``
    threads, summed in row order."""
    n = len(F)
    if n <= _GRAM_ROWS:
        return F.T @ F
    parts = parallel_for(lambda a, b: F[a:b].T @ F[a:b], chunk_bounds(n, _GRAM_ROWS), threads)
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def _cg_schedule(cg_steps: int, k: int, item_side: bool) -> np.ndarray:
    """The ``step_cells`` of :func:`alsresearch._kernels.cg_rows` for one side: step ``j``
    is taken by the rows with at least ``step_cells[j]`` cells.

    User rows take ``cg_steps`` steps, the last one only from k/2 cells: in the whitened basis
    a row with n cells has at most n eigenvalues other than 1, so short rows converge in fewer
    steps. Item rows take one step fewer than ``cg_steps`` (at least one). Chosen by
    measurement (benchmarks/bench_als.py, three data shapes; the README has the figures): about
    a fifth less work per sweep than ``cg_steps`` on every row, at a final loss still below
    implicit CG's; fewer steps still cost more loss than they save time."""
    if item_side:
        return np.zeros(max(1, cg_steps - 1), dtype=np.int64)
    cells = np.zeros(cg_steps, dtype=np.int64)
    if cg_steps > 1:
        cells[-1] = k // 2
    return cells


def _regularised(gram: np.ndarray, lam: float) -> np.ndarray:
    G = gram.copy()
    G[np.diag_indices_from(G)] += G.dtype.type(lam)
    return G


def _loss_from_parts(xtx: np.ndarray, yty: np.ndarray, observed: float, penalty: float) -> float:
    """``trace(X^T X Y^T Y) + observed-cell part + penalty`` in float64, ``penalty`` being
    :func:`_penalty`'s ``sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2``."""
    xtx = xtx.astype(np.float64)
    yty = yty.astype(np.float64)
    return float(np.sum(xtx * yty) + observed + penalty)


def _penalty(F: np.ndarray, lam_rows: np.ndarray, threads: int = 1) -> float:
    """``sum_u lambda_u |f_u|^2`` in float64."""
    return _kernels.weighted_norms(F, lam_rows, _BLOCK, threads) if len(F) else 0.0


class _Rotated:
    """One side's factors during a fit, kept between half-sweeps in the basis of their last one
    (:class:`alsresearch._kernels.SweepBasis`): the true factors are ``F back`` (``back``
    None: ``F`` itself). A half-sweep then moves ``F`` straight from its last basis to the
    next (one BLAS product with ``back into``) and reads the other side through ``back other``,
    instead of moving every row back after each half-sweep: a third fewer basis changes.
    ``F`` is the model's own array, changed in place; :meth:`restore` gives it its true
    values."""

    __slots__ = ("F", "back", "row_norms")

    def __init__(self, F: np.ndarray) -> None:
        self.F = F
        self.back: np.ndarray | None = None
        #: each row's ``|x_u|^2``, written by the last half-sweep's kernel when the rows have
        #: their own lambdas (else None)
        self.row_norms: np.ndarray | None = None

    def times(self, M: np.ndarray) -> np.ndarray:
        """The k x k matrix that takes ``F`` to the true factors times ``M``."""
        return M if self.back is None else self.back @ M

    def moved(self, into: np.ndarray, back: np.ndarray, threads: int) -> None:
        """``F`` to the basis where the true factors are ``F back``, ``into`` being
        ``back``'s inverse (one BLAS product per ``BASIS_ROWS`` rows)."""
        _kernels.rows_times(self.F, self.times(into), self.F, threads)
        self.back = back

    def restore(self, threads: int) -> None:
        if self.back is not None:
            _kernels.rows_times(self.F, self.back, self.F, threads)
            self.back = None

    def gram(self, threads: int) -> np.ndarray:
        """The true factors' ``F^T F`` in ``F``'s precision."""
        G = _gram(self.F, threads)
        if self.back is None:
            return G
        return (self.back.T @ G.astype(np.float64) @ self.back).astype(G.dtype)

    def penalty(self, lam_rows: np.ndarray, gram: np.ndarray | None, threads: int) -> float:
        """``sum_u lambda_u |x_u|^2`` of the true factors in float64; with one lambda for
        every row and their ``gram`` at hand, ``lambda trace(gram)`` (no pass over ``F``)."""
        if len(self.F) and gram is not None and np.all(lam_rows == lam_rows[0]):
            return float(lam_rows[0] * np.trace(gram.astype(np.float64)))
        if self.row_norms is not None:  # the kernels' (per-row lambdas, during a fit)
            return float(self.row_norms @ lam_rows)
        if self.back is not None:
            raise RuntimeError("the penalty of rotated factors needs the kernels' row norms")
        return _penalty(self.F, lam_rows, threads)


def row_regularization(
    m: sp.csr_matrix,
    w: np.ndarray,
    lam: float,
    mode: str = "none",
    exponent: float = 1.0,
    mean_weight: float | None = None,
) -> tuple[np.ndarray, float]:
    """Each row's lambda (float64) for the rows of ``m`` whose stored cells carry the weights
    ``w = c - 1``, under ``regularization_scaling`` ``mode`` (see :class:`ALSConfig`), and the
    mean row weight used: ``"frequency"`` divides by ``mean_weight`` when given (fold-in uses
    the training rows'), else by the mean over these rows. A row's weight is
    ``sum_i c_ui = n_columns + sum_i w_ui`` over all its columns, observed or not."""
    n_rows, n_columns = m.shape
    nnz = np.diff(m.indptr)
    rows = np.repeat(np.arange(n_rows), nnz)
    weight = n_columns + np.bincount(rows, weights=np.asarray(w, np.float64), minlength=n_rows)
    if mean_weight is None:
        mean_weight = float(weight.mean()) if n_rows else 1.0
    if mode == "none":
        lam_rows = np.full(n_rows, lam, dtype=np.float64)
    elif mode == "count":
        lam_rows = lam * np.maximum(nnz, 1).astype(np.float64)
    else:
        lam_rows = lam * (weight / mean_weight) ** exponent
    return lam_rows, mean_weight


def objective(
    X,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    alpha: float = 40.0,
    regularization: float = 0.01,
    scaling: Scaling = "raw",
    regularization_scaling: RegularizationScaling = "none",
    regularization_exponent: float = 1.0,
    confidence: Confidence = "hkv",
) -> float:
    """The exact ALS objective of any factors on raw counts ``X``, without a dense matrix:
    ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2``
    (see the module docstring; ``c_ui`` from ``confidence`` and ``scaling``, ``lambda_u`` from
    ``regularization_scaling``, see :class:`ALSConfig`: all equal to ``regularization`` under
    ``"none"``).

    The sum over all cells is ``trace(X^T X Y^T Y)`` plus a correction over the observed cells
    only, so the cost is O((n_users + n_items) k^2 + nnz k). Used for ``loss_history`` and to
    compare other libraries' factors (benchmarks/bench_als.py).
    """
    m = coerce_interactions(X).matrix
    U = np.ascontiguousarray(user_factors)
    V = np.ascontiguousarray(item_factors, dtype=U.dtype)
    if U.dtype not in (np.float32, np.float64) or U.ndim != 2 or V.ndim != 2:
        raise ValueError("factors must be 2-D float32 or float64 arrays")
    if m.shape != (len(U), len(V)) or U.shape[1] != V.shape[1]:
        raise ValueError(
            f"X has shape {m.shape}; user_factors {U.shape} and item_factors {V.shape} "
            "do not match it"
        )
    cfg = ALSConfig(
        alpha=alpha,
        regularization=regularization,
        scaling=scaling,
        regularization_scaling=regularization_scaling,
        regularization_exponent=regularization_exponent,
        confidence=confidence,
    )  # validates the arguments
    users = _Side(m, cfg, U.dtype)
    items = _Side(m.tocsc().T.tocsr(), cfg, U.dtype)
    observed = _kernels.observed_loss(users.indptr, users.indices, users.w, U, V, _BLOCK).sum()
    penalty = _penalty(U, users.lam_rows) + _penalty(V, items.lam_rows)
    return _loss_from_parts(_gram(U), _gram(V), float(observed), penalty)


def initial_factors(rng: np.random.Generator, n: int, k: int, dtype, how: str) -> np.ndarray:
    """``n x k`` starting factors (see ``ALSConfig.initialization``), drawn from ``rng``."""
    dtype = np.dtype(dtype)
    if how == "uniform":
        return rng.random((n, k), dtype=dtype) * dtype.type(0.01)
    return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(dtype)


def _copy_matched(source: np.ndarray, index, ids: np.ndarray, out: np.ndarray) -> int:
    """Copy into ``out`` the rows of ``source`` whose id (``index(ids)``) is among ``ids``;
    returns how many."""
    idx = np.asarray(index(ids, missing="ignore"))
    hit = idx >= 0
    out[hit] = source[idx[hit]]
    return int(hit.sum())


def _check_id_kind(known: np.ndarray, new: np.ndarray, what: str) -> None:
    """New ids must be of the kind (integers or text) the model's are: ids are kept exactly."""
    numeric = np.asarray(known).dtype.kind in "iu"
    if len(new) and (np.asarray(new).dtype.kind in "iu") != numeric:
        kind = "integers" if numeric else "text"
        raise ValueError(
            f"the model's {what} ids are {kind}, the new ones are not (e.g. {new[:3].tolist()}); "
            "ids are kept exactly, so they must be of the same kind"
        )


def _replace_rows(seen: sp.csr_matrix, rows: np.ndarray, new: sp.csr_matrix) -> sp.csr_matrix:
    """``seen`` (binary) with the rows ``rows[j] >= 0`` replaced by row ``j`` of ``new`` and the
    rows with ``rows[j] < 0`` appended, binary, in order."""
    keep = np.ones(seen.shape[0])
    keep[rows[rows >= 0]] = 0
    kept = sp.diags(keep) @ seen
    n_new = int((rows < 0).sum())
    target = rows.copy()
    target[rows < 0] = seen.shape[0] + np.arange(n_new)
    placed = sp.coo_matrix(new)
    placed = sp.csr_matrix(
        (np.ones(placed.nnz), (target[placed.row], placed.col)),
        shape=(seen.shape[0] + n_new, seen.shape[1]),
    )
    out = sp.vstack([kept, sp.csr_matrix((n_new, seen.shape[1]))]).tocsr() + placed
    out.eliminate_zeros()
    out.data[:] = 1
    return out.astype(np.float32)


class _Side:
    """One side of the problem: CSR arrays of the rows to solve, their ``c - 1`` values and
    each row's lambda (:func:`row_regularization`; ``mean_weight`` as there)."""

    __slots__ = ("indices", "indptr", "lam_rows", "mean_weight", "w")

    def __init__(
        self, m: sp.csr_matrix, cfg: ALSConfig, dtype, mean_weight: float | None = None
    ) -> None:
        self.indptr = m.indptr.astype(np.int64)
        self.indices = m.indices.astype(np.int32)
        self.w = confidence_minus_one(m.data, cfg.alpha, cfg.scaling, dtype, cfg.confidence)
        self.lam_rows, self.mean_weight = row_regularization(
            m,
            self.w,
            cfg.regularization,
            cfg.regularization_scaling,
            cfg.regularization_exponent,
            mean_weight,
        )

    def cost(self, k: int, schedule: np.ndarray | None) -> np.ndarray:
        """Cumulative work estimate of the kernels at block boundaries (length
        ``n_blocks + 1``): per row ``k nnz (steps + 2) + 4 k^2`` for CG (the row's steps
        from ``schedule``, :func:`_cg_schedule`'s), and for the exact solver (``schedule``
        None) ``k nnz m + m^3 / 3 + 4 k^2`` with ``m = min(nnz, k)``. Only ratios matter:
        the fit measures the speed in these units."""
        nnz = np.diff(self.indptr).astype(np.float64)
        if schedule is None:
            m = np.minimum(nnz, k)
            rows = k * nnz * m + m**3 / 3 + 4.0 * k * k
        else:
            steps = np.minimum(np.searchsorted(schedule, nnz, side="right"), nnz + 1)
            rows = k * nnz * (steps + 2) + 4.0 * k * k
        per_block = np.add.reduceat(rows, np.arange(0, len(rows), _BLOCK)) if len(rows) else rows
        return np.concatenate([[0.0], np.cumsum(per_block)])


class ALSModel(Recommender):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008); see :class:`ALSConfig` for the maths.

    After :meth:`fit`, ``user_factors`` (n_users x k) and ``item_factors`` (n_items x k) follow
    the rows and columns of the training matrix, and ``loss_history[t]`` is the exact objective
    after iteration ``t + 1``. Scores are ``user_factors[u] @ item_factors.T``.
    """

    model_type = "als"

    user_factors: np.ndarray
    item_factors: np.ndarray
    loss_history: list[float]

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        alpha: float = 40.0,
        regularization: float = 0.01,
        regularization_scaling: RegularizationScaling = "none",
        regularization_exponent: float = 1.0,
        solver: Solver = "cg",
        cg_steps: int = 3,
        initialization: Initialization = "normal",
        confidence: Confidence = "hkv",
        scaling: Scaling = "raw",
        dtype: Any = np.float32,
        random_state: int | None = None,
        num_threads: int = 0,
    ) -> None:
        self.config = ALSConfig(
            factors=factors,
            iterations=iterations,
            alpha=alpha,
            regularization=regularization,
            regularization_scaling=regularization_scaling,
            regularization_exponent=regularization_exponent,
            solver=solver,
            cg_steps=cg_steps,
            initialization=initialization,
            confidence=confidence,
            scaling=scaling,
            dtype=dtype,
            random_state=random_state,
            num_threads=num_threads,
        )
        self.loss_history = []
        # the training rows' mean weights (regularization_scaling="frequency")
        self._user_mean_weight = self._item_mean_weight = 1.0
        #: after ``fit(init=...)``: ``{"users": matched, "items": matched}``, else None
        self.warm_start: dict[str, int] | None = None
        self._yty: np.ndarray | None = None
        self._screen: _quantized.QuantizedItems | None = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())
        return f"ALSModel({fields})"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_DTYPES[self.config.dtype])

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X,
        callback: Callable[[int, ALSModel], bool | None] | None = None,
        show_progress: bool = False,
        init: ALSModel | None = None,
    ) -> ALSModel:
        """Learn factors from raw counts (``Interactions`` or a scipy sparse users x items matrix).

        ``callback(iteration, model)`` runs after every full iteration (``iteration`` counts
        completed iterations, 1..``iterations``; ``model.loss_history`` then has ``iteration``
        entries and ``score_rows`` / ``recommend`` use the current factors). Returning True
        stops training early. ``show_progress`` prints one line per iteration to stderr.

        ``init`` (a fitted ALSModel with the same ``factors`` and ``dtype``) warm-starts the fit:
        users and items both models know, matched by external id, start from ``init``'s
        factors; new ones start from the usual random draw; ids ``init`` has and the data do
        not are dropped. :attr:`warm_start` then says how many rows were matched.
        """
        data = coerce_interactions(X)
        if init is not None:
            self._check_init(init)
        if data.n_users == 0 or data.n_items == 0:
            raise ValueError(f"X must have at least one user and one item, got shape {data.shape}")
        cfg = self.config
        dtype = self.dtype
        k = cfg.factors
        threads = cfg.num_threads or kernel_threads()
        check_factor_memory(data.n_users, data.n_items, k, dtype.itemsize, threads)
        users = _Side(data.matrix, cfg, dtype)
        items = _Side(data.matrix.tocsc().T.tocsr(), cfg, dtype)
        cg = cfg.solver == "cg"
        schedules = {
            id(side): _cg_schedule(cfg.cg_steps, k, side is items) if cg else None
            for side in (users, items)
        }
        costs = {id(side): side.cost(k, schedules[id(side)]) for side in (users, items)}
        rng = np.random.default_rng(cfg.random_state)
        self.user_factors = initial_factors(rng, data.n_users, k, dtype, cfg.initialization)
        self.item_factors = initial_factors(rng, data.n_items, k, dtype, cfg.initialization)
        self.warm_start = None
        if init is not None:
            self.warm_start = {
                "users": _copy_matched(init.user_factors, init.user_index, data.user_ids,
                                       self.user_factors),
                "items": _copy_matched(init.item_factors, init.item_index, data.item_ids,
                                       self.item_factors),
            }  # fmt: skip
        self.loss_history = []
        self._yty = None
        self._screen = None
        self._user_mean_weight = users.mean_weight
        self._item_mean_weight = items.mean_weight
        self._set_training_data(data)  # before the loop, so callbacks can recommend

        item_loss = np.empty(data.n_items, dtype=np.float64)
        # the solvers' whitened copy of the fixed side, allocated once for both half-sweeps
        whitened = np.empty((max(data.n_users, data.n_items), k), dtype=dtype)
        yty = None
        blas = ThreadpoolController()  # finds the libraries once: limit() is then cheap
        U, V = _Rotated(self.user_factors), _Rotated(self.item_factors)
        start = time.perf_counter()
        try:
            for it in range(1, cfg.iterations + 1):
                # the kernels run on `threads` threads and BLAS on one, so the two do not
                # oversubscribe the cores; the callback runs with the caller's settings
                with blas.limit(limits=1, user_api="blas"):
                    if yty is None:
                        yty = V.gram(threads)
                    sweep = (users, costs[id(users)], V, yty, U)
                    self._half_sweep(*sweep, None, whitened, threads, schedules[id(users)])
                    xtx = U.gram(threads)
                    sweep = (items, costs[id(items)], U, xtx, V)
                    self._half_sweep(*sweep, item_loss, whitened, threads, schedules[id(items)])
                    yty = V.gram(threads)
                    penalty = U.penalty(users.lam_rows, xtx, threads)
                    penalty += V.penalty(items.lam_rows, yty, threads)
                    if callback is not None:  # it sees the true factors
                        U.restore(threads)
                        V.restore(threads)
                self._yty = None  # fold-in computes it from the true factors when needed
                self._screen = None  # the sweeps changed item_factors in place
                loss = _loss_from_parts(xtx, yty, item_loss.sum(), penalty)
                self.loss_history.append(loss)
                if show_progress:
                    print(
                        f"ALS iteration {it}/{cfg.iterations}: loss {loss:.6g} "
                        f"({time.perf_counter() - start:.1f} s)",
                        file=sys.stderr,
                    )
                if callback is not None and callback(it, self):
                    break
        finally:  # also when interrupted: the factors leave fit with their true values
            with blas.limit(limits=1, user_api="blas"):
                U.restore(threads)
                V.restore(threads)
        return self

    def _half_sweep(
        self,
        side: _Side,
        cost: np.ndarray,
        other: _Rotated,
        gram: np.ndarray,
        out: _Rotated,
        loss_part: np.ndarray | None,
        whitened: np.ndarray,
        threads: int,
        steps: np.ndarray | None,
    ) -> None:
        """Update every row of ``out`` with ``other`` fixed (``gram`` its true ``Y^T Y``), on
        ``threads`` threads, leaving ``out`` in this half-sweep's basis (see
        :class:`_Rotated`); ``loss_part`` (optional) receives each row's observed-cell part
        of the loss; ``whitened`` is scratch for the whitened ``other`` (see
        :func:`_kernels.cg_sweep`), at least as many rows as ``other``; ``steps`` is the
        side's :func:`_cg_schedule` (CG only) and ``cost`` is ``side.cost(...)`` with it."""
        loss_part = np.empty(0) if loss_part is None else loss_part
        basis = _kernels.SweepBasis.of(gram, side.lam_rows, self.dtype)
        if basis is None:
            raise FloatingPointError(
                "the factors' Gram matrix Y^T Y is not finite; lower alpha or use dtype='float64'"
            )
        Yr = whitened[: len(other.F)]
        _kernels.rows_times(other.F, other.times(basis.other), Yr, threads)
        out.moved(basis.into, basis.back, threads)
        n_blocks = len(cost) - 1
        units = max(_UNITS_PER_THREAD * threads, -(-n_blocks // _UNIT_BLOCKS))
        if self.config.solver == "cholesky":
            kernel, extra = _kernels.exact_rows, ()
        else:
            kernel, extra = _kernels.cg_rows, (steps,)
        if len(basis.delta) and out.row_norms is None:
            out.row_norms = np.empty(len(out.F))
        norms = np.zeros(0) if out.row_norms is None else out.row_norms
        args = (side.indptr, side.indices, side.w, Yr, out.F, loss_part, *extra, _BLOCK)
        args += (basis.g, basis.delta, norms)
        n_rows = len(out.F)
        failed = _kernels.over_blocks(
            kernel, args, n_rows, _BLOCK, cost_bounds(cost, units), threads
        )
        if failed:
            raise FloatingPointError(
                f"{failed} per-row systems were not numerically positive definite; "
                "raise regularization or use dtype='float64'"
            )

    def loss(self, X) -> float:
        """The exact objective of the current factors on raw counts ``X`` (the model keeps only
        0/1 seen items, not counts); see :func:`objective`."""
        self._check_fitted()
        cfg = self.config
        return objective(
            X, self.user_factors, self.item_factors, cfg.alpha, cfg.regularization, cfg.scaling,
            cfg.regularization_scaling, cfg.regularization_exponent, cfg.confidence,
        )  # fmt: skip

    # ------------------------------------------------------------------ scoring
    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        X = self.user_factors[rows].astype(np.float64, copy=False)
        Y = self.item_factors.astype(np.float64, copy=False)
        return (X @ Y.T).astype(np.float32)  # the ranking rule of Recommender.recommend

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of ``rows`` for ``items`` only: ``len(items)`` dot products a user, not the
        catalogue (an allow list of :meth:`recommend`), by the ranking rule's float64 dot."""
        self._check_fitted()
        X = self.user_factors[np.asarray(rows, dtype=np.int64)].astype(np.float64, copy=False)
        Y = self.item_factors[np.asarray(items, dtype=np.int64)].astype(np.float64, copy=False)
        return (X @ Y.T).astype(np.float32)

    def rank_rows(
        self, rows: np.ndarray, n: int, mask: sp.csr_matrix | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``n`` (see :meth:`Recommender.topk_rows`) through a 4-bit screen of the
        item factors that reads an eighth of their bytes, longest items first, stops where no
        item left can make the list, and rescores only the items that still can
        (:mod:`alsresearch._quantized`). The screen is built on first use and rebuilt whenever
        the item factors change (every fit iteration, load). Lists longer than
        ``_SCREEN_MAX_N``, and small models (``_SCREEN_MIN_ITEMS``, ``_SCREEN_MIN_SCORES``),
        take the base path (one matrix product and the shared top-k kernel)."""
        n_items = len(self.item_factors)
        small = n_items < _SCREEN_MIN_ITEMS and n_items * self.n_users < _SCREEN_MIN_SCORES
        if n > _SCREEN_MAX_N or small:
            return super().rank_rows(rows, n, mask)
        screen = self._screen
        if screen is None or screen.factors is not self.item_factors:
            screen = self._screen = _quantized.quantize(self.item_factors)
        return _quantized.topk_quantized(screen, self.user_factors, rows, n, mask)

    def fold_in(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Factors of a user with counts ``weights`` on items ``item_idx`` (internal indices),
        by one exact solve against the fixed item factors: the same confidence and
        regularization as training, so a training user's own history gives that user's next
        half-sweep row. Items with weight 0 carry no interaction. The row is regularized as a
        training row with these counts would be (``regularization_scaling``; ``"frequency"``
        against the training users' mean weight, kept in the model file)."""
        self._check_fitted()
        n_items = len(self.item_factors)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        if item_idx.ndim != 1 or weights.shape != item_idx.shape:
            raise ValueError(
                f"item_idx and weights must be 1-D of equal length, got {item_idx.shape} "
                f"and {weights.shape}"
            )
        if item_idx.size and (item_idx.min() < 0 or item_idx.max() >= n_items):
            raise ValueError(f"item_idx must lie in 0..{n_items - 1}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("weights must be finite and >= 0")
        row = sp.coo_matrix(
            (weights, (np.zeros(len(item_idx), dtype=np.int64), item_idx)), shape=(1, n_items)
        ).tocsr()  # sums duplicate items, sorts, and drops zero weights below
        row.eliminate_zeros()
        side = _Side(row, self.config, self.dtype, self._user_mean_weight)
        if self._yty is None:
            self._yty = _gram(self.item_factors)
        G = _regularised(self._yty, side.lam_rows[0])
        x = np.zeros((1, self.config.factors), dtype=self.dtype)
        failed = _kernels.cholesky_rows(
            side.indptr, side.indices, side.w, self.item_factors, G, x, np.empty(0), _BLOCK, 0, 1
        )
        if failed:
            raise FloatingPointError("the fold-in system is not numerically positive definite")
        return x[0]

    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        x = self.fold_in(item_idx, weights).astype(np.float64)
        return (self.item_factors.astype(np.float64, copy=False) @ x).astype(np.float32)

    def similar_items(self, item, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items with the highest cosine similarity of factors to ``item`` (an external
        id), the item itself excluded; returns (item ids, similarities), best first."""
        self._check_fitted()
        n = validate_n(n)
        j = int(self.item_index([item])[0])
        Y = self.item_factors.astype(np.float64)
        norms = np.linalg.norm(Y, axis=1)
        denom = norms * norms[j]
        sims = np.divide(Y @ Y[j], denom, out=np.zeros(len(Y)), where=denom > 0)
        exclude = sp.csr_matrix(([1.0], [j], [0, 1]), shape=(1, len(Y)))
        if len(Y) == 1:
            return self.item_ids[:0], np.zeros(0, dtype=np.float32)
        idx, val = topk(
            sims[None, :].astype(np.float32), min(n, len(Y) - 1), exclude, np.zeros(1, np.int64)
        )
        return self._to_external(idx[0], val[0])

    # ------------------------------------------------------------------ between fits
    def update_users(self, data) -> ALSModel:
        """Recompute users' factors exactly from their full current history, with the item
        factors fixed (implicit's ``partial_fit_users``): every user of ``data`` (Interactions
        whose items the model knows) gets the exact least-squares row of its counts in
        ``data``, with training's confidence and regularization; users the model knows are
        replaced, new ones appended. Their rows of seen items (excluded from top-N) become
        those of ``data``. Returns the model."""
        return self._update(data, user_side=True, new_only=False)

    def update_items(self, data) -> ALSModel:
        """:meth:`update_users` for items, with the user factors fixed: every item of ``data``
        (Interactions whose users the model knows; an item's column is its full history) is
        re-solved, new items are appended."""
        return self._update(data, user_side=False, new_only=False)

    def add_items(self, data) -> ALSModel:
        """Fold in items that arrived after training, from the users who interacted with them
        (``data``: Interactions of known users x the new items): one exact least-squares solve
        per item against the fixed user factors, so a new item can be recommended before the
        next fit. Items the model already knows are an error (use :meth:`update_items`)."""
        return self._update(data, user_side=False, new_only=True)

    def _check_init(self, init) -> None:
        """``fit(init=...)`` needs a fitted ALSModel of the same shape of factors."""
        if not isinstance(init, ALSModel):
            raise TypeError(f"init must be a fitted ALSModel, got {type(init).__name__}")
        init._check_fitted()
        mine, theirs = (
            (self.config.factors, self.config.dtype),
            (
                init.config.factors,
                init.config.dtype,
            ),
        )
        if mine != theirs:
            raise ValueError(
                f"init has factors={theirs[0]}, dtype={theirs[1]!r}; this model has "
                f"factors={mine[0]}, dtype={mine[1]!r}: a warm start needs both equal"
            )

    def _update(self, data, user_side: bool, new_only: bool) -> ALSModel:
        self._check_fitted()
        data = coerce_interactions(data)
        side_name = "user" if user_side else "item"
        if user_side:
            ids, other_ids, m = data.user_ids, data.item_ids, data.matrix
            other, index, mean = self.item_factors, self.item_index, self._user_mean_weight
        else:
            ids, other_ids, m = data.item_ids, data.user_ids, data.matrix.T.tocsr()
            other, index, mean = self.user_factors, self.user_index, self._item_mean_weight
        _check_id_kind(getattr(self, f"{side_name}_ids"), ids, side_name)
        cols = index(other_ids)  # unknown ids: UnknownIdError naming them
        m = m.tocoo()
        m = sp.csr_matrix((m.data, (m.row, cols[m.col])), shape=(len(ids), len(other)))
        rows = np.asarray(getattr(self, f"{side_name}_index")(ids, missing="ignore"))
        if new_only and (rows >= 0).any():
            known = ids[rows >= 0][:5].tolist()
            raise ValueError(
                f"add_items takes only new items; the model already has {known} "
                f"({int((rows >= 0).sum())} in all): use update_items to re-solve known items"
            )
        side = _Side(m, self.config, self.dtype, mean)
        solved = np.zeros((len(ids), self.config.factors), dtype=self.dtype)
        with ThreadpoolController().limit(limits=1, user_api="blas"):
            args = (side.indptr, side.indices, side.w, other, _gram(other), side.lam_rows)
            failed = _kernels.exact_sweep(
                *args, solved, np.empty(0), _BLOCK, np.empty_like(other), kernel_threads()
            )
        if failed:
            raise FloatingPointError(
                f"{max(failed, 1)} of the {side_name} systems were not numerically positive "
                "definite; raise regularization or use dtype='float64'"
            )
        name = f"{side_name}_factors"
        factors = getattr(self, name).copy()
        factors[rows[rows >= 0]] = solved[rows >= 0]
        setattr(self, name, np.concatenate([factors, solved[rows < 0]]))
        seen = self.seen if user_side else self.seen.T.tocsr()
        seen = _replace_rows(seen, rows, m)
        all_ids = np.concatenate([getattr(self, f"{side_name}_ids"), ids[rows < 0]])
        training = self.training
        if user_side:
            self._set_training_data(Interactions(seen, all_ids, self.item_ids))
        else:
            self._set_training_data(Interactions(seen.T.tocsr(), self.user_ids, all_ids))
        self.training = training
        self._yty = None
        self._screen = None
        return self

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def get_state(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "loss_history": np.asarray(self.loss_history, dtype=np.float64),
            "user_mean_weight": np.asarray(self._user_mean_weight, dtype=np.float64),
            "item_mean_weight": np.asarray(self._item_mean_weight, dtype=np.float64),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        k = self.config.factors
        missing = {"user_factors", "item_factors"} - set(state)
        if missing:
            raise ValueError(f"model state lacks {sorted(missing)}")
        expected = {"user_factors": (self.n_users, k), "item_factors": (self.n_items, k)}
        arrays = {}
        for name, shape in expected.items():
            arr = np.asarray(state[name])
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
            if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must hold finite floats")
            arrays[name] = np.ascontiguousarray(arr, dtype=self.dtype)
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        history = np.asarray(state.get("loss_history", np.zeros(0)), dtype=np.float64)
        if history.ndim != 1:
            raise ValueError(f"loss_history must be 1-D, got shape {history.shape}")
        self.loss_history = history.tolist()
        for side in ("user", "item"):
            name = f"{side}_mean_weight"
            if name in state:
                mean = np.asarray(state[name], dtype=np.float64)
                if mean.shape != () or not np.isfinite(mean) or mean <= 0:
                    raise ValueError(f"{name} must be one positive number, got {mean!r}")
                setattr(self, f"_{name}", float(mean))
            elif self.config.regularization_scaling == "frequency":
                raise ValueError(
                    f"model state lacks {name}, which regularization_scaling='frequency' "
                    f"needs to fold in new {side}s"
                )
        self._yty = None
        self._screen = None
