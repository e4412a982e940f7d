"""The period-by-period replay (alsresearch.replay), on tiny timestamped events whose periods
and train / test cells are worked out by hand below."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch.data import Interactions
from alsresearch.replay import DAY, cutoffs, period_split, periods, replay, summarize

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z

#: (user, item, time in days after T0). Periods of one day from day 1:
#:   before day 1: a (u1,i1) b (u1,i2) c (u2,i1)
#:   [1, 2): d (u1,i3): i3 unknown at day 1, a cold item; e (u2,i2): known, the test cell;
#:           f (u3,i1), g (u3,i3): u3 unknown at day 1, cold users
#:   [2, 3): h (u2,i3), i (u3,i2): known at day 2, the test cells; j (u4,i2): a cold user;
#:           k (u1,i4): i4 unknown at day 2, a cold item
#:   [3, 4): l (u2,i5): i5 unknown at day 3, a cold item, so the test is empty
EVENTS = [
    ("u1", "i1", 0.2),
    ("u1", "i2", 0.5),
    ("u2", "i1", 0.7),
    ("u1", "i3", 1.1),
    ("u2", "i2", 1.4),
    ("u3", "i1", 1.5),
    ("u3", "i3", 1.8),
    ("u2", "i3", 2.3),
    ("u3", "i2", 2.5),
    ("u4", "i2", 2.6),
    ("u1", "i4", 2.9),
    ("u2", "i5", 3.5),
]


def events_data(events=EVENTS) -> Interactions:
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "day"])
    frame["timestamp"] = T0 + (frame.pop("day") * DAY).round().astype("int64")
    return Interactions.from_events(frame, timestamp_col="timestamp")


def cells(part: Interactions) -> set[tuple[str, str]]:
    coo = part.matrix.tocoo()
    pairs = zip(coo.row, coo.col, strict=True)
    return {(str(part.user_ids[r]), str(part.item_ids[c])) for r, c in pairs}


@pytest.fixture
def data():
    return events_data()


def test_cutoffs_end_at_the_midnight_after_the_latest_cell(data):
    # the latest cell is at day 3.5: the last period ends at day 4
    assert cutoffs(data, 1, 2).tolist() == [T0 + 2 * DAY, T0 + 3 * DAY, T0 + 4 * DAY]
    assert cutoffs(data, 2, 1).tolist() == [T0 + 2 * DAY, T0 + 4 * DAY]
    assert cutoffs(data, 0.5, 1).tolist() == [T0 + 3 * DAY + DAY // 2, T0 + 4 * DAY]


def test_cutoffs_from_a_start(data):
    start = "2024-01-02"  # day 1, naive text is UTC
    assert cutoffs(data, 1, 3, start=start).tolist() == [T0 + d * DAY for d in (1, 2, 3, 4)]
    assert cutoffs(data, 7, 1, start=T0 + DAY).tolist() == [T0 + DAY, T0 + 8 * DAY]


def test_first_step_must_have_something_to_train_on(data):
    with pytest.raises(ValueError, match="no cell precedes the first cut-off 2024-01-01T00:00"):
        cutoffs(data, 1, 1, start=T0)
    with pytest.raises(ValueError, match="no cell precedes the first cut-off"):
        cutoffs(data, 1, 4)  # day 0 .. 4: nothing before day 0
    with pytest.raises(ValueError, match="nothing to train on"):
        period_split(data, T0, T0 + DAY)


def test_bad_periods_are_errors(data):
    with pytest.raises(ValueError, match="period_days"):
        cutoffs(data, 0, 1)
    with pytest.raises(ValueError, match="n_periods"):
        cutoffs(data, 1, 0)
    with pytest.raises(ValueError, match="must be after start"):
        period_split(data, T0 + 2 * DAY, T0 + 2 * DAY)


def test_data_without_timestamps_is_an_error_naming_the_timestamp_column():
    plain = Interactions.from_matrix(sp.csr_matrix(np.ones((2, 2))))
    with pytest.raises(ValueError, match="timestamp column") as info:
        cutoffs(plain, 1, 1)
    assert "TIMESTAMP_COL" in str(info.value) and "timestamp_col" in str(info.value)
    with pytest.raises(ValueError, match="timestamp"):
        period_split(plain, 0, 1)


def test_each_steps_train_and_test_cells(data):
    steps = list(periods(data, 1, 3, start=T0 + DAY))
    assert [(p.start, p.end) for p in steps] == [
        (T0 + DAY, T0 + 2 * DAY),
        (T0 + 2 * DAY, T0 + 3 * DAY),
        (T0 + 3 * DAY, T0 + 4 * DAY),
    ]
    first, second, third = steps

    assert first.train.user_ids.tolist() == ["u1", "u2"]
    assert first.train.item_ids.tolist() == ["i1", "i2"]
    assert cells(first.train) == {("u1", "i1"), ("u1", "i2"), ("u2", "i1")}
    assert cells(first.test) == {("u2", "i2")}
    assert (first.n_period_cells, first.n_cold_user_cells, first.n_cold_item_cells) == (4, 2, 1)

    assert second.train.user_ids.tolist() == ["u1", "u2", "u3"]
    assert second.train.item_ids.tolist() == ["i1", "i2", "i3"]
    assert cells(second.train) == {
        ("u1", "i1"),
        ("u1", "i2"),
        ("u2", "i1"),
        ("u1", "i3"),
        ("u2", "i2"),
        ("u3", "i1"),
        ("u3", "i3"),
    }
    assert cells(second.test) == {("u2", "i3"), ("u3", "i2")}
    assert (second.n_period_cells, second.n_cold_user_cells, second.n_cold_item_cells) == (4, 1, 1)

    assert third.train.n_users == 4 and third.train.item_ids.tolist() == ["i1", "i2", "i3", "i4"]
    assert third.train.nnz == 11 and third.test.nnz == 0
    assert (third.n_period_cells, third.n_cold_user_cells, third.n_cold_item_cells) == (1, 0, 1)

    for p in steps:
        assert p.train.same_id_space(p.test)  # what evaluate needs
        # timestamps follow their cells: train before the cut-off, test inside the period
        assert p.train.timestamps.max() < p.start
        assert np.all((p.test.timestamps >= p.start) & (p.test.timestamps < p.end))


def test_a_cell_belongs_to_the_period_of_its_latest_event():
    """The cut-off rule of temporal_holdout: (u1, i1), seen at day 0.2 and again at day 1.5,
    is a cell of the second period with its count of 2, not a training cell."""
    data = events_data([("u1", "i1", 0.2), ("u1", "i2", 0.5), ("u1", "i1", 1.5)])
    p = period_split(data, T0 + DAY, T0 + 2 * DAY)
    assert cells(p.train) == {("u1", "i2")}
    assert p.train.item_ids.tolist() == ["i2"]
    # i1 has no training cell, so the cell is a cold item's and not in test
    assert (p.n_period_cells, p.n_cold_user_cells, p.n_cold_item_cells) == (1, 0, 1)
    assert p.test.nnz == 0
    assert data.matrix[0, 0] == 2.0


def test_counts_are_carried_into_train_and_test():
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 2],
            "item_id": [10, 20, 10, 20, 20],
            "plays": [3.0, 1.0, 2.0, 4.0, 5.0],
            "timestamp": [T0, T0, T0, T0 + DAY, T0 + DAY + 5],
        }
    )
    data = Interactions.from_events(frame, weight_col="plays", timestamp_col="timestamp")
    p = period_split(data, T0 + DAY, T0 + 2 * DAY)
    assert p.train.matrix.toarray().tolist() == [[3.0, 1.0], [2.0, 0.0]]
    assert p.test.matrix.toarray().tolist() == [[0.0, 0.0], [0.0, 9.0]]
    assert p.test.timestamps.tolist() == [T0 + DAY + 5]


PARAMS = {"factors": 4, "iterations": 6, "regularization": 0.1, "random_state": 0}


def test_replay_rows_warm_and_cold(data):
    table = replay(data, 1, 3, PARAMS, warm_iterations=2, start=T0 + DAY, k=10)
    assert table[["step", "mode"]].values.tolist() == [
        [s, m] for s in range(3) for m in ("cold", "warm")
    ]
    cold, warm = table[table["mode"] == "cold"], table[table["mode"] == "warm"]
    assert cold["iterations"].tolist() == [6, 6, 6]
    assert cold["init"].tolist() == ["random"] * 3
    # the warm chain starts from step 0's full fit, then 2 iterations from the previous model
    assert warm["iterations"].tolist() == [6, 2, 2]
    assert warm["init"].tolist() == ["random", "previous", "previous"]
    # matched by id: step 1 knows u1, u2 and i1, i2 from step 0; step 2 knows u1..u3, i1..i3
    assert warm["matched_users"].tolist() == [0, 2, 3]
    assert warm["matched_items"].tolist() == [0, 2, 3]
    assert cold["matched_users"].tolist() == [0, 0, 0]
    for part in (cold, warm):
        assert part["train_cells"].tolist() == [3, 7, 11]
        assert part["test_cells"].tolist() == [1, 2, 0]
        assert part["test_users"].tolist() == [1, 2, 0]
        assert part["cold_user_cells"].tolist() == [2, 1, 0]
        assert part["cold_item_cells"].tolist() == [1, 1, 1]
        # each evaluated user has one unseen item left, the test item: a hit at rank 1
        assert part["ndcg@10"].tolist()[:2] == [1.0, 1.0]
        assert part["recall@10"].tolist()[:2] == [1.0, 1.0]
        assert math.isnan(part["ndcg@10"].tolist()[2])  # no test cell in the last period
        assert np.all(part["fit_seconds"] > 0)
    assert table["train_end"].tolist()[::2] == [
        "2024-01-02T00:00:00Z",
        "2024-01-03T00:00:00Z",
        "2024-01-04T00:00:00Z",
    ]
    assert warm.iloc[0].drop("mode").equals(cold.iloc[0].drop("mode"))  # one model, one row


def test_warm_steps_continue_from_the_previous_model(data):
    """Step 1's warm row is a 2-iteration fit from step 0's model: the same fit done by hand
    gives the same loss; a cold fit of 2 iterations gives another."""
    from alsresearch.als import ALSModel

    table = replay(data, 1, 2, PARAMS, warm_iterations=2, modes=["warm"], start=T0 + DAY)
    first, second = periods(data, 1, 2, start=T0 + DAY)
    base = ALSModel(**PARAMS).fit(first.train)
    by_hand = ALSModel(**{**PARAMS, "iterations": 2}).fit(second.train, init=base)
    from_random = ALSModel(**{**PARAMS, "iterations": 2}).fit(second.train)
    assert table["mode"].tolist() == ["warm", "warm"]
    assert table["loss"].iloc[0] == pytest.approx(base.loss_history[-1], rel=1e-6)
    assert table["loss"].iloc[1] == pytest.approx(by_hand.loss_history[-1], rel=1e-6)
    assert abs(by_hand.loss_history[-1] - from_random.loss_history[-1]) > 1e-6


def test_cold_only_and_bad_modes(data):
    table = replay(data, 1, 2, PARAMS, warm_iterations=2, modes=["cold"], start=T0 + DAY)
    assert table["mode"].tolist() == ["cold", "cold"]
    with pytest.raises(ValueError, match="modes"):
        replay(data, 1, 2, PARAMS, warm_iterations=2, modes=["hot"], start=T0 + DAY)
    with pytest.raises(ValueError, match="modes"):
        replay(data, 1, 2, PARAMS, warm_iterations=2, modes=[], start=T0 + DAY)
    with pytest.raises(ValueError, match="warm_iterations"):
        replay(data, 1, 2, PARAMS, warm_iterations=0, start=T0 + DAY)


def test_summarize_pools_the_retrain_steps_by_user():
    table = pd.DataFrame(
        {
            "step": [0, 0, 1, 1, 2, 2, 3, 3],
            "mode": ["cold", "warm"] * 4,
            "iterations": [15, 15, 15, 3, 15, 3, 15, 3],
            "fit_seconds": [2.0, 2.0, 2.0, 0.5, 3.0, 0.5, 1.0, 1.0],
            "ndcg@10": [0.9, 0.9, 0.4, 0.2, 0.1, 0.4, float("nan"), float("nan")],
            "recall@10": [0.9, 0.9, 0.5, 0.5, 0.2, 0.2, float("nan"), float("nan")],
            "test_users": [5, 5, 1, 1, 3, 3, 0, 0],
        }
    )
    got = summarize(table, k=10)
    # steps 1..3 only; step 3 has no test user
    assert got["cold_ndcg@10"] == pytest.approx((0.4 * 1 + 0.1 * 3) / 4)
    assert got["warm_ndcg@10"] == pytest.approx((0.2 * 1 + 0.4 * 3) / 4)
    assert got["cold_recall@10"] == pytest.approx((0.5 + 0.6) / 4)
    assert got["cold_fit_seconds"] == pytest.approx(6.0)
    assert got["warm_fit_seconds"] == pytest.approx(2.0)
    assert got["warm_iterations"] == pytest.approx(3.0)
    assert got["retrain_steps"] == 3 and got["evaluated_users"] == 4
    assert got["warm_over_cold_ndcg@10"] == pytest.approx(1.4 / 0.7)
    assert got["warm_over_cold_fit_seconds"] == pytest.approx(2.0 / 6.0)
    only_cold = summarize(table[table["mode"] == "cold"], k=10)
    assert "warm_ndcg@10" not in only_cold and "warm_over_cold_ndcg@10" not in only_cold
    one_step = summarize(table[table["step"] == 0], k=10)
    assert math.isnan(one_step["cold_ndcg@10"]) and one_step["retrain_steps"] == 0
