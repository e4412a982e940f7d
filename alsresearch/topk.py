"""Top-k selection over blocks of scores, with each user's seen items excluded (numba).

One kernel serves every model's ``recommend`` / ``recommend_batch`` and the evaluator: a
bounded min-heap per row, O(n_items log k), parallel over units of rows
(:func:`alsresearch._jit.parallel_for`; a single row runs on the calling thread alone). Ties
go to the lower item index, so results are deterministic. Rows with fewer than ``k``
candidates are padded with index -1 and score -inf.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from alsresearch._jit import chunk_bounds, parallel_for

__all__ = ["heap_sort", "offer", "topk"]


@njit(inline="always")
def _worse(v1, i1, v2, i2):
    # (v1, i1) ranks below (v2, i2): lower score, or equal score and higher index
    return v1 < v2 or (v1 == v2 and i1 > i2)


@njit(inline="always")
def _sift_down(hv, hi, pos, size):
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(hv[child + 1], hi[child + 1], hv[child], hi[child]):
            child += 1
        if _worse(hv[child], hi[child], hv[pos], hi[pos]):
            hv[pos], hv[child] = hv[child], hv[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            break


@njit(inline="always")
def offer(hv, hi, size, k, v, i):
    """Keep the best ``k`` pairs (score ``v``, index ``i``) offered so far in the min-heap
    ``hv`` / ``hi`` of ``size`` entries (the worst at the root, ties to the lower index);
    returns the new size."""
    if size < k:
        pos = size
        hv[pos] = v
        hi[pos] = i
        while pos > 0:  # sift up
            parent = (pos - 1) // 2
            if not _worse(hv[pos], hi[pos], hv[parent], hi[parent]):
                break
            hv[pos], hv[parent] = hv[parent], hv[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        return size + 1
    if _worse(hv[0], hi[0], v, i):
        hv[0] = v
        hi[0] = i
        _sift_down(hv, hi, 0, k)
    return size


@njit(inline="always")
def heap_sort(hv, hi, size):
    """Sort a min-heap of ``size`` entries in place, best first (pop the worst to the end)."""
    end = size
    while end > 1:
        end -= 1
        hv[0], hv[end] = hv[end], hv[0]
        hi[0], hi[end] = hi[end], hi[0]
        _sift_down(hv, hi, 0, end)


@njit(cache=True, nogil=True)
def _topk_rows(scores, rows, indptr, indices, k, out_idx, out_val, row_lo, row_hi):
    """Rows ``row_lo..row_hi - 1`` of :func:`topk`; returns 0."""
    n = scores.shape[1]
    for r in range(row_lo, row_hi):
        s = scores[r]
        u = rows[r]
        if u >= 0:
            for p in range(indptr[u], indptr[u + 1]):
                s[indices[p]] = -np.inf
        hv = out_val[r]
        hi = out_idx[r]
        size = 0
        j = 0
        while j < n and size < k:  # fill the heap with the first k candidates
            v = s[j]
            if v > -np.inf:  # skips -inf and NaN
                size = offer(hv, hi, size, k, v, j)
            j += 1
        # Every entry in the full heap has a lower index than j, so j loses ties and gets in
        # only with a strictly higher score than the worst entry (NaN compares False).
        threshold = hv[0] if size == k else np.inf
        while j < n:
            v = s[j]
            if v > threshold:
                hv[0] = v
                hi[0] = j
                _sift_down(hv, hi, 0, size)
                threshold = hv[0]
            j += 1
        heap_sort(hv, hi, size)
        for j in range(size, k):
            hv[j] = -np.inf
            hi[j] = -1
    return 0


#: rows of scores per unit of :func:`alsresearch._jit.parallel_for`
_UNIT_ROWS = 64


def topk(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    rows: np.ndarray | None = None,
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of ``scores``, best first.

    ``exclude`` is a CSR matrix whose row ``rows[r]`` lists the columns row ``r`` must not get
    (its seen items); ``rows[r] = -1`` excludes nothing. With ``inplace=True`` the excluded
    entries of ``scores`` are overwritten with -inf (saves a copy when scores are scratch).

    Returns ``(indices, values)``, both ``(n_rows, k)``; int64 -1 / -inf pad short rows.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {scores.shape}")
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float32)
    if not inplace or not scores.flags.c_contiguous or not scores.flags.writeable:
        scores = np.array(scores, order="C", copy=True)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    b = scores.shape[0]
    if exclude is None:
        indptr = np.zeros(1, dtype=np.int64)
        indices = np.zeros(0, dtype=np.int32)
        rows = np.full(b, -1, dtype=np.int64)
    else:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape[1] != scores.shape[1]:
            raise ValueError(
                f"exclude has {exclude.shape[1]} columns, scores have {scores.shape[1]}"
            )
        indptr, indices = exclude.indptr, exclude.indices
        rows = np.arange(b, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.shape != (b,):
            raise ValueError(f"rows must have {b} entries, got {rows.shape}")
    out_idx = np.empty((b, k), dtype=np.int64)
    out_val = np.empty((b, k), dtype=scores.dtype)
    args = (scores, rows, indptr, indices, k, out_idx, out_val)
    parallel_for(lambda lo, hi: _topk_rows(*args, lo, hi), chunk_bounds(b, _UNIT_ROWS))
    return out_idx, out_val
