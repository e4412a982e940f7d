"""Split invariants: disjoint, counts add up, seeded, time order respected, same id space; the
user holdout of the fold-in protocol, and SplitSpec's protocol fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from alsresearch.data import Interactions
from alsresearch.errors import SpecMismatchError
from alsresearch.split import (
    SplitSpec,
    cold_items,
    leave_last_out,
    random_holdout,
    temporal_holdout,
    user_holdout,
    validation_split,
)


def timed_interactions(seed: int, n_users: int = 30, n_items: int = 25) -> Interactions:
    """Random counts and timestamps, with ties in time, a single-cell and an empty user."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(0, 4, size=(n_users, n_items)) * (rng.random((n_users, n_items)) < 0.4)
    dense[0] = 0
    dense[1] = 0
    dense[1, 3] = 2
    m = sp.csr_matrix(dense.astype(float))
    stamps = rng.integers(1_000, 1_050, size=m.nnz)  # few distinct times: many ties
    return Interactions(m, np.arange(n_users) + 500, [f"m{j}" for j in range(n_items)], stamps)


def cells(x: Interactions) -> dict[tuple[int, int], tuple[float, int | None]]:
    coo = x.matrix.tocoo()
    ts = x.timestamps if x.timestamps is not None else [None] * x.nnz
    return {
        (int(r), int(c)): (float(v), None if t is None else int(t))
        for r, c, v, t in zip(coo.row, coo.col, coo.data, ts, strict=True)
    }


def check_partition(data: Interactions, train: Interactions, test: Interactions) -> None:
    assert train.same_id_space(data) and test.same_id_space(data)
    a, b, whole = cells(train), cells(test), cells(data)
    assert not set(a) & set(b), "train and test share cells"
    assert {**a, **b} == whole, "train + test is not the input (cells, counts or timestamps)"
    assert train.nnz + test.nnz == data.nnz


def per_user(x: Interactions) -> np.ndarray:
    return np.diff(x.matrix.indptr)


SPLITS = {
    "random": lambda d, s: random_holdout(d, 0.2, seed=s),
    "random_half": lambda d, s: random_holdout(d, 0.5, seed=s),
    "temporal_fraction": lambda d, s: temporal_holdout(d, test_fraction=0.3),
    "temporal_cutoff": lambda d, s: temporal_holdout(d, cutoff=1_030),
    "leave_last_out_time": lambda d, s: leave_last_out(d),
    "leave_last_out_random": lambda d, s: leave_last_out(d, seed=s, use_timestamps=False),
}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(SPLITS)), st.integers(0, 2**31), st.integers(0, 2**31))
def test_every_split_partitions_the_input(kind, data_seed, split_seed):
    data = timed_interactions(data_seed)
    train, test = SPLITS[kind](data, split_seed)
    check_partition(data, train, test)
    if kind != "temporal_cutoff":  # a global cut-off may move a whole user to test
        assert np.all(per_user(train)[per_user(data) == 1] == 1), "single-cell users stay in train"
        assert np.all(per_user(train)[per_user(data) >= 1] >= 1)


@pytest.mark.parametrize(
    "fraction, n_cells, n_test",
    [
        (0.2, 1, 0),  # single-cell users stay in train
        (0.2, 2, 1),  # 0.4 rounds to 0, clipped up to 1
        (0.2, 3, 1),  # 0.6 -> 1
        (0.2, 7, 1),  # 1.4 -> 1
        (0.2, 8, 2),  # 1.6 -> 2
        (0.2, 10, 2),
        (0.25, 10, 3),  # 2.5 rounds half up -> 3
        (0.9, 5, 4),  # 4.5 -> 5, clipped to n - 1
    ],
)
def test_random_holdout_test_count_rule(fraction, n_cells, n_test):
    m = sp.csr_matrix(np.ones((1, 12)))[:, :n_cells]
    data = Interactions(sp.csr_matrix(m))
    _, test = random_holdout(data, fraction, seed=3)
    assert test.nnz == n_test


