"""alsresearch.compat.implicit.AlternatingLeastSquares against the real implicit 0.7 CPU ALS.

Every check runs the same data and parameters through both classes, or ranks the same factors
both ways (our factors copied into an implicit model: the API is checked, not the random
initialisation). References: implicit's own fit, recommend, similar_*, fold-in, loss and
files, and our float64 objective (:func:`alsresearch.als.objective`) evaluated on each
library's factors.

Where implicit pads a list shorter than N (filtered items at -FLT_MAX, then item 0 at score 0
past the catalogue), only its ranked entries (score above -FLT_MAX) are compared, and ours must
be padded with id -1 at -FLT_MAX.
"""

from __future__ import annotations

import inspect
import io
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from alsresearch.als import ALSModel, objective
from alsresearch.compat.implicit import AlternatingLeastSquares, ParameterWarning
from alsresearch.errors import NotFittedError
from tests.conftest import random_interactions

implicit_als = pytest.importorskip("implicit.cpu.als")
Implicit = implicit_als.AlternatingLeastSquares

#: exactly representable, so implicit's float32 ``alpha * r`` is our float64 one
ALPHA, REG, K = 2.0, 0.05, 16
FLOOR = -np.finfo(np.float32).max


def implicit_model(**params) -> Implicit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # implicit's OpenBLAS thread advice
        return Implicit(**params)


def implicit_fit(model: Implicit, user_items) -> Implicit:
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(user_items, show_progress=False)
    return model


def holding(ours: AlternatingLeastSquares) -> Implicit:
    """An implicit model holding copies of our factors."""
    other = implicit_model(
        factors=ours.factors, alpha=ours.alpha, regularization=ours.regularization
    )
    other.user_factors = ours.user_factors.copy()
    other.item_factors = ours.item_factors.copy()
    return other


def linear_objective(X, model) -> float:
    U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return objective(X, U, V, ALPHA, REG, confidence="linear")


def assert_same_ranking(ours, theirs, rtol=1e-4) -> None:
    """Same ids where implicit ranked an item (score above -FLT_MAX), close scores, and ours
    padded with -1 / -FLT_MAX where implicit ran out of candidates."""
    (ids, scores), (want_ids, want_scores) = ours, theirs
    assert ids.shape == want_ids.shape and scores.shape == want_scores.shape
    assert scores.dtype == want_scores.dtype
    ranked = want_scores > FLOOR
    np.testing.assert_array_equal(ids[ranked], want_ids[ranked])
    np.testing.assert_allclose(scores[ranked], want_scores[ranked], rtol=rtol, atol=1e-6)
    assert np.all(ids[~ranked] == -1) and np.all(scores[~ranked] == FLOOR)


@pytest.fixture(scope="module")
def ml(movielens) -> sp.csr_matrix:
    return movielens.matrix.astype(np.float32).tocsr()


@pytest.fixture(scope="module")
def small() -> sp.csr_matrix:
    """60 x 40 counts 1..5: an empty user, a one-item user, a user with all but two items."""
    rng = np.random.default_rng(7)
    return random_interactions(rng, string_items=False).matrix.astype(np.float32).tocsr()


@pytest.fixture(scope="module")
def fitted(ml) -> AlternatingLeastSquares:
    model = AlternatingLeastSquares(
        factors=K, regularization=REG, alpha=ALPHA, iterations=8, random_state=0
    )
    model.fit(ml, show_progress=False)
    return model


# ---------------------------------------------------------------------- the API itself
@pytest.mark.parametrize(
    "method",
    ["__init__", "fit", "recommend", "similar_items", "similar_users", "recalculate_user",
     "recalculate_item", "partial_fit_users", "partial_fit_items", "save", "load"],
)  # fmt: skip
def test_signatures_are_implicits(method):
    """Same parameter names, order and defaults as implicit's CPU class (or its base)."""

    def params(cls):
        sig = inspect.signature(getattr(cls, method))
        return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]

    assert params(AlternatingLeastSquares) == params(Implicit)


def test_parameters_map_onto_alsmodel(small):
    model = AlternatingLeastSquares(factors=4, alpha=3.0, use_cg=False, iterations=2)
    model.fit(small, show_progress=False)
    cfg = model.als_model.config
    assert isinstance(model.als_model, ALSModel)
    assert (cfg.confidence, cfg.alpha, cfg.solver, cfg.factors) == ("linear", 3.0, "cholesky", 4)
    assert model.user_factors.shape == (60, 4) and model.item_factors.shape == (40, 4)
    assert isinstance(model.user_factors, np.ndarray)


