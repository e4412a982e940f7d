"""Baselines: popularity counts distinct users (checked by a plain loop), random is seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch import load_model
from alsresearch.baselines import PopularityModel, RandomModel
from alsresearch.data import Interactions
from tests.contract import RecommenderContract


@pytest.fixture
def events() -> Interactions:
    # user "a" clicks item 10 three times: popularity counts users, not clicks
    frame = pd.DataFrame(
        {
            "user": ["a", "a", "a", "a", "b", "b", "c", "c", "d"],
            "item": [10, 10, 10, 20, 20, 30, 30, 40, 30],
        }
    )
    return Interactions.from_events(frame, user_col="user", item_col="item")


def test_popularity_counts_distinct_users(events):
    model = PopularityModel().fit(events)
    # hand count: 10 <- a; 20 <- a, b; 30 <- b, c, d; 40 <- c
    assert dict(zip(model.item_ids.tolist(), model.popularity.tolist(), strict=True)) == {
        10: 1.0,
        20: 2.0,
        30: 3.0,
        40: 1.0,
    }


def test_popularity_ranking_excludes_seen_and_breaks_ties_by_index(events):
    model = PopularityModel().fit(events)
    items, scores = model.recommend("d", n=3)  # d has seen 30
    assert items.tolist() == [20, 10, 40]  # 10 and 40 tie at 1: lower index (10) first
    np.testing.assert_allclose(scores, [2 / 4, 1 / 4, 1 / 4])  # shares of the 4 users
    items, _ = model.recommend("a", n=5)  # a has seen 10, 20: only two items left
    assert items.tolist() == [30, 40]


def test_popularity_is_the_cold_start_fallback(events):
    model = PopularityModel().fit(events)
    items, _ = model.recommend_for_history([30, 40], n=4)
    assert items.tolist() == [20, 10]


def test_popularity_loop_reference(rng):
    m = sp.random(40, 25, density=0.2, random_state=np.random.RandomState(3), format="csr")
    m.data = np.ceil(m.data * 5)
    model = PopularityModel().fit(m)
    dense = m.toarray()
    expected = [sum(1 for u in range(40) if dense[u, i] > 0) for i in range(25)]
    np.testing.assert_array_equal(model.popularity, expected)


def test_random_is_reproducible_and_seed_dependent(small_interactions):
    users = small_interactions.user_ids[:7]
    a = RandomModel(random_state=5).fit(small_interactions).recommend_batch(users, n=6)
    b = RandomModel(random_state=5).fit(small_interactions).recommend_batch(users, n=6)
    c = RandomModel(random_state=6).fit(small_interactions).recommend_batch(users, n=6)
    for (ia, sa), (ib, sb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(sa, sb)
    assert any(not np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(a, c, strict=True))


def test_random_scores_look_uniform(small_interactions):
    model = RandomModel(random_state=1).fit(small_interactions)
    scores = model.score_rows(np.arange(model.n_users))
    assert scores.shape == (model.n_users, model.n_items)
    assert scores.min() >= 0.0 and scores.max() < 1.0
    # mean of n uniforms has sd 1/sqrt(12 n); 6 sd is far beyond chance
    assert abs(scores.mean() - 0.5) < 6 / np.sqrt(12 * scores.size)
    # users get different orders
    assert not np.array_equal(np.argsort(scores[0]), np.argsort(scores[1]))


def test_random_without_seed_survives_save_load(small_interactions, tmp_path):
    model = RandomModel(random_state=None).fit(small_interactions)
    user = small_interactions.user_ids[0]
    loaded = load_model(model.save(tmp_path / "r.npz"))
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.recommend(user, 5)[0], model.recommend(user, 5)[0])


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, 2**63])
def test_random_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="random_state"):
        RandomModel(random_state=bad)


def test_popularity_restore_checks_shape(events, tmp_path):
    model = PopularityModel().fit(events)
    with pytest.raises(ValueError, match="one entry per item"):
        model.set_state({"popularity": np.ones(model.n_items + 1)})


class TestPopularityContract(RecommenderContract):
    @pytest.fixture
    def make_model(self):
        return PopularityModel


class TestRandomContract(RecommenderContract):
    @pytest.fixture
    def make_model(self):
        return lambda: RandomModel(random_state=0)
