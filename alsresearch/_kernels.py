"""Numba kernels behind :class:`alsresearch.als.ALSModel`: ALS half-sweeps and the loss.

Notation (Hu, Koren & Volinsky 2008). A half-sweep updates every row ``u`` of ``X`` with the
other side ``Y`` fixed. Row ``u`` of a CSR matrix lists its observed cells ``i`` with
``w_ui = c_ui - 1`` (the confidence minus one, ``alpha * r`` or ``alpha * log1p(r)``), and
``p_ui = 1`` on exactly those cells. Every kernel receives ``G = Y^T Y + lambda I`` (computed
once per half-sweep with BLAS), so each row's normal equations are::

    A_u x_u = b_u,   A_u = G + sum_i w_ui y_i y_i^T,   b_u = sum_i (1 + w_ui) y_i

and a row costs O(k^2 nnz_u) to build, never O(k^2 n_items).

Every row is solved independently and in a fixed order of operations, so the result does not
depend on the number of numba threads (BLAS, called inside the kernels for the k x k and
mat-vec products, runs on one thread during fit). Rows are processed in blocks (``block`` rows each) so scratch
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

#: rows with at least this many cells build ``Y_u^T W_u Y_u`` with one BLAS product
GEMM_MIN_CELLS = 16
#: rows with at least this many cells apply ``Y_u^T W_u Y_u v`` as two BLAS matrix-vector products
GEMV_MIN_CELLS = 8


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


@njit(inline="always")
def _max_row_length(indptr, lo, hi):
    m = 0
    for u in range(lo, hi):
        m = max(m, indptr[u + 1] - indptr[u])
    return m


@njit(inline="always", fastmath=_FASTMATH)
def _gather(indptr, indices, Y, u, out):
    """Copy the other-side rows of row ``u``'s cells into ``out`` (contiguous, reused)."""
    p0 = indptr[u]
    for q in range(indptr[u + 1] - p0):
        src = Y[indices[p0 + q]]
        for a in range(Y.shape[1]):
            out[q, a] = src[a]
    return indptr[u + 1] - p0


@njit(inline="always", fastmath=_FASTMATH)
def _gathered_loss(Yu, wu, nu, x, k):
    """:func:`_row_loss` on factors already gathered into ``Yu``."""
    acc = 0.0
    for q in range(nu):
        s = np.float64(_dot(Yu[q], x, k))
        acc += (1.0 + wu[q]) * (1.0 - s) ** 2 - s * s
    return acc


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def cholesky_sweep(indptr, indices, w, Y, G, X, loss_part, block):
    """Exact half-sweep: ``X[u] = A_u^{-1} b_u`` for every row, by Cholesky.

    ``Y_u^T W_u Y_u`` is one BLAS product on the row's gathered factors when the row has at
    least ``GEMM_MIN_CELLS`` cells, else rank-one updates of the lower triangle.

    Returns the number of rows whose system was not numerically positive definite (their row
    of ``X`` is left unchanged); 0 in normal operation.
    """
    n = len(indptr) - 1
    k = Y.shape[1]
    n_blocks = (n + block - 1) // block
    failed = np.zeros(n_blocks, dtype=np.int64)
    want_loss = len(loss_part) > 0
    for blk in prange(n_blocks):
        lo = blk * block
        hi = min(n, lo + block)
        m = _max_row_length(indptr, lo, hi)
        Yu = np.empty((m, k), dtype=Y.dtype)
        Yw = np.empty((m, k), dtype=Y.dtype)
        A = np.empty((k, k), dtype=Y.dtype)
        b = np.empty(k, dtype=Y.dtype)
        for u in range(lo, hi):
            p0 = indptr[u]
            nu = _gather(indptr, indices, Y, u, Yu)
            for a in range(k):
                b[a] = 0
            for q in range(nu):
                wq = w[p0 + q]
                for a in range(k):
                    Yw[q, a] = wq * Yu[q, a]
                    b[a] += Yu[q, a] + Yw[q, a]
            if nu >= GEMM_MIN_CELLS:
                np.dot(Yw[:nu].T, Yu[:nu], A)
                for a in range(k):
                    for c in range(a + 1):
                        A[a, c] += G[a, c]
            else:
                for a in range(k):
                    for c in range(a + 1):
                        A[a, c] = G[a, c]
                for q in range(nu):
                    for a in range(k):
                        wa = Yw[q, a]
                        for c in range(a + 1):
                            A[a, c] += wa * Yu[q, c]
            if _cholesky_solve(A, b, k):
                X[u] = b
            else:
                failed[blk] += 1
            if want_loss:
                loss_part[u] = _gathered_loss(Yu, w[p0 : p0 + nu], nu, X[u], k)
    return failed.sum()


@njit(inline="always", fastmath=_FASTMATH)
def _cg_update(x, r, d, Ad, rs, k):
    """One CG update given ``Ad = A d``; returns the new squared residual norm."""
    step = rs / _dot(d, Ad, k)
    for a in range(k):
        x[a] += step * d[a]
        r[a] -= step * Ad[a]
    rs_new = _dot(r, r, k)
    beta = rs_new / rs
    for a in range(k):
        d[a] = r[a] + beta * d[a]
    return rs_new


