"""ALSModel and its kernels against independent float64 NumPy references (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch import _kernels
from alsresearch.als import ALSConfig, ALSModel
from alsresearch.base import load_model
from alsresearch.data import Interactions
from alsresearch.errors import ModelFileError
from tests.contract import RecommenderContract
from tests.reference import objective, solve_rows

ALPHA, LAM = 40.0, 0.01


def varied_counts(rng, n_users=70, n_items=45, k_max=None) -> sp.csr_matrix:
    """Counts with 0 .. n_items-1 cells per user (several empty users), counts 1..9."""
    k_max = n_items if k_max is None else k_max
    nnz_per_user = rng.integers(0, k_max, size=n_users)
    nnz_per_user[:4] = [0, 1, n_items - 1, 0]
    rows, cols = [], []
    for u, a in enumerate(nnz_per_user):
        rows += [u] * int(a)
        cols += rng.choice(n_items, size=int(a), replace=False).tolist()
    data = rng.integers(1, 10, size=len(rows)).astype(np.float64)
    return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))


def kernel_half_sweep(
    solver, counts, Y, dtype, scaling="raw", steps=3, X0=None, alpha=ALPHA, threads=0, lam=LAM
):
    """One half-sweep of a kernel (``"cholesky"``: fold-in's, ``"exact"``: fit's exact solver,
    ``"cg"``) on ``threads`` threads, with inputs built here (not by als.py) from the
    formulas. ``lam``: one lambda, or one per row (not for ``"cholesky"``)."""
    m = sp.csr_matrix(counts)
    r = m.data.astype(np.float64)
    w = (alpha * (np.log1p(r) if scaling == "log" else r)).astype(dtype)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    gram = Y.astype(np.float64).T @ Y.astype(np.float64)
    lam_rows = np.broadcast_to(np.asarray(lam, dtype=np.float64), (m.shape[0],))
    X = np.zeros((m.shape[0], Y.shape[1]), dtype=dtype) if X0 is None else X0.astype(dtype)
    indptr, indices = m.indptr.astype(np.int64), m.indices.astype(np.int32)
    if solver == "cholesky":
        G = (gram + lam * np.eye(Y.shape[1])).astype(dtype)
        failed = _kernels.cholesky_sweep(indptr, indices, w, Y, G, X, np.empty(0), 16, threads)
    elif solver == "exact":
        args = (indptr, indices, w, Y, gram, lam_rows, X, np.empty(0), 16, np.empty_like(Y))
        failed = _kernels.exact_sweep(*args, threads)
    else:
        args = (indptr, indices, w, Y, gram, lam_rows, X, np.empty(0), steps, 16)
        failed = _kernels.cg_sweep(*args, np.empty_like(Y), threads)
    assert failed == 0
    return X


def rel_err(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------- kernels vs closed form
@pytest.mark.parametrize(("dtype", "tol"), [(np.float32, 1e-4), (np.float64, 1e-9)])
@pytest.mark.parametrize("scaling", ["raw", "log"])
@pytest.mark.parametrize("solver", ["cholesky", "exact"])
@pytest.mark.parametrize("alpha", [ALPHA, 0.0])
def test_cholesky_half_sweep_equals_closed_form(rng, dtype, tol, scaling, solver, alpha):
    """Rows of 0 to 44 cells with 12 factors, so the exact kernel takes both its small
    (fewer cells than factors) and its k x k systems; alpha 0 (every weight 0) sends every row
    to the k x k system."""
    counts = varied_counts(rng)
    Y = rng.normal(scale=0.3, size=(counts.shape[1], 12))
    want = solve_rows(counts, Y, alpha, LAM, scaling)
    X0 = rng.normal(size=want.shape)  # the exact solve must not depend on the start
    got = kernel_half_sweep(solver, counts, Y, dtype, scaling, X0=X0, alpha=alpha)
    assert rel_err(got, want) < tol
    # per row too, so an error in a small row cannot hide behind large rows
    for u in np.flatnonzero(np.diff(counts.indptr)):
        assert rel_err(got[u], want[u]) < 10 * tol, f"row {u}"
    empty = np.diff(counts.indptr) == 0
    assert empty.sum() >= 2 and np.all(got[empty] == 0)


def test_cg_with_k_steps_reaches_the_closed_form(rng):
    """Conjugate gradient is exact after k steps in exact arithmetic; float64 gets close."""
    counts = varied_counts(rng, n_items=30)
    Y = rng.normal(scale=0.3, size=(counts.shape[1], 6))
    want = solve_rows(counts, Y, ALPHA, LAM)
    got = kernel_half_sweep("cg", counts, Y, np.float64, steps=40)
    assert rel_err(got, want) < 1e-6
    # a few warm-started steps from a nearby point improve on the start
    start = want + rng.normal(scale=0.05, size=want.shape)
    improved = kernel_half_sweep("cg", counts, Y, np.float64, steps=2, X0=start)
    assert rel_err(improved, want) < 0.5 * rel_err(start, want)


def test_cg_is_exact_after_nnz_plus_one_steps_on_short_rows(rng):
    """CG runs preconditioned by the shared part G = Y^T Y + lambda I, so a row with n cells
    has at most n eigenvalues other than 1 and CG solves it in n + 1 steps, from any start
    (an empty row in one step). Rows of 0, 1 and 2 cells, 12 factors, 3 steps, float64."""
    n_users, n_items = 60, 40
    nnz = np.arange(n_users) % 3
    rows = np.repeat(np.arange(n_users), nnz)
    cols = np.concatenate([rng.choice(n_items, size=a, replace=False) for a in nnz])
    counts = sp.csr_matrix(
        (rng.integers(1, 10, size=len(rows)).astype(np.float64), (rows, cols)),
        shape=(n_users, n_items),
    )
    Y = rng.normal(scale=0.3, size=(n_items, 12))
    want = solve_rows(counts, Y, ALPHA, LAM)
    start = rng.normal(size=want.shape)
    got = kernel_half_sweep("cg", counts, Y, np.float64, steps=3, X0=start)
    for u in np.flatnonzero(nnz):
        assert rel_err(got[u], want[u]) < 1e-8, f"row {u}"
    one_step = kernel_half_sweep("cg", counts, Y, np.float64, steps=1, X0=start)
    assert np.abs(got[nnz == 0]).max() < 1e-12 and np.abs(one_step[nnz == 0]).max() < 1e-12


def test_cg_rows_take_the_steps_their_length_allows(rng):
    """Step j of cg_rows is taken only by rows with at least step_cells[j] cells: with
    step_cells [0, 0, 20] rows under 20 cells end where two steps leave them, longer rows
    where three do."""
    counts = varied_counts(rng, n_users=120, n_items=45)
    m = sp.csr_matrix(counts)
    nnz = np.diff(m.indptr)
    Y = rng.normal(scale=0.3, size=(m.shape[1], 12))
    X0 = rng.normal(size=(m.shape[0], 12))
    steps = {n: kernel_half_sweep("cg", counts, Y, np.float64, steps=n, X0=X0) for n in (2, 3)}
    X = X0.copy()
    args = (m.indptr.astype(np.int64), m.indices.astype(np.int32), ALPHA * m.data, Y, Y.T @ Y)
    args += (np.full(len(X), LAM), X, np.empty(0), 16, np.empty_like(Y))
    _kernels.rotated_sweep(_kernels.cg_rows, (np.array([0, 0, 20]),), *args)
    long = nnz >= 20
    assert long.sum() > 10 and (~long & (nnz > 3)).sum() > 10
    np.testing.assert_allclose(X[long], steps[3][long], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(X[~long], steps[2][~long], rtol=1e-10, atol=1e-12)


def test_an_interrupted_sweep_leaves_the_rows_in_their_own_basis(rng):
    """rotated_rows moves the rows to the rotated basis and back even when the kernel is
    interrupted (Ctrl-C between units), so the factors stay usable."""
    Y = rng.normal(scale=0.3, size=(30, 6))
    basis = _kernels.SweepBasis.of(Y.T @ Y, np.full(50, LAM), Y.dtype)
    X0 = rng.normal(size=(50, 6))
    X = X0.copy()

    def interrupted(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _kernels.rotated_rows(interrupted, (X,), X, basis.into, basis.back, 16)
    np.testing.assert_allclose(X, X0, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("n", "k", "in_place"), [(1031, 64, False), (1031, 64, True),
                                                  (2051, 128, True), (7, 64, True)])  # fmt: skip
def test_basis_changes_are_the_float64_product(rng, n, k, in_place):
    """rows_times (the fit's basis changes: the register-blocked kernel on AVX-512 targets for
    float32 with a multiple of 64 columns, else BLAS) and the kernel itself, called directly
    so it is checked on any CPU: ``Y M`` to float32 rounding, in place too, rows beyond a
    multiple of four included, the same on any number of threads."""
    Y = rng.normal(size=(n, k)).astype(np.float32)
    M = rng.normal(size=(k, k)).astype(np.float32)
    want = Y.astype(np.float64) @ M.astype(np.float64)
    tol = 1e-6 * np.abs(want).max()
    results = []
    for threads in (1, 3):
        out = Y.copy() if in_place else np.empty_like(Y)
        _kernels.rows_times(out if in_place else Y, M, out, threads)
        results.append(out)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], want, atol=tol)
    direct = np.empty_like(Y)
    _kernels.times_rows(Y, M, direct, 0, n)
    np.testing.assert_allclose(direct, want, atol=tol)
    part = np.zeros_like(Y)
    _kernels.times_rows(Y, M, part, 2, n - 1)  # a range: only its rows, the same values
    np.testing.assert_array_equal(part[2 : n - 1], direct[2 : n - 1])
    assert not part[:2].any() and not part[n - 1 :].any()


def test_the_gram_matrix_does_not_depend_on_the_thread_count(rng):
    """fit's ``F^T F`` sums fixed chunks of rows on the kernels' threads."""
    from alsresearch.als import _GRAM_ROWS, _gram

    F = rng.random((3 * _GRAM_ROWS + 5, 8), dtype=np.float32)
    one, three = _gram(F, 1), _gram(F, 3)
    np.testing.assert_array_equal(one, three)
    np.testing.assert_allclose(one, F.astype(np.float64).T @ F, rtol=1e-5)


def test_cg_reports_a_gram_matrix_that_is_not_finite(rng):
    counts = varied_counts(rng)
    Y = rng.normal(size=(counts.shape[1], 4))
    m = sp.csr_matrix(counts)
    X = np.ones((m.shape[0], 4))
    gram = np.full((4, 4), np.inf)
    failed = _kernels.cg_sweep(
        m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float64),
        Y, gram, np.full(len(X), LAM), X, np.empty(0), 3, 16, np.empty_like(Y),
    )  # fmt: skip
    assert failed == -1 and np.all(X == 1)


def test_kernels_do_not_depend_on_the_thread_count(rng):
    counts = varied_counts(rng, n_users=300)
    Y = rng.normal(scale=0.3, size=(counts.shape[1], 16))
    X0 = rng.random((counts.shape[0], 16))
    per_row = LAM * rng.uniform(0.5, 4, size=counts.shape[0])
    for solver, lam in (("cholesky", LAM), ("exact", LAM), ("cg", LAM), ("exact", per_row),
                        ("cg", per_row)):  # fmt: skip
        one, three = (
            kernel_half_sweep(solver, counts, Y, np.float32, X0=X0, threads=t, lam=lam)
            for t in (1, 3)
        )
        np.testing.assert_array_equal(one, three)


# ---------------------------------------------------------------------- training
@pytest.fixture
def counts(rng) -> sp.csr_matrix:
    return varied_counts(rng, n_users=90, n_items=60, k_max=25)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_a_fit_split_into_many_kernel_calls_equals_one_call_per_half_sweep(
    rng, monkeypatch, solver
):
    """fit splits each half-sweep into kernel calls on ranges of whole blocks of rows, run on
    several threads (and Ctrl-C is seen between calls): the factors must be those of one call
    on one thread."""
    import alsresearch.als as als

    data = Interactions(varied_counts(rng, n_users=700, n_items=300, k_max=40))
    fits = {}
    for units, threads in ((1, 1), (10**9, 2)):  # one call; one block of rows per call
        monkeypatch.setattr(als, "_UNITS_PER_THREAD", units)
        model = ALSModel(
            factors=8, iterations=3, solver=solver, random_state=0, num_threads=threads
        )
        model.fit(data)
        fits[units] = (model.user_factors, model.item_factors, model.loss_history)
    (u1, i1, loss1), (u2, i2, loss2) = fits.values()
    assert data.n_users > 10 * als._BLOCK  # the small chunks really are many calls
    assert np.array_equal(u1, u2) and np.array_equal(i1, i2)
    assert loss1 == loss2


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("scaling", ["none", "count"])
def test_factors_kept_in_the_sweeps_basis_are_the_true_factors(counts, solver, scaling):
    """Without a callback, fit keeps each side in its last half-sweep's basis between sweeps;
    the factors it returns, and its losses, are those of a fit that moves them back after
    every iteration (a callback sees true factors), up to float64 rounding."""
    kw = dict(factors=8, iterations=4, solver=solver, dtype="float64", random_state=3)
    kept = ALSModel(regularization_scaling=scaling, **kw).fit(counts)
    back = ALSModel(regularization_scaling=scaling, **kw).fit(counts, callback=lambda i, m: None)
    np.testing.assert_allclose(kept.user_factors, back.user_factors, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(kept.item_factors, back.item_factors, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(kept.loss_history, back.loss_history, rtol=1e-10)
    want = objective(counts, kept.user_factors, kept.item_factors, ALPHA, LAM, mode=scaling)
    assert kept.loss_history[-1] == pytest.approx(want, rel=1e-10)


def test_an_interrupted_fit_leaves_the_true_factors(counts, monkeypatch):
    """Ctrl-C in the second iteration's first kernel call, after the user rows moved to that
    half-sweep's basis: fit still leaves the factors of the first iteration, as a fit of one
    iteration gives them."""
    import alsresearch._kernels as kernels

    kw = dict(factors=8, solver="cg", dtype="float64", random_state=3)
    one = ALSModel(iterations=1, **kw).fit(counts)
    calls = []
    real = kernels.over_blocks

    def interrupting(kernel, *args, **kwargs):
        if kernel is kernels.cg_rows:
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
        return real(kernel, *args, **kwargs)

    monkeypatch.setattr(kernels, "over_blocks", interrupting)
    model = ALSModel(iterations=3, **kw)
    with pytest.raises(KeyboardInterrupt):
        model.fit(counts)
    np.testing.assert_allclose(model.user_factors, one.user_factors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.item_factors, one.item_factors, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("scaling", ["raw", "log"])
def test_loss_history_is_the_dense_objective(counts, dtype, rtol, solver, scaling):
    seen = []

    def record(iteration, model):
        seen.append(iteration)
        want = objective(counts, model.user_factors, model.item_factors, ALPHA, LAM, scaling)
        assert model.loss_history[-1] == pytest.approx(want, rel=rtol)
        assert len(model.loss_history) == iteration

    model = ALSModel(
        factors=8, iterations=4, solver=solver, dtype=dtype, scaling=scaling, random_state=3
    )
    model.fit(counts, callback=record)
    assert seen == [1, 2, 3, 4]
    assert model.user_factors.dtype == np.dtype(dtype)
    assert model.loss(counts) == pytest.approx(model.loss_history[-1], rel=rtol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cholesky_loss_never_increases(counts, dtype):
    model = ALSModel(factors=10, iterations=12, solver="cholesky", dtype=dtype, random_state=0)
    history = np.array(model.fit(counts).loss_history)
    slack = 1e-6 if dtype == "float32" else 1e-12  # float32 round-off only
    assert np.all(np.diff(history) <= slack * history[:-1])
    assert history[-1] < history[0]


def test_cholesky_iterations_are_exact_alternating_solves(counts):
    """Two iterations of the model equal two alternating reference half-sweeps."""
    model = ALSModel(factors=6, iterations=1, solver="cholesky", dtype="float64", random_state=5)
    rng = np.random.default_rng(5)
    rng.standard_normal((counts.shape[0], 6))  # the model draws users first, then items
    Y0 = rng.standard_normal((counts.shape[1], 6)) / np.sqrt(6)  # variance 1/k
    model.fit(counts)
    X1 = solve_rows(counts, Y0, ALPHA, LAM)
    Y1 = solve_rows(counts.T, X1, ALPHA, LAM)
    assert rel_err(model.user_factors, X1) < 1e-9
    assert rel_err(model.item_factors, Y1) < 1e-9


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cg_final_loss_is_close_to_cholesky(rng, dtype):
    # a less tiny problem so that CG steps have something to approximate, with counts mostly 1
    # and a geometric tail, as in event logs. The default schedule (3 steps on long user rows,
    # 2 on the rest) ends 1.2% above the exact solver here after 15 iterations; 4 steps 0.3%.
    counts = varied_counts(rng, n_users=400, n_items=150, k_max=40)
    counts.data = rng.geometric(0.6, size=counts.nnz).astype(np.float64)
    kw = {"factors": 16, "iterations": 15, "dtype": dtype, "random_state": 11}
    exact = ALSModel(solver="cholesky", **kw).fit(counts).loss_history[-1]
    cg = ALSModel(solver="cg", **kw).fit(counts).loss_history[-1]
    more = ALSModel(solver="cg", cg_steps=4, **kw).fit(counts).loss_history[-1]
    assert 0 <= (cg - exact) / exact < 0.02
    assert 0 <= (more - exact) / exact < 0.005


def test_same_seed_same_factors_and_threads_do_not_matter(counts):
    a = ALSModel(factors=8, iterations=3, random_state=42, num_threads=1).fit(counts)
    b = ALSModel(factors=8, iterations=3, random_state=42, num_threads=0).fit(counts)
    c = ALSModel(factors=8, iterations=3, random_state=43).fit(counts)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_callback_can_stop_and_sees_a_usable_model(small_interactions):
    calls = []

    def stop_after_two(iteration, model):
        items, _ = model.recommend(small_interactions.user_ids[5], n=3)
        calls.append((iteration, len(items)))
        return iteration == 2

    model = ALSModel(factors=4, iterations=10, random_state=0)
    model.fit(small_interactions, callback=stop_after_two)
    assert calls == [(1, 3), (2, 3)]
    assert len(model.loss_history) == 2


# ---------------------------------------------------------------------- fold-in, similarity
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_fold_in_equals_the_next_half_sweep_row(counts, dtype, solver):
    data = Interactions(counts, user_ids=np.arange(counts.shape[0]) * 10)
    model = ALSModel(factors=8, iterations=3, dtype=dtype, solver=solver, random_state=1)
    model.fit(data)
    next_rows = solve_rows(counts, model.item_factors, ALPHA, LAM)
    tol = 1e-4 if dtype == "float32" else 1e-9
    for u in (1, 2, 7, 20):
        items = counts.indices[counts.indptr[u] : counts.indptr[u + 1]]
        weights = counts.data[counts.indptr[u] : counts.indptr[u + 1]]
        assert rel_err(model.fold_in(items, weights), next_rows[u]) < tol
        # and the public entry point ranks unseen items by those factors
        got, scores = model.recommend_for_history(data.item_ids[items], weights, n=5)
        ref_scores = model.item_factors.astype(np.float64) @ next_rows[u]
        ref_scores = np.sort(np.delete(ref_scores, items))[::-1][:5]  # user 2 has 1 unseen item
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-3, atol=1e-5)
        assert set(got.tolist()).isdisjoint(items.tolist())


def test_fold_in_sums_duplicates_and_rejects_bad_input(counts):
    model = ALSModel(factors=4, iterations=2, random_state=0).fit(counts)
    np.testing.assert_allclose(
        model.fold_in([1, 1, 2, 5], [1, 2, 3, 0]), model.fold_in([2, 1], [3, 3]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="item_idx must lie"):
        model.fold_in([counts.shape[1]], [1.0])
    with pytest.raises(ValueError, match="equal length"):
        model.fold_in([1, 2], [1.0])
    with pytest.raises(ValueError, match="weights must be finite"):
        model.fold_in([1], [-1.0])


def test_similar_items_is_cosine_without_the_item_itself(small_interactions):
    model = ALSModel(factors=6, iterations=3, random_state=0).fit(small_interactions)
    Y = model.item_factors.astype(np.float64)
    unit = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    j = 4
    cos = unit @ unit[j]
    cos[j] = -np.inf
    want = np.argsort(-cos, kind="stable")[:5]
    items, sims = model.similar_items(small_interactions.item_ids[j], n=5)
    np.testing.assert_array_equal(items, small_interactions.item_ids[want])
    np.testing.assert_allclose(sims, cos[want], rtol=1e-5)
    assert small_interactions.item_ids[j] not in items.tolist()


# ---------------------------------------------------------------------- save / load, errors
def test_save_load_keeps_factors_config_and_history(counts, tmp_path):
    model = ALSModel(factors=5, iterations=2, alpha=3.0, scaling="log", random_state=9)
    model.fit(counts)
    loaded = ALSModel.load(model.save(tmp_path / "m.npz"))
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.loss_history == model.loss_history
    np.testing.assert_array_equal(loaded.fold_in([1, 2], [1, 3]), model.fold_in([1, 2], [1, 3]))


def test_restore_rejects_factors_of_the_wrong_shape(counts, tmp_path):
    model = ALSModel(factors=5, iterations=1, random_state=0).fit(counts)
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, bad in [
        ("state_item_factors", arrays["state_item_factors"][:-1]),
        ("state_user_factors", arrays["state_user_factors"][:, :3]),
    ]:
        broken = tmp_path / f"broken_{key}.npz"
        np.savez(broken, **{**arrays, key: bad})
        with pytest.raises(ModelFileError, match=key.removeprefix("state_")):
            load_model(broken)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("factors", 0),
        ("factors", 2.5),
        ("factors", True),
        ("iterations", 0),
        ("alpha", -1.0),
        ("alpha", float("nan")),
        ("regularization", 0.0),
        ("regularization", -0.1),
        ("cg_steps", 0),
        ("solver", "lu"),
        ("scaling", "sqrt"),
        ("dtype", "int8"),
        ("random_state", -1),
        ("num_threads", -2),
    ],
)
def test_bad_hyperparameters_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ALSModel(**{field: value})


def test_config_is_frozen_and_round_trips_through_a_dict():
    cfg = ALSModel(factors=7, dtype=np.float64, random_state=1).config
    assert cfg.dtype == "float64"
    assert ALSConfig(**cfg.to_dict()) == cfg
    with pytest.raises(AttributeError):
        cfg.factors = 3  # type: ignore[misc]


def test_bad_training_data_is_a_clear_error(counts):
    negative = counts.copy()
    negative.data[0] = -1
    with pytest.raises(ValueError, match=">= 0"):
        ALSModel(factors=3).fit(negative)
    with pytest.raises(TypeError, match="Interactions or a scipy sparse"):
        ALSModel(factors=3).fit(counts.toarray())
    model = ALSModel(factors=3, iterations=1).fit(counts)
    with pytest.raises(ValueError, match="shape"):
        model.loss(counts[:-1])


# ---------------------------------------------------------------------- shared contract
class TestALSContract(RecommenderContract):
    @pytest.fixture
    def make_model(self):
        return lambda: ALSModel(factors=8, iterations=3, random_state=0)


# ---------------------------------------------------------------------- parity with implicit
def _implicit_ndcg(user_factors, item_factors, train, test) -> float:
    """NDCG@10 of factors, computed by implicit's own evaluation (an independent reference)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # implicit warns about BLAS threads
        holder = AlternatingLeastSquares(factors=user_factors.shape[1])
    holder.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    holder.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    metrics = ranking_metrics_at_k(
        holder, train.matrix.tocsr(), test.matrix.tocsr(), K=10, show_progress=False
    )
    return float(metrics["ndcg"])


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_ndcg_matches_implicit_on_movielens(movielens, solver):
    """Same data, hyperparameters and split: NDCG@10 within 3% of implicit's CPU ALS.

    implicit uses ``c = alpha * r``, so it gets ``1 + 40 r`` with its alpha = 1 (the same
    objective). Both NDCGs are averaged over three seeds, so the test compares the models, not
    one lucky initialisation.
    """
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from alsresearch.split import random_holdout

    train, test = random_holdout(movielens, test_fraction=0.2, seed=0)
    confidence = train.matrix.astype(np.float32)
    confidence.data = 1 + ALPHA * confidence.data
    ours, theirs = [], []
    for seed in (0, 1, 2):
        model = ALSModel(
            factors=64,
            iterations=15,
            alpha=ALPHA,
            regularization=LAM,
            solver=solver,
            random_state=seed,
        ).fit(train)
        ours.append(_implicit_ndcg(model.user_factors, model.item_factors, train, test))
        with threadpool_limits(limits=1, user_api="blas"):  # implicit warns about BLAS threads
            reference = AlternatingLeastSquares(
                factors=64,
                iterations=15,
                alpha=1.0,
                regularization=LAM,
                use_cg=solver == "cg",
                random_state=seed,
            )
        reference.cg_steps = model.config.cg_steps  # implicit's default is 3, ours 4
        with threadpool_limits(limits=1, user_api="blas"):
            reference.fit(confidence, show_progress=False)
        theirs.append(_implicit_ndcg(reference.user_factors, reference.item_factors, train, test))
    ours_mean, theirs_mean = np.mean(ours), np.mean(theirs)
    assert theirs_mean > 0.05, "implicit's NDCG is implausibly low: the set-up is broken"
    assert abs(ours_mean - theirs_mean) / theirs_mean < 0.03, (ours, theirs)
