"""The synthetic generator: seeded implicit-feedback events with a planted latent structure.

:func:`synthetic_events` draws an events table (user, item, event type, timestamp) with planted
topics, power-law item popularity and log-normal user activity; :func:`synthetic` builds the
same draws directly as an :class:`~alsresearch.data.Interactions` matrix, without the events
DataFrame, fast enough for benchmark-sized data (millions of cells).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch.checks import check_float, check_int
from alsresearch.data import Interactions

__all__ = ["SyntheticParams", "synthetic", "synthetic_events"]

_SYNTHETIC_START = 1_704_067_200  # 2024-01-01T00:00:00Z
_DAY = 86_400


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
        check_int(self.n_factors, "n_factors", low=1)
        check_float(self.popularity_mix, "popularity_mix", low=0.0, high=1.0)
        for name in ("zipf_exponent", "activity_sigma"):
            check_float(getattr(self, name), name, low=0.0)
        for name in ("concentration", "span_days"):
            check_float(getattr(self, name), name, low=0.0, low_open=True)
        for kind, prob in self.event_probs.items():
            check_float(prob, f"event_probs[{kind!r}]", low=0.0)
        if sum(self.event_probs.values()) <= 0:
            raise ValueError(
                f"event_probs must map event types to weights >= 0, not all 0, got "
                f"{self.event_probs}"
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
        """(users, items) of ``n`` events, grouped by topic, then user.

        Users are drawn by activity; with ``everyone_once`` every user gets one of the ``n``
        events before the rest are shared out. Laying events out topic by topic lets each
        topic's items come from one alias-table call.
        """
        per_user = rng.multinomial(n - self.n_users if everyone_once else n, self.activity)
        if everyone_once:
            per_user += 1
        per_cell = rng.multinomial(per_user, self.theta)  # (n_users, n_factors) counts
        user_ids = np.tile(np.arange(self.n_users, dtype=np.int32), self.n_factors)
        users = np.repeat(user_ids, per_cell.T.ravel())
        pos = np.concatenate(
            [
                _alias_draw(rng, self.topic_prob, self.topic_alias, int(m), int(start), int(size))
                for m, start, size in zip(
                    per_cell.sum(axis=0), self.seg_start, self.seg_size, strict=True
                )
            ]
        )
        items = self.by_topic[pos].astype(np.int32)
        popular = np.flatnonzero(rng.random(n) < self.popularity_mix)
        items[popular] = _alias_draw(rng, *self.pop_alias, len(popular))
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
    rng: np.random.Generator,
    prob: np.ndarray,
    alias: np.ndarray,
    n: int,
    start: int = 0,
    size: int | None = None,
) -> np.ndarray:
    """``n`` draws from the alias table slice ``start : start + size`` (default: all of it).

    ``alias`` holds absolute positions, so the tables of several distributions can be
    concatenated. One uniform per draw: its integer part picks the slot, its fractional part
    (uniform and independent of the slot) is the coin.
    """
    size = len(prob) - start if size is None else size
    scaled = rng.random(n) * size
    offset = np.minimum(scaled.astype(np.int64), size - 1)
    slot = start + offset
    return np.where(scaled - offset < prob[slot], slot, alias[slot])


def _draw_events(
    n_users: int, n_items: int, nnz: int, seed: int, params: SyntheticParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, event codes, timestamps) of synthetic events, in generation order.

    Events are drawn in rounds until the number of distinct (user, item) cells is within 0.5%
    of ``nnz`` (popular items are drawn more than once by the same user, so more events than
    cells are needed; each round sizes itself on the previous round's yield of new cells).
    """
    check_int(n_users, "n_users", low=1)
    check_int(n_items, "n_items", low=1)
    if params.n_factors > n_items:
        raise ValueError(f"n_factors ({params.n_factors}) must not exceed n_items ({n_items})")
    # at least one cell per user, at most half the matrix
    check_int(nnz, "nnz (distinct cells)", low=n_users, high=n_users * n_items // 2)
    rng = np.random.default_rng(seed)
    planted = _Planted(rng, n_users, n_items, params)
    users, items = planted.events(rng, nnz, everyone_once=True)
    cells = _sorted_unique(users.astype(np.int64) * n_items + items)
    user_parts, item_parts = [users], [items]
    # new distinct cells per event drawn, measured on the last round; the first round's average
    # overstates the yield at its end (repeats get likelier as cells fill), hence the 0.9
    yield_rate = 0.9 * len(cells) / nnz
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
    if len(cells) < nnz * 0.995:
        warnings.warn(
            f"synthetic data: reached {len(cells)} distinct cells of the {nnz} asked for; with "
            "this much skew few new cells are left to draw (lower nnz, zipf_exponent or "
            "raise concentration)",
            UserWarning,
            stacklevel=3,
        )
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
    those). Built from the drawn arrays directly, without the events DataFrame.
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
        per_kind = np.array(
            [check_float(event_weights[k], f"event_weights[{k!r}]", low=0.0) for k in kinds]
        )
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
