"""Shared fixtures: a seeded rng, small random interactions, the shipped MovieLens data, and the
service tests' promoted MovieLens model with a real server and a client for it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch import paths
from alsresearch.data import Interactions

SEED = 20081215  # Hu, Koren & Volinsky, ICDM 2008


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def random_interactions(
    rng: np.random.Generator, n_users: int = 60, n_items: int = 40, string_items: bool = True
) -> Interactions:
    """Counts with varied activity: some users with no items, some with most of the catalogue."""
    activity = rng.integers(0, n_items, size=n_users)
    activity[:3] = [0, 1, n_items - 2]  # an empty user, a single-item user, a near-complete user
    rows, cols = [], []
    popularity = rng.zipf(1.6, size=n_items).astype(float)
    p = popularity / popularity.sum()
    for u, a in enumerate(activity):
        items = rng.choice(n_items, size=a, replace=False, p=p)
        rows.extend([u] * a)
        cols.extend(items.tolist())
    counts = rng.integers(1, 6, size=len(rows)).astype(float)
    matrix = sp.csr_matrix((counts, (rows, cols)), shape=(n_users, n_items))
    user_ids = np.arange(100, 100 + n_users)
    item_ids = (
        np.array([f"i{j:03d}" for j in range(n_items)]) if string_items else np.arange(n_items)
    )
    return Interactions(matrix, user_ids, item_ids)


@pytest.fixture
def small_interactions(rng) -> Interactions:
    return random_interactions(rng)


@pytest.fixture(scope="session")
def movielens() -> Interactions:
    """The shipped MovieLens ml-latest-small, every rating one interaction."""
    ratings = paths.resource("ml-latest-small", "ratings.csv")
    if not ratings.is_file():
        pytest.skip(f"shipped data missing at {ratings}")
    try:
        from alsresearch.datasets import load_default
    except ImportError:
        return Interactions.from_events(
            ratings, user_col="userId", item_col="movieId", timestamp_col="timestamp"
        )
    return load_default()


@pytest.fixture(scope="session")
def shared_datasets():
    """../shared/datasets, present on developers' machines only."""
    found = paths.shared_datasets_dir()
    if found is None:
        pytest.skip("../shared/datasets is absent (it exists only on developers' machines)")
    return found


@pytest.fixture(scope="session")
def artefact(tmp_path_factory, movielens):
    """A model promoted from MovieLens with SERVED_PARAMS (its files, card and result)."""
    from alsresearch.promote import promote
    from tests.serve_helpers import SERVED_PARAMS

    result = promote(SERVED_PARAMS, movielens, models_dir=tmp_path_factory.mktemp("models"))
    assert result.promoted, result.reason
    return result


@pytest.fixture(scope="session")
def server(artefact):
    """``alsresearch serve`` on that model: a real uvicorn process on loopback."""
    from tests.serve_helpers import Server

    with Server(artefact.model_path) as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c
