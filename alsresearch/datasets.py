"""Data sets: the shipped default, readers for public formats, and a synthetic generator.

- :func:`synthetic` / :func:`synthetic_events`: a seeded generator with a planted latent
  structure, power-law item popularity and log-normal user activity, fast enough for benchmarks
  (500k users x 50k items x 10M cells in seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch.data import Interactions

__all__ = ["SyntheticParams", "synthetic", "synthetic_events"]

_SYNTHETIC_START = 1_704_067_200  # 2024-01-01T00:00:00Z
_DAY = 86_400


# ---------------------------------------------------------------------------------- synthetic
@dataclass(frozen=True)
class SyntheticParams:
    """Shape of the synthetic data (the keyword arguments of :func:`synthetic_events`)."""

    n_factors: int = 16
    """Number of planted topics: the true rank of the taste part of the matrix."""
    zipf_exponent: float = 1.0
    """Item popularity is proportional to ``rank ** -zipf_exponent`` (0 = uniform); ranks are
    a random permutation of the item ids."""
    activity_sigma: float = 1.0
    """User activity is log-normal with this sigma (0 = every user equally active)."""
    concentration: float = 0.1
    """Dirichlet concentration of each user's topic mixture: small values give users one or
    two dominant topics, large values blur them towards the average taste."""
    popularity_mix: float = 0.2
    """Share of events that ignore taste and follow global popularity."""
    event_probs: Mapping[str, float] = field(
        default_factory=lambda: {"view": 0.80, "click": 0.15, "purchase": 0.05}
    )
    """Event type -> probability (normalised), weakest to strongest signal."""
    span_days: float = 365.0
    """Events fall within this many days from 2024-01-01 UTC; each user is active over a
    window of log-normal length (median 30 days) starting uniformly in the span."""

    def __post_init__(self) -> None:
        if int(self.n_factors) != self.n_factors or self.n_factors < 1:
            raise ValueError(f"n_factors must be a positive integer, got {self.n_factors!r}")
        if not 0.0 <= self.popularity_mix <= 1.0:
            raise ValueError(f"popularity_mix must be in [0, 1], got {self.popularity_mix}")
        for name in ("zipf_exponent", "activity_sigma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("concentration", "span_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        probs = np.array(list(self.event_probs.values()), dtype=np.float64)
        if not len(probs) or not np.isfinite(probs).all() or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(
                f"event_probs must map event types to finite weights >= 0, got {self.event_probs}"
            )


class _Planted:
    """The hidden structure behind synthetic events (drawn once per seed).

    An LDA-like generative model. Each item has a Zipf popularity and belongs to one of
    ``n_factors`` topics; each user has a topic mixture ``theta_u ~ Dirichlet(concentration)``
    (small concentration: most users care about one or two topics) and a log-normal activity
    level. An event of user u picks, with probability ``popularity_mix``, an item from the global
    popularity distribution, otherwise a topic ``z ~ theta_u`` and then an item of topic z with
    probability proportional to its popularity. The expected user x item matrix is therefore
    ``popularity_mix * pop + (1 - popularity_mix) * theta @ phi``: rank ``n_factors + 1``.

    Sampling is vectorised and avoids random-access binary searches (slow on ten million
    draws): per-user and per-(user, topic) event counts are multinomial draws, and items are
    drawn with Walker alias tables (two look-ups per event).
    """

    def __init__(
        self, rng: np.random.Generator, n_users: int, n_items: int, params: SyntheticParams
    ) -> None:
        n_factors = params.n_factors
        self.n_users, self.n_items, self.n_factors = n_users, n_items, n_factors
        self.popularity_mix = params.popularity_mix
        # Item popularity: Zipf over ranks, ranks shuffled so ids say nothing about popularity.
        pop = np.arange(1, n_items + 1, dtype=np.float64) ** -params.zipf_exponent
        self.popularity = pop[rng.permutation(n_items)]
        self.popularity /= self.popularity.sum()
        self.pop_alias = _alias_table(self.popularity)
        # Topics: balanced (every topic gets items), assignment random. Items are laid out by
        # topic; topic k owns positions seg_start[k] : seg_start[k] + seg_size[k].
        self.item_topic = rng.permutation(n_items) % n_factors
        self.by_topic = np.argsort(self.item_topic, kind="stable")
        self.seg_size = np.bincount(self.item_topic, minlength=n_factors)
        self.seg_start = np.concatenate([[0], np.cumsum(self.seg_size)[:-1]])
        pop_sorted = self.popularity[self.by_topic]
        tables = [
            _alias_table(pop_sorted[start : start + size])
            for start, size in zip(self.seg_start, self.seg_size, strict=True)
        ]
        self.topic_prob = np.concatenate([t[0] for t in tables])
        self.topic_alias = np.concatenate(
            [t[1] + start for t, start in zip(tables, self.seg_start, strict=True)]
        )
        # Users: activity (log-normal) and topic mixture (Dirichlet via normalised gammas).
        self.activity = rng.lognormal(0.0, params.activity_sigma, n_users)
        self.activity /= self.activity.sum()
        gam = rng.standard_gamma(params.concentration, size=(n_users, n_factors))
        gam[gam.sum(axis=1) == 0] = 1.0  # underflow guard for tiny concentrations
        self.theta = gam / gam.sum(axis=1, keepdims=True)

    def events(
        self, rng: np.random.Generator, n: int, everyone_once: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) of ``n`` events, grouped by user (ascending).

        Users are drawn by activity; with ``everyone_once`` every user gets one of the ``n``
        events before the rest are shared out.
        """
        per_user = rng.multinomial(n - self.n_users if everyone_once else n, self.activity)
        if everyone_once:
            per_user += 1
        per_cell = rng.multinomial(per_user, self.theta)  # (n_users, n_factors) counts
        users = np.repeat(np.arange(self.n_users, dtype=np.int32), per_user)
        topics = np.repeat(np.tile(np.arange(self.n_factors), self.n_users), per_cell.ravel())
        pos = _alias_draw(
            rng, self.topic_prob, self.topic_alias, self.seg_start[topics], self.seg_size[topics]
        )
        items = self.by_topic[pos].astype(np.int32)
        popular = np.flatnonzero(rng.random(n) < self.popularity_mix)
        prob, alias = self.pop_alias
        items[popular] = _alias_draw(
            rng, prob, alias, np.zeros(len(popular), np.int64), self.n_items
        )
        return users, items


