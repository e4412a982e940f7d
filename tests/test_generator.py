"""The synthetic generator: skew, determinism, the events table it aggregates, and structure
that ALS recovers and a popularity ranking cannot."""

from __future__ import annotations

import numpy as np
import pytest

from alsresearch.als import ALSModel
from alsresearch.baselines import PopularityModel
from alsresearch.data import Interactions
from alsresearch.datasets import synthetic, synthetic_events
from alsresearch.datasets.generator import _alias_draw, _alias_table
from alsresearch.evaluate import evaluate
from alsresearch.split import random_holdout

SMALL = {"n_users": 3000, "n_items": 800, "nnz": 45_000}


def _top_share(counts: np.ndarray, fraction: float) -> float:
    """Share of all events held by the top ``fraction`` of items."""
    ranked = np.sort(counts)[::-1]
    top = max(1, round(fraction * len(ranked)))
    return ranked[:top].sum() / ranked.sum()


def _gini(counts: np.ndarray) -> float:
    """Gini coefficient from the textbook formula on sorted values."""
    x = np.sort(counts.astype(np.float64))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


@pytest.fixture(scope="module")
def small_synthetic() -> Interactions:
    return synthetic(**SMALL, seed=7)


def test_synthetic_shape_nnz_and_timestamps(small_synthetic):
    X = small_synthetic
    assert X.shape == (SMALL["n_users"], SMALL["n_items"])
    assert abs(X.nnz - SMALL["nnz"]) <= 0.005 * SMALL["nnz"]
    assert np.array_equal(X.user_ids, np.arange(SMALL["n_users"]))
    assert np.array_equal(X.item_ids, np.arange(SMALL["n_items"]))
    assert X.timestamps is not None and X.timestamps.shape == (X.nnz,)
    start = 1_704_067_200  # 2024-01-01 UTC
    assert X.timestamps.min() >= start and X.timestamps.max() < start + 365 * 86_400
    # every user has at least one event; counts are whole numbers of events
    assert (np.diff(X.matrix.indptr) >= 1).all()
    assert np.array_equal(X.matrix.data, np.round(X.matrix.data)) and X.matrix.data.min() >= 1


def test_synthetic_is_the_events_table_aggregated():
    """The fast direct build equals Interactions.from_events on the events table."""
    events = synthetic_events(**SMALL, seed=3)
    assert list(events.columns) == ["user_id", "item_id", "event", "timestamp"]
    assert set(events["event"].cat.categories) == {"view", "click", "purchase"}
    assert events["timestamp"].is_monotonic_increasing
    weights = {"view": 1.0, "click": 2.0, "purchase": 5.0}
    direct = synthetic(**SMALL, seed=3, event_weights=weights)
    built = Interactions.from_events(
        events, event_col="event", event_weights=weights, timestamp_col="timestamp"
    )
    # from_events keeps only touched items; map its columns back into the full id space
    cols = direct.item_index(built.item_ids)
    untouched = np.ones(SMALL["n_items"], dtype=bool)
    untouched[cols] = False
    assert direct.matrix[:, untouched].nnz == 0
    assert np.array_equal(built.user_ids, direct.user_ids)
    assert np.array_equal(direct.matrix[:, cols].toarray(), built.matrix.toarray())
    frame_direct = direct.to_frame().sort_values(["user_id", "item_id"]).reset_index(drop=True)
    frame_built = built.to_frame().sort_values(["user_id", "item_id"]).reset_index(drop=True)
    assert np.array_equal(frame_direct["timestamp"], frame_built["timestamp"])
    # nnz counts distinct (user, item) cells; the events table is longer
    assert direct.nnz == events.groupby(["user_id", "item_id"]).ngroups < len(events)


def test_synthetic_is_deterministic():
    a = synthetic(500, 200, 6000, seed=11)
    b = synthetic(500, 200, 6000, seed=11)
    c = synthetic(500, 200, 6000, seed=12)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    # not just different timestamps: the cells themselves differ
    assert (a.matrix != c.matrix).nnz > 0.5 * a.nnz


def test_synthetic_item_popularity_is_skewed(small_synthetic):
    item_events = np.asarray(small_synthetic.matrix.sum(axis=0)).ravel()
    # Zipf(1) over 800 items: the top 1% (8 items) would hold H(8)/H(800) = 0.37 of events
    # under pure popularity sampling; the taste part spreads events a little
    assert _top_share(item_events, 0.01) > 0.25
    assert _gini(item_events) > 0.6
    flat = synthetic(**SMALL, seed=7, zipf_exponent=0.0)
    flat_events = np.asarray(flat.matrix.sum(axis=0)).ravel()
    assert _top_share(flat_events, 0.01) < 0.05
    assert _gini(flat_events) < 0.3


