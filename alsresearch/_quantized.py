"""Exact top-k for factor models through a 4-bit screen of the item factors (numba).

Scoring a user against every item reads the whole item-factor matrix (n_items x k float32
values), a memory-bound pass, for a handful of winners. This module reads an eighth of that
and still returns the exact answer:

1. **Codes.** Item ``y_i`` is stored as 4-bit codes ``q_i = round(y_i / s_i)`` in -7..7 with a
   per-item scale ``s_i = max_j |y_ij| / 7``; a user ``x`` as int8 codes ``p = round(x / t)``
   with ``t = max_j |x_j| / 127`` and residual ``e = x - t p``. The integer dot product
   ``p . q_i`` is exact (AVX-512 VNNI: 64 byte products per instruction; AVX2: 32 per pair
   of instructions; or portable code: :mod:`._simd`), and ``a_i = t s_i (p . q_i)`` estimates
   the score with

       |x . y_i - a_i| = |x . (y_i - s_i q_i) + e . (s_i q_i)| <= ||x|| r_i + ||e|| m_i,

   ``r_i = ||y_i - s_i q_i||``, ``m_i = ||s_i q_i||`` (Cauchy-Schwarz, twice). So every item's
   exact score lies in ``[a_i - slack_i, a_i + slack_i]``.
2. **Threshold, in the same pass.** ``T`` is the k-th largest lower bound seen so far over the
   user's unseen items; it only grows. An item whose upper bound is below ``T`` cannot make
   the top-k (the k items holding the lower bounds all score at least ``T``), so only items
   whose upper bound reaches the current ``T`` are kept as candidates. A vectorised float32
   test per 16 items (bounds inflated to cover float32 rounding) passes the rare lanes that may
   qualify to the float64 test. Users are screened in tiles against L2-sized chunks of items,
   so a batch reads each chunk of codes once per tile instead of once per user.
3. **Rescore.** Candidates whose upper bound reaches the final ``T`` (typically a few dozen)
   are scored exactly from the float factors, accumulated in float64, and the best k kept with
   ties to the lower item index, the order of :func:`alsresearch.topk.topk`. Scores are
   returned as float32 like every model's. A user whose candidates overflow the buffer (when
   the screen cannot separate the scores, e.g. an all-zero user, or k above the unseen items)
   is answered by a float64 matrix product and the shared top-k kernel instead: same answer.

The answer is the ranking every model path uses (:meth:`alsresearch.base.Recommender.
recommend`): scores are the float64 dot products rounded to float32, ordered by that float32
value with ties to the lower item index. The threshold is kept ``TIE_SLACK`` (a few float32
ulps, relative) below the k-th lower bound, so items whose scores round to the same float32
as the k-th best are never screened out before their index decides. It does not depend on the
code path (:func:`screen_path`: the integer arithmetic is exact) nor on how the
users are grouped into tiles and threads (each user's answer is its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit

from alsresearch._jit import parallel_for, thread_bounds
from alsresearch._simd import (
    PATHS,
    add,
    dot_nibbles,
    mode_of,
    screen_path,
    supported_paths,
    times,
    upper_bound_mask,
    zeros,
)
from alsresearch.topk import heap_sort, offer, topk

__all__ = ["QuantizedItems", "quantize", "screen_bounds", "screen_path", "topk_quantized"]

#: items per block: one 512-bit vector of int32 dot products
BLOCK = 16
#: users screened together against each chunk of item codes (a unit of threads: a few tiles)
TILE_USERS = 32
#: item blocks per chunk: 256 x 512 bytes of codes (k = 64) = 128 KiB, well inside L2
CHUNK_BLOCKS = 256
#: float32 filter margins: bounds inflated so float32 rounding never rejects a candidate
_MARGIN = 4e-6
_REL = 1e-12
#: bytes of float64 scores per block of the users the screen hands to the full product
FALLBACK_BYTES = 64 * 2**20
#: the running threshold sits this far (relative) below the k-th lower bound: more than the
#: float32 rounding of a score (2^-24 relative) plus float64 error, so an item whose score
#: rounds to the k-th best's float32 is still rescored and its index breaks the tie
TIE_SLACK = 1e-6
#: items :func:`quantize` works on at a time: float64 working arrays of 2 MiB at 64 factors
QUANTIZE_BATCH = 4096


@dataclass(frozen=True)
class QuantizedItems:
    """The screen of an item-factor matrix (build it with :func:`quantize`)."""

    coarse: np.ndarray
    """uint8, flat: the high nibbles ``h`` of ``u = q + 128`` (``q`` the int8 codes). Block
    ``b`` of 16 items takes ``loads * 64`` bytes from ``b * loads * 64``; byte ``t * 64 + 4 l +
    d`` holds factor ``4 t + d`` of item ``l`` (low nibble) and factor ``4 (t + loads) + d``
    (high nibble)."""
    fine: np.ndarray
    """uint8, the same layout: the low nibbles of ``u``."""
    loads: int
    """64-byte loads per block and plane: ``ceil(k / 8)``."""
    scale: np.ndarray
    """float32 ``(n_blocks * 16,)``: ``s_i`` (0 for padding and all-zero items). This and the
    arrays below are in screen order (see :attr:`order`)."""
    coarse_slack32: np.ndarray
    """float32 ``(n_blocks * 16,)``: ``w_i``, the coarse slack per unit of ``||x||``."""
    resid: np.ndarray
    """float64 ``(n_blocks * 16,)``: ``r_i = ||y_i - s_i q_i||`` (plus 1e-12 ``||y_i||``)."""
    mnorm: np.ndarray
    """float64 ``(n_blocks * 16,)``: ``m_i = ||s_i q_i||``."""
    resid32: np.ndarray
    """float32 ``(n_blocks * 16,)``: ``r_i`` inflated for the float32 filter."""
    mnorm32: np.ndarray
    """float32 ``(n_blocks * 16,)``: ``m_i`` inflated for the float32 filter."""
    order: np.ndarray
    """int64 ``(n_blocks * 16,)``: the item at each screen position (-1 for padding). Items
    are screened longest first, so a user stops at the first block whose longest item ``y``
    has ``||x|| ||y|| < T``: no later item can reach the threshold (Cauchy-Schwarz)."""
    block_norm: np.ndarray
    """float64 ``(n_blocks,)``: the longest item norm in each block (rounded up)."""
    factors: np.ndarray
    """The item factors the screen was built from, in item order (rescoring reads them)."""


def _pack(nibbles: np.ndarray, loads: int) -> np.ndarray:
    """``(n_blocks * 16, 8 * loads)`` nibbles in the layout of :attr:`QuantizedItems.coarse`."""
    n_blocks = len(nibbles) // BLOCK
    groups = nibbles.reshape(n_blocks, BLOCK, 2 * loads, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(groups[:, :loads] | (groups[:, loads:] << 4)).reshape(-1)


def quantize(item_factors: np.ndarray, batch: int = QUANTIZE_BATCH) -> QuantizedItems:
    """The screen of ``item_factors`` (n_items x k, float32 or float64, finite).

    int8 codes ``q_i = round(y_i / s_i)``, ``s_i = max_j |y_ij| / 127``, stored as two planes
    of 4-bit nibbles of ``u = q + 128 = 16 h + l``. The coarse plane alone gives
    ``q ~ 16 h - 120.5`` (within 8 ``s_i`` a factor), so ``a^c_i = (t / 2) s_i (32 p . h - 241
    sum(p))`` with ``|x . y_i - a^c_i| <= ||x|| rc_i + ||e|| mc_i <= ||x|| w_i`` where ``rc_i =
    ||y_i - s_i (16 h - 120.5)||``, ``mc_i = ||s_i (16 h - 120.5)||`` and ``w_i = rc_i + rho
    mc_i``: the user's rounding error is at most ``t / 2`` a factor, so ``||e|| <= rho ||x||``
    with ``rho = sqrt(k) / 254`` (inflated by 1e-3). The fine plane completes ``p . q = 16 p .
    h + p . l - 128 sum(p)`` for the blocks the coarse test cannot rule out.

    The float32 filters add ``4e-6 ||y_i||`` to ``r_i`` (and ``w_i``) and inflate the norms by
    1e-5 relative: with the user's norms also rounded up, a float32 upper bound (four roundings
    of terms at most ~``||x|| ||y_i||``, each within 2^-24 relative) never falls below the
    float64 one.

    The items are quantised ``batch`` screen positions at a time (the norms, and the order
    they give, are computed first for all items): the float64 working arrays are then ``batch
    x k`` instead of ``n_items x k``: built whole, they took about ten times the item
    factors' own size at once, and the allocator kept about half of it resident afterwards,
    the largest part of ``alsresearch recommend-all``'s memory beyond the model (the README's
    Daily loop section has the figures). Every quantity is a function of one item's row, so the result does not depend on
    ``batch``.
    """
    Y = np.ascontiguousarray(item_factors)
    if Y.ndim != 2 or Y.dtype not in (np.float32, np.float64):
        raise ValueError(f"item_factors must be a 2-D float array, got {Y.dtype} {Y.shape}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    n, k = Y.shape
    spans = [(a, min(a + batch, n)) for a in range(0, n, batch)]
    if not all(np.isfinite(Y[a:b]).all() for a, b in spans):
        raise ValueError("item_factors must be finite")
    norms = np.empty(n)
    for a, b in spans:
        norms[a:b] = np.linalg.norm(Y[a:b].astype(np.float64), axis=1)
    order = np.argsort(-norms, kind="stable")  # screen position -> item
    norms = norms[order]

    loads = max(1, -(-k // 8))
    n_blocks = -(-n // BLOCK)
    planes = np.zeros((2, n_blocks * BLOCK, 8 * loads), dtype=np.uint8)
    scale = np.empty(n, dtype=np.float32)
    resid, mnorm, coarse_slack = np.empty(n), np.empty(n), np.empty(n)
    rho = math.sqrt(k) / 254 * 1.001
    for a, b in spans:  # screen positions a .. b - 1
        Y64 = Y[order[a:b]].astype(np.float64)
        s = (np.abs(Y64).max(axis=1, initial=0.0) / 127.0).astype(np.float32)
        s64 = s.astype(np.float64)[:, None]
        q = np.clip(np.rint(Y64 / np.where(s64 > 0, s64, 1.0)), -127, 127)
        q[s == 0] = 0
        u = (q + 128).astype(np.uint8)
        centre = s64 * (16.0 * (u >> 4) - 120.5)
        scale[a:b] = s
        resid[a:b] = np.linalg.norm(Y64 - s64 * q, axis=1)
        mnorm[a:b] = np.linalg.norm(s64 * q, axis=1)
        coarse_slack[a:b] = np.linalg.norm(Y64 - centre, axis=1) + rho * np.linalg.norm(
            centre, axis=1
        )
        planes[0, a:b, :k] = u >> 4
        planes[1, a:b, :k] = u & 15
    resid += _REL * norms

    def padded(values, dtype=np.float32, fill=0):
        out = np.full(n_blocks * BLOCK, fill, dtype=dtype)
        out[:n] = values
        return out

    margin = _MARGIN * norms
    return QuantizedItems(
        coarse=_pack(planes[0], loads),
        fine=_pack(planes[1], loads),
        loads=loads,
        scale=padded(scale),
        coarse_slack32=padded(coarse_slack * (1 + 1e-5) + margin),
        resid=padded(resid, np.float64),
        mnorm=padded(mnorm, np.float64),
        resid32=padded(resid * (1 + 1e-5) + margin),
        mnorm32=padded(mnorm * (1 + 1e-5)),
        order=padded(order, np.int64, -1),
        block_norm=padded(norms, np.float64).reshape(n_blocks, BLOCK).max(axis=1) * (1 + 1e-12),
        factors=Y,
    )


@njit(cache=True, nogil=True)
def _quantize_user(x, xq):
    """int8 codes of ``x`` packed 4 to an int32 in ``xq`` (2 * loads groups of 4 factors);
    returns ``(t, sum(p), ||x||, ||e||)``; ``t >= max_j |x_j| / 127`` so ``|e_j| <= t / 2``."""
    kf = x.shape[0]
    top = 0.0
    for j in range(kf):
        top = max(top, abs(np.float64(x[j])))
    t = np.float32(top / 127.0 * (1 + 2e-7))  # rounded up: no code is clipped
    t64 = np.float64(t)
    total = 0
    nx = 0.0
    ne = 0.0
    for g in range(xq.shape[0]):
        packed = 0
        for d in range(4):
            j = 4 * g + d
            p = 0
            if j < kf:
                xj = np.float64(x[j])
                if t64 > 0:
                    p = int(np.rint(xj / t64))
                e = xj - t64 * p
                nx += xj * xj
                ne += e * e
            total += p
            packed |= (p & 0xFF) << (8 * d)
        xq[g] = np.int32(np.int64(packed) - (np.int64(1) << 32) if packed >= 2**31 else packed)
    return t, total, math.sqrt(nx), math.sqrt(ne)


@njit(inline="always")
def _plane_dots(acc, codes, base, xq, loads, mode):
    """``acc`` plus the 16 dot products of block ``codes[base:]`` with the packed user codes
    ``xq``, in four independent accumulators: one chain of dependent ``vpdpbusd`` would wait
    on the instruction's latency (~5 cycles) 16 times a block."""
    a1 = zeros()
    a2 = zeros()
    a3 = zeros()
    g = 0
    while g + 4 <= loads:
        acc = dot_nibbles(acc, codes, base + 64 * g, xq[g], xq[g + loads], mode)
        a1 = dot_nibbles(a1, codes, base + 64 * (g + 1), xq[g + 1], xq[g + 1 + loads], mode)
        a2 = dot_nibbles(a2, codes, base + 64 * (g + 2), xq[g + 2], xq[g + 2 + loads], mode)
        a3 = dot_nibbles(a3, codes, base + 64 * (g + 3), xq[g + 3], xq[g + 3 + loads], mode)
        g += 4
    while g < loads:
        acc = dot_nibbles(acc, codes, base + 64 * g, xq[g], xq[g + loads], mode)
        g += 1
    return add(add(acc, a1), add(a2, a3))