def test_random_holdout_is_seeded(small_interactions):
    a = random_holdout(small_interactions, seed=7)
    b = random_holdout(small_interactions, seed=7)
    c = random_holdout(small_interactions, seed=8)
    assert cells(a[1]) == cells(b[1]) and cells(a[0]) == cells(b[0])
    assert cells(a[1]) != cells(c[1])


def test_random_holdout_picks_cells_uniformly():
    # 5000 users with the same 10 items, 2 to test each: every item is held out for ~20% of users
    n_users = 5000
    data = Interactions(sp.csr_matrix(np.ones((n_users, 10))))
    _, test = random_holdout(data, 0.2, seed=11)
    freq = np.bincount(test.matrix.indices, minlength=10) / n_users
    # binomial sd = sqrt(.2 * .8 / 5000) ~ 0.0057; 5 sd bounds
    assert np.all(np.abs(freq - 0.2) < 0.029), freq
    # and pairs are not fixed: many different held-out pairs occur
    pairs = {
        tuple(test.matrix.indices[test.matrix.indptr[u] : test.matrix.indptr[u + 1]])
        for u in range(n_users)
    }
    assert len(pairs) == 45  # all C(10, 2) pairs appear


def test_temporal_cutoff_orders_all_train_before_all_test():
    data = timed_interactions(1)
    train, test = temporal_holdout(data, cutoff=1_030)
    assert train.timestamps.max() < 1_030 <= test.timestamps.min()


def test_temporal_cutoff_parses_times():
    events = pd.DataFrame(
        {
            "user": [1, 1, 2, 2],
            "item": ["a", "b", "a", "c"],
            "when": ["2024-01-01", "2024-03-01", "2024-02-01", "2024-05-01"],
        }
    )
    data = Interactions.from_events(events, user_col="user", item_col="item", timestamp_col="when")
    train, test = temporal_holdout(data, cutoff="2024-02-15")
    assert sorted(map(tuple, test.to_frame()[["user_id", "item_id"]].values.tolist())) == [
        (1, "b"),
        (2, "c"),
    ]
    assert train.nnz == 2


def test_temporal_fraction_keeps_each_users_latest_cells_for_test():
    data = timed_interactions(2)
    train, test = temporal_holdout(data, test_fraction=0.3)
    for u in range(data.n_users):
        tr = train.timestamps[train.matrix.indptr[u] : train.matrix.indptr[u + 1]]
        te = test.timestamps[test.matrix.indptr[u] : test.matrix.indptr[u + 1]]
        if len(tr) and len(te):
            assert tr.max() <= te.min(), f"user row {u}: a train cell is newer than a test cell"


def test_leave_last_out_holds_out_the_latest_cell():
    # user 7: items x (t=5), y (t=9), z (t=9): the tie at 9 goes to the higher item index (z)
    m = sp.csr_matrix(np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]]))
    data = Interactions(m, [7, 8], ["x", "y", "z"], timestamps=np.array([5, 9, 9, 1]))
    train, test = leave_last_out(data)
    assert test.to_frame()[["user_id", "item_id"]].values.tolist() == [[7, "z"]]
    assert train.nnz == 3


def test_leave_last_out_without_timestamps_is_seeded_random():
    data = Interactions(sp.csr_matrix(np.ones((40, 6))))
    a = leave_last_out(data, seed=1)[1]
    b = leave_last_out(data, seed=1)[1]
    c = leave_last_out(data, seed=2)[1]
    assert np.array_equal(per_user(a), np.ones(40))
    assert cells(a) == cells(b) != cells(c)
    assert len(set(a.matrix.indices.tolist())) > 1  # not always the same column


