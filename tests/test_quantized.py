"""The screened exact top-k (alsresearch._quantized) and ALSModel.topk_rows, against a float64
NumPy ranking computed here from the factors (scores X @ Y.T, seen items excluded, ties to the
lower item index). Every kernel test runs each code path the compile target runs (AVX-512
VNNI, AVX2, portable; the others are skipped with the reason). The paths' bit-identity and
their selection are tested in tests/test_simd_paths.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch._jit import set_thread_limit
from alsresearch._quantized import TILE_USERS, quantize, screen_bounds, topk_quantized
from alsresearch._simd import PATHS, supported_paths
from alsresearch.als import ALSModel
from alsresearch.base import Recommender
from alsresearch.datasets import load_default

REL = 1e-5  # two items may swap only when their float64 scores are this close (relative)
MODES = [
    pytest.param(
        path,
        marks=pytest.mark.skipif(
            path not in supported_paths(), reason=f"numba's target CPU cannot run the {path} path"
        ),
    )
    for path in PATHS
]


def reference(X, Y, rows, k, seen=None):
    """float64 top-k: (items, float64 scores), -1 / -inf padded, ties to the lower index."""
    S = np.asarray(X, dtype=np.float64)[rows] @ np.asarray(Y, dtype=np.float64).T
    if seen is not None:
        S[sp.csr_matrix(seen)[rows].toarray() > 0] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(S.shape[1]), S.shape), -S), axis=1)[:, :k]
    best = np.take_along_axis(S, order, axis=1)
    return np.where(np.isfinite(best), order, -1), best, S


def assert_matches(idx, val, X, Y, rows, k, seen=None):
    ref_idx, ref_val, S = reference(X, Y, rows, k, seen)
    assert idx.shape == val.shape == (len(rows), k)
    assert val.dtype == np.float32
    scale = np.abs(S[np.isfinite(S)]).max(initial=0.0) + 1e-30
    np.testing.assert_array_equal(idx < 0, ref_idx < 0)  # the same padding
    assert np.all(np.isneginf(val[idx < 0]))
    for r in range(len(rows)):
        got = idx[r][idx[r] >= 0]
        assert len(set(got.tolist())) == len(got)
        exact = S[r, got]
        assert np.all(np.isfinite(exact)), "a seen item was recommended"
        # items differ from the reference only where the float64 scores nearly tie
        differ = got != ref_idx[r][: len(got)]
        np.testing.assert_array_less(
            np.abs(exact[differ] - ref_val[r][: len(got)][differ]), REL * scale
        )
        # scores are the exact scores, rounded to float32
        np.testing.assert_allclose(val[r][: len(got)], exact, rtol=1e-6, atol=1e-7 * scale)


@pytest.fixture
def factors(rng):
    """Items with skewed norms (log-normal), Gaussian factors (negative scores), exact
    duplicates (ties), an all-zero item; users include an all-zero vector."""
    n_users, n_items, k = 40, 3000, 24
    Y = rng.standard_normal((n_items, k)) * rng.lognormal(0.0, 1.0, size=(n_items, 1))
    Y[2000] *= 1000.0 / np.linalg.norm(Y[2000])  # the longest item by far
    Y[100:110] = Y[2000]  # ties between 2000 and 100..109: the lower indices win
    Y[7] = 0.0
    X = rng.standard_normal((n_users, k))
    X[0] = Y[2000] * 3.0  # so the tied items rank on top
    X[5] = 0.0  # no factors: every score is 0, ties by index
    return X.astype(np.float32), Y.astype(np.float32)


@pytest.fixture
def seen(rng, factors):
    X, Y = factors
    m = sp.random(len(X), len(Y), density=0.05, random_state=rng, format="lil")
    m[3, :] = 1.0
    m[3, [11, 500, 2999]] = 0.0  # user 3 has seen all but three items
    m[0, 100:110] = 0.0
    m[0, 2000] = 0.0
    m[0, 104] = 1.0  # one of the tied items
    return sp.csr_matrix(m)


@pytest.mark.parametrize("path", MODES)
@pytest.mark.parametrize("k", [1, 10, 137])
@pytest.mark.parametrize("exclude", [True, False])
def test_topk_matches_float64_ranking(factors, seen, k, exclude, path):
    X, Y = factors
    rows = np.arange(len(X))
    mask = seen if exclude else None
    idx, val = topk_quantized(quantize(Y), X, rows, k, mask, path=path)
    assert_matches(idx, val, X, Y, rows, k, mask)


@pytest.mark.parametrize("path", MODES)
def test_many_tiles_in_parallel_and_shuffled_items(rng, path):
    # more users than one tile (the parallel path); factor count not a multiple of 8
    X = rng.standard_normal((3 * TILE_USERS + 5, 37))
    Y = rng.standard_normal((2500, 37)) * rng.lognormal(0.0, 0.7, size=(2500, 1))
    seen = sp.random(len(X), len(Y), density=0.02, random_state=rng, format="csr")
    seen.indices = seen.indices.copy()
    rows = rng.integers(0, len(X), size=200)
    idx, val = topk_quantized(quantize(Y), X, rows, 25, seen, path=path)
    assert_matches(idx, val, X, Y, rows, 25, seen)


def test_users_answered_alike_however_the_tiles_are_grouped(rng):
    # several tiles, run as units on threads or one after the other, or one user at a time:
    # each user's answer is its own
    X = rng.standard_normal((5 * TILE_USERS + 3, 16)).astype(np.float32)
    Y = rng.standard_normal((1500, 16)).astype(np.float32)
    seen = sp.random(len(X), len(Y), density=0.02, random_state=rng, format="csr")
    index = quantize(Y)
    rows = np.arange(len(X))[::-1].copy()
    threaded = topk_quantized(index, X, rows, 10, seen)
    set_thread_limit(1)
    try:
        serial = topk_quantized(index, X, rows, 10, seen)
    finally:
        set_thread_limit(0)
    np.testing.assert_array_equal(threaded[0], serial[0])
    np.testing.assert_array_equal(threaded[1], serial[1])
    for r in range(0, len(rows), 7):
        one = topk_quantized(index, X, [rows[r]], 10, seen)
        np.testing.assert_array_equal(threaded[0][r], one[0][0])
        np.testing.assert_array_equal(threaded[1][r], one[1][0])
    assert_matches(*threaded, X, Y, rows, 10, seen)


@pytest.mark.parametrize("path", MODES)
def test_ties_go_to_the_lower_index(factors, seen, path):
    X, Y = factors
    idx, _ = topk_quantized(quantize(Y), X, [0], 12, seen, path=path)
    # user 0 points at item 2000 and its copies 100..109 (104 is seen): lowest index first
    assert idx[0][:10].tolist() == [100, 101, 102, 103, 105, 106, 107, 108, 109, 2000]
    idx, val = topk_quantized(quantize(Y), X, [5], 4, seen, path=path)  # zero user: all 0
    unseen = np.flatnonzero(seen[5].toarray()[0] == 0)
    assert idx[0].tolist() == unseen[:4].tolist()
    assert np.all(val[0] == 0)


def test_user_who_has_seen_almost_everything_gets_padding(factors, seen):
    X, Y = factors
    idx, val = topk_quantized(quantize(Y), X, [3], 5, seen)
    assert sorted(idx[0][:3].tolist()) == [11, 500, 2999]
    assert idx[0][3:].tolist() == [-1, -1]
    assert np.all(np.isneginf(val[0][3:]))


def test_k_equal_to_the_catalogue_and_float64_factors(factors, seen):
    X, Y = factors
    X64, Y64 = X[:6].astype(np.float64) * 1.1, Y.astype(np.float64) * 0.9
    rows = np.arange(6)
    idx, val = topk_quantized(quantize(Y64), X64, rows, len(Y), seen[:6])
    assert_matches(idx, val, X64, Y64, rows, len(Y), seen[:6])


def test_batch_equals_singles(factors, seen):
    X, Y = factors
    index = quantize(Y)
    rows = np.array([4, 0, 4, 39, 5, 3, 17])  # duplicates allowed
    batch = topk_quantized(index, X, rows, 10, seen)
    for r, u in enumerate(rows):
        one = topk_quantized(index, X, [u], 10, seen)
        np.testing.assert_array_equal(batch[0][r], one[0][0])
        np.testing.assert_array_equal(batch[1][r], one[1][0])


@pytest.mark.parametrize("path", MODES)
def test_screen_bounds_hold_for_every_item(factors, path):
    X, Y = factors
    index = quantize(Y)
    exact = X.astype(np.float64) @ Y.astype(np.float64).T
    for u in range(len(X)):
        b = screen_bounds(index, X[u], path=path)
        for plane in ("coarse", "fine"):
            err = np.abs(b[plane] - exact[u])
            assert np.all(err <= b[f"{plane}_slack"]), f"user {u}, {plane} plane"
    # the estimates really are approximate, the fine ones tighter: the bounds do work
    b = screen_bounds(index, X[1], path=path)
    coarse_err = np.abs(b["coarse"] - exact[1])
    fine_err = np.abs(b["fine"] - exact[1])
    assert fine_err.max() > 0
    assert np.median(fine_err) < np.median(coarse_err) / 4
    assert np.median(b["fine_slack"]) < np.median(b["coarse_slack"]) / 4


@pytest.mark.parametrize("path", MODES)
def test_exactly_representable_items_near_ties(rng, path):
    # items exactly s_i q_i (power-of-two scales, integer codes): the quantisation residual is
    # zero, so only the rounding margins stand between the float32 filter and a wrong answer;
    # users are float64 and many scores nearly tie
    k = 64
    q = rng.integers(-127, 128, size=(4000, k))
    q[:, 0] = 127
    Y = q * 2.0 ** rng.integers(-8, 3, size=(4000, 1))
    Y[2000:] = Y[:2000] * (1 + 1e-9)  # near-duplicates of the first half
    X = rng.standard_normal((20, k))
    rows = np.arange(20)
    idx, val = topk_quantized(quantize(Y), X, rows, 30, path=path)
    assert_matches(idx, val, X, Y, rows, 30)


def quantize_reference(Y):
    """The screen's quantities as the docstrings of quantize and QuantizedItems define them,
    from the whole matrix at once in float64, in screen order (padding excluded): (order,
    scale, codes u = q + 128, resid, mnorm, w = rc + rho mc, norms)."""
    Y64 = np.asarray(Y, dtype=np.float64)
    norms = np.sqrt((Y64 * Y64).sum(axis=1))
    order = np.argsort(-norms, kind="stable")  # longest first, ties to the lower index
    Y64, norms = Y64[order], norms[order]
    scale = (np.abs(Y64).max(axis=1) / 127).astype(np.float32)
    s = scale.astype(np.float64)[:, None]
    q = np.zeros_like(Y64)
    nonzero = scale > 0
    q[nonzero] = np.clip(np.rint(Y64[nonzero] / s[nonzero]), -127, 127)
    u = (q + 128).astype(np.int64)
    centre = s * (16 * (u // 16) - 120.5)
    rho = np.sqrt(Y64.shape[1]) / 254 * 1.001
    resid = np.sqrt(((Y64 - s * q) ** 2).sum(axis=1)) + 1e-12 * norms
    mnorm = np.sqrt(((s * q) ** 2).sum(axis=1))
    w = np.sqrt(((Y64 - centre) ** 2).sum(axis=1)) + rho * np.sqrt((centre**2).sum(axis=1))
    return order, scale, u, resid, mnorm, w, norms


def unpack_nibbles(plane, loads, n_slots):
    """``(n_slots, 8 * loads)`` nibbles from the byte layout QuantizedItems.coarse documents:
    byte ``t * 64 + 4 l + d`` of a block holds factor ``4 t + d`` of its item ``l`` in the low
    nibble and factor ``4 (t + loads) + d`` in the high nibble."""
    out = np.zeros((n_slots, 8 * loads), dtype=np.int64)
    for b in range(n_slots // 16):
        block = plane[b * loads * 64 : (b + 1) * loads * 64].astype(np.int64)
        for t in range(loads):
            for lane in range(16):
                for d in range(4):
                    byte = block[t * 64 + 4 * lane + d]
                    out[b * 16 + lane, 4 * t + d] = byte & 15
                    out[b * 16 + lane, 4 * (t + loads) + d] = byte >> 4
    return out


@pytest.mark.parametrize("batch", [64, 100])
def test_quantize_in_batches_matches_a_whole_matrix_reference(rng, batch):
    # issue 18: quantize works batch items at a time to bound its float64 scratch. 1000 items
    # (not a multiple of 16: padding), 21 factors (not a multiple of 8), an all-zero item and
    # exact duplicates in different batches (equal norms: the lower index first)
    n, k = 1000, 21
    Y = rng.standard_normal((n, k)) * rng.lognormal(0.0, 1.0, size=(n, 1))
    Y[[700, 950]] = Y[3]
    Y[500] = 0.0
    Y = Y.astype(np.float32)
    index = quantize(Y, batch=batch)
    order, scale, u, resid, mnorm, w, norms = quantize_reference(Y)
    n_slots, loads = len(index.order), index.loads
    assert loads == 3 and n_slots == 1008  # ceil(21 / 8) loads, 63 blocks of 16
    assert order[np.isin(order, [3, 700, 950])].tolist() == [3, 700, 950]

    np.testing.assert_array_equal(index.order, np.r_[order, [-1] * (n_slots - n)])
    np.testing.assert_array_equal(index.scale, np.r_[scale, np.zeros(n_slots - n, np.float32)])
    codes = np.zeros((n_slots, 8 * loads), dtype=np.int64)
    codes[:n, :k] = u
    np.testing.assert_array_equal(unpack_nibbles(index.coarse, loads, n_slots), codes // 16)
    np.testing.assert_array_equal(unpack_nibbles(index.fine, loads, n_slots), codes % 16)

    def padded(values):
        return np.r_[values, np.zeros(n_slots - n)]

    np.testing.assert_allclose(index.resid, padded(resid), rtol=1e-12, atol=0)
    np.testing.assert_allclose(index.mnorm, padded(mnorm), rtol=1e-12, atol=0)
    f32 = 2.0**-23  # one float32 rounding of nearly equal float64 values
    margin = 4e-6 * norms
    np.testing.assert_allclose(index.resid32, padded(resid * (1 + 1e-5) + margin), rtol=f32)
    np.testing.assert_allclose(index.mnorm32, padded(mnorm * (1 + 1e-5)), rtol=f32)
    np.testing.assert_allclose(index.coarse_slack32, padded(w * (1 + 1e-5) + margin), rtol=f32)
    block_norm = padded(norms).reshape(-1, 16).max(axis=1) * (1 + 1e-12)
    np.testing.assert_allclose(index.block_norm, block_norm, rtol=1e-12, atol=0)

    # the batch size changes nothing, and the screen still answers exactly
    whole = quantize(Y, batch=n)
    for field in dataclasses.fields(index):
        np.testing.assert_array_equal(getattr(index, field.name), getattr(whole, field.name))
    X = rng.standard_normal((40, k)).astype(np.float32)
    rows = np.arange(len(X))
    idx, val = topk_quantized(index, X, rows, 10)
    assert_matches(idx, val, X, Y, rows, 10)


def test_bad_input(factors):
    X, Y = factors
    index = quantize(Y)
    with pytest.raises(IndexError, match="rows"):
        topk_quantized(index, X, [len(X)], 10)
    with pytest.raises(ValueError, match="k must be"):
        topk_quantized(index, X, [0], len(Y) + 1)
    with pytest.raises(ValueError, match="finite"):
        quantize(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="finite"):  # a NaN in a later batch
        quantize(np.r_[np.ones((5, 2)), [[0.0, np.inf]]], batch=2)
    with pytest.raises(ValueError, match="batch must be"):
        quantize(Y, batch=0)


# ---------------------------------------------------------------------------- ALSModel hook
@pytest.fixture
def always_screen(monkeypatch):
    """ALSModel takes the screen for any model size (MovieLens alone is below its thresholds)."""
    import alsresearch.als as als

    monkeypatch.setattr(als, "_SCREEN_MIN_ITEMS", 0)
    monkeypatch.setattr(als, "_SCREEN_MIN_SCORES", 0)


def test_small_models_skip_the_screen_and_large_ones_take_it(monkeypatch):
    """The screen costs seconds of compiling once per machine, so ALSModel takes it only for
    large catalogues or many user x item scores; both paths give the exact top-n."""
    import alsresearch.als as als

    data = load_default()  # 610 x 9742: below both thresholds
    model = ALSModel(factors=8, iterations=2, random_state=0).fit(data)
    rows = np.arange(40)
    idx, val = model.topk_rows(rows, 10)
    assert model._screen is None  # never built
    assert_matches(idx, val, model.user_factors, model.item_factors, rows, 10, model.seen)
    for name, value in (("_SCREEN_MIN_ITEMS", data.n_items), ("_SCREEN_MIN_SCORES", 1)):
        with monkeypatch.context() as m:
            m.setattr(als, name, value)
            model._screen = None
            screened = model.topk_rows(rows, 10)
            assert model._screen is not None, name
            assert (screened[0] == idx).all(axis=1).mean() > 0.95  # swaps on near-ties only


@pytest.fixture(scope="module")
def movielens_model():
    data = load_default()
    return ALSModel(factors=16, iterations=3, random_state=0).fit(data), data


def plain_topk_rows(model, rows, n, exclude_seen=True):
    """The base class's path: score_rows (one float32 gemm) and the shared top-k kernel."""
    return Recommender.rank_rows(model, rows, n, model.seen if exclude_seen else None)