@njit(inline="always")
def _is_excluded(indices, lo, hi, item):
    """``item`` is among the sorted ``indices[lo:hi]`` (binary search)."""
    end = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and indices[lo] == item


@njit(cache=True, nogil=True)
def _admit(u, i, a, slack, k, hv, hi, size, thr, thr32, cand, cup, n_cand, over):
    """Float64 test of item ``i`` (estimate ``a``) for tile user ``u``: keep it as a candidate
    when its upper bound reaches the threshold, push its lower bound into the heap."""
    upper = a + slack
    t = thr[u]
    if upper < t:
        return
    if n_cand[u] == cand.shape[1]:  # full: drop candidates the threshold has passed
        kept = 0
        for c in range(n_cand[u]):
            if cup[u, c] >= t:
                cand[u, kept] = cand[u, c]
                cup[u, kept] = cup[u, c]
                kept += 1
        n_cand[u] = kept
        if kept > cand.shape[1] - BLOCK:
            over[u] = True  # the screen cannot separate this user's scores
            return
    cand[u, n_cand[u]] = i
    cup[u, n_cand[u]] = upper
    n_cand[u] += 1
    size[u] = offer(hv[u], hi[u], size[u], k, a - slack, i)  # the k best lower bounds
    # the threshold sits TIE_SLACK below the k-th lower bound, so that every item whose score
    # rounds to the same float32 as the k-th best stays a candidate (ties go by index)
    low = hv[u, 0] - abs(hv[u, 0]) * TIE_SLACK
    if size[u] == k and low > t:
        t = thr[u] = low
        thr32[u] = np.float32(t - abs(t) * 1e-6)  # rounded float32 never above t