# ---------------------------------------------------------------------- the objective
@pytest.mark.parametrize("data", ["small", "ml"])
def test_cholesky_float64_equals_implicits_solution(data, request):
    """Same seed, so the same initial factors; exact solves in float64 from there: the same
    factors and the same objective (to rounding) after every sweep."""
    X = request.getfixturevalue(data)
    params = dict(
        factors=K, regularization=REG, alpha=ALPHA, iterations=15, random_state=3,
        use_cg=False, dtype=np.float64,
    )  # fmt: skip
    ours = AlternatingLeastSquares(**params)
    ours.fit(X, show_progress=False)
    theirs = implicit_fit(implicit_model(**params), X)
    assert ours.user_factors.dtype == np.float64
    assert linear_objective(X, ours) == pytest.approx(linear_objective(X, theirs), rel=1e-6)
    np.testing.assert_allclose(ours.user_factors, theirs.user_factors, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.item_factors, theirs.item_factors, rtol=0, atol=1e-8)


def test_cg_objective_within_half_a_percent_of_implicits_on_movielens(ml):
    """Our CG (4 steps, ALSModel's schedule) against implicit's CG (3 steps), float32."""
    params = dict(factors=K, regularization=REG, alpha=ALPHA, iterations=15, random_state=0)
    ours = AlternatingLeastSquares(**params)
    ours.fit(ml, show_progress=False)
    theirs = implicit_fit(implicit_model(**params), ml)
    mine, want = linear_objective(ml, ours), linear_objective(ml, theirs)
    assert abs(mine - want) <= 0.005 * want, (mine, want)


def test_cg_objective_no_worse_than_implicits_on_small_counts(small):
    """On 60 x 40 counts implicit's 3 CG steps stop well above the exact solution; ours may be
    lower, never more than 0.5% higher."""
    params = dict(factors=K, regularization=REG, alpha=ALPHA, iterations=15, random_state=0)
    ours = AlternatingLeastSquares(**params)
    ours.fit(small, show_progress=False)
    theirs = implicit_fit(implicit_model(**params), small)
    assert linear_objective(small, ours) <= 1.005 * linear_objective(small, theirs)


def test_training_loss_and_callback_are_implicits(small):
    """callback(iteration from 0, seconds, loss): the loss is implicit's normalised one, as
    implicit's calculate_loss computes it on our factors."""
    calls = []
    model = AlternatingLeastSquares(
        factors=K, regularization=REG, alpha=ALPHA, iterations=4, random_state=0,
        calculate_training_loss=True,
    )  # fmt: skip
    model.fit(small, show_progress=False, callback=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    assert all(c[1] >= 0 for c in calls)
    with threadpool_limits(limits=1, user_api="blas"):
        want = implicit_als.calculate_loss(
            (ALPHA * small).tocsr(), model.user_factors, model.item_factors, REG
        )
    assert calls[-1][2] == pytest.approx(want, rel=1e-4)
    calls.clear()
    model.calculate_training_loss = False
    with pytest.warns(RuntimeWarning, match="new random factors"):  # implicit would continue
        model.fit(small, show_progress=False, callback=lambda *args: calls.append(args))
    assert len(calls) == 4 and all(c[2] is None for c in calls)


def test_regularization_zero_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"regularization must be > 0.*positive definite"):
        AlternatingLeastSquares(regularization=0.0)
    model = AlternatingLeastSquares()
    model.regularization = 0
    with pytest.raises(ValueError, match="regularization must be > 0"):
        model.fit(sp.csr_matrix(np.eye(3, dtype=np.float32)), show_progress=False)


def test_non_csr_input_is_converted_with_implicits_warning(small):
    params = dict(factors=4, iterations=2, random_state=0)
    csr = AlternatingLeastSquares(**params)
    csr.fit(small, show_progress=False)
    coo = AlternatingLeastSquares(**params)
    with pytest.warns(ParameterWarning, match="Method expects CSR input, and was passed coo"):
        coo.fit(small.tocoo(), show_progress=False)
    from implicit.utils import ParameterWarning as ImplicitParameterWarning

    with pytest.warns(
        ImplicitParameterWarning, match="Method expects CSR input, and was passed coo"
    ):
        implicit_fit(implicit_model(**params), small.tocoo())
    np.testing.assert_allclose(coo.user_factors, csr.user_factors, rtol=1e-6)


# ---------------------------------------------------------------------- recommend
BATCH = np.array([0, 3, 3, 41, 413, 606])  # a repeated user included