def _alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table of a probability vector: O(n) to build, O(1) per draw.

    Draw: pick a slot j uniformly, keep it with probability ``prob[j]``, else take ``alias[j]``.
    """
    n = len(p)
    scaled = (p * (n / p.sum())).tolist()
    prob = [1.0] * n
    alias = list(range(n))
    small = [i for i, x in enumerate(scaled) if x < 1.0]
    large = [i for i, x in enumerate(scaled) if x >= 1.0]
    while small and large:
        s, g = small.pop(), large[-1]
        prob[s], alias[s] = scaled[s], g
        scaled[g] += scaled[s] - 1.0
        if scaled[g] < 1.0:
            small.append(large.pop())
    return np.array(prob), np.array(alias, dtype=np.int64)


def _alias_draw(
    rng: np.random.Generator, prob: np.ndarray, alias: np.ndarray, start: np.ndarray, size
) -> np.ndarray:
    """One alias draw per entry of ``start`` from the table slice ``start : start + size``.

    ``alias`` holds absolute positions, so the slices of several tables can be concatenated.
    """
    n = len(start)
    slot = start + np.minimum((rng.random(n) * size).astype(np.int64), np.asarray(size) - 1)
    return np.where(rng.random(n) < prob[slot], slot, alias[slot])


def _draw_events(
    n_users: int, n_items: int, nnz: int, seed: int, params: SyntheticParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, event codes, timestamps) of synthetic events, grouped by round and user.

    Events are drawn in rounds until the number of distinct (user, item) cells is within 0.5%
    of ``nnz`` (popular items are drawn more than once by the same user, so more events than
    cells are needed; each round sizes itself on the previous round's yield of new cells).
    """
    for name, value in (("n_users", n_users), ("n_items", n_items)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if params.n_factors > n_items:
        raise ValueError(f"n_factors ({params.n_factors}) must not exceed n_items ({n_items})")
    if int(nnz) != nnz or not n_users <= nnz <= 0.5 * n_users * n_items:
        raise ValueError(
            f"nnz must be an integer between n_users ({n_users}) (one cell per user) and half "
            f"the matrix ({int(0.5 * n_users * n_items)}), got {nnz!r}"
        )
    rng = np.random.default_rng(seed)
    planted = _Planted(rng, n_users, n_items, params)
    users, items = planted.events(rng, nnz, everyone_once=True)
    cells = _sorted_unique(users.astype(np.int64) * n_items + items)
    user_parts, item_parts = [users], [items]
    yield_rate = len(cells) / nnz  # distinct new cells per event drawn, last round
    for _ in range(20):
        if len(cells) >= nnz * 0.995:
            break
        extra = int(np.ceil((nnz - len(cells)) / max(yield_rate, 0.05)))
        more_u, more_i = planted.events(rng, extra, everyone_once=False)
        new = _sorted_unique(more_u.astype(np.int64) * n_items + more_i)
        pos = np.minimum(np.searchsorted(cells, new), len(cells) - 1)
        fresh = new[cells[pos] != new]
        yield_rate = len(fresh) / extra
        cells = np.sort(np.concatenate([cells, fresh]))
        user_parts.append(more_u)
        item_parts.append(more_i)
    users = np.concatenate(user_parts)
    items = np.concatenate(item_parts)

    n = len(users)
    probs = np.array(list(params.event_probs.values()), dtype=np.float64)
    codes = rng.choice(len(probs), size=n, p=probs / probs.sum()).astype(np.int8)
    # Time: each user is active over a window starting uniformly in the span, of log-normal
    # length (median a month), clipped to the span; events fall uniformly inside the window.
    span = params.span_days * _DAY
    start = rng.random(n_users) * span
    length = np.minimum(rng.lognormal(np.log(30 * _DAY), 1.0, n_users), span - start)
    stamps = _SYNTHETIC_START + (start[users] + rng.random(n) * length[users]).astype(np.int64)
    return users, items, codes, stamps


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy 2.4's hash-based unique is far slower on 10M int64)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if len(values) else values


def _argsort_bounded(values: np.ndarray, upper: int) -> np.ndarray:
    """Stable argsort of integers in ``[0, upper)``.

    Packs value and position into one int64 and sorts that (several times faster than
    ``np.argsort`` on ten million keys); falls back to ``np.argsort`` when it would overflow.
    """
    n = len(values)
    if n == 0 or upper * n >= 2**63:
        return np.argsort(values, kind="stable")
    packed = values.astype(np.int64) * n + np.arange(n, dtype=np.int64)
    packed.sort()
    return packed % n


def synthetic_events(n_users: int, n_items: int, nnz: int, seed: int = 0, **params) -> pd.DataFrame:
    """Synthetic implicit-feedback events with a planted latent structure.

    Parameters
    ----------
    n_users, n_items:
        Size of the id space; user ids are ``0..n_users-1`` and item ids ``0..n_items-1``. Every
        user has at least one event; rarely drawn tail items may have none.
    nnz:
        Target number of *distinct (user, item) cells*, met to within 0.5% (the events table is
        longer: a user may touch the same item several times, mostly popular ones). Must lie
        between ``n_users`` and half of ``n_users * n_items``.
    seed:
        Seeds everything; the same arguments give the same events.
    **params:
        Fields of :class:`SyntheticParams`: ``n_factors`` (planted topics, default 16),
        ``zipf_exponent`` (1.0), ``activity_sigma`` (1.0), ``concentration`` (0.1),
        ``popularity_mix`` (0.2), ``event_probs`` (view 0.80, click 0.15, purchase 0.05),
        ``span_days`` (365).

    Returns
    -------
    DataFrame with columns ``user_id`` (int64), ``item_id`` (int64), ``event`` (categorical
    view/click/purchase) and ``timestamp`` (int64 Unix seconds), sorted by time. Feed it to
    :meth:`Interactions.from_events` (``event_col="event", timestamp_col="timestamp"``), or use
    :func:`synthetic`, which builds the same matrix directly and faster.

    The generative model is described in :class:`_Planted`: an event follows global popularity
    with probability ``popularity_mix``, otherwise the user's topic mixture, so a low-rank model
    can recover what a popularity ranking cannot.
    """
    spec = SyntheticParams(**params)
    users, items, codes, stamps = _draw_events(n_users, n_items, nnz, seed, spec)
    first = stamps.min()
    order = _argsort_bounded(stamps - first, int(stamps.max() - first) + 1)
    users, items, codes, stamps = users[order], items[order], codes[order], stamps[order]
    return pd.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "item_id": items.astype(np.int64),
            "event": pd.Categorical.from_codes(codes, categories=list(spec.event_probs)),
            "timestamp": stamps,
        }
    )