@njit(cache=True, nogil=True, boundscheck=False)
def _screen_tile(
    X, rows, exclude, indptr, indices, coarse, fine, loads, scale, coarse_slack32, resid, mnorm,
    r32, m32, order, block_norm, factors, k, cap, mode, out_idx, out_val, over,
):  # fmt: skip
    """Top-k of users ``X[rows]`` into ``out_idx`` / ``out_val``; sets ``over[r]`` for users
    the kernel could not finish (their rows of the outputs are then undefined)."""
    U = len(rows)
    kf = factors.shape[1]
    n_blocks = len(coarse) // (loads * 64)
    xq = np.empty((U, 2 * loads), dtype=np.int32)
    tq = np.empty(U, dtype=np.float32)
    half_t = np.empty(U, dtype=np.float32)
    sum_p = np.empty(U, dtype=np.int32)
    nx = np.empty(U)
    ne = np.empty(U)
    nx32 = np.empty(U, dtype=np.float32)
    ne32 = np.empty(U, dtype=np.float32)
    thr = np.full(U, -np.inf)
    thr32 = np.full(U, -np.inf, dtype=np.float32)
    hv = np.empty((U, k))
    hi = np.empty((U, k), dtype=np.int64)
    size = np.zeros(U, dtype=np.int64)
    cand = np.empty((U, cap), dtype=np.int64)
    cup = np.empty((U, cap))
    n_cand = np.zeros(U, dtype=np.int64)
    dots = np.empty(BLOCK, dtype=np.int32)
    for r in range(U):
        t, total, a, b = _quantize_user(X[rows[r]], xq[r])
        tq[r], half_t[r], sum_p[r] = t, t * np.float32(0.5), total
        nx[r], ne[r] = a * (1 + _REL), b * (1 + _REL)
        nx32[r] = np.float32(a * (1 + 1e-6))
        ne32[r] = np.float32(b * (1 + 1e-6))
        over[r] = False

    done = np.zeros(U, dtype=np.bool_)
    for c0 in range(0, n_blocks, CHUNK_BLOCKS):
        c1 = min(c0 + CHUNK_BLOCKS, n_blocks)
        active = 0
        for r in range(U):
            if over[r] or done[r]:
                continue
            active += 1
            row = rows[r]
            lo = indptr[row] if exclude else 0
            hi_ = indptr[row + 1] if exclude else 0
            for b in range(c0, c1):
                if nx[r] * block_norm[b] < thr[r]:  # no item from here on can reach T
                    done[r] = True
                    break
                base = b * loads * 64
                pos = b * BLOCK
                acc = _plane_dots(zeros(), coarse, base, xq[r], loads, mode)
                # coarse test: 32 p.h - 241 sum(p), scaled by t / 2, slack ||x|| w_i
                mask = upper_bound_mask(
                    acc, 32, 241 * sum_p[r], half_t[r], scale, coarse_slack32, coarse_slack32,
                    pos, nx32[r], np.float32(0.0), thr32[r], dots,
                )  # fmt: skip
                if mask == 0:
                    continue
                acc = _plane_dots(times(acc, 16), fine, base, xq[r], loads, mode)
                # fine test: p.q = 16 p.h + p.l - 128 sum(p), scaled by t
                mask = upper_bound_mask(
                    acc, 1, 128 * sum_p[r], tq[r], scale, r32, m32, pos, nx32[r], ne32[r],
                    thr32[r], dots,
                )  # fmt: skip
                bits = np.int64(mask)
                lane = -1
                while bits != 0:
                    lane += 1
                    passed = bits & 1
                    bits >>= 1
                    i = order[pos + lane]
                    if passed == 0 or i < 0 or (exclude and _is_excluded(indices, lo, hi_, i)):
                        continue
                    a = np.float64(tq[r]) * np.float64(scale[pos + lane]) * np.float64(dots[lane])
                    slack = nx[r] * resid[pos + lane] + ne[r] * mnorm[pos + lane]
                    _admit(r, i, a, slack, k, hv, hi, size, thr, thr32, cand, cup, n_cand, over)
                    if over[r]:
                        break
                if over[r]:
                    break
        if active == 0:
            break

    # exact float64 scores of the candidates whose upper bound reaches the final threshold,
    # rounded to float32 (the returned scores), the best k kept with ties to the lower index
    for r in range(U):
        if over[r]:
            continue
        x = X[rows[r]]
        t = thr[r]
        s_hv = hv[r]
        s_hi = hi[r]
        m = 0
        for c in range(n_cand[r]):
            if cup[r, c] < t:
                continue
            i = cand[r, c]
            s = 0.0
            for j in range(kf):
                s += np.float64(x[j]) * np.float64(factors[i, j])
            m = offer(s_hv, s_hi, m, k, np.float64(np.float32(s)), i)
        heap_sort(s_hv, s_hi, m)
        for j in range(m):
            out_idx[r, j] = s_hi[j]
            out_val[r, j] = np.float32(s_hv[j])
        for j in range(m, k):
            out_idx[r, j] = -1
            out_val[r, j] = -np.inf


