"""Exact top-k for factor models through an int8 screen of the item factors (numba).

Scoring a user against every item reads the whole item-factor matrix (100k items x 64 float32
factors = 25.6 MB) for a handful of winners. This module reads a quarter of that instead and
still returns the exact answer:

1. **Screen.** Each item ``y_i`` is stored as int8 codes ``q_i = round(y_i / s_i)`` with a
   per-item scale ``s_i = max_j |y_ij| / 127``, and a per-item ``slack_i`` bounding the error.
   For a user ``x`` one pass computes ``a_i = s_i (x . q_i)`` (float32) for every item. By
   Cauchy-Schwarz ``|x . y_i - a_i| <= ||x|| slack_i`` (see :func:`quantize` for the float
   rounding), so ``[a_i - ||x|| slack_i, a_i + ||x|| slack_i]`` holds the exact score.
2. **Threshold.** ``T`` is the k-th largest lower bound over the user's unseen items. The k
   items holding those lower bounds all score at least ``T``, so every item of the exact top-k
   scores at least ``T`` and has an upper bound ``>= T``: those items are the candidates.
3. **Rescore.** Candidates (typically a few dozen) are scored exactly from the float factors,
   accumulated in float64, and the best k kept with ties to the lower item index, the order of
   :func:`alsresearch.topk.topk`. Results are float32 like every model's scores.

The answer equals the exact float32 ranking except where two items' exact scores differ by
float32 rounding (the float64 rescoring then orders them by their true values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit

from alsresearch.topk import _heap_sort, _sift_down

__all__ = ["QuantizedItems", "approx_scores", "quantize", "topk_quantized"]

#: items per block of the int8 layout: codes are stored ``[block, factor, item in block]`` so
#: the screen multiplies one factor into BLOCK accumulators at a time (vectorised, no
#: horizontal sums); 64 accumulators (256 bytes) stay in L1.
BLOCK = 64


@dataclass(frozen=True)
class QuantizedItems:
    """The int8 screen of an item-factor matrix (build it with :func:`quantize`)."""

    codes: np.ndarray
    """int8 ``(n_blocks, k, BLOCK)``: item ``b * BLOCK + l`` has codes ``codes[b, :, l]``;
    padding items have all-zero codes."""
    scale: np.ndarray
    """float32 ``(n_blocks * BLOCK,)``: ``s_i`` (0 for padding and all-zero items)."""
    slack: np.ndarray
    """float64 ``(n_items,)``: ``|x . y_i - a_i| <= ||x|| slack_i`` for every ``x``."""
    block_slack: np.ndarray
    """float64 ``(n_blocks,)``: the largest slack in each block (to skip whole blocks)."""
    factors: np.ndarray
    """The item factors the screen was built from (rescoring reads them)."""


def quantize(item_factors: np.ndarray) -> QuantizedItems:
    """The int8 screen of ``item_factors`` (n_items x k, float32 or float64, finite).

    ``slack_i = ||y_i - s_i q_i||_2 + gamma_{k+2} s_i ||q_i||_2`` (plus 1e-12 relative for the
    float64 arithmetic here and in the bounds), where ``gamma_m = m u / (1 - m u)`` and
    ``u = 2^-24``. The first term is the quantisation error: ``|x . (y_i - s_i q_i)| <=
    ||x|| ||y_i - s_i q_i||`` (Cauchy-Schwarz). The second covers float32 rounding of the
    screen score ``a_i = fl(s_i fl(x32 . q_i))``: a float32 dot product of k terms computed in
    any order (the screen lets LLVM reorder and fuse it) is within ``gamma_k sum_j |x32_j q_ij|
    <= gamma_k ||x32|| ||q_i||`` of the exact one (Higham, Accuracy and Stability of Numerical
    Algorithms, 2002, eq. 3.5); the product with ``s_i`` adds one rounding, and rounding a
    float64 user vector to float32 (``x32``) one more, hence ``gamma_{k+2} ||x|| s_i ||q_i||``.
    For k = 64 that is about 4e-6 ||x|| ||y_i||.
    """
    Y = np.ascontiguousarray(item_factors)
    if Y.ndim != 2 or Y.dtype not in (np.float32, np.float64):
        raise ValueError(f"item_factors must be a 2-D float array, got {Y.dtype} {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("item_factors must be finite")
    n, k = Y.shape
    Y64 = Y.astype(np.float64)
    scale = (np.abs(Y64).max(axis=1, initial=0.0) / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)
    q = np.clip(np.rint(Y64 / safe[:, None]), -127, 127)
    q[scale == 0] = 0
    residual = np.linalg.norm(Y64 - scale[:, None].astype(np.float64) * q, axis=1)
    u = 2.0**-24
    gamma = (k + 2) * u / (1 - (k + 2) * u)
    rounding = gamma * scale.astype(np.float64) * np.linalg.norm(q, axis=1)
    slack = (residual + rounding) * (1 + 1e-12) + 1e-12 * np.linalg.norm(Y64, axis=1)

    n_blocks = -(-n // BLOCK)
    padded = np.zeros((n_blocks * BLOCK, k), dtype=np.int8)
    padded[:n] = q
    codes = np.ascontiguousarray(padded.reshape(n_blocks, BLOCK, k).transpose(0, 2, 1))
    scale_padded = np.zeros(n_blocks * BLOCK, dtype=np.float32)
    scale_padded[:n] = scale
    slack_padded = np.zeros(n_blocks * BLOCK)
    slack_padded[:n] = slack
    block_slack = slack_padded.reshape(n_blocks, BLOCK).max(axis=1)
    return QuantizedItems(codes, scale_padded, slack, block_slack, Y)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, boundscheck=False)
def _screen(x32, codes, scale, out, block_max):
    # out[i] = scale[i] * (x32 . codes of item i), for every (padded) item, float32;
    # block_max[b] = the largest out[i] of block b
    n_blocks, k, _ = codes.shape
    for b in range(n_blocks):
        acc = out[b * BLOCK : (b + 1) * BLOCK]
        for lane in range(BLOCK):
            acc[lane] = 0.0
        for j in range(k):
            xj = x32[j]
            c = codes[b, j]
            for lane in range(BLOCK):
                acc[lane] += xj * np.float32(c[lane])
        s = scale[b * BLOCK : (b + 1) * BLOCK]
        top = np.float32(-np.inf)
        for lane in range(BLOCK):
            acc[lane] *= s[lane]
            top = max(top, acc[lane])
        block_max[b] = top


@njit(cache=True, nogil=True)
def _heapify(hv, hi, size):
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(hv, hi, pos, size)


@njit(cache=True, nogil=True)
def _user_topk(
    x,
    codes,
    scale,
    slack,
    block_slack,
    factors,
    indptr,
    indices,
    row,
    k,
    approx,
    block_max,
    cand,
    x32,
    hv,
    hi,
    out_idx,
    out_val,
):
    """Top-k of one user (factors ``x``) into ``out_idx`` / ``out_val``; ``row < 0`` excludes
    nothing. Scratch: ``approx`` float32 (padded items), ``block_max`` float32 (blocks),
    ``cand`` int64 (n_items), ``x32``
    (k factors), ``hv`` / ``hi`` (k). Returns the number of candidates rescored."""
    n = factors.shape[0]
    kf = factors.shape[1]
    nx = 0.0
    for j in range(kf):
        x32[j] = np.float32(x[j])
        nx += np.float64(x[j]) * np.float64(x[j])
    nx = math.sqrt(nx) * (1 + 1e-12)

    _screen(x32, codes, scale, approx, block_max)
    if row >= 0:
        for p in range(indptr[row], indptr[row + 1]):
            approx[indices[p]] = -np.inf  # finite factors never give -inf otherwise

    # T: the k-th largest lower bound a_i - ||x|| slack_i over unseen items (min-heap of k).
    # A block whose largest a_i (block_max, taken before seen items were marked) is <= T
    # holds no lower bound above T: skip it.
    size = 0
    threshold = -np.inf
    i = 0
    while i < n:
        if size == k and i % BLOCK == 0 and np.float64(block_max[i // BLOCK]) <= threshold:
            i += BLOCK
            continue
        a = approx[i]
        if a > -np.inf:
            lower = np.float64(a) - nx * slack[i]
            if size < k:
                hv[size] = lower
                hi[size] = i
                size += 1
                if size == k:
                    _heapify(hv, hi, size)
                    threshold = hv[0]
            elif lower > threshold:
                hv[0] = lower
                hi[0] = i
                _sift_down(hv, hi, 0, size)
                threshold = hv[0]
        i += 1

    # candidates: unseen items whose upper bound reaches T, in ascending item order (a block
    # whose largest a_i plus largest slack stays below T holds none)
    n_cand = 0
    i = 0
    while i < n:
        b = i // BLOCK
        if np.float64(block_max[b]) + nx * block_slack[b] < threshold:
            i += BLOCK
            continue
        for j in range(i, min(i + BLOCK, n)):
            a = approx[j]
            if a > -np.inf and np.float64(a) + nx * slack[j] >= threshold:
                cand[n_cand] = j
                n_cand += 1
        i += BLOCK

    # exact scores of the candidates (float64 accumulation); keep the best k, ties to the
    # lower index: candidates come in ascending order, so a later one needs a higher score
    size = 0
    for c in range(n_cand):
        i = cand[c]
        s = 0.0
        for j in range(kf):
            s += np.float64(x[j]) * np.float64(factors[i, j])
        if size < k:
            hv[size] = s
            hi[size] = i
            size += 1
            if size == k:
                _heapify(hv, hi, size)
        elif s > hv[0]:
            hv[0] = s
            hi[0] = i
            _sift_down(hv, hi, 0, size)
    if size < k:
        _heapify(hv, hi, size)
    _heap_sort(hv, hi, size)
    for j in range(size):
        out_idx[j] = hi[j]
        out_val[j] = np.float32(hv[j])
    for j in range(size, k):
        out_idx[j] = -1
        out_val[j] = -np.inf
    return n_cand


@njit(cache=True, nogil=True)
def _scratch(codes, factors, k):
    approx = np.empty(codes.shape[0] * BLOCK, dtype=np.float32)
    block_max = np.empty(codes.shape[0], dtype=np.float32)
    cand = np.empty(factors.shape[0], dtype=np.int64)
    x32 = np.empty(factors.shape[1], dtype=np.float32)
    hv = np.empty(k, dtype=np.float64)
    hi = np.empty(k, dtype=np.int64)
    return approx, block_max, cand, x32, hv, hi


@njit(cache=True, nogil=True)
def _topk_one(
    X,
    rows,
    exclude,
    codes,
    scale,
    slack,
    block_slack,
    factors,
    indptr,
    indices,
    k,
    out_idx,
    out_val,
):
    approx, block_max, cand, x32, hv, hi = _scratch(codes, factors, k)
    n_cand = 0
    for r in range(len(rows)):
        u = rows[r]
        n_cand += _user_topk(
            X[u], codes, scale, slack, block_slack, factors, indptr, indices,
            u if exclude else -1, k, approx, block_max, cand, x32, hv, hi, out_idx[r], out_val[r],
        )  # fmt: skip
    return n_cand


def approx_scores(index: QuantizedItems, x: np.ndarray) -> np.ndarray:
    """The screen scores ``a_i`` of one user vector ``x`` for every item (float32), as the
    top-k kernel computes them; ``|x . y_i - a_i| <= ||x|| slack_i``."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(index.codes.shape[0] * BLOCK, dtype=np.float32)
    _screen(x32, index.codes, index.scale, out, np.empty(index.codes.shape[0], np.float32))
    return out[: len(index.factors)]


