"""Numba kernels behind :class:`alsresearch.als.ALSModel`: ALS half-sweeps and the loss.

Notation (Hu, Koren & Volinsky 2008). A half-sweep updates every row ``u`` of ``X`` with the
other side ``Y`` fixed. Row ``u`` of a CSR matrix lists its observed cells ``i`` with
``w_ui = c_ui - 1`` (the confidence minus one, ``alpha * r`` or ``alpha * log1p(r)``), and
``p_ui = 1`` on exactly those cells. Every kernel receives ``G = Y^T Y + lambda I`` (computed
once per half-sweep with BLAS), so each row's normal equations are::

    A_u x_u = b_u,   A_u = G + sum_i w_ui y_i y_i^T,   b_u = sum_i (1 + w_ui) y_i

and a row costs O(k^2 nnz_u) to build, never O(k^2 n_items).

Every row is solved independently and in a fixed order of operations, so the result does not
depend on the number of threads. Rows are processed in blocks (``block`` rows each) so scratch
arrays are allocated once per block, not once per row.

``loss_part`` (optional, length 0 to skip) receives, per row, the observed-cell part of the
objective with the *new* row: ``sum_i (1 + w_ui) (1 - s_ui)^2 - s_ui^2`` where
``s_ui = x_u . y_i`` (see :func:`observed_loss`). Fused into the item half-sweep it makes the
per-iteration loss nearly free.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: reassociation lets the k-long dot products vectorise; results stay deterministic because the
#: order of operations is fixed at compile time and does not depend on threads.
_FASTMATH = {"reassoc", "contract", "nsz"}


@njit(inline="always", fastmath=_FASTMATH)
def _dot(a, b, k):
    acc = a[0] * 0
    for j in range(k):
        acc += a[j] * b[j]
    return acc


@njit(inline="always", fastmath=_FASTMATH)
def _cholesky_solve(A, b, k):
    """Solve ``A x = b`` in place for symmetric positive definite ``A`` (lower triangle read).

    ``A`` is overwritten by its Cholesky factor L, ``b`` by the solution. Returns False when a
    pivot is not positive (``A`` not numerically positive definite).
    """
    for j in range(k):
        s = A[j, j]
        for p in range(j):
            s -= A[j, p] * A[j, p]
        if not s > 0:
            return False
        d = np.sqrt(s)
        A[j, j] = d
        inv = 1 / d
        for i in range(j + 1, k):
            s = A[i, j]
            for p in range(j):
                s -= A[i, p] * A[j, p]
            A[i, j] = s * inv
    for i in range(k):  # L z = b
        s = b[i]
        for p in range(i):
            s -= A[i, p] * b[p]
        b[i] = s / A[i, i]
    for i in range(k - 1, -1, -1):  # L^T x = z
        s = b[i]
        for p in range(i + 1, k):
            s -= A[p, i] * b[p]
        b[i] = s / A[i, i]
    return True


@njit(inline="always", fastmath=_FASTMATH)
def _row_loss(indptr, indices, w, Y, x, u, k):
    acc = 0.0
    for p in range(indptr[u], indptr[u + 1]):
        s = np.float64(_dot(Y[indices[p]], x, k))
        acc += (1.0 + w[p]) * (1.0 - s) ** 2 - s * s
    return acc


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def cholesky_sweep(indptr, indices, w, Y, G, X, loss_part, block):
    """Exact half-sweep: ``X[u] = A_u^{-1} b_u`` for every row, by Cholesky.

    Returns the number of rows whose system was not numerically positive definite (their row
    of ``X`` is left unchanged); 0 in normal operation.
    """
    n = len(indptr) - 1
    k = Y.shape[1]
    n_blocks = (n + block - 1) // block
    failed = np.zeros(n_blocks, dtype=np.int64)
    want_loss = len(loss_part) > 0
    for blk in prange(n_blocks):
        A = np.empty((k, k), dtype=Y.dtype)
        b = np.empty(k, dtype=Y.dtype)
        for u in range(blk * block, min(n, (blk + 1) * block)):
            for a in range(k):
                for c in range(a + 1):
                    A[a, c] = G[a, c]
                b[a] = 0
            for p in range(indptr[u], indptr[u + 1]):
                y = Y[indices[p]]
                wp = w[p]
                for a in range(k):
                    wa = wp * y[a]
                    b[a] += y[a] + wa
                    for c in range(a + 1):
                        A[a, c] += wa * y[c]
            if _cholesky_solve(A, b, k):
                X[u] = b
            else:
                failed[blk] += 1
            if want_loss:
                loss_part[u] = _row_loss(indptr, indices, w, Y, X[u], u, k)
    return failed.sum()


@njit(inline="always", fastmath=_FASTMATH)
def _apply_A(indptr, indices, w, Y, G, v, out, u, k):
    """``out = A_u v = G v + sum_i w_ui (y_i . v) y_i`` without forming ``A_u``."""
    for a in range(k):
        out[a] = _dot(G[a], v, k)
    for p in range(indptr[u], indptr[u + 1]):
        y = Y[indices[p]]
        t = w[p] * _dot(y, v, k)
        for a in range(k):
            out[a] += t * y[a]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def cg_sweep(indptr, indices, w, Y, G, X, loss_part, steps, block):
    """Approximate half-sweep: ``steps`` conjugate-gradient steps on ``A_u x = b_u`` per row,
    warm-started from the current ``X[u]`` (updated in place).

    The residual ``b_u - A_u x`` is formed as ``-G x + sum_i (1 + w_ui - w_ui y_i.x) y_i``, one
    pass over the row's cells.
    """
    n = len(indptr) - 1
    k = Y.shape[1]
    n_blocks = (n + block - 1) // block
    want_loss = len(loss_part) > 0
    tiny = 1e-20
    for blk in prange(n_blocks):
        x = np.empty(k, dtype=Y.dtype)
        r = np.empty(k, dtype=Y.dtype)
        d = np.empty(k, dtype=Y.dtype)
        Ad = np.empty(k, dtype=Y.dtype)
        for u in range(blk * block, min(n, (blk + 1) * block)):
            for a in range(k):
                x[a] = X[u, a]
            for a in range(k):
                r[a] = -_dot(G[a], x, k)
            for p in range(indptr[u], indptr[u + 1]):
                y = Y[indices[p]]
                t = 1 + w[p] - w[p] * _dot(y, x, k)
                for a in range(k):
                    r[a] += t * y[a]
            rs = _dot(r, r, k)
            for a in range(k):
                d[a] = r[a]
            for _ in range(steps):
                if rs < tiny:
                    break
                _apply_A(indptr, indices, w, Y, G, d, Ad, u, k)
                step = rs / _dot(d, Ad, k)
                for a in range(k):
                    x[a] += step * d[a]
                    r[a] -= step * Ad[a]
                rs_new = _dot(r, r, k)
                beta = rs_new / rs
                for a in range(k):
                    d[a] = r[a] + beta * d[a]
                rs = rs_new
            for a in range(k):
                X[u, a] = x[a]
            if want_loss:
                loss_part[u] = _row_loss(indptr, indices, w, Y, x, u, k)
    return 0


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def observed_loss(indptr, indices, w, X, Y, block):
    """Per-row ``sum_i (1 + w_ui)(1 - s_ui)^2 - s_ui^2`` over observed cells (float64).

    With ``S = X Y^T`` the full objective is ``sum_all (p - s)^2 + sum_obs w (1 - s)^2 +
    lambda (|X|^2 + |Y|^2)``; the first sum is ``trace(X^T X Y^T Y) - sum_obs s^2 +
    sum_obs (1 - s)^2``, so only observed cells need visiting.
    """
    n = len(indptr) - 1
    k = Y.shape[1]
    out = np.zeros(n, dtype=np.float64)
    n_blocks = (n + block - 1) // block
    for blk in prange(n_blocks):
        for u in range(blk * block, min(n, (blk + 1) * block)):
            out[u] = _row_loss(indptr, indices, w, Y, X[u], u, k)
    return out