@pytest.mark.parametrize("recalculate_user", [False, True])
@pytest.mark.parametrize("filter_liked", [True, False])
@pytest.mark.parametrize("extra", ["none", "filter_items", "items"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("rows", ["own", "other"])
def test_recommend_ranks_as_implicit_on_the_same_factors(
    fitted, ml, recalculate_user, filter_liked, extra, batch, rows
):
    """Every filter combination, one id and an array; ``user_items`` the users' training rows
    (our seen-items fast path) or other users' rows (the general path)."""
    other = holding(fitted)
    userid = BATCH if batch else 413
    source = np.atleast_1d(userid) if rows == "own" else (np.atleast_1d(userid) + 7) % ml.shape[0]
    user_items = ml[source]
    kwargs = dict(N=10, filter_already_liked_items=filter_liked, recalculate_user=recalculate_user)
    if extra == "filter_items":
        popular = np.argsort(-np.diff(ml.tocsc().indptr))[:25]
        kwargs["filter_items"] = popular
    elif extra == "items":
        kwargs["items"] = np.arange(0, ml.shape[1], 3)[::-1]  # unsorted on purpose
    ours = fitted.recommend(userid, user_items, **kwargs)
    with threadpool_limits(limits=1, user_api="blas"):
        theirs = other.recommend(userid, user_items, **kwargs)
    assert ours[0].ndim == (2 if batch else 1)
    assert_same_ranking(ours, theirs, rtol=1e-3 if recalculate_user else 1e-4)
    if extra == "filter_items":
        assert not np.isin(ours[0], kwargs["filter_items"]).any()


def test_recommend_pads_short_lists_where_implicit_pads_with_filtered_items(small):
    """User 2 has all items but two: two ranked, then -1 / -FLT_MAX (implicit: the filtered
    items at -FLT_MAX)."""
    model = AlternatingLeastSquares(factors=4, iterations=3, random_state=0)
    model.fit(small, show_progress=False)
    ids, scores = model.recommend(2, small[2], N=10)
    theirs = holding(model).recommend(2, small[2], N=10)
    assert_same_ranking((ids, scores), theirs)
    assert (ids >= 0).sum() == 2 and set(ids[:2]) == set(
        np.setdiff1d(np.arange(40), small[2].indices)
    )


def test_recommend_without_filtering_needs_no_user_items(fitted):
    ids, _ = fitted.recommend(5, None, N=5, filter_already_liked_items=False)
    theirs, _ = holding(fitted).recommend(5, None, N=5, filter_already_liked_items=False)
    np.testing.assert_array_equal(ids, theirs)


def test_recalculate_user_equals_recommend_for_history(fitted, ml):
    """A user's own history folded in: the same list as ALSModel.recommend_for_history, and
    factors close to implicit's recalculate_user on the same factors."""
    row = ml[413]
    ids, scores = fitted.recommend(10_000, row, N=10, recalculate_user=True)  # an unknown id
    want_ids, want_scores = fitted.als_model.recommend_for_history(row.indices, row.data, n=10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    with threadpool_limits(limits=1, user_api="blas"):
        theirs = holding(fitted).recalculate_user(413, row)
    np.testing.assert_allclose(fitted.recalculate_user(413, row), theirs, rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------------- similar
@pytest.mark.parametrize("kind", ["items", "users"])
@pytest.mark.parametrize("option", ["none", "filter", "subset", "batch"])
def test_similar_puts_the_query_first_and_ranks_as_implicit(fitted, ml, kind, option):
    """Queries with factors of their own: MovieLens items rated by the same users have equal
    factors (cosine 1 to each other), and each library orders such ties its own way (implicit
    put item 752 before the query 50 of its tied group; ours the lowest id first)."""
    other = holding(fitted)
    counts = np.diff((ml if kind == "users" else ml.T.tocsr()).indptr)
    busiest = np.argsort(-counts, kind="stable")[:3]
    query = busiest if option == "batch" else int(busiest[0])
    kwargs = {}
    if option == "filter":
        kwargs[f"filter_{kind}"] = [1, 2, 4, 8, 16]
    elif option == "subset":
        kwargs[kind] = np.union1d(np.arange(0, 600, 2), busiest)  # the query among them
    ours = getattr(fitted, f"similar_{kind}")(query, N=10, **kwargs)
    theirs = getattr(other, f"similar_{kind}")(query, N=10, **kwargs)
    assert_same_ranking(ours, theirs)
    firsts = ours[0][:, 0] if option == "batch" else ours[0][:1]
    np.testing.assert_array_equal(firsts, np.atleast_1d(query))
    np.testing.assert_allclose(ours[1][..., 0], 1.0, rtol=1e-5)


def test_similar_items_with_recalculate_item(fitted, ml):
    """The query's factors folded in from its users: the same list as implicit's (queries
    whose neighbours have factors of their own, see the test above)."""
    by_item = ml.T.tocsr()
    query = np.argsort(-np.diff(by_item.indptr), kind="stable")[:2]
    item_users = by_item[query]
    ours = fitted.similar_items(query, N=10, recalculate_item=True, item_users=item_users)
    with threadpool_limits(limits=1, user_api="blas"):
        theirs = holding(fitted).similar_items(
            query, N=10, recalculate_item=True, item_users=item_users
        )
    assert_same_ranking(ours, theirs, rtol=1e-3)


# ---------------------------------------------------------------------- partial fit
def test_partial_fit_users_and_items_match_implicit(fitted, ml):
    """Rows recomputed and the matrices grown for new ids (zeros for skipped ones); the model
    then ranks with the new factors (the engine's item caches are refreshed)."""
    ours = AlternatingLeastSquares.load(_saved(fitted))
    theirs = holding(fitted)
    n_users, n_items = ml.shape
    users = np.array([5, n_users + 2])
    items = np.array([11, n_items + 1])
    user_rows, item_rows = ml[[9, 10]], ml.T.tocsr()[[20, 21]]
    new_user = ml[[100]]
    with threadpool_limits(limits=1, user_api="blas"):
        for model in (ours, theirs):  # caches of the item factors filled, then stale
            model.recalculate_user(0, new_user)
            model.recommend(0, ml[0])
        for model in (ours, theirs):  # known items only: rows rewritten in place
            model.partial_fit_items([11, 12], item_rows)
        want = theirs.recalculate_user(0, new_user)  # against the new item factors
    np.testing.assert_allclose(ours.recalculate_user(0, new_user), want, rtol=1e-3, atol=1e-5)
    with threadpool_limits(limits=1, user_api="blas"):
        for model in (ours, theirs):
            model.partial_fit_users(users, user_rows)
            model.partial_fit_items(items, item_rows)
    assert ours.user_factors.shape == theirs.user_factors.shape == (n_users + 3, K)
    assert ours.item_factors.shape == theirs.item_factors.shape == (n_items + 2, K)
    np.testing.assert_allclose(ours.user_factors, theirs.user_factors, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(ours.item_factors, theirs.item_factors, rtol=1e-3, atol=1e-5)
    assert not ours.user_factors[n_users].any() and not ours.item_factors[n_items].any()
    with threadpool_limits(limits=1, user_api="blas"):
        want = theirs.recalculate_user(0, new_user)
        want_list = theirs.recommend(n_users + 2, user_rows[1], N=10)
    np.testing.assert_allclose(ours.recalculate_user(0, new_user), want, rtol=1e-3, atol=1e-5)
    assert_same_ranking(ours.recommend(n_users + 2, user_rows[1], N=10), want_list, rtol=1e-3)


# ---------------------------------------------------------------------- files
def _saved(model) -> io.BytesIO:
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("how", ["str", "path", "open file", "bytes"])
def test_save_load_round_trip(fitted, ml, tmp_path, how):
    if how == "bytes":
        loaded = AlternatingLeastSquares.load(_saved(fitted))
    elif how == "open file":
        with open(tmp_path / "m.npz", "wb") as fh:
            fitted.save(fh)
        with open(tmp_path / "m.npz", "rb") as fh:
            loaded = AlternatingLeastSquares.load(fh)
    else:
        target = str(tmp_path / "m") if how == "str" else tmp_path / "m.npz"
        fitted.save(target)  # ".npz" appended to a name without it, as numpy and implicit do
        assert (tmp_path / "m.npz").is_file()
        loaded = AlternatingLeastSquares.load(target)
    np.testing.assert_array_equal(loaded.user_factors, fitted.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, fitted.item_factors)
    for name in ("factors", "regularization", "alpha", "iterations", "use_cg", "cg_steps"):
        assert getattr(loaded, name) == getattr(fitted, name)
    assert loaded.dtype == fitted.dtype
    got, want = loaded.recommend(BATCH, ml[BATCH]), fitted.recommend(BATCH, ml[BATCH])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_files_are_pickle_free_and_interchangeable_with_implicit(fitted, ml, tmp_path):
    ours_file = tmp_path / "ours.npz"
    fitted.save(ours_file)
    with np.load(ours_file, allow_pickle=False) as npz:  # no object arrays inside
        assert {"user_factors", "item_factors", "alpha", "regularization"} <= set(npz.files)
    theirs = Implicit.load(str(ours_file))
    assert_same_ranking(fitted.recommend(BATCH, ml[BATCH]), theirs.recommend(BATCH, ml[BATCH]))
    implicit_file = tmp_path / "theirs.npz"
    holding(fitted).save(str(implicit_file))
    loaded = AlternatingLeastSquares.load(implicit_file)
    assert loaded.cg_steps == 3  # implicit's, kept for a refit
    assert_same_ranking(loaded.recommend(BATCH, ml[BATCH]), theirs.recommend(BATCH, ml[BATCH]))


def test_an_unfitted_model_saves_its_hyperparameters(tmp_path):
    """As implicit: the file holds the hyperparameters; loading gives an unfitted model."""
    AlternatingLeastSquares(factors=12, alpha=3.0, random_state=5).save(tmp_path / "u.npz")
    loaded = AlternatingLeastSquares.load(tmp_path / "u.npz")
    assert (loaded.factors, loaded.alpha, loaded.random_state) == (12, 3.0, 5)
    assert loaded.user_factors is None
    with pytest.raises(NotFittedError, match="not fitted"):
        loaded.recommend(0, None, filter_already_liked_items=False)
    theirs = Implicit.load(str(tmp_path / "u.npz"))
    assert (theirs.factors, theirs.alpha, theirs.user_factors) == (12, 3.0, None)


# ---------------------------------------------------------------------- input errors
ERROR_CASES = {
    "rows != ids": lambda m, X: m.recommend(0, X[[0, 1]]),
    "rows != ids (batch)": lambda m, X: m.recommend(np.array([0, 1, 2]), X[[0, 1]]),
    "not CSR": lambda m, X: m.recommend(0, X[0].tocoo()),
    "items and filter_items": lambda m, X: m.recommend(0, X[0], items=[1, 2], filter_items=[3]),
    "similar items and filter": lambda m, X: m.similar_items(0, items=[1, 2], filter_items=[3]),
    "similar users and filter": lambda m, X: m.similar_users(0, users=[1, 2], filter_users=[3]),
    "partial users rows": lambda m, X: m.partial_fit_users([0, 1], X[[0]]),
    "partial items rows": lambda m, X: m.partial_fit_items([0, 1], X.T.tocsr()[[0]]),
    "recalculate rows": lambda m, X: m.recalculate_user([0, 1], X[[0]]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_input_errors_are_implicits(fitted, ml, case):
    """The same exception type and message as implicit's, for the checks users rely on."""
    call = ERROR_CASES[case]
    with pytest.raises(Exception) as theirs:
        call(holding(fitted), ml)
    with pytest.raises(type(theirs.value)) as ours:
        call(fitted, ml)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, X: m.recommend(X.shape[0], X[0]),  # past the last user
        lambda m, X: m.recommend(0, X[0], items=[1, X.shape[1]]),  # past the last item
        lambda m, X: m.similar_items(X.shape[1]),
    ],
)
def test_ids_out_of_range_are_index_errors_as_in_implicit(fitted, ml, call):
    with pytest.raises(IndexError):
        call(holding(fitted), ml)
    with pytest.raises(IndexError):
        call(fitted, ml)


def test_negative_ids_are_refused_where_implicit_wraps_them(fitted, ml):
    with pytest.raises(IndexError, match="not in the model"):
        fitted.recommend(-1, ml[0])


def test_an_unfitted_model_says_so():
    with pytest.raises(NotFittedError, match="call fit"):
        AlternatingLeastSquares().similar_items(0)


def test_assigned_factors_rank_as_fitted_ones(fitted, ml):
    """implicit's idiom of setting both factor matrices: one alone waits for the other; the
    model (with no training rows known) then ranks as the fitted one, through the general path."""
    model = AlternatingLeastSquares(factors=K)
    model.user_factors = fitted.user_factors.copy()
    assert model.item_factors is None
    with pytest.raises(NotFittedError):
        model.recommend(0, ml[0])
    model.item_factors = fitted.item_factors.copy()
    for got, want in zip(
        model.recommend(BATCH, ml[BATCH]), fitted.recommend(BATCH, ml[BATCH]), strict=True
    ):
        np.testing.assert_array_equal(got, want)