def test_synthetic_user_activity_is_log_normal(small_synthetic):
    events_per_user = np.asarray(small_synthetic.matrix.sum(axis=1)).ravel()
    # log-normal activity (sigma 1): a long right tail, mean well above the median
    assert events_per_user.mean() > 1.3 * np.median(events_per_user)
    assert events_per_user.max() > 10 * np.median(events_per_user)
    even = synthetic(**SMALL, seed=7, activity_sigma=0.0)
    even_per_user = np.asarray(even.matrix.sum(axis=1)).ravel()
    assert even_per_user.max() < 3 * np.median(even_per_user)


def test_synthetic_event_type_shares():
    events = synthetic_events(**SMALL, seed=5, event_probs={"view": 0.6, "purchase": 0.4})
    shares = events["event"].value_counts(normalize=True)
    assert shares["view"] == pytest.approx(0.6, abs=0.01)
    assert shares["purchase"] == pytest.approx(0.4, abs=0.01)


def test_alias_sampler_matches_its_distribution(rng):
    p = rng.dirichlet(np.full(50, 0.3))
    prob, alias = _alias_table(p)
    n = 400_000
    draws = _alias_draw(rng, prob, alias, n)
    freq = np.bincount(draws, minlength=len(p)) / n
    # binomial standard error of each frequency; 5 sigma
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-9)
    # a slice of concatenated tables (alias positions absolute) draws only from its slice
    q = rng.dirichlet(np.full(20, 0.5))
    prob_q, alias_q = _alias_table(q)
    both_prob = np.concatenate([prob, prob_q])
    both_alias = np.concatenate([alias, alias_q + len(p)])
    draws = _alias_draw(rng, both_prob, both_alias, n, start=len(p), size=len(q))
    assert draws.min() >= len(p)
    freq = np.bincount(draws - len(p), minlength=len(q)) / n
    assert np.all(np.abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / n) + 1e-9)


def test_synthetic_structure_is_recoverable_by_als():
    """The planted topics are what ALS learns and a popularity ranking cannot see."""

    def ndcg(model, X):
        train, test = random_holdout(X, 0.2, seed=0)
        return evaluate(model.fit(train), train, test, k=10).metrics["ndcg@10"]

    def als():
        # as many factors as planted topics; mild confidence (the data are ~25 cells per user)
        return ALSModel(factors=8, alpha=1.0, regularization=1.0, iterations=10, random_state=0)

    X = synthetic(2000, 400, 50_000, seed=1, n_factors=8)
    # measured: ALS 0.37, popularity 0.24 (ratio 1.5 to 1.65 over seeds 1-4)
    assert ndcg(als(), X) > 1.3 * ndcg(PopularityModel(), X)
    # control: with taste switched off (every event follows popularity) the advantage is gone
    # (measured: ALS 0.28, popularity 0.37)
    Y = synthetic(2000, 400, 50_000, seed=1, n_factors=8, popularity_mix=1.0)
    assert ndcg(als(), Y) < ndcg(PopularityModel(), Y)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0, "n_items": 10, "nnz": 10},
        {"n_users": 10, "n_items": 10, "nnz": 5},  # fewer cells than users
        {"n_users": 10, "n_items": 10, "nnz": 80},  # more than half the matrix
        {"n_users": 10, "n_items": 4, "nnz": 12, "n_factors": 5},
        {"n_users": 10, "n_items": 10, "nnz": 20, "popularity_mix": 1.5},
        {"n_users": 10, "n_items": 10, "nnz": 20, "event_probs": {"view": -1.0}},
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic(**kwargs)


def test_synthetic_warns_when_skew_leaves_too_few_cells():
    # Zipf(2) over 100 items: the tail items are drawn so rarely that half the matrix
    # cannot be filled in 20 rounds
    with pytest.warns(UserWarning, match="distinct cells of the 5000 asked for"):
        X = synthetic(100, 100, 5000, zipf_exponent=2.0)
    assert 0.8 * 5000 < X.nnz < 5000


def test_synthetic_event_weights_must_cover_every_type():
    with pytest.raises(ValueError, match="purchase"):
        synthetic(100, 50, 500, event_weights={"view": 1.0, "click": 2.0})


if __name__ == "__main__":
    # Timing print (never asserted): python -m tests.test_synthetic
    import resource
    import time

    for n_users, n_items, nnz in [(50_000, 5_000, 1_000_000), (500_000, 50_000, 10_000_000)]:
        wall, cpu = time.perf_counter(), time.process_time()
        X = synthetic(n_users, n_items, nnz, seed=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counts = np.asarray(X.matrix.sum(axis=0)).ravel()
        print(
            f"synthetic({n_users}, {n_items}, {nnz}): {wall:.2f} s wall, {cpu:.2f} s CPU, "
            f"{X.nnz} cells, {int(X.matrix.sum())} events, "
            f"top 1% items hold {_top_share(counts, 0.01):.1%}, Gini {_gini(counts):.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