@njit(cache=True, nogil=True)
def _screen_rows(
    X, rows, exclude, indptr, indices, coarse, fine, loads, scale, coarse_slack32, resid, mnorm,
    r32, m32, order, block_norm, factors, k, cap, mode, out_idx, out_val, over, tile_lo, tile_hi,
):  # fmt: skip
    """:func:`_screen_tile` over tiles ``tile_lo .. tile_hi - 1`` of ``TILE_USERS`` users (tile
    ``j``: ``rows[j * TILE_USERS : (j + 1) * TILE_USERS]``), one after the other."""
    for tile in range(tile_lo, tile_hi):
        lo = tile * TILE_USERS
        hi = min(lo + TILE_USERS, len(rows))
        _screen_tile(
            X, rows[lo:hi], exclude, indptr, indices, coarse, fine, loads, scale, coarse_slack32,
            resid, mnorm, r32, m32, order, block_norm, factors, k, cap, mode, out_idx[lo:hi],
            out_val[lo:hi], over[lo:hi],
        )  # fmt: skip


@njit(cache=True, nogil=True, boundscheck=False)
def _all_estimates(x, coarse, fine, loads, scale, mode, out_coarse, out_fine):
    """The coarse and fine estimates for every (padded) item, through the screen's code."""
    xq = np.empty(2 * loads, dtype=np.int32)
    t, total, _, _ = _quantize_user(x, xq)
    dots = np.empty(BLOCK, dtype=np.int32)
    ones = np.ones(len(scale), dtype=np.float32)
    zero, low = np.float32(0.0), np.float32(-np.inf)
    for b in range(len(coarse) // (loads * 64)):
        base = b * loads * 64
        pos = b * BLOCK
        acc = _plane_dots(zeros(), coarse, base, xq, loads, mode)
        upper_bound_mask(acc, 32, 241 * total, t, scale, ones, ones, pos, zero, zero, low, dots)
        for lane in range(BLOCK):
            out_coarse[pos + lane] = np.float64(t) / 2 * np.float64(scale[pos + lane]) * dots[lane]
        acc = _plane_dots(times(acc, 16), fine, base, xq, loads, mode)
        upper_bound_mask(acc, 1, 128 * total, t, scale, ones, ones, pos, zero, zero, low, dots)
        for lane in range(BLOCK):
            out_fine[pos + lane] = np.float64(t) * np.float64(scale[pos + lane]) * dots[lane]


def _mode(path: str | None):
    """The kernels' ``mode`` argument for ``path`` (None: :func:`screen_path`), which the
    compile target must run: the x86 intrinsics of a path it lacks would abort the process."""
    if path is None:
        return mode_of(screen_path())
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    if path not in supported_paths():
        raise RuntimeError(
            f"the screen path {path!r} needs an instruction set numba's compile target lacks "
            f"(it runs {', '.join(supported_paths())})"
        )
    return mode_of(path)


def screen_bounds(index: QuantizedItems, x: np.ndarray, path: str | None = None) -> dict:
    """The screen's estimates and slacks for one user vector ``x`` and every item (float64),
    for tests and diagnostics: ``coarse`` / ``coarse_slack`` (the coarse plane's ``a^c_i`` and
    ``||x|| w_i``) and ``fine`` / ``fine_slack``; each estimate is within its slack of
    ``x . y_i``. ``path``: the code path (see :func:`topk_quantized`)."""
    x = np.ascontiguousarray(x)
    n = len(index.factors)
    coarse, fine = np.empty(len(index.scale)), np.empty(len(index.scale))
    mode = _mode(path)
    _all_estimates(x, index.coarse, index.fine, index.loads, index.scale, mode, coarse, fine)
    xq = np.empty(2 * index.loads, dtype=np.int32)
    _, _, nx, ne = _quantize_user(x, xq)
    pos = np.empty(n, dtype=np.int64)  # screen position of each item
    pos[index.order[:n]] = np.arange(n)
    fine_slack = (nx * index.resid + ne * index.mnorm) * (1 + _REL)
    return {
        "coarse": coarse[pos],
        "coarse_slack": nx * index.coarse_slack32.astype(np.float64)[pos],
        "fine": fine[pos],
        "fine_slack": fine_slack[pos],
    }


def topk_quantized(
    index: QuantizedItems,
    user_factors: np.ndarray,
    rows: np.ndarray,
    k: int,
    seen: sp.csr_matrix | None = None,
    path: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items of users ``rows`` (rows of ``user_factors``), best first, with
    row ``rows[r]`` of ``seen`` excluded when ``seen`` is given; ``(idx, scores)`` of shape
    ``(len(rows), k)``, -1 / -inf padding. One tile of users runs on the calling thread, more
    in parallel (units of a few tiles on :func:`alsresearch._jit.parallel_for`'s threads).
    ``path``: ``"vnni"``, ``"avx2"`` or ``"portable"`` (the same integer arithmetic, so the
    same answer), None for :func:`screen_path`."""
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
        indptr, indices, exclude = np.zeros(1, np.int64), np.zeros(0, np.int32), False  # unread
    else:
        if seen.shape != (len(X), n_items):
            raise ValueError(f"seen has shape {seen.shape}, expected {(len(X), n_items)}")
        if not seen.has_sorted_indices:
            seen = seen.sorted_indices()
        indptr, indices, exclude = seen.indptr, seen.indices, True
    mode = _mode(path)
    out_idx = np.empty((len(rows), k), dtype=np.int64)
    out_val = np.empty((len(rows), k), dtype=np.float32)
    over = np.zeros(len(rows), dtype=np.bool_)
    n_tiles = -(-len(rows) // TILE_USERS)
    if n_tiles:

        def screen(tile_lo: int, tile_hi: int) -> None:
            _screen_rows(
                X, rows, exclude, indptr, indices, index.coarse, index.fine, index.loads,
                index.scale, index.coarse_slack32, index.resid, index.mnorm, index.resid32,
                index.mnorm32, index.order, index.block_norm, factors, k,
                2 * k + 512,  # candidate buffer
                mode, out_idx, out_val, over, tile_lo, tile_hi,
            )  # fmt: skip

        parallel_for(screen, thread_bounds(n_tiles))  # one tile: on the calling thread
    if over.any():  # the screen could not separate these users' scores: score every item,
        # in blocks of users of about FALLBACK_BYTES of float64 scores
        where = np.flatnonzero(over)
        Y64 = factors.T.astype(np.float64)
        step = max(1, FALLBACK_BYTES // (8 * max(n_items, 1)))
        for a in range(0, len(where), step):
            pos = where[a : a + step]
            hard = rows[pos]
            scores = (X[hard].astype(np.float64) @ Y64).astype(np.float32)
            idx, val = topk(scores, k, seen if exclude else None, hard, inplace=True)
            out_idx[pos] = idx
            out_val[pos] = val
    return out_idx, out_val