@pytest.mark.parametrize("n", [10, 100])
@pytest.mark.usefixtures("always_screen")
def test_als_topk_rows_on_movielens(movielens_model, n):
    model, data = movielens_model
    rows = np.arange(model.n_users)
    idx, val = model.topk_rows(rows, n)
    assert_matches(idx, val, model.user_factors, model.item_factors, rows, n, model.seen)
    plain_idx, plain_val = plain_topk_rows(model, rows, n)
    np.testing.assert_allclose(val, plain_val, rtol=1e-5, atol=1e-6)
    assert (idx == plain_idx).all(axis=1).mean() > 0.99  # swaps only on float32 near-ties
    ids, scores = model.recommend(data.user_ids[7], n=n)
    np.testing.assert_array_equal(ids, data.item_ids[idx[7]])
    np.testing.assert_array_equal(scores, val[7])


@pytest.mark.usefixtures("always_screen")
def test_als_long_lists_take_the_plain_path(movielens_model):
    model, _ = movielens_model
    rows = np.arange(5)
    idx, val = model.topk_rows(rows, 1500, exclude_seen=False)
    assert_matches(idx, val, model.user_factors, model.item_factors, rows, 1500)


@pytest.mark.usefixtures("always_screen")
def test_recommendations_follow_refit_and_mid_fit_factors():
    data = load_default()
    model = ALSModel(factors=8, iterations=3, random_state=1)
    rows = np.arange(0, data.n_users, 7)
    checked = []

    def callback(iteration, m):
        idx, val = m.topk_rows(rows, 10)  # the screen must follow every iteration
        assert_matches(idx, val, m.user_factors, m.item_factors, rows, 10, m.seen)
        checked.append(iteration)

    model.fit(data, callback=callback)
    assert checked == [1, 2, 3]
    model.fit(data)  # refit from scratch: new arrays
    idx, val = model.topk_rows(rows, 10)
    assert_matches(idx, val, model.user_factors, model.item_factors, rows, 10, model.seen)
    model.item_factors = model.item_factors[::-1].copy()  # replaced from outside
    idx, val = model.topk_rows(rows, 10)
    assert_matches(idx, val, model.user_factors, model.item_factors, rows, 10, model.seen)


