"""Slow, obviously-correct float64 NumPy references for ALS (Hu, Koren & Volinsky 2008).

Nothing here shares code with alsresearch.als or its kernels: every quantity is written out
from the paper's formulas on dense matrices, for small problems only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def dense_confidence(counts: sp.spmatrix, alpha: float, scaling: str = "raw") -> np.ndarray:
    """Dense ``C`` with ``c_ui = 1 + alpha * r_ui`` (or ``1 + alpha * log1p(r_ui)``)."""
    R = np.asarray(sp.csr_matrix(counts).toarray(), dtype=np.float64)
    return 1.0 + alpha * (np.log1p(R) if scaling == "log" else R)


def solve_rows(
    counts: sp.spmatrix, Y: np.ndarray, alpha: float, lam: float, scaling: str = "raw"
) -> np.ndarray:
    """One exact half-sweep: ``x_u = (Y^T C_u Y + lambda I)^{-1} Y^T C_u p_u`` for every row."""
    R = sp.csr_matrix(counts).toarray()
    C = dense_confidence(counts, alpha, scaling)
    P = (R > 0).astype(np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    k = Y.shape[1]
    out = np.empty((R.shape[0], k))
    for u in range(R.shape[0]):
        A = Y.T @ (C[u][:, None] * Y) + lam * np.eye(k)
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
) -> float:
    """``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)`` on dense matrices."""
    R = sp.csr_matrix(counts).toarray()
    C = dense_confidence(counts, alpha, scaling)
    P = (R > 0).astype(np.float64)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return float(np.sum(C * (P - X @ Y.T) ** 2) + lam * (np.sum(X**2) + np.sum(Y**2)))