@njit(inline="always", fastmath=_FASTMATH)
def _add_cells(Yu, wu, shift, v, out, sv, tmp, k):
    """With ``s = Y_u v`` on the gathered rows ``Y_u``: ``out += Y_u^T (wu * s)`` when ``shift``
    is 0 (the cell part of ``A_u v``), ``out += Y_u^T (1 + wu - wu * s)`` when ``shift`` is 1
    (the cell part of the residual ``b_u - A_u v``). Two BLAS matrix-vector products, or plain
    loops for rows too short to amortise a BLAS call."""
    nu = Yu.shape[0]
    if nu >= GEMV_MIN_CELLS:
        s = sv[:nu]
        np.dot(Yu, v, s)
        for q in range(nu):
            s[q] = shift + wu[q] - wu[q] * s[q] if shift else wu[q] * s[q]
        np.dot(Yu.T, s, tmp)
        for a in range(k):
            out[a] += tmp[a]
    else:
        for q in range(nu):
            y = Yu[q]
            t = _dot(y, v, k)
            t = shift + wu[q] - wu[q] * t if shift else wu[q] * t
            for a in range(k):
                out[a] += t * y[a]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def cg_sweep(indptr, indices, w, Y, G, X, loss_part, steps, block):
    """Approximate half-sweep: ``steps`` conjugate-gradient steps on ``A_u x = b_u`` per row,
    warm-started from the current ``X[u]`` (updated in place).

    Each block of rows gathers its cells' factors once into contiguous scratch, so every CG
    pass reads cache, not the scattered rows of ``Y``. Short rows (fewer than k cells) step
    together: the ``G v`` part of their ``A_u v`` is one BLAS product over the block per step.
    Long rows, where the cell part dominates, run all their steps at once while their factors
    are hot. The residual ``b_u - A_u x`` is ``-G x + sum_i (1 + w_ui - w_ui y_i.x) y_i``.
    """
    n = len(indptr) - 1
    k = Y.shape[1]
    n_blocks = (n + block - 1) // block
    want_loss = len(loss_part) > 0
    tiny = 1e-20
    for blk in prange(n_blocks):
        lo = blk * block
        hi = min(n, lo + block)
        B = hi - lo
        # scratch: long rows share one buffer, short rows keep theirs for the block steps
        m_long = 0
        offsets = np.zeros(B + 1, dtype=np.int64)
        for j in range(B):
            nu = indptr[lo + j + 1] - indptr[lo + j]
            if nu >= k:
                m_long = max(m_long, nu)
                nu = 0
            offsets[j + 1] = offsets[j] + nu
        Yl = np.empty((m_long, k), dtype=Y.dtype)
        Ys = np.empty((offsets[B], k), dtype=Y.dtype)
        sv = np.empty(max(m_long, k), dtype=Y.dtype)
        tmp = np.empty(k, dtype=Y.dtype)
        Xb = np.empty((B, k), dtype=Y.dtype)
        R = np.empty((B, k), dtype=Y.dtype)
        D = np.empty((B, k), dtype=Y.dtype)
        AD = np.empty((B, k), dtype=Y.dtype)
        rs = np.empty(B, dtype=Y.dtype)
        for j in range(B):
            for a in range(k):
                Xb[j, a] = X[lo + j, a]
        np.dot(Xb, G, AD)
        for j in range(B):
            u = lo + j
            p0 = indptr[u]
            nu = indptr[u + 1] - p0
            long_row = nu >= k
            Yu = Yl[:nu] if long_row else Ys[offsets[j] : offsets[j + 1]]
            _gather(indptr, indices, Y, u, Yu)
            wu = w[p0 : p0 + nu]
            x, r, d, ad = Xb[j], R[j], D[j], AD[j]
            for a in range(k):
                r[a] = -ad[a]
            _add_cells(Yu, wu, 1, x, r, sv, tmp, k)
            rs[j] = _dot(r, r, k)
            for a in range(k):
                d[a] = r[a]
            if long_row:  # all its steps now, while its gathered factors are in cache
                for _ in range(steps):
                    if rs[j] < tiny:
                        break
                    for a in range(k):
                        ad[a] = _dot(G[a], d, k)
                    _add_cells(Yu, wu, 0, d, ad, sv, tmp, k)
                    rs[j] = _cg_update(x, r, d, ad, rs[j], k)
                rs[j] = -1.0  # done: the block steps below skip it
                if want_loss:
                    loss_part[u] = _gathered_loss(Yu, wu, nu, x, k)
        for _ in range(steps):
            np.dot(D, G, AD)
            for j in range(B):
                if not rs[j] >= tiny:
                    continue
                p0 = indptr[lo + j]
                Yu = Ys[offsets[j] : offsets[j + 1]]
                wu = w[p0 : p0 + Yu.shape[0]]
                _add_cells(Yu, wu, 0, D[j], AD[j], sv, tmp, k)
                rs[j] = _cg_update(Xb[j], R[j], D[j], AD[j], rs[j], k)
        for j in range(B):
            u = lo + j
            for a in range(k):
                X[u, a] = Xb[j, a]
            nu = indptr[u + 1] - indptr[u]
            if want_loss and nu < k:
                p0 = indptr[u]
                Yu = Ys[offsets[j] : offsets[j + 1]]
                loss_part[u] = _gathered_loss(Yu, w[p0 : p0 + nu], nu, Xb[j], k)
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
