"""Numba kernels behind :class:`alsresearch.als.ALSModel`: ALS half-sweeps and the loss.

Notation (Hu, Koren & Volinsky 2008). A half-sweep updates every row ``u`` of ``X`` with the
other side ``Y`` fixed. Row ``u`` of a CSR matrix lists its observed cells ``i`` with
``w_ui = c_ui - 1`` (the confidence minus one, ``alpha * r`` or ``alpha * log1p(r)``), and
``p_ui = 1`` on exactly those cells. With the row's own ``lambda_u`` (one lambda for all rows,
or scaled by the row's count or weight: ``ALSConfig.regularization_scaling``) its normal
equations are::

    A_u x_u = b_u,   A_u = Y^T Y + lambda_u I + sum_i w_ui y_i y_i^T,   b_u = sum_i (1 + w_ui) y_i

:func:`cholesky_sweep` (fold-in) receives ``G = Y^T Y + lambda_u I`` and builds ``A_u`` in
O(k^2 nnz_u), never O(k^2 n_items). The fit's solvers work in the eigenbasis of ``Y^T Y``
(:class:`SweepBasis`, once per half-sweep), whitened so that every row's shared part is the
identity, or a diagonal when rows have their own lambdas: :func:`cg_sweep` never builds ``A_u`` (O(k nnz_u)
per step), and :func:`exact_sweep` solves a row with fewer cells than k through an
nnz_u x nnz_u system.

Every kernel is serial over a range of rows (``row_lo..row_hi``, on block boundaries) and
releases the GIL (``nogil=True``); :func:`alsresearch._jit.parallel_for` runs ranges on several
threads (see there for why not numba's ``parallel=True``). Every row is solved independently
and in a fixed order of operations, so the result does not depend on the number of threads or
on how the rows are split (BLAS, called inside the kernels for the k x k and mat-vec products,
runs on one thread during fit). Rows are processed in blocks (``block`` rows each) so scratch
arrays are allocated once per block, not once per row.

``loss_part`` (optional, length 0 to skip) receives, per row, the observed-cell part of the
objective with the *new* row: ``sum_i (1 + w_ui) (1 - s_ui)^2 - s_ui^2`` where
``s_ui = x_u . y_i`` (see :func:`observed_loss`). Fused into the item half-sweep it makes the
per-iteration loss nearly free (CG carries ``s`` through its steps: no extra pass at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numba import njit

from alsresearch import _simd
from alsresearch._jit import parallel_for, thread_bounds

#: reassociation lets the k-long dot products vectorise; results stay deterministic because the
#: order of operations is fixed at compile time and does not depend on threads.
_FASTMATH = {"reassoc", "contract", "nsz"}

#: rows with at least this many cells build ``Y_u^T W_u Y_u`` with one BLAS product
GEMM_MIN_CELLS = 16
#: CG rows with at least this many cells compute ``Y_u v`` and ``Y_u^T t`` by BLAS mat-vec;
#: shorter rows by the four-rows-at-a-time loops: a BLAS call has a fixed cost comparable to a
#: whole pass over a short row, so the loops win below this size at k = 64 (chosen by timing
#: half-sweeps with benchmarks/bench_als.py).
GEMV_MIN_CELLS = 256


@njit(inline="always", fastmath=_FASTMATH)
def _dot(a, b, k):
    """``a . b`` accumulated in the arrays' precision (``a[0] * 0`` would be float64 for
    float32 arrays in numba, which halves the vector width and converts every product)."""
    acc = a[0] * np.float32(0)
    for j in range(k):
        acc += a[j] * b[j]
    return acc


@njit(inline="always", fastmath=_FASTMATH)
def _dot64(a, b, k):
    """``a . b`` accumulated in float64 (for the loss)."""
    acc = 0.0
    for j in range(k):
        acc += np.float64(a[j]) * b[j]
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
        s = _dot64(Y[indices[p]], x, k)
        acc += (1.0 + w[p]) * (1.0 - s) ** 2 - s * s
    return acc


@njit(inline="always")
def _max_row_length(indptr, lo, hi):
    m = 0
    for u in range(lo, hi):
        m = max(m, indptr[u + 1] - indptr[u])
    return m


@njit(inline="always")
def _system_scratch(indptr, lo, hi, Y):
    """Scratch for building the k x k systems of rows ``lo..hi-1``: ``(Yu, Yw, A, b)``, with
    ``Yu`` and ``Yw`` as long as the longest row."""
    k = Y.shape[1]
    m = _max_row_length(indptr, lo, hi)
    Yu = np.empty((m, k), dtype=Y.dtype)
    Yw = np.empty((m, k), dtype=Y.dtype)
    return Yu, Yw, np.empty((k, k), dtype=Y.dtype), np.empty(k, dtype=Y.dtype)


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
        s = _dot64(Yu[q], x, k)
        acc += (1.0 + wu[q]) * (1.0 - s) ** 2 - s * s
    return acc


@njit(inline="always", fastmath=_FASTMATH)
def _cell_system(Yu, wu, nu, Yw, A, b, k):
    """The cells' part of a row's k x k system: ``b = Y_u^T (1 + w_u)`` and the lower triangle
    of ``A = Y_u^T W_u Y_u`` (one BLAS product on the gathered rows from ``GEMM_MIN_CELLS``
    cells, else rank-one updates); ``Yw`` is scratch for ``W_u Y_u``."""
    for a in range(k):
        b[a] = 0
    for q in range(nu):
        wq = wu[q]
        for a in range(k):
            Yw[q, a] = wq * Yu[q, a]
            b[a] += Yu[q, a] + Yw[q, a]
    if nu >= GEMM_MIN_CELLS:
        np.dot(Yw[:nu].T, Yu[:nu], A)
        return
    for a in range(k):
        for c in range(a + 1):
            A[a, c] = 0
    for q in range(nu):
        for a in range(k):
            wa = Yw[q, a]
            for c in range(a + 1):
                A[a, c] += wa * Yu[q, c]


def over_blocks(kernel, args, n_rows, block, units=None, threads=0) -> int:
    """The sum of ``kernel(*args, lo, hi)`` over row ranges that cover ``range(n_rows)`` on
    whole blocks of ``block`` rows, run by :func:`parallel_for`: ``units`` are boundaries in
    blocks (default: about four ranges per thread, the same number of blocks each)."""
    n_blocks = (n_rows + block - 1) // block
    if units is None:
        units = thread_bounds(n_blocks, threads)

    def run(b0: int, b1: int) -> int:
        return int(kernel(*args, b0 * block, min(n_rows, b1 * block)))

    return sum(parallel_for(run, units, threads))


def cholesky_sweep(indptr, indices, w, Y, G, X, loss_part, block, threads=0):
    """Exact half-sweep: ``X[u] = A_u^{-1} b_u`` for every row, by Cholesky.

    ``Y_u^T W_u Y_u`` is one BLAS product on the row's gathered factors when the row has at
    least ``GEMM_MIN_CELLS`` cells, else rank-one updates of the lower triangle.

    Returns the number of rows whose system was not numerically positive definite (their row
    of ``X`` is left unchanged); 0 in normal operation.
    """
    args = (indptr, indices, w, Y, G, X, loss_part, block)
    return over_blocks(cholesky_rows, args, len(X), block, threads=threads)


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def cholesky_rows(indptr, indices, w, Y, G, X, loss_part, block, row_lo, row_hi):
    """The rows ``row_lo..row_hi - 1`` of :func:`cholesky_sweep` (``row_lo`` on a block
    boundary); returns how many systems were not numerically positive definite."""
    k = Y.shape[1]
    n_blocks = (row_hi - row_lo + block - 1) // block
    failed = 0
    want_loss = len(loss_part) > 0
    for blk in range(n_blocks):
        lo = row_lo + blk * block
        hi = min(row_hi, lo + block)
        Yu, Yw, A, b = _system_scratch(indptr, lo, hi, Y)
        for u in range(lo, hi):
            p0 = indptr[u]
            nu = _gather(indptr, indices, Y, u, Yu)
            _cell_system(Yu, w[p0 : p0 + nu], nu, Yw, A, b, k)
            for a in range(k):
                for c in range(a + 1):
                    A[a, c] += G[a, c]
            if _cholesky_solve(A, b, k):
                X[u] = b
            else:
                failed += 1
            if want_loss:
                loss_part[u] = _gathered_loss(Yu, w[p0 : p0 + nu], nu, X[u], k)
    return failed


@dataclass(frozen=True)
class SweepBasis:
    """The basis of one half-sweep's rotated-basis kernel (:func:`cg_rows`, :func:`exact_rows`),
    from the eigendecomposition ``Y^T Y = Q diag(e) Q^T`` of the other side's Gram matrix and
    the rows' lambdas, with ``lambda_0`` the smallest of them and ``D_0 = diag(e + lambda_0)``
    (all float64 k x k, ``g`` and ``delta`` in the factors' dtype):

    - ``other = Q D_0^{-1/2}``: the other side's whitened rows are ``z_i = y_i other``;
    - ``into = Q D_0^{1/2}`` and ``back = D_0^{-1/2} Q^T``: a row's ``z = x into``, ``x = z back``;
    - ``g = 1 / (e + lambda_0)`` and ``delta`` each row's ``lambda_u - lambda_0`` (empty when all
      rows share one lambda): row ``u``'s shared part ``Y^T Y + lambda_u I`` is, in this basis,
      the diagonal ``D_u = 1 + delta_u g`` (the identity for the rows of ``lambda_0``).

    One O(k^3) decomposition a half-sweep; every other cost is in the BLAS products with these
    matrices and in the kernels, which never take a square root or scale a gathered row."""

    other: np.ndarray
    into: np.ndarray
    back: np.ndarray
    g: np.ndarray
    delta: np.ndarray

    @classmethod
    def of(cls, gram, lam_rows, dtype) -> SweepBasis | None:
        """The basis for ``gram`` (the other side's ``Y^T Y``) and ``lam_rows``; None when
        ``gram`` is not finite."""
        G = np.asarray(gram, dtype=np.float64)
        if not np.all(np.isfinite(G)):
            return None
        evals, Q = scipy.linalg.eigh(G, check_finite=False)
        evals = np.maximum(evals, 0)  # as they are in exact arithmetic
        lam = np.asarray(lam_rows, dtype=np.float64)
        lam0 = float(lam.min()) if len(lam) else 1.0
        d0 = evals + lam0
        root = np.sqrt(d0)
        delta = lam - lam0
        return cls(
            other=Q / root,
            into=Q * root,
            back=Q.T / root[:, None],
            g=(1 / d0).astype(dtype),
            delta=delta.astype(dtype) if np.any(delta) else np.zeros(0, dtype=dtype),
        )


#: rows per BLAS product in :func:`rows_times` (fixed, so every row's product is the same
#: whatever the number of threads)
BASIS_ROWS = 1024


def rows_times(Y, M, out, threads=0) -> None:
    """``out = Y M`` (``out`` may be ``Y``: in place; ``M`` is cast to ``Y``'s dtype), on
    :func:`parallel_for`'s threads, ``BASIS_ROWS`` rows at a time: float32 with a multiple of
    64 columns on an AVX-512 target by :func:`times_rows`, else one BLAS product each (numpy
    releases the GIL in the product)."""
    n = len(Y)
    M = np.ascontiguousarray(M, dtype=Y.dtype)
    blocked = (
        Y.dtype == np.float32
        and M.shape[1] % 64 == 0
        and Y.flags.c_contiguous
        and out.flags.c_contiguous
        and _simd.wide_float_vectors()
    )
    in_place = np.shares_memory(Y, out)

    def run(b0: int, b1: int) -> None:
        for a in range(b0 * BASIS_ROWS, min(n, b1 * BASIS_ROWS), BASIS_ROWS):
            b = min(n, a + BASIS_ROWS)
            if blocked and in_place and M.shape[1] > 64:  # a block's sums would overwrite
                times_rows(Y[a:b].copy(), M, out[a:b], 0, b - a)  # rows still to be read
            elif blocked:
                times_rows(Y, M, out, a, b)
            else:
                out[a:b] = Y[a:b] @ M

    n_chunks = (n + BASIS_ROWS - 1) // BASIS_ROWS
    parallel_for(run, thread_bounds(n_chunks, threads), threads)


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def times_rows(Y, M, out, row_lo, row_hi):
    """``out[u] = Y[u] M`` for rows ``row_lo..row_hi - 1`` (float32, C-contiguous, ``M`` with a
    multiple of 64 columns; ``out`` may be ``Y`` when ``M`` has 64 columns): a register-blocked product, four rows by 64
    columns of sums in 16 :data:`~alsresearch._simd.f32x16` registers, each row of ``M`` read
    once per four rows. Every row's sums are taken in the same order whatever the range, so
    the result does not depend on the threads. About three times OpenBLAS's AVX2 kernels on a
    CPU with AVX-512 (OpenBLAS runs those where it does not know the CPU). Returns 0."""
    k = Y.shape[1]
    kk = M.shape[1]
    u = row_lo
    while u < row_hi:
        rows = min(4, row_hi - u)
        for cb in range(0, kk, 64):
            s00, s01, s02, s03 = _simd.fzeros(), _simd.fzeros(), _simd.fzeros(), _simd.fzeros()
            s10, s11, s12, s13 = _simd.fzeros(), _simd.fzeros(), _simd.fzeros(), _simd.fzeros()
            s20, s21, s22, s23 = _simd.fzeros(), _simd.fzeros(), _simd.fzeros(), _simd.fzeros()
            s30, s31, s32, s33 = _simd.fzeros(), _simd.fzeros(), _simd.fzeros(), _simd.fzeros()
            for a in range(k):
                at = a * kk + cb
                m0 = _simd.fload(M, at)
                m1 = _simd.fload(M, at + 16)
                m2 = _simd.fload(M, at + 32)
                m3 = _simd.fload(M, at + 48)
                y = Y[u, a]
                s00 = _simd.fmuladd(s00, y, m0)
                s01 = _simd.fmuladd(s01, y, m1)
                s02 = _simd.fmuladd(s02, y, m2)
                s03 = _simd.fmuladd(s03, y, m3)
                if rows == 4:
                    y = Y[u + 1, a]
                    s10 = _simd.fmuladd(s10, y, m0)
                    s11 = _simd.fmuladd(s11, y, m1)
                    s12 = _simd.fmuladd(s12, y, m2)
                    s13 = _simd.fmuladd(s13, y, m3)
                    y = Y[u + 2, a]
                    s20 = _simd.fmuladd(s20, y, m0)
                    s21 = _simd.fmuladd(s21, y, m1)
                    s22 = _simd.fmuladd(s22, y, m2)
                    s23 = _simd.fmuladd(s23, y, m3)
                    y = Y[u + 3, a]
                    s30 = _simd.fmuladd(s30, y, m0)
                    s31 = _simd.fmuladd(s31, y, m1)
                    s32 = _simd.fmuladd(s32, y, m2)
                    s33 = _simd.fmuladd(s33, y, m3)
            at = u * kk + cb
            _simd.fstore(out, at, s00)
            _simd.fstore(out, at + 16, s01)
            _simd.fstore(out, at + 32, s02)
            _simd.fstore(out, at + 48, s03)
            if rows == 4:
                for r, (v0, v1, v2, v3) in enumerate(
                    ((s10, s11, s12, s13), (s20, s21, s22, s23), (s30, s31, s32, s33))
                ):
                    at = (u + 1 + r) * kk + cb
                    _simd.fstore(out, at, v0)
                    _simd.fstore(out, at + 16, v1)
                    _simd.fstore(out, at + 32, v2)
                    _simd.fstore(out, at + 48, v3)
        u += 4 if rows == 4 else 1
    return 0


def rotated_rows(kernel, args, X, into, back, block, units=None, threads=0) -> int:
    """:func:`over_blocks` of a kernel that works in the rotated basis of :class:`SweepBasis`
    (:func:`cg_rows`, :func:`exact_rows`) on the rows of ``X``, which is one of ``args``:
    ``X`` moves to that basis in place (rows of ``X into``) before, and back (rows of
    ``X back``) after, also when the kernel is interrupted; one BLAS product per
    ``BASIS_ROWS`` rows each way (far faster than one per block of a few rows)."""
    rows_times(X, into, X, threads)
    try:
        return over_blocks(kernel, args, len(X), block, units, threads)
    finally:
        rows_times(X, back, X, threads)


def rotated_sweep(
    kernel, extra, indptr, indices, w, Y, gram, lam_rows, X, loss_part, block, Yr, threads=0,
    units=None,
):  # fmt: skip
    """A half-sweep of a rotated-basis kernel (:func:`cg_rows`, :func:`exact_rows`, which take
    ``extra`` after ``loss_part``) with all its inputs: the :class:`SweepBasis` of ``gram``
    (the other side's ``Y^T Y``) and ``lam_rows`` (each row's lambda), ``Yr = Y other``
    (scratch shaped like ``Y``), then :func:`rotated_rows` (``units`` as in
    :func:`over_blocks`). Returns -1 (``X`` untouched) when ``gram`` is not finite, else the
    kernel's count of failed rows."""
    basis = SweepBasis.of(gram, lam_rows, Y.dtype)
    if basis is None:
        return -1
    rows_times(Y, basis.other, Yr, threads)
    norms = np.zeros(0)
    args = (indptr, indices, w, Yr, X, loss_part, *extra, block, basis.g, basis.delta, norms)
    return rotated_rows(kernel, args, X, basis.into, basis.back, block, units, threads)


@njit(inline="always", fastmath=_FASTMATH)
def _basis_norm(z, g, k):
    """``|x|^2`` of a row ``z`` in the basis of :class:`SweepBasis` (``x = z back`` and
    ``back back^T = diag(g)``), in float64."""
    acc = 0.0
    for a in range(k):
        acc += np.float64(g[a]) * z[a] * z[a]
    return acc


@njit(inline="always", fastmath=_FASTMATH)
def _row_diagonal(g, delta, dg, dinv, k):
    """``dg = 1 + delta g`` (a row's shared part in the basis of :class:`SweepBasis`) and
    ``dinv = 1 / dg``, in the arrays' precision."""
    one = g[0] * np.float32(0) + np.float32(1)
    for a in range(k):
        dg[a] = one + delta * g[a]
        dinv[a] = one / dg[a]


@njit(inline="always", fastmath=_FASTMATH)
def _rows_dot(Yu, v, s, k):
    """``s[:nu] = Y_u v`` for the gathered rows ``Y_u``: BLAS mat-vec for long rows, else
    loops that take four rows per pass over ``v`` (four independent sums, one load of v)."""
    nu = Yu.shape[0]
    if nu >= GEMV_MIN_CELLS:
        np.dot(Yu, v, s[:nu])
        return
    zero = Yu[0, 0] * np.float32(0) if nu else np.float32(0)
    q = 0
    while q + 4 <= nu:
        s0 = zero
        s1 = zero
        s2 = zero
        s3 = zero
        for a in range(k):
            va = v[a]
            s0 += Yu[q, a] * va
            s1 += Yu[q + 1, a] * va
            s2 += Yu[q + 2, a] * va
            s3 += Yu[q + 3, a] * va
        s[q] = s0
        s[q + 1] = s1
        s[q + 2] = s2
        s[q + 3] = s3
        q += 4
    while q < nu:
        s[q] = _dot(Yu[q], v, k)
        q += 1


@njit(inline="always", fastmath=_FASTMATH)
def _rows_axpy(Yu, t, out, tmp, k):
    """``out += Y_u^T t[:nu]``: BLAS mat-vec (into ``tmp``) for long rows, else loops that
    add eight rows per pass over ``out`` (then four, then one)."""
    nu = Yu.shape[0]
    if nu >= GEMV_MIN_CELLS:
        np.dot(Yu.T, t[:nu], tmp)
        for a in range(k):
            out[a] += tmp[a]
        return
    q = 0
    while q + 8 <= nu:  # two sums of four: a shorter chain of dependent adds per pass
        t0 = t[q]
        t1 = t[q + 1]
        t2 = t[q + 2]
        t3 = t[q + 3]
        t4 = t[q + 4]
        t5 = t[q + 5]
        t6 = t[q + 6]
        t7 = t[q + 7]
        for a in range(k):
            out[a] += (
                t0 * Yu[q, a] + t1 * Yu[q + 1, a] + t2 * Yu[q + 2, a] + t3 * Yu[q + 3, a]
            ) + (t4 * Yu[q + 4, a] + t5 * Yu[q + 5, a] + t6 * Yu[q + 6, a] + t7 * Yu[q + 7, a])
        q += 8
    while q + 4 <= nu:
        t0 = t[q]
        t1 = t[q + 1]
        t2 = t[q + 2]
        t3 = t[q + 3]
        for a in range(k):
            out[a] += t0 * Yu[q, a] + t1 * Yu[q + 1, a] + t2 * Yu[q + 2, a] + t3 * Yu[q + 3, a]
        q += 4
    while q < nu:
        tq = t[q]
        for a in range(k):
            out[a] += tq * Yu[q, a]
        q += 1


@njit(inline="always", fastmath=_FASTMATH)
def _push_through(Yu, wu, nu, K, t, z, dinv, pre, k):
    """Exact solve of one row in the whitened basis through its ``nu x nu`` system
    (push-through identity): with ``Z_u`` the row's gathered whitened factors (in ``Yu``) and
    ``D`` its diagonal shared part (``dinv = D^{-1}``, used when ``pre``; else ``D = I``),
    ``(D + Z_u^T W_u Z_u)^{-1} Z_u^T (1 + w) = D^{-1} Z_u^T t`` with::

        (W_u^{-1} + Z_u D^{-1} Z_u^T) t = W_u^{-1} + 1

    ``K`` (at least nu x nu) and ``t`` are scratch. Writes ``z`` and returns True, or returns
    False with ``z`` untouched when a weight is not positive or the system is not numerically
    positive definite. O(k nnz_u^2 + nnz_u^3), in plain loops (little code to compile)."""
    for q in range(nu):
        if not wu[q] > 0:
            return False
    for q in range(nu):
        for p in range(q + 1):
            if pre:
                acc = Yu[q, 0] * np.float32(0)
                for a in range(k):
                    acc += Yu[q, a] * Yu[p, a] * dinv[a]
                K[q, p] = acc
            else:
                K[q, p] = _dot(Yu[q], Yu[p], k)
        K[q, q] += 1 / wu[q]
        t[q] = 1 + 1 / wu[q]
    if not _cholesky_solve(K, t, nu):
        return False
    for a in range(k):
        z[a] = 0
    for q in range(nu):
        tq = t[q]
        for a in range(k):
            z[a] += tq * Yu[q, a]
    if pre:
        for a in range(k):
            z[a] *= dinv[a]
    return True


def cg_sweep(indptr, indices, w, Y, gram, lam_rows, X, loss_part, steps, block, Yr, threads=0):
    """Approximate half-sweep: ``steps`` conjugate-gradient steps per row on ``A_u x = b_u``
    with ``A_u = Y^T Y + lambda_u I + sum_i w_ui y_i y_i^T`` (``gram = Y^T Y``, ``lam_rows``
    each row's ``lambda_u``), preconditioned by the row's shared part ``Y^T Y + lambda_u I``,
    warm-started from the current ``X[u]`` (updated in place). ``Yr`` is scratch shaped like
    ``Y``. Returns -1 (``X`` untouched) when ``gram`` is not finite, else 0 (the convention of
    :func:`exact_sweep`).

    In the basis of :class:`SweepBasis` (one eigendecomposition of ``Y^T Y`` a half-sweep, then
    a few large BLAS products: :func:`rotated_sweep`), ``z = x Q D_0^{1/2}`` and
    ``z_i = y_i Q D_0^{-1/2}``, row ``u``'s system is ``(D_u + sum_i w_ui z_i z_i^T) z =
    sum_i (1 + w_ui) z_i`` with the diagonal ``D_u`` (the identity when every row has one
    lambda), and ``x_u . y_i = z . z_i``. CG preconditioned by ``D_u`` is CG preconditioned by
    the row's whole shared part (Takacs, Pilaszy & Tikk 2011 warm-start CG; the
    preconditioner is our addition): a step costs O(k nnz_u) with no k x k product, and all
    but at most nnz_u eigenvalues of the preconditioned system are 1, so short rows converge
    in a few steps (one step solves an empty row). Each row gathers its cells' whitened
    factors once into contiguous scratch and runs all its steps on them while they are in
    cache. A step computes ``d . A d = d . D_u d + sum_i w_i (z_i . d)^2`` from the pass
    ``Y_u d`` and then adds ``-step Y_u^T W_u Y_u d`` straight into the residual (no vector
    ``A d``), except in a row's last step, which needs no new residual (a pass over the cells
    fewer). ``s = Y_u z`` is carried through the steps (``s += step * Y_u d``) when the loss
    is wanted, so it needs no extra pass over the cells. :func:`cg_rows` can give short rows
    fewer steps.
    """
    step_cells = np.zeros(steps, dtype=np.int64)  # every row takes every step
    args = (indptr, indices, w, Y, gram, lam_rows, X, loss_part, block, Yr, threads)
    return rotated_sweep(cg_rows, (step_cells,), *args)


@njit(inline="always", fastmath=_FASTMATH)
def _cg_row(Yu, wu, nu, z, n_steps, want_loss, sd, t, sz, tmp, r, d, dg, dinv, k):
    """:func:`cg_rows`'s steps on one row, preconditioned by its diagonal shared part ``dg``
    (``dinv = 1 / dg``; both ones when the rows share one lambda: one code path, compiled
    once, as fast as a plain-CG copy and half the compile time of two); ``sz`` receives
    ``Y_u z``."""
    tiny = 1e-20
    # residual r = b - A z = sum_i (1 + w_i - w_i s_i) z_i - D z, with s = Y_u z
    _rows_dot(Yu, z, sd, k)
    for q in range(nu):
        sz[q] = sd[q]
        t[q] = 1 + wu[q] - wu[q] * sd[q]
    for a in range(k):
        r[a] = -z[a] * dg[a]
    _rows_axpy(Yu, t, r, tmp, k)
    for a in range(k):
        d[a] = r[a] * dinv[a]
    rs = _dot(r, d, k)  # r . D^{-1} r
    dd = rs  # d . D d
    for j in range(n_steps):
        if rs < tiny:
            break
        # d . A d = d . D d + sum_i w_i (z_i . d)^2: the step before A d is built
        _rows_dot(Yu, d, sd, k)
        dad = dd
        for q in range(nu):
            dad += wu[q] * sd[q] * sd[q]
        step = rs / dad
        for a in range(k):
            z[a] += step * d[a]
        if want_loss:
            for q in range(nu):
                sz[q] += step * sd[q]
        if j == n_steps - 1:
            break  # the last step needs no new residual: no pass Y_u^T W_u Y_u d
        # r -= step A d = step D d + sum_i step w_i (z_i . d) z_i
        for q in range(nu):
            t[q] = -step * wu[q] * sd[q]
        _rows_axpy(Yu, t, r, tmp, k)
        for a in range(k):  # and the preconditioned residual D^{-1} r into tmp
            r[a] -= step * d[a] * dg[a]
            tmp[a] = r[a] * dinv[a]
        rs_new = _dot(r, tmp, k)
        beta = rs_new / rs
        dd = d[0] * np.float32(0)
        for a in range(k):
            d[a] = tmp[a] + beta * d[a]
            dd += d[a] * d[a] * dg[a]
        rs = rs_new


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def cg_rows(
    indptr, indices, w, Yr, Z, loss_part, step_cells, block, g, delta, norms, row_lo, row_hi
):
    """The rows ``row_lo..row_hi - 1`` of :func:`cg_sweep` in the basis of
        :class:`SweepBasis`: ``Yr`` the whitened other side, ``Z`` the rows in that basis (updated
        in place; see :func:`rotated_rows`), ``g`` and ``delta`` as there (``delta`` empty: every
        row has the shared part I); ``norms`` (length 0 to skip) receives each row's ``|x_u|^2``
    after its update (:func:`_basis_norm`: the penalty of per-row lambdas, at no extra pass).
    Step ``j`` (from 0) is taken by the rows with at least
        ``step_cells[j]`` cells (a row with n cells takes as many steps as there are entries at
        most n, and at most n + 1 steps, which solve it). Every row's result is independent of
        the others and of ``block`` (rows per scratch allocation). Returns 0."""
    k = Yr.shape[1]
    n_blocks = (row_hi - row_lo + block - 1) // block
    want_loss = len(loss_part) > 0
    want_norms = len(norms) > 0
    dg = np.ones(k, dtype=Yr.dtype)
    dinv = np.ones(k, dtype=Yr.dtype)
    per_row = len(delta) > 0
    for blk in range(n_blocks):
        lo = row_lo + blk * block
        hi = min(row_hi, lo + block)
        m = _max_row_length(indptr, lo, hi)
        Yu_buf = np.empty((m, k), dtype=Yr.dtype)
        sd = np.empty(m, dtype=Yr.dtype)  # Y_u d
        t = np.empty(m, dtype=Yr.dtype)  # per-cell weights of a product Y_u^T t
        sz = np.empty(m, dtype=np.float64)  # Y_u z, carried through the steps
        tmp = np.empty(k, dtype=Yr.dtype)
        r = np.empty(k, dtype=Yr.dtype)
        d = np.empty(k, dtype=Yr.dtype)
        for u in range(lo, hi):
            p0 = indptr[u]
            nu = _gather(indptr, indices, Yr, u, Yu_buf)
            Yu = Yu_buf[:nu]
            wu = w[p0 : p0 + nu]
            n_steps = 0
            for j in range(len(step_cells)):
                n_steps += step_cells[j] <= nu
            n_steps = min(n_steps, nu + 1)  # nu + 1 steps solve the row
            z = Z[u]
            if per_row:  # (delta 0 gives exactly 1)
                _row_diagonal(g, delta[u], dg, dinv, k)
            _cg_row(Yu, wu, nu, z, n_steps, want_loss, sd, t, sz, tmp, r, d, dg, dinv, k)
            if want_loss:
                acc = 0.0
                for q in range(nu):
                    acc += (1.0 + wu[q]) * (1.0 - sz[q]) ** 2 - sz[q] * sz[q]
                loss_part[u] = acc
            if want_norms:
                norms[u] = _basis_norm(z, g, k)
    return 0


def exact_sweep(indptr, indices, w, Y, gram, lam_rows, X, loss_part, block, Yr, threads=0):
    """Exact half-sweep like :func:`cholesky_sweep`, in the basis of :func:`cg_sweep` (same
    arguments, ``Yr`` scratch shaped like ``Y``): row ``u`` solves
    ``(D_u + Z_u^T W_u Z_u) z = Z_u^T (1 + w_u)``.

    A row with fewer cells than k and positive weights solves the small ``nnz_u x nnz_u``
    system of :func:`_push_through` instead, in O(k nnz_u^2 + nnz_u^3) rather than
    O(k^2 nnz_u + k^3): the cheaper system for the many short rows of heavy-tailed data; other
    rows build the k x k system as :func:`cholesky_sweep` does. Fold-in keeps
    :func:`cholesky_sweep`: for one row, rotating the whole other side would cost more than
    the solve. Returns the number of rows whose system was not numerically positive definite
    (their row of ``X`` is left unchanged, up to rounding), or -1 (``X`` untouched) when
    ``gram`` is not finite.
    """
    args = (indptr, indices, w, Y, gram, lam_rows, X, loss_part, block, Yr, threads)
    return rotated_sweep(exact_rows, (), *args)


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def exact_rows(indptr, indices, w, Yr, Z, loss_part, block, g, delta, norms, row_lo, row_hi):
    """The rows ``row_lo..row_hi - 1`` of :func:`exact_sweep` in the basis of
    :class:`SweepBasis` (see :func:`cg_rows`, also for ``norms``); returns the number of rows
    whose system was not numerically positive definite."""
    k = Yr.shape[1]
    dg = np.ones(k, dtype=Yr.dtype)
    dinv = np.ones(k, dtype=Yr.dtype)
    per_row = len(delta) > 0
    n_blocks = (row_hi - row_lo + block - 1) // block
    failed = 0
    want_loss = len(loss_part) > 0
    want_norms = len(norms) > 0
    for blk in range(n_blocks):
        lo = row_lo + blk * block
        hi = min(row_hi, lo + block)
        Yu, Yw, A, b = _system_scratch(indptr, lo, hi, Yr)
        mk = min(Yu.shape[0], k)
        K = np.empty((mk, mk), dtype=Yr.dtype)
        t = np.empty(mk, dtype=Yr.dtype)
        for u in range(lo, hi):
            p0 = indptr[u]
            nu = _gather(indptr, indices, Yr, u, Yu)
            wu = w[p0 : p0 + nu]
            z = Z[u]
            if per_row:  # (delta 0 gives exactly 1)
                _row_diagonal(g, delta[u], dg, dinv, k)
            if not (nu < k and _push_through(Yu[:nu], wu, nu, K, t, z, dinv, per_row, k)):
                _cell_system(Yu, wu, nu, Yw, A, b, k)
                for a in range(k):
                    A[a, a] += dg[a]
                if _cholesky_solve(A, b, k):
                    for a in range(k):
                        z[a] = b[a]
                else:
                    failed += 1
            if want_loss:
                loss_part[u] = _gathered_loss(Yu, wu, nu, z, k)
            if want_norms:
                norms[u] = _basis_norm(z, g, k)
    return failed


def observed_loss(indptr, indices, w, X, Y, block, threads=0) -> np.ndarray:
    """Per-row ``sum_i (1 + w_ui)(1 - s_ui)^2 - s_ui^2`` over observed cells (float64).

    With ``S = X Y^T`` the full objective is ``sum_all (p - s)^2 + sum_obs w (1 - s)^2 +
    lambda (|X|^2 + |Y|^2)``; the first sum is ``trace(X^T X Y^T Y) - sum_obs s^2 +
    sum_obs (1 - s)^2``, so only observed cells need visiting.
    """
    out = np.zeros(len(indptr) - 1, dtype=np.float64)
    over_blocks(observed_loss_rows, (indptr, indices, w, X, Y, out), len(out), block, None, threads)
    return out


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def observed_loss_rows(indptr, indices, w, X, Y, out, row_lo, row_hi):
    """Rows ``row_lo..row_hi - 1`` of :func:`observed_loss`, into ``out``; returns 0."""
    k = Y.shape[1]
    for u in range(row_lo, row_hi):
        out[u] = _row_loss(indptr, indices, w, Y, X[u], u, k)
    return 0


def weighted_norms(F, lam_rows, block, threads=0) -> float:
    """``sum_u lam_rows[u] |F[u]|^2`` accumulated in float64, on the kernels' threads (the
    penalty of rows regularized differently, for :func:`alsresearch.als.objective`; a fit
    gets it from its kernels' ``norms``)."""
    out = np.zeros(len(F), dtype=np.float64)
    lam = np.asarray(lam_rows, dtype=np.float64)
    over_blocks(weighted_norm_rows, (F, lam, out), len(F), block, None, threads)
    return float(out.sum())


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def weighted_norm_rows(F, lam, out, row_lo, row_hi):
    """Rows ``row_lo..row_hi - 1`` of :func:`weighted_norms`, into ``out``; returns 0."""
    k = F.shape[1]
    for u in range(row_lo, row_hi):
        out[u] = lam[u] * _dot64(F[u], F[u], k)
    return 0
