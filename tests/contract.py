"""The contract every model passes (ALS, popularity, random, and any model added later).

Use it by inheriting and defining ``make_model``, a fixture returning a zero-argument factory
of an *unfitted* model::

    class TestPopularityContract(RecommenderContract):
        @pytest.fixture
        def make_model(self):
            return PopularityModel

The checks use the training data itself as the independent source of truth: what a user has
(never recommended to them), and the model's own ``score_rows`` ranked by plain NumPy (the
top-N must be exactly the best-scored unseen items).
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.base import load_model
from alsresearch.errors import ModelFileError, NotFittedError, UnknownIdError


def _seen_items(data, row: int) -> set:
    m = data.matrix
    return set(data.item_ids[m.indices[m.indptr[row] : m.indptr[row + 1]]].tolist())


def _numpy_topn(scores: np.ndarray, exclude: np.ndarray, n: int) -> np.ndarray:
    """Reference ranking: descending score, ties to the lower index, excluded items removed."""
    scores = scores.astype(np.float64).copy()
    scores[exclude] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[np.isfinite(scores[order])]
    return order[:n]


class RecommenderContract:
    """Mixin of tests; subclasses provide the ``make_model`` fixture."""

    @pytest.fixture
    def make_model(self):  # pragma: no cover - overridden
        raise NotImplementedError("define a make_model fixture returning an unfitted-model factory")

    @pytest.fixture
    def contract_data(self, small_interactions):
        return small_interactions

    @pytest.fixture
    def fitted(self, make_model, contract_data):
        return make_model().fit(contract_data)

    def test_fit_returns_self_and_keeps_ids(self, make_model, contract_data):
        model = make_model()
        assert model.fit(contract_data) is model
        np.testing.assert_array_equal(model.user_ids, contract_data.user_ids)
        np.testing.assert_array_equal(model.item_ids, contract_data.item_ids)

    def test_unfitted_model_says_so(self, make_model, contract_data):
        with pytest.raises(NotFittedError):
            make_model().recommend(contract_data.user_ids[0])

    def test_recommend_never_returns_seen_items(self, fitted, contract_data):
        for row, user in enumerate(contract_data.user_ids):
            items, scores = fitted.recommend(user, n=10)
            seen = _seen_items(contract_data, row)
            assert not seen & set(items.tolist()), f"user {user} was recommended items they have"
            expected = min(10, contract_data.n_items - len(seen))
            assert len(items) == expected == len(scores)
            assert np.all(np.diff(scores) <= 0)

    def test_recommend_is_the_best_scored_unseen_items(self, fitted, contract_data):
        rows = np.arange(contract_data.n_users)
        scores = fitted.score_rows(rows)
        assert scores.shape == (contract_data.n_users, contract_data.n_items)
        m = contract_data.matrix
        for row in rows:
            seen = m.indices[m.indptr[row] : m.indptr[row + 1]]
            want = _numpy_topn(scores[row], seen, 7)
            got, got_scores = fitted.recommend(contract_data.user_ids[row], n=7)
            np.testing.assert_array_equal(got, contract_data.item_ids[want])
            # a one-row product may round differently from a block product (gemv vs gemm)
            atol = 1e-5 * max(1.0, float(np.abs(scores[row]).max()))
            np.testing.assert_allclose(got_scores, scores[row, want], rtol=1e-5, atol=atol)

    def test_exclude_seen_false_ranks_everything(self, fitted, contract_data):
        user = contract_data.user_ids[2]  # the near-complete user
        items, _ = fitted.recommend(user, n=contract_data.n_items, exclude_seen=False)
        assert len(items) == contract_data.n_items

    def test_topk_rows_excludes_the_matrix_it_is_given(self, fitted, contract_data):
        # the evaluator excludes the train split it is given, not the model's own items
        n_users, n_items = contract_data.n_users, contract_data.n_items
        other = sp.random(n_users, n_items, density=0.3, random_state=7, format="csr")
        rows = np.arange(n_users)
        idx, _ = fitted.topk_rows(rows, n_items, exclude=other)
        for row in rows:
            banned = set(other.indices[other.indptr[row] : other.indptr[row + 1]].tolist())
            got = idx[row][idx[row] >= 0]
            assert set(got.tolist()) == set(range(n_items)) - banned  # seen items included
        with pytest.raises(ValueError, match="exclude has shape"):
            fitted.topk_rows(rows, 5, exclude=other[:-1])

    def test_batch_equals_singles_in_order_with_duplicates(self, fitted, contract_data):
        users = [*contract_data.user_ids[[5, 1, 5, 0, 9]].tolist()]
        batch = fitted.recommend_batch(users, n=5)
        assert len(batch) == len(users)
        for user, (items, scores) in zip(users, batch, strict=True):
            single_items, single_scores = fitted.recommend(user, n=5)
            np.testing.assert_array_equal(items, single_items)
            np.testing.assert_allclose(scores, single_scores, rtol=1e-5, atol=1e-6)

    def test_unknown_user_is_a_clear_error(self, fitted):
        with pytest.raises(UnknownIdError, match="unknown user"):
            fitted.recommend(-987654)
        with pytest.raises(UnknownIdError):
            fitted.recommend_batch([fitted.user_ids[0], -987654])

    @pytest.mark.parametrize("bad_n", [0, -1, 1.5, True, "3", None])
    def test_bad_n_is_a_clear_error(self, fitted, bad_n):
        with pytest.raises(ValueError, match="n must"):
            fitted.recommend(fitted.user_ids[0], n=bad_n)

    def test_n_beyond_the_catalogue_is_clipped(self, fitted, contract_data):
        items, _ = fitted.recommend(contract_data.user_ids[0], n=10_000)
        assert len(items) == contract_data.n_items - len(_seen_items(contract_data, 0))

    def test_history_recommendations_exclude_the_history(self, fitted, contract_data):
        history = contract_data.item_ids[[0, 3, 3, 7]].tolist()
        items, scores = fitted.recommend_for_history(history, n=5)
        assert len(items) == 5 and not set(history) & set(items.tolist())
        assert np.all(np.diff(scores) <= 0)
        with pytest.raises(UnknownIdError, match="unknown item"):
            fitted.recommend_for_history(["no-such-item", *history])

    def test_save_load_round_trip_gives_identical_recommendations(
        self, fitted, contract_data, tmp_path
    ):
        path = fitted.save(tmp_path / "model.npz")
        loaded = load_model(path)
        assert type(loaded) is type(fitted)
        assert type(fitted).load(path).model_type == fitted.model_type
        for user in contract_data.user_ids[:20]:
            a_items, a_scores = fitted.recommend(user, n=10)
            b_items, b_scores = loaded.recommend(user, n=10)
            np.testing.assert_array_equal(a_items, b_items)
            np.testing.assert_array_equal(a_scores, b_scores)
        history = contract_data.item_ids[[1, 2]].tolist()
        np.testing.assert_array_equal(
            fitted.recommend_for_history(history)[0], loaded.recommend_for_history(history)[0]
        )

    def test_bad_model_files_are_clear_errors(self, fitted, tmp_path):
        good = fitted.save(tmp_path / "good.npz")
        raw = good.read_bytes()

        with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
            load_model(tmp_path / "missing.npz")

        truncated = tmp_path / "truncated.npz"
        truncated.write_bytes(raw[: len(raw) // 2])
        garbage = tmp_path / "garbage.npz"
        garbage.write_bytes(b"this is not a model" * 50)
        foreign = tmp_path / "foreign.npz"
        np.savez(foreign, weights=np.ones(3))
        with np.load(good, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        wrong_version = tmp_path / "wrong_version.npz"
        np.savez(wrong_version, **{**arrays, "format_version": np.array(999)})
        broken_state = tmp_path / "broken_state.npz"
        np.savez(broken_state, **{**arrays, "user_ids": arrays["user_ids"][:-1]})

        for path, what in [
            (truncated, "unreadable"),
            (garbage, "unreadable"),
            (foreign, "not an alsresearch model"),
            (wrong_version, "version 999"),
            (broken_state, "inconsistent"),
        ]:
            with pytest.raises(ModelFileError, match=what) as info:
                load_model(path)
            assert str(path) in str(info.value)
        assert zipfile.is_zipfile(good)