@pytest.mark.parametrize(
    "split",
    [
        lambda d: temporal_holdout(d, test_fraction=0.2),
        lambda d: leave_last_out(d, use_timestamps=True),
    ],
)
def test_temporal_splits_need_timestamps(small_interactions, split):
    with pytest.raises(ValueError, match="needs timestamps"):
        split(small_interactions)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one"),
        ({"cutoff": 5, "test_fraction": 0.2}, "exactly one"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"cutoff": "not a date"}, "not a time"),
    ],
)
def test_temporal_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        temporal_holdout(timed_interactions(0), **kwargs)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.2", None])
def test_random_holdout_rejects_bad_fraction(small_interactions, fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        random_holdout(small_interactions, fraction)


@pytest.mark.parametrize("seed", [-1, 0.5, "1"])
def test_random_holdout_rejects_bad_seed(small_interactions, seed):
    with pytest.raises(ValueError, match="seed"):
        random_holdout(small_interactions, 0.2, seed=seed)


def test_validation_split_splits_inside_train_only(small_interactions):
    train, test = random_holdout(small_interactions, 0.2, seed=0)
    fit, valid = validation_split(train, kind="random", test_fraction=0.25, seed=1)
    check_partition(train, fit, valid)
    assert not set(cells(valid)) & set(cells(test))
    np.testing.assert_array_equal((fit.matrix + valid.matrix).toarray(), train.matrix.toarray())


def test_validation_split_kinds():
    data = timed_interactions(4)
    _, valid = validation_split(data, kind="leave_last")
    assert cells(valid) == cells(leave_last_out(data)[1])
    _, valid = validation_split(data, kind="temporal", test_fraction=0.3)
    assert cells(valid) == cells(temporal_holdout(data, test_fraction=0.3)[1])
    with pytest.raises(ValueError, match="unknown split kind"):
        validation_split(data, kind="by_magic")


def test_cold_items_are_test_items_missing_from_train():
    # item 2 only appears in test (user 1); item 1 is in both; item 3 nowhere
    data = Interactions(sp.csr_matrix(np.array([[1.0, 1.0, 0, 0], [0, 1.0, 1.0, 0]])))
    train = data.select_cells(np.array([True, True, True, False]))
    test = data.select_cells(np.array([False, False, False, True]))
    assert cold_items(train, test).tolist() == [2]


# ------------------------------------------------------------------ user_holdout (fold-in)
def tiny_users() -> Interactions:
    """Users 'a' (5 cells), 'b' (1), 'c' (none), 'd' (10), 'e' (2); timestamps per cell."""
    dense = np.zeros((5, 12))
    dense[0, [0, 2, 4, 6, 8]] = [1, 2, 3, 1, 1]
    dense[1, 3] = 4
    dense[3, :10] = np.arange(1, 11)
    dense[4, [5, 11]] = [2, 7]
    m = sp.csr_matrix(dense)
    return Interactions(m, ["a", "b", "c", "d", "e"], [f"i{j}" for j in range(12)],
                        np.arange(m.nnz) + 100)  # fmt: skip


def check_three_parts(data, train, fold_in, test) -> np.ndarray:
    """Disjoint, in one id space, adding up to the input cell for cell; held-out users are
    absent from train; fold-in and test hold only held-out users. Returns the held-out rows."""
    for part in (train, fold_in, test):
        assert part.same_id_space(data)
    a, f, t, whole = cells(train), cells(fold_in), cells(test), cells(data)
    assert not set(a) & set(f) and not set(a) & set(t) and not set(f) & set(t)
    assert {**a, **f, **t} == whole
    held = np.flatnonzero(per_user(test) > 0)
    np.testing.assert_array_equal(held, np.flatnonzero(per_user(fold_in) > 0))
    assert np.all(per_user(train)[held] == 0), "held-out users must not train"
    others = np.setdiff1d(np.arange(data.n_users), held)
    np.testing.assert_array_equal(per_user(train)[others], per_user(data)[others])
    return held


def test_user_holdout_with_every_eligible_user_held_out():
    data = tiny_users()
    train, fold_in, test = user_holdout(data, 3, seed=5)  # a, d, e: all with 2+ cells
    held = check_three_parts(data, train, fold_in, test)
    assert data.user_ids[held].tolist() == ["a", "d", "e"]
    assert cells(train) == {(1, 3): (4.0, 105)}  # only 'b' (one cell) trains; 'c' has none
    # fold-in: round(0.8 n) half up, clipped to 1..n-1: a 4 of 5, d 8 of 10, e 1 of 2 (1.6 -> 2
    # clipped to 1)
    assert per_user(fold_in)[held].tolist() == [4, 8, 1]
    assert per_user(test)[held].tolist() == [1, 2, 1]


@pytest.mark.parametrize("users, n_held", [(1, 1), (2, 2), (0.5, 2), (0.1, 1), (0.99, 3)])
def test_user_holdout_counts_users(users, n_held):
    """A share is of the 3 eligible users, rounded half up, at least 1 (0.5 * 3 = 1.5 -> 2)."""
    data = tiny_users()
    held = check_three_parts(data, *user_holdout(data, users, seed=1))
    assert len(held) == n_held and set(data.user_ids[held]) <= {"a", "d", "e"}


@pytest.mark.parametrize(
    "fraction, n_cells, n_fold_in",
    [(0.8, 2, 1), (0.8, 3, 2), (0.8, 5, 4), (0.8, 7, 6), (0.5, 3, 2), (0.5, 5, 3), (0.1, 4, 1)],
)
def test_user_holdout_fold_in_count_rule(fraction, n_cells, n_fold_in):
    """round(fraction * n) half up (0.8 * 7 = 5.6 -> 6, 0.5 * 5 = 2.5 -> 3), 1..n-1."""
    data = Interactions(sp.csr_matrix(np.ones((1, n_cells))))
    _, fold_in, test = user_holdout(data, 1, fold_in_fraction=fraction, seed=0)
    assert (fold_in.nnz, test.nnz) == (n_fold_in, n_cells - n_fold_in)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 2**31), st.sampled_from([0.3, 0.5, 7]))
