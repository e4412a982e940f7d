"""Between fits: warm-started fits (``fit(init=...)``), ``update_users`` / ``update_items`` /
``add_items``, against float64 closed-form solves (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.als import ALSModel
from alsresearch.base import load_model
from alsresearch.data import Interactions
from alsresearch.errors import UnknownIdError
from tests.reference import row_lambdas, solve_rows
from tests.test_als import ALPHA, LAM, rel_err, varied_counts

K = 6


@pytest.fixture
def data(rng) -> Interactions:
    counts = varied_counts(rng, n_users=80, n_items=50, k_max=20)
    return Interactions(
        counts,
        user_ids=np.arange(80) * 10,
        item_ids=np.array([f"i{j}" for j in range(50)]),
    )


def exact(**kw) -> ALSModel:
    return ALSModel(factors=K, solver="cholesky", dtype="float64", random_state=7, **kw)


def test_warm_start_is_the_alternating_solve_from_the_previous_factors(data):
    """A model fitted on users 0..59 and items 0..39 warm-starts a fit on every user and item:
    matched rows start from its factors, the others from the cold fit's random draw."""
    old = exact(iterations=3).fit(
        Interactions(data.matrix[:60, :40], data.user_ids[:60], data.item_ids[:40])
    )
    model = exact(iterations=1).fit(data, init=old)
    assert model.warm_start == {"users": 60, "items": 40}
    rng = np.random.default_rng(7)  # the model's draw: users, then items
    rng.standard_normal((80, K))
    Y0 = rng.standard_normal((50, K)) / np.sqrt(K)
    Y0[:40] = old.item_factors
    X1 = solve_rows(data.matrix, Y0, ALPHA, LAM)
    Y1 = solve_rows(data.matrix.T, X1, ALPHA, LAM)
    assert rel_err(model.user_factors, X1) < 1e-9
    assert rel_err(model.item_factors, Y1) < 1e-9


def test_warm_start_reaches_a_lower_loss_sooner(data):
    cold = exact(iterations=10).fit(data)
    warm = exact(iterations=2).fit(data, init=cold)
    fresh = exact(iterations=2).fit(data)
    assert warm.loss_history[-1] < fresh.loss_history[-1]
    assert warm.loss_history[-1] <= cold.loss_history[-1] * (1 + 1e-12)


def test_warm_start_needs_a_matching_fitted_model(data):
    with pytest.raises(ValueError, match=r"factors=6, dtype='float64'.*factors=8"):
        ALSModel(factors=8, dtype="float64").fit(data, init=exact(iterations=1).fit(data))
    with pytest.raises(ValueError, match="dtype"):
        ALSModel(factors=K).fit(data, init=exact(iterations=1).fit(data))
    with pytest.raises(TypeError, match="init must be a fitted ALSModel"):
        exact().fit(data, init="models/als.npz")
    with pytest.raises(Exception, match="not fitted"):
        exact().fit(data, init=exact())


@pytest.mark.parametrize("mode", ["none", "count", "frequency"])
def test_update_users_solves_their_rows_exactly(data, rng, mode):
    model = exact(iterations=2, regularization_scaling=mode).fit(data)
    before = model.user_factors.copy()
    # user 30 has a new history, user 999 is new
    counts = sp.csr_matrix(([3.0, 1.0, 2.0, 5.0], ([0, 0, 1, 1], [4, 9, 9, 20])), shape=(2, 50))
    update = Interactions(counts, user_ids=np.array([300, 999]), item_ids=data.item_ids)
    model.update_users(update)
    lam = row_lambdas(counts, ALPHA, LAM, mode, mean_weight=_mean_weight(data.matrix))
    want = solve_rows(counts, model.item_factors, ALPHA, lam)
    assert rel_err(model.user_factors[30], want[0]) < 1e-9
    assert model.n_users == 81 and rel_err(model.user_factors[80], want[1]) < 1e-9
    others = np.setdiff1d(np.arange(80), [30])
    np.testing.assert_array_equal(model.user_factors[others], before[others])
    # the new histories are the seen items now
    assert not {"i4", "i9"} & set(model.recommend(300, n=45)[0].tolist())
    assert not {"i9", "i20"} & set(model.recommend(999, n=45)[0].tolist())


def _mean_weight(counts) -> float:
    """The training users' mean weight sum_i c_ui (alpha 40, raw counts)."""
    return float(np.mean(counts.shape[1] + ALPHA * np.asarray(counts.sum(axis=1)).ravel()))


def test_add_items_folds_in_new_items_against_the_user_factors(data, tmp_path):
    model = exact(iterations=2, regularization_scaling="count").fit(data)
    counts = sp.csr_matrix(
        ([1.0, 4.0, 2.0, 1.0], ([3, 5, 5, 70], [0, 0, 1, 1])), shape=(80, 2)
    )  # users x two new items
    model.add_items(Interactions(counts, data.user_ids, np.array(["new1", "new2"])))
    lam = row_lambdas(counts.T, ALPHA, LAM, "count")
    want = solve_rows(counts.T, model.user_factors, ALPHA, lam)
    assert model.n_items == 52
    assert rel_err(model.item_factors[50:], want) < 1e-9
    # the new items are ranked by every user who does not have them yet, and are recommendable
    scores = model.score_rows(np.arange(80))[:, 50:]
    np.testing.assert_allclose(scores, model.user_factors @ want.T, rtol=1e-6, atol=1e-9)
    assert "new1" not in model.recommend(30, n=52)[0].tolist()  # user 3 has it: index 3 -> id 30
    assert "new1" in model.recommend(0, n=52)[0].tolist()
    loaded = load_model(model.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.item_ids.tolist()[-2:] == ["new1", "new2"]


def test_updates_reject_what_they_cannot_place(data):
    model = exact(iterations=1).fit(data)
    known = Interactions(sp.csr_matrix(np.ones((80, 1))), data.user_ids, np.array(["i3"]))
    with pytest.raises(ValueError, match=r"already has \['i3'\].*update_items"):
        model.add_items(known)
    stranger = Interactions(sp.csr_matrix(np.ones((1, 1))), np.array([12345]), np.array(["x"]))
    with pytest.raises(UnknownIdError):
        model.add_items(stranger)  # user 12345 is unknown
    text_users = Interactions(sp.csr_matrix(np.ones((1, 50))), np.array(["u1"]), data.item_ids)
    with pytest.raises(ValueError, match="user ids are integers"):
        model.update_users(text_users)


def test_update_items_resolves_a_known_item_from_its_full_history(data):
    model = exact(iterations=2).fit(data)
    column = sp.csr_matrix(([2.0, 1.0], ([1, 2], [0, 0])), shape=(80, 1))
    model.update_items(Interactions(column, data.user_ids, np.array(["i7"])))
    want = solve_rows(column.T, model.user_factors, ALPHA, LAM)[0]
    assert model.n_items == 50 and rel_err(model.item_factors[7], want) < 1e-9
    assert set(model.seen[:, 7].nonzero()[0].tolist()) == {1, 2}
