"""``regularization_scaling`` ("none", "count", "frequency") against float64 references
(tests/reference.py) and hand-computed lambdas: the kernels, fit, the objective, fold-in and
the model file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.als import ALSModel, objective, row_regularization
from alsresearch.base import load_model
from alsresearch.data import Interactions
from tests.reference import objective as reference_objective
from tests.reference import row_lambdas, solve_rows
from tests.test_als import ALPHA, LAM, kernel_half_sweep, rel_err, varied_counts

MODES = [("none", 1.0), ("count", 1.0), ("frequency", 1.0), ("frequency", 0.5)]


@pytest.fixture
def counts(rng) -> sp.csr_matrix:
    return varied_counts(rng, n_users=90, n_items=60, k_max=25)


def test_row_lambdas_by_hand():
    """Two users, three items, alpha 2: user 0 has counts 1 and 2 (c = 3, 1, 5: weight 9),
    user 1 none (c = 1, 1, 1: weight 3); mean weight 6."""
    m = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]))
    w = 2.0 * m.data
    lam = 0.5
    none, _ = row_regularization(m, w, lam, "none")
    count, _ = row_regularization(m, w, lam, "count")
    freq, mean = row_regularization(m, w, lam, "frequency", 1.0)
    half, _ = row_regularization(m, w, lam, "frequency", 0.5)
    given, _ = row_regularization(m, w, lam, "frequency", 1.0, mean_weight=3.0)
    np.testing.assert_allclose(none, [0.5, 0.5])
    np.testing.assert_allclose(count, [1.0, 0.5])  # 2 cells; an empty row keeps lambda
    assert mean == 6.0
    np.testing.assert_allclose(freq, [0.75, 0.25])  # 0.5 * 9/6, 0.5 * 3/6
    np.testing.assert_allclose(half, [0.5 * 1.5**0.5, 0.5 * 0.5**0.5])
    np.testing.assert_allclose(given, [1.5, 0.5])  # against the given mean 3


@pytest.mark.parametrize(
    ("solver", "dtype", "tol"),
    [("exact", np.float32, 1e-4), ("exact", np.float64, 1e-9), ("cg", np.float64, 1e-9)],
)
def test_kernels_solve_rows_with_their_own_lambda(rng, dtype, tol, solver):
    """Every row has its own lambda, spread over four orders of magnitude: the exact kernel
    (both its small and its k x k systems) and CG with enough steps give the closed form. (CG
    in float32 stalls at its round-off, ~1e-2 on the worst-conditioned rows here: lambda 1e-3
    and counts to 9.)"""
    counts = varied_counts(rng, n_items=30)
    Y = rng.normal(scale=0.3, size=(counts.shape[1], 12))
    lam = 10.0 ** rng.uniform(-3, 1, size=counts.shape[0])
    want = solve_rows(counts, Y, ALPHA, lam)
    steps = 40 if solver == "cg" else 3
    got = kernel_half_sweep(solver, counts, Y, dtype, X0=rng.normal(size=want.shape), lam=lam)
    got = kernel_half_sweep(solver, counts, Y, dtype, steps=steps, X0=got, lam=lam)
    for u in np.flatnonzero(np.diff(counts.indptr)):
        assert rel_err(got[u], want[u]) < 10 * tol, f"row {u}"
    assert np.abs(got[np.diff(counts.indptr) == 0]).max() < tol  # empty rows solve to 0


@pytest.mark.parametrize(("mode", "exponent"), MODES)
def test_fit_is_exact_alternating_solves_with_scaled_lambdas(counts, mode, exponent):
    """Cholesky in float64: the loss never increases, every entry of loss_history is the dense
    objective with per-row lambdas, and the last half-sweep's item factors are the closed-form
    solve against the final user factors."""
    kw = {"regularization_scaling": mode, "regularization_exponent": exponent}
    seen = []

    def record(iteration, model):
        want = reference_objective(
            counts, model.user_factors, model.item_factors, ALPHA, LAM, "raw", mode, exponent
        )
        seen.append((model.loss_history[-1], want))

    model = ALSModel(
        factors=8, iterations=6, solver="cholesky", dtype="float64", random_state=2, **kw
    )
    model.fit(counts, callback=record)
    got, want = np.array(seen).T
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.all(np.diff(got) <= 1e-12 * got[:-1]) and got[-1] < got[0]
    lam_items = row_lambdas(counts.T, ALPHA, LAM, mode, exponent)
    Y = solve_rows(counts.T, model.user_factors, ALPHA, lam_items)
    assert rel_err(model.item_factors, Y) < 1e-9
    assert model.loss(counts) == pytest.approx(got[-1], rel=1e-10)
    assert objective(counts, model.user_factors, model.item_factors, ALPHA, LAM, **kw) == (
        pytest.approx(want[-1], rel=1e-10)
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("mode", "exponent"), MODES)
def test_cg_loss_history_is_the_dense_objective(counts, dtype, mode, exponent):
    model = ALSModel(
        factors=8, iterations=4, dtype=dtype, random_state=3,
        regularization_scaling=mode, regularization_exponent=exponent,
    )  # fmt: skip
    model.fit(counts)
    want = reference_objective(
        counts, model.user_factors, model.item_factors, ALPHA, LAM, "raw", mode, exponent
    )
    assert model.loss_history[-1] == pytest.approx(want, rel=1e-5 if dtype == "float32" else 1e-10)


def test_the_modes_differ_and_exponent_zero_is_none(counts):
    def fit(mode, exponent=1.0):
        model = ALSModel(
            factors=8, iterations=3, random_state=0, regularization=5.0,
            regularization_scaling=mode, regularization_exponent=exponent,
        )  # fmt: skip
        return model.fit(counts).user_factors

    fits = {(m, e): fit(m, e) for m, e in [("none", 1.0), ("count", 1.0), ("frequency", 1.0)]}
    fits["frequency", 0] = fit("frequency", 0)
    np.testing.assert_array_equal(fits["frequency", 0], fits["none", 1.0])
    assert not np.allclose(fits["count", 1.0], fits["none", 1.0], rtol=1e-3)
    assert not np.allclose(fits["frequency", 1.0], fits["none", 1.0], rtol=1e-3)


@pytest.mark.parametrize(("mode", "exponent"), MODES)
def test_fold_in_regularizes_the_new_row_as_training_would(counts, mode, exponent, tmp_path):
    """A training user's own history folds in to that user's next half-sweep row, solved with
    the lambda that row has in training (frequency: against the training users' mean weight),
    also after a save and load."""
    data = Interactions(counts, user_ids=np.arange(counts.shape[0]) * 10)
    model = ALSModel(
        factors=8, iterations=3, dtype="float64", random_state=1, regularization=2.0,
        regularization_scaling=mode, regularization_exponent=exponent,
    )  # fmt: skip
    model.fit(data)
    lam_users = row_lambdas(counts, ALPHA, 2.0, mode, exponent)
    next_rows = solve_rows(counts, model.item_factors, ALPHA, lam_users)
    loaded = load_model(model.save(tmp_path / "m.npz"))
    for u in (1, 2, 7, 20):
        items = counts.indices[counts.indptr[u] : counts.indptr[u + 1]]
        weights = counts.data[counts.indptr[u] : counts.indptr[u + 1]]
        assert rel_err(model.fold_in(items, weights), next_rows[u]) < 1e-9
        np.testing.assert_array_equal(loaded.fold_in(items, weights), model.fold_in(items, weights))


def test_a_frequency_model_file_needs_its_mean_weight(counts):
    model = ALSModel(factors=4, iterations=1, regularization_scaling="frequency").fit(counts)
    state = model.get_state()
    del state["user_mean_weight"]
    fresh = ALSModel(factors=4, regularization_scaling="frequency")
    fresh._set_training_data(Interactions(counts))
    with pytest.raises(ValueError, match="user_mean_weight"):
        fresh.set_state(state)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("regularization_scaling", "linear", "regularization_scaling"),
        ("regularization_scaling", None, "regularization_scaling"),
        ("regularization_exponent", -0.5, "regularization_exponent"),
        ("regularization_exponent", float("nan"), "regularization_exponent"),
    ],
)
def test_bad_scaling_settings_name_the_field(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ALSModel(**{field: value})


def test_zero_regularization_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="regularization must be > 0, got 0: lambda keeps"):
        ALSModel(regularization=0)