def test_user_holdout_partitions_the_input(data_seed, split_seed, users):
    data = timed_interactions(data_seed)
    train, fold_in, test = user_holdout(data, users, seed=split_seed)
    held = check_three_parts(data, train, fold_in, test)
    eligible = int((per_user(data) >= 2).sum())
    assert len(held) == (users if isinstance(users, int) else int(np.floor(users * eligible + 0.5)))
    assert np.all(per_user(data)[held] >= 2)


def test_user_holdout_is_seeded():
    data = timed_interactions(3, n_users=60)
    a = user_holdout(data, 0.3, seed=7)
    b = user_holdout(data, 0.3, seed=7)
    c = user_holdout(data, 0.3, seed=8)
    assert [cells(x) for x in a] == [cells(x) for x in b]
    assert cells(a[2]) != cells(c[2])


def test_user_holdout_picks_users_uniformly():
    # 300 seeds, one of the 3 eligible users each time: each ~1/3 (sd 0.027; 5 sd bounds)
    data = tiny_users()
    picked = [data.user_ids[np.flatnonzero(per_user(user_holdout(data, 1, seed=s)[2]))[0]]
              for s in range(300)]  # fmt: skip
    share = pd.Series(picked).value_counts(normalize=True)
    assert set(share.index) == {"a", "d", "e"} and np.all(np.abs(share - 1 / 3) < 0.14)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"users": 0}, r"users \(a number of users\) must be an integer >= 1, got 0"),
        ({"users": 4}, r"asks for 4 held-out users, but only 3 users have two or more cells"),
        ({"users": 1.0}, r"users \(a share of users\) must be a finite number in \(0.0, 1.0\)"),
        ({"users": -0.5}, r"share of users"),
        ({"users": True}, r"users must be a share of users in \(0, 1\) or a number of users"),
        ({"users": "3"}, r"users must be a share of users"),
        ({"users": 1, "fold_in_fraction": 1.0}, r"fold_in_fraction must be a finite number"),
        ({"users": 1, "fold_in_fraction": 0}, r"fold_in_fraction"),
        ({"users": 1, "seed": -1}, r"seed"),
    ],
)
def test_user_holdout_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        user_holdout(tiny_users(), **kwargs)