def synthetic(
    n_users: int,
    n_items: int,
    nnz: int,
    seed: int = 0,
    *,
    event_weights: Mapping[str, float] | None = None,
    **params,
) -> Interactions:
    """The :func:`synthetic_events` of the same arguments as an ``n_users x n_items`` matrix.

    ``nnz`` is the target number of stored cells (met to within 0.5%); ``params`` are the
    keyword arguments of :func:`synthetic_events` (``n_factors``, ``zipf_exponent``,
    ``activity_sigma``, ``concentration``, ``popularity_mix``, ``event_probs``, ``span_days``).
    Each cell counts the user's events on the item, weighted by ``event_weights[event]`` when
    given (e.g. ``{"view": 1, "click": 2, "purchase": 5}``; default: every event counts 1); its
    timestamp is the latest of those events. Ids are ``0..n-1`` and all ``n_items`` columns are
    kept, even items nobody touched (``Interactions.from_events`` on the events table drops
    those). Built directly with sorts, several times faster than going through a DataFrame.
    """
    spec = SyntheticParams(**params)
    users, items, codes, stamps = _draw_events(n_users, n_items, nnz, seed, spec)
    kinds = list(spec.event_probs)
    if event_weights is None:
        weights = np.ones(len(users))
    else:
        unknown = set(kinds) - set(event_weights)
        if unknown:
            raise ValueError(f"event_weights has no weight for event type(s) {sorted(unknown)}")
        per_kind = np.array([float(event_weights[k]) for k in kinds])
        if not np.isfinite(per_kind).all() or (per_kind < 0).any():
            raise ValueError(f"event_weights must be finite and >= 0, got {event_weights}")
        weights = per_kind[codes]
    keys = users.astype(np.int64) * n_items + items
    order = _argsort_bounded(keys, n_users * n_items)
    keys, weights, stamps = keys[order], weights[order], stamps[order]
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    cells = keys[first]
    counts = np.add.reduceat(weights, first)
    latest = np.maximum.reduceat(stamps, first)
    rows = cells // n_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_users))])
    matrix = sp.csr_matrix(
        (counts, (cells % n_items).astype(np.int32), indptr), shape=(n_users, n_items)
    )
    return Interactions(matrix, timestamps=latest)