def topk_quantized(
    index: QuantizedItems,
    user_factors: np.ndarray,
    rows: np.ndarray,
    k: int,
    seen: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items of users ``rows`` (rows of ``user_factors``), best first, with
    row ``rows[r]`` of ``seen`` excluded when ``seen`` is given; ``(idx, scores)`` of shape
    ``(len(rows), k)``, -1 / -inf padding. Runs on the calling thread: it serves small batches
    (a single request); larger ones are faster through one matrix product and the shared top-k."""
    factors = index.factors
    n_items = len(factors)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"rows must be 1-D, got shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= len(user_factors)):
        raise IndexError(f"rows must lie in 0..{len(user_factors) - 1}")
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be between 1 and {n_items}, got {k}")
    X = np.ascontiguousarray(user_factors)
    if X.shape[1] != factors.shape[1]:
        raise ValueError(f"user factors have {X.shape[1]} columns, items {factors.shape[1]}")
    if seen is None:
        indptr, indices, exclude = np.zeros(1, np.int64), np.zeros(0, np.int32), False
    else:
        if seen.shape != (len(X), n_items):
            raise ValueError(f"seen has shape {seen.shape}, expected {(len(X), n_items)}")
        indptr, indices, exclude = seen.indptr, seen.indices, True
    out_idx = np.empty((len(rows), k), dtype=np.int64)
    out_val = np.empty((len(rows), k), dtype=np.float32)
    args = (X, rows, exclude, index.codes, index.scale, index.slack, index.block_slack, factors)
    args += (indptr, indices, k)
    _topk_one(*args, out_idx, out_val)
    return out_idx, out_val