def test_user_holdout_needs_an_eligible_user():
    data = Interactions(sp.csr_matrix(np.eye(3)))  # one cell each
    with pytest.raises(ValueError, match="no user has two or more cells"):
        user_holdout(data, 0.5)


# ------------------------------------------------------------------ SplitSpec and the protocol
def test_split_spec_fold_in_parts_are_user_holdouts():
    data = timed_interactions(6, n_users=40)
    spec = SplitSpec(protocol="fold_in", holdout_users=9, test_fraction=0.25, seed=3)
    parts = spec.parts(data)
    expected = user_holdout(data, 9, fold_in_fraction=0.75, seed=3)
    assert [cells(p) for p in (parts.train, parts.fold_in, parts.test)] == [
        cells(p) for p in expected
    ]
    assert parts.protocol == "fold_in"
    with pytest.raises(ValueError, match=r"train, fold-in and test parts: use SplitSpec\.parts"):
        spec.apply(data)
    standard = SplitSpec(seed=3).parts(data)
    assert standard.protocol == "standard" and standard.fold_in is None
    assert cells(standard.test) == cells(random_holdout(data, 0.2, seed=3)[1])
    nothing = SplitSpec(protocol="fold_in", test_fraction=0.0).parts(data)
    assert nothing.train is data and nothing.test is None and nothing.fold_in is None


def test_split_spec_protocol_fields_are_checked_recorded_and_compared():
    spec = SplitSpec(protocol="fold_in", holdout_users=100)
    record = spec.to_dict()
    assert record == {
        "kind": "random",
        "test_fraction": 0.2,
        "seed": 42,
        "protocol": "fold_in",
        "holdout_users": 100,
    }
    assert SplitSpec.from_dict(record) == spec
    assert SplitSpec.from_notebook_parameters(spec.to_notebook_parameters()) == spec
    assert spec.to_notebook_parameters()["PROTOCOL"] == "fold_in"
    # a standard split is recorded as before the protocol existed
    assert SplitSpec(seed=3).to_dict() == {"kind": "random", "test_fraction": 0.2, "seed": 3}
    assert SplitSpec.from_dict({**SplitSpec().to_dict(), "protocol": "standard"}) == SplitSpec()
    with pytest.raises(SpecMismatchError, match=r"protocol 'standard' there, 'fold_in' here"):
        spec.check_same(SplitSpec().to_dict(), "the model was trained on")
    with pytest.raises(SpecMismatchError, match=r"protocol 'fold_in' there, 'standard' here"):
        SplitSpec().check_same(spec.to_dict(), "the model was trained on")
    with pytest.raises(SpecMismatchError, match=r"holdout_users 0\.2 there, 100 here"):
        spec.check_same(SplitSpec(protocol="fold_in").to_dict(), "x")
    SplitSpec().check_same({"kind": "random", "test_fraction": 0.2, "seed": 42}, "old")
    for bad, match in (
        ({"protocol": "strong"}, r"split protocol must be one of \['fold_in', 'standard'\]"),
        ({"protocol": "fold_in", "kind": "temporal"}, "split kind must be 'random'"),
        ({"protocol": "fold_in", "holdout_users": 0}, r"holdout_users \(a number of users\)"),
        ({"protocol": "fold_in", "holdout_users": 1.5}, r"holdout_users \(a share of users\)"),
        ({"holdout_users": 100}, r"holdout_users \(100\) is only used by the fold_in protocol"),
    ):
        with pytest.raises(ValueError, match=match):
            SplitSpec(**bad)
