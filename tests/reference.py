"""Slow, obviously-correct float64 NumPy references for ALS (Hu, Koren & Volinsky 2008).

Nothing here shares code with alsresearch.als or its kernels: every quantity is written out
from the paper's formulas on dense matrices, for small problems only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def dense_confidence(
    counts: sp.spmatrix, alpha: float, scaling: str = "raw", confidence: str = "hkv"
) -> np.ndarray:
    """Dense ``C`` with ``c_ui = 1 + alpha * r_ui`` (or ``1 + alpha * log1p(r_ui)``);
    ``confidence="linear"``: ``alpha * r_ui`` (or ``alpha * log1p(r_ui)``) where ``r_ui > 0``
    and 1 elsewhere (implicit's objective)."""
    R = np.asarray(sp.csr_matrix(counts).toarray(), dtype=np.float64)
    scaled = alpha * (np.log1p(R) if scaling == "log" else R)
    if confidence == "linear":
        return np.where(R > 0, scaled, 1.0)
    return 1.0 + scaled


def row_lambdas(
    counts: sp.spmatrix,
    alpha: float,
    lam: float,
    mode: str,
    exponent: float = 1.0,
    scaling: str = "raw",
    mean_weight: float | None = None,
    confidence: str = "hkv",
) -> np.ndarray:
    """Each row's lambda under a regularization scaling, from the dense matrices:
    ``"none"`` lambda; ``"count"`` lambda times the row's number of nonzero counts (at least
    1); ``"frequency"`` lambda (w_u / mean w)^exponent with w_u the row's sum of c_ui over every
    column (mean over the rows, or ``mean_weight``)."""
    R = sp.csr_matrix(counts).toarray()
    if mode == "none":
        return np.full(R.shape[0], float(lam))
    if mode == "count":
        return lam * np.maximum((R > 0).sum(axis=1), 1).astype(np.float64)
    weight = dense_confidence(counts, alpha, scaling, confidence).sum(axis=1)
    mean = weight.mean() if mean_weight is None else mean_weight
    return lam * (weight / mean) ** exponent


def solve_rows(
    counts: sp.spmatrix,
    Y: np.ndarray,
    alpha: float,
    lam,
    scaling: str = "raw",
    confidence: str = "hkv",
) -> np.ndarray:
    """One exact half-sweep: ``x_u = (Y^T C_u Y + lambda_u I)^{-1} Y^T C_u p_u`` for every row
    (``lam``: one lambda, or one per row)."""
    R = sp.csr_matrix(counts).toarray()
    C = dense_confidence(counts, alpha, scaling, confidence)
    P = (R > 0).astype(np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    k = Y.shape[1]
    lams = np.broadcast_to(np.asarray(lam, dtype=np.float64), (R.shape[0],))
    out = np.empty((R.shape[0], k))
    for u in range(R.shape[0]):
        A = Y.T @ (C[u][:, None] * Y) + lams[u] * np.eye(k)
        b = Y.T @ (C[u] * P[u])
        out[u] = np.linalg.solve(A, b)
    return out


def objective(
    counts: sp.spmatrix,
    X: np.ndarray,
    Y: np.ndarray,
    alpha: float,
    lam: float,
    scaling: str = "raw",
    mode: str = "none",
    exponent: float = 1.0,
    confidence: str = "hkv",
) -> float:
    """``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2``
    on dense matrices, the lambdas from :func:`row_lambdas` (all ``lam`` when ``mode`` is
    ``"none"``)."""
    R = sp.csr_matrix(counts).toarray()
    C = dense_confidence(counts, alpha, scaling, confidence)
    P = (R > 0).astype(np.float64)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    lam_u = row_lambdas(counts, alpha, lam, mode, exponent, scaling, None, confidence)
    counts_t = sp.csr_matrix(counts).T
    lam_i = row_lambdas(counts_t, alpha, lam, mode, exponent, scaling, None, confidence)
    penalty = lam_u @ np.sum(X**2, axis=1) + lam_i @ np.sum(Y**2, axis=1)
    return float(np.sum(C * (P - X @ Y.T) ** 2) + penalty)


def ranked_items(model, row: int, n: int, allow=None, deny=(), exclude_seen=True) -> list[int]:
    """Brute-force top-``n`` item indices of user ``row`` of a factor model: every item's
    float64 dot product rounded to float32, ordered by score (highest first) then item index,
    only items in ``allow`` (indices; None: all), none in ``deny`` nor, with ``exclude_seen``,
    among the user's seen items."""
    scores = (
        np.asarray(model.user_factors[row], dtype=np.float64)
        @ np.asarray(model.item_factors, dtype=np.float64).T
    ).astype(np.float32)
    ok = np.ones(len(scores), dtype=bool)
    if allow is not None:
        ok[:] = False
        ok[list(allow)] = True
    ok[list(deny)] = False
    if exclude_seen:
        ok[model.seen[row].indices] = False
    candidates = np.flatnonzero(ok)
    return candidates[np.lexsort((candidates, -scores[candidates]))[:n]].tolist()
