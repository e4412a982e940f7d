"""Baselines every model must beat: item popularity and seeded random scores.

Both are :class:`~alsresearch.base.Recommender` subclasses, so evaluation, tuning, export and
serving take them exactly as they take :class:`~alsresearch.als.ALSModel`.

- :class:`PopularityModel` scores item ``i`` by ``pop(i)`` = the number of distinct users with
  at least one interaction with ``i`` in the training data (counts are not summed: one user
  clicking an item 50 times counts once). Every user gets the same ranking, minus their seen
  items; ties go to the lower item index (the shared top-k kernel's rule). It is also the
  cold-start fallback of the service: ``recommend_for_history`` returns the most popular items
  not in the given history.
- :class:`RandomModel` gives every (user, item) pair a pseudo-random score in [0, 1) that is a
  pure function of ``(random_state, user row, item index)`` (a SplitMix64 hash), so the same
  seed gives the same lists whatever the batch size, order or chunking, and after save/load.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from alsresearch.base import Recommender
from alsresearch.checks import check_int
from alsresearch.data import coerce_interactions

__all__ = ["PopularityModel", "RandomModel"]


class PopularityModel(Recommender):
    """Recommend the items the most distinct training users interacted with.

    After ``fit``, ``popularity[i]`` (float64) is the number of distinct training users of item
    ``i``. Scores are ``popularity`` as float32 (exact below 2**24 users).
    """

    model_type = "popularity"

    popularity: np.ndarray

    def fit(self, X, **kwargs) -> Self:
        """Count distinct users per item in ``X`` (Interactions or a scipy sparse matrix)."""
        if kwargs:
            raise TypeError(f"PopularityModel.fit got unexpected arguments {sorted(kwargs)}")
        interactions = coerce_interactions(X)
        m = interactions.matrix
        self.popularity = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
        self._set_training_data(interactions)
        return self

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        return np.broadcast_to(self.popularity.astype(np.float32), (len(rows), self.n_items)).copy()

    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self.popularity.astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        pop = np.asarray(state.get("popularity"), dtype=np.float64)
        if pop.shape != (self.n_items,):
            raise ValueError(
                f"popularity must have one entry per item ({self.n_items}), got shape {pop.shape}"
            )
        if not np.all(np.isfinite(pop)) or np.any(pop < 0):
            raise ValueError("popularity must be finite and >= 0")
        self.popularity = pop


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
#: user key of anonymous users (recommend_for_history): outside every real row number
_ANONYMOUS = np.uint64(2**63 - 1)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (wrapping arithmetic): a well-mixed hash of ``x``."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _uniform(seed: int, users: np.ndarray, n_items: int) -> np.ndarray:
    """``(len(users), n_items)`` float32 in [0, 1), a pure function of (seed, user, item)."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed) ^ _splitmix64(users.astype(np.uint64)))
        h = _splitmix64(key[:, None] ^ np.arange(n_items, dtype=np.uint64)[None, :] * _GOLDEN)
    return ((h >> np.uint64(40)).astype(np.float32)) * np.float32(2.0**-24)


class RandomModel(Recommender):
    """Random scores, reproducible from ``random_state``.

    ``random_state=None`` draws a seed at ``fit`` time; it is stored with the model, so a saved
    and reloaded model gives the same lists.
    """

    model_type = "random"

    def __init__(self, random_state: int | None = 0) -> None:
        if random_state is not None:
            random_state = check_int(random_state, "random_state", low=0, high=2**63 - 1)
        self.random_state = random_state

    def fit(self, X, **kwargs) -> Self:
        """Remember the id space of ``X``; nothing is learned."""
        if kwargs:
            raise TypeError(f"RandomModel.fit got unexpected arguments {sorted(kwargs)}")
        interactions = coerce_interactions(X)
        if self.random_state is None:
            self.seed_ = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        else:
            self.seed_ = self.random_state
        self._set_training_data(interactions)
        return self

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return _uniform(self.seed_, np.asarray(rows, dtype=np.int64), self.n_items)

    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return _uniform(self.seed_, np.array([_ANONYMOUS]), self.n_items)[0]

    def get_config(self) -> dict[str, Any]:
        return {"random_state": self.random_state}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"seed": np.array(self.seed_, dtype=np.int64)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        seed = np.asarray(state.get("seed"))
        if seed.shape != () or seed.dtype.kind not in "iu" or int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer scalar, got {seed!r}")
        self.seed_ = int(seed)
