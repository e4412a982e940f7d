"""``confidence="linear"`` (implicit's ``c = alpha * r`` on observed cells, 1 elsewhere) against
float64 references (tests/reference.py): the kernels, fit, the objective and fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.als import ALSModel, confidence_minus_one, objective
from tests.reference import objective as reference_objective
from tests.reference import row_lambdas, solve_rows
from tests.test_als import LAM, rel_err, varied_counts


@pytest.fixture
def counts(rng) -> sp.csr_matrix:
    return varied_counts(rng, n_users=90, n_items=60, k_max=25)


def test_linear_confidence_by_hand():
    """Counts 1 and 3 with alpha 2: c = 2 and 6 (hkv: 3 and 7); w = c - 1."""
    r = np.array([1.0, 3.0])
    np.testing.assert_array_equal(confidence_minus_one(r, 2.0, "raw", np.float64, "linear"), [1, 5])
    np.testing.assert_array_equal(confidence_minus_one(r, 2.0, "raw", np.float64, "hkv"), [2, 6])
    logs = confidence_minus_one(r, 2.0, "log", np.float64, "linear")
    np.testing.assert_allclose(logs, 2.0 * np.log1p(r) - 1)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("alpha", [0.5, 15.0])
def test_fit_minimises_the_linear_objective(counts, solver, alpha):
    """alpha 0.5 makes count-1 cells weigh 0.5, less than an unobserved cell (w < 0: the exact
    solver's small systems cannot take them and the k x k system must). Cholesky in float64:
    every iteration is the closed-form solve of the linear objective, its loss never increases
    and equals the dense objective."""
    seen = []

    def record(iteration, model):
        want = reference_objective(
            counts, model.user_factors, model.item_factors, alpha, LAM, confidence="linear"
        )
        seen.append((model.loss_history[-1], want))

    model = ALSModel(
        factors=8, iterations=5, alpha=alpha, solver=solver, dtype="float64", random_state=4,
        confidence="linear",
    )  # fmt: skip
    model.fit(counts, callback=record)
    got, want = np.array(seen).T
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert objective(
        counts, model.user_factors, model.item_factors, alpha, LAM, confidence="linear"
    ) == pytest.approx(want[-1], rel=1e-10)
    if solver == "cholesky":
        assert np.all(np.diff(got) <= 1e-12 * got[:-1])
        Y = solve_rows(counts.T, model.user_factors, alpha, LAM, confidence="linear")
        assert rel_err(model.item_factors, Y) < 1e-9


@pytest.mark.parametrize("mode", ["none", "frequency"])
def test_fold_in_uses_linear_confidence(counts, mode):
    model = ALSModel(
        factors=8, iterations=3, alpha=3.0, dtype="float64", random_state=1,
        confidence="linear", regularization_scaling=mode,
    )  # fmt: skip
    model.fit(counts)
    lam = row_lambdas(counts, 3.0, LAM, mode, confidence="linear")
    want = solve_rows(counts, model.item_factors, 3.0, lam, confidence="linear")
    for u in (1, 2, 7, 20):
        items = counts.indices[counts.indptr[u] : counts.indptr[u + 1]]
        weights = counts.data[counts.indptr[u] : counts.indptr[u + 1]]
        assert rel_err(model.fold_in(items, weights), want[u]) < 1e-9


def test_linear_confidence_differs_from_hkv_and_needs_alpha(counts):
    kw = {"factors": 8, "iterations": 2, "random_state": 0, "alpha": 2.0}
    linear = ALSModel(confidence="linear", **kw).fit(counts).item_factors
    hkv = ALSModel(**kw).fit(counts).item_factors
    assert not np.allclose(linear, hkv, rtol=1e-2)
    with pytest.raises(ValueError, match="confidence='linear' needs alpha > 0"):
        ALSModel(confidence="linear", alpha=0.0)
    with pytest.raises(ValueError, match="confidence"):
        ALSModel(confidence="implicit")
