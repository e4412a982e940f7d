"""The shared model protocol, exercised through a minimal test-only factor model."""

from __future__ import annotations

import numpy as np
import pytest

from alsresearch import base
from alsresearch.base import Recommender, validate_n
from alsresearch.data import coerce_interactions
from alsresearch.errors import ModelFileError
from tests.contract import RecommenderContract


class ToyFactorModel(Recommender):
    """Scores = U V^T with seeded random factors; fold-in = mean of the history's item factors."""

    model_type = "toy"

    def __init__(self, factors: int = 4, seed: int = 0) -> None:
        self.factors = factors
        self.seed = seed

    def fit(self, X, **_):
        data = coerce_interactions(X)
        gen = np.random.default_rng(self.seed)
        self.U = gen.standard_normal((data.n_users, self.factors)).astype(np.float32)
        self.V = gen.standard_normal((data.n_items, self.factors)).astype(np.float32)
        self._set_training_data(data)
        return self

    def score_rows(self, rows):
        return self.U[rows] @ self.V.T

    def history_scores(self, item_idx, weights):
        return (weights @ self.V[item_idx]) @ self.V.T

    def get_config(self):
        return {"factors": self.factors, "seed": self.seed}

    def get_state(self):
        return {"U": self.U, "V": self.V}

    def set_state(self, state):
        if state["U"].shape != (self.n_users, self.factors) or state["V"].shape != (
            self.n_items,
            self.factors,
        ):
            raise ValueError("factor shapes do not match the id maps")
        self.U, self.V = state["U"], state["V"]


@pytest.fixture(autouse=True)
def _register_toy(monkeypatch):
    monkeypatch.setitem(base.MODEL_TYPES, "toy", "tests.test_base:ToyFactorModel")


class TestToyContract(RecommenderContract):
    @pytest.fixture
    def make_model(self):
        return ToyFactorModel


def test_topk_rows_pads_users_with_too_few_unseen_items(small_interactions):
    model = ToyFactorModel().fit(small_interactions)
    # user row 2 has n_items - 2 items: only two candidates remain
    idx, val = model.topk_rows(np.array([2]), 5)
    assert (idx[0, :2] >= 0).all() and (idx[0, 2:] == -1).all()
    assert np.isneginf(val[0, 2:]).all()


def test_unknown_model_type_in_file(small_interactions, tmp_path):
    path = ToyFactorModel().fit(small_interactions).save(tmp_path / "m.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(tmp_path / "other.npz", **{**arrays, "model_type": np.array("lightgcn")})
    with pytest.raises(ModelFileError, match="unknown model type 'lightgcn'"):
        base.load_model(tmp_path / "other.npz")


def test_load_through_the_wrong_class_is_refused(small_interactions, tmp_path):
    class Other(ToyFactorModel):
        model_type = "other"

    path = ToyFactorModel().fit(small_interactions).save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="not a Other"):
        Other.load(path)


def test_save_is_atomic_and_leaves_no_temporary_files(small_interactions, tmp_path):
    model = ToyFactorModel().fit(small_interactions)
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.npz")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_saved_file_permissions_follow_the_umask(small_interactions, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = ToyFactorModel().fit(small_interactions).save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("n", [1, 10, base.MAX_N, np.int64(3)])
def test_validate_n_accepts(n):
    assert validate_n(n) == int(n)


@pytest.mark.parametrize("n", [0, -5, base.MAX_N + 1, 2.0, "10", None, False])
def test_validate_n_rejects(n):
    with pytest.raises(ValueError, match="n must"):
        validate_n(n)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    from alsresearch.files import atomic_write, file_digest

    target = tmp_path / "f.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))

    def broken(fh):
        fh.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    import hashlib

    assert file_digest(target) == hashlib.sha256(b"old").hexdigest()
    assert file_digest(target, "md5") == hashlib.md5(b"old").hexdigest()