@pytest.mark.usefixtures("always_screen")
def test_loaded_model_uses_its_own_factors(tmp_path):
    data = load_default()
    a = ALSModel(factors=8, iterations=2, random_state=2).fit(data)
    b = ALSModel(factors=8, iterations=2, random_state=3).fit(data)
    rows = np.arange(50)
    b.topk_rows(rows, 10)  # b's screen exists before load replaces its factors
    b.set_state(a.get_state())
    idx, val = b.topk_rows(rows, 10)
    assert_matches(idx, val, a.user_factors, a.item_factors, rows, 10, a.seen)
    loaded = ALSModel.load(a.save(tmp_path / "a.npz"))
    np.testing.assert_array_equal(loaded.topk_rows(rows, 10)[0], a.topk_rows(rows, 10)[0])


@pytest.mark.usefixtures("always_screen")
def test_als_topk_rows_with_another_exclusion_matrix(movielens_model, rng):
    # the evaluator passes the train split: those items are excluded, not the model's own
    model, _ = movielens_model
    other = sp.random(model.n_users, model.n_items, density=0.03, random_state=rng, format="csr")
    rows = np.arange(0, model.n_users, 3)
    idx, val = model.topk_rows(rows, 10, exclude=other)
    assert_matches(idx, val, model.user_factors, model.item_factors, rows, 10, other)
    plain = Recommender.rank_rows(model, rows, 10, other)
    assert (idx == plain[0]).all(axis=1).mean() > 0.99
    with pytest.raises(ValueError, match="exclude has shape"):
        model.topk_rows(rows, 10, exclude=other[:, :-1])
