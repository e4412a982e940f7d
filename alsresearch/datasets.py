"""Data sets: the shipped default, readers for public formats, downloads, synthetic data.

- :func:`load_default`: the shipped MovieLens ml-latest-small (every rating one interaction).
- Readers, each returning :class:`~alsresearch.data.Interactions`: :func:`read_movielens`
  (``u.data``, ``ratings.dat``, ``ratings.csv``), :func:`read_lastfm` (HetRec 2011
  ``user_artists.dat``), :func:`read_lastfm_360k`, :func:`read_events` (any CSV/Parquet
  events file). Malformed lines raise a ValueError naming the file and line.
- :func:`download` / :func:`load`: the official archives in :data:`REGISTRY`, verified
  against their publishers' checksums and cached under :func:`default_cache_dir`.
- :func:`synthetic` / :func:`synthetic_events`: a seeded generator with planted topics,
  power-law item popularity and log-normal user activity, fast enough for benchmarks
  (500k users x 50k items x 10M cells in seconds).
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import sys
import tarfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch import paths
from alsresearch.data import Interactions
from alsresearch.files import atomic_write, file_digest

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "RemoteDataset",
    "SyntheticParams",
    "default_cache_dir",
    "download",
    "load",
    "load_default",
    "read_events",
    "read_lastfm",
    "read_lastfm_360k",
    "read_movielens",
    "synthetic",
    "synthetic_events",
]

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


# ---------------------------------------------------------------------------------- readers
#: Column kinds of :func:`_read_delimited`: "int", "float" and "count" (>= 0) must parse as
#: finite numbers, "str" must be non-empty, "str?" may be empty, "sep" must be empty (the gaps
#: that reading a "::" file with sep=":" leaves between fields).
_NUMERIC = {"int": np.int64, "float": np.float64, "count": np.float64}
_SHOW_LINES = 5


def _read_delimited(
    path: str | Path,
    *,
    sep: str,
    columns: Mapping[str, str],
    header: list[str] | None = None,
    errors: Literal["raise", "drop"] = "raise",
    what: str = "file",
) -> pd.DataFrame:
    """Read a delimited text file whose every line has exactly ``len(columns)`` fields.

    ``columns`` maps a name to its kind (see ``_NUMERIC`` above). ``header`` is the expected
    first line, if the format has one. Malformed lines (wrong number of fields, a value of the
    wrong kind, blank lines) raise a ValueError naming the file, the line number (1-based, as
    an editor shows it), the field, what was expected and what was found; with
    ``errors="drop"`` they are dropped with a warning that says how many and where.

    One typed pandas read does the work; only when a numeric field does not even parse is the
    file read again as text to say which line it was.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if errors not in ("raise", "drop"):
        raise ValueError(f"errors must be 'raise' or 'drop', got {errors!r}")
    names = list(columns)
    numeric = [n for n in names if columns[n] in _NUMERIC]
    keep = [n for n in names if columns[n] != "sep"]
    first_line = 1
    if header is not None:
        with path.open(encoding="utf-8", errors="replace") as f:
            found = f.readline().rstrip("\r\n").split(sep)
        if found != header:
            raise ValueError(
                f"{path}: line 1: expected the header {sep.join(header)!r}, got {sep.join(found)!r}"
            )
        first_line = 2

    def read(typed: bool) -> tuple[pd.DataFrame, list[int]]:
        # "_extra" catches a field too many (pandas would silently drop it, or turn the first
        # column into an index); lines with even more fields are skipped with a warning.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=sep,
                header=None,
                names=[*names, "_extra"],
                index_col=False,
                skiprows=first_line - 1,
                skip_blank_lines=False,
                quoting=csv.QUOTE_NONE,
                engine="c",
                encoding="utf-8",
                encoding_errors="strict",
                on_bad_lines="warn",
                keep_default_na=False,
                na_values={n: [""] for n in numeric} if typed else [],
                dtype={n: np.float64 if typed and n in numeric else str for n in names}
                | {"_extra": str},
            )
        skipped = sorted(
            int(m.group(1))
            for w in caught
            for m in re.finditer(r"[Ss]kipping line (\d+)", str(w.message))
        )
        return frame, skipped

    try:
        try:
            frame, skipped = read(typed=True)
        except ValueError:  # a numeric field that does not parse: read as text to find it
            frame, skipped = read(typed=False)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from exc

    n_lines = len(frame) + len(skipped)
    if n_lines == 0:
        raise ValueError(f"{path}: no data lines")
    kept = np.ones(n_lines, dtype=bool)
    kept[np.asarray(skipped, dtype=np.int64) - first_line] = False
    lines = np.arange(first_line, first_line + n_lines)[kept]  # file line of each row
    too_many = f"more than {len(names)} fields"
    problems: dict[int, str] = dict.fromkeys(skipped, too_many)

    def flag(wrong: np.ndarray, reason) -> None:
        for row in np.flatnonzero(wrong & ~bad)[:_SHOW_LINES]:
            problems[int(lines[row])] = reason(row)

    bad = np.zeros(len(frame), dtype=bool)
    extra = (frame["_extra"] != "").to_numpy()
    flag(extra, lambda row: too_many)
    bad |= extra
    out = {}
    for name in names:
        kind, col = columns[name], frame[name]
        if kind in _NUMERIC:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            wrong = ~np.isfinite(values)
            finite = np.where(wrong, 0.0, values)
            if kind == "int":
                wrong |= finite != np.round(finite)
            elif kind == "count":
                wrong |= finite < 0
            expected = {"int": "an integer", "float": "a number", "count": "a count >= 0"}[kind]
            out[name] = values
        elif kind == "sep":
            wrong = (col != "").to_numpy()
            expected = f"the separator {sep * 2!r}"
        else:
            wrong = (col == "").to_numpy() if kind == "str" else np.zeros(len(col), bool)
            expected = "a value"
        flag(
            wrong, lambda row, e=expected, n=name, c=col: f"{n}: expected {e}, got {c.iloc[row]!r}"
        )
        bad |= wrong
    n_bad = int(bad.sum()) + len(skipped)
    if n_bad:
        where = "; ".join(
            f"line {line}: {problems[line]}" for line in sorted(problems)[:_SHOW_LINES]
        )
        layout = "::".join(keep) if "sep" in columns.values() else sep.join(keep)
        if errors == "raise":
            raise ValueError(
                f"{path}: {n_bad} malformed line(s), expected {layout!r}. {where}. "
                "Pass errors='drop' to drop them."
            )
        if bad.all():
            raise ValueError(f"{path}: no well-formed lines ({where})")
        warnings.warn(
            f"{path}: dropped {n_bad} malformed line(s) of {n_lines}. {where}",
            UserWarning,
            stacklevel=3,
        )
    result = frame.loc[~bad, keep].reset_index(drop=True)
    for name, values in out.items():
        result[name] = values[~bad].astype(np.int64 if columns[name] == "int" else np.float64)
    return result


def _ratings_interactions(ratings: pd.DataFrame, min_rating: float | None) -> Interactions:
    """Every rating one interaction (optionally only ratings >= min_rating)."""
    if min_rating is not None:
        ratings = ratings[ratings["rating"] >= min_rating]
        if ratings.empty:
            raise ValueError(f"no ratings >= {min_rating}")
    return Interactions.from_events(
        ratings, user_col="user", item_col="item", timestamp_col="timestamp"
    )


_MOVIELENS_FILES = ("ratings.csv", "ratings.dat", "u.data")


def read_movielens(path: str | Path, min_rating: float | None = None) -> Interactions:
    """Read MovieLens ratings as implicit feedback: every rating counts as one interaction.

    ``path`` is a ratings file or a directory holding one, in any MovieLens layout:

    - ``u.data`` (100K): tab separated ``user item rating timestamp``, no header;
    - ``ratings.dat`` (1M, 10M): ``user::item::rating::timestamp``, no header;
    - ``ratings.csv`` (latest, latest-small, 20M, 25M, 32M): header
      ``userId,movieId,rating,timestamp``.

    A rating says the user watched the film and cared enough to rate it, which is the
    implicit signal; its value is dropped, so a 1-star rating counts like a 5-star one.
    ``min_rating`` (e.g. 4.0) keeps only ratings ``>= min_rating`` instead, the usual "liked it"
    reading. Timestamps (Unix seconds) are kept for temporal splits.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in _MOVIELENS_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(
                f"no MovieLens ratings file ({', '.join(_MOVIELENS_FILES)}) in directory {path}"
            )
        path = found[0]
    ratings = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}
    if path.name.endswith(".csv"):
        frame = _read_delimited(
            path,
            sep=",",
            columns=ratings,
            header=["userId", "movieId", "rating", "timestamp"],
            what="MovieLens ratings file",
        )
    elif path.name.endswith(".dat"):
        # "::" read as ":" leaves an empty field between each pair of values
        layout = {"user": "int", "_1": "sep", "item": "int", "_2": "sep", "rating": "float"}
        layout |= {"_3": "sep", "timestamp": "int"}
        frame = _read_delimited(path, sep=":", columns=layout, what="MovieLens ratings file")
    else:
        frame = _read_delimited(path, sep="\t", columns=ratings, what="MovieLens ratings file")
    return _ratings_interactions(frame, min_rating)


def load_default(min_rating: float | None = None) -> Interactions:
    """The shipped MovieLens ml-latest-small: 610 users, 9,724 movies, 100,836 ratings.

    Every rating is one interaction ("watched and rated", see :func:`read_movielens`);
    ``min_rating=4.0`` keeps only ratings >= 4. This is the data every notebook and
    ``make demo`` use by default. MovieLens terms: research use, no commercial use without
    permission, cite Harper & Konstan (2015); see ``data/ml-latest-small/README.txt``.
    """
    return read_movielens(paths.resource("ml-latest-small", "ratings.csv"), min_rating)


def read_lastfm(path: str | Path) -> Interactions:
    """Last.fm HetRec 2011 ``user_artists.dat``: tab separated ``userID artistID weight``.

    ``weight`` is the user's play count of the artist and becomes the cell count (the
    ``r_ui`` of Hu, Koren & Volinsky). No timestamps.
    """
    frame = _read_delimited(
        path,
        sep="\t",
        columns={"user": "int", "item": "int", "plays": "count"},
        header=["userID", "artistID", "weight"],
        what="Last.fm user_artists.dat",
    )
    return Interactions.from_events(frame, user_col="user", item_col="item", weight_col="plays")


def read_lastfm_360k(
    path: str | Path,
    item: Literal["name", "mbid"] = "name",
    errors: Literal["raise", "drop"] = "drop",
) -> Interactions:
    """Last.fm 360K ``usersha1-artmbid-artname-plays.tsv`` (Celma 2010), play counts as counts.

    Tab separated, no header: user-mboxsha1, musicbrainz-artist-id, artist-name, plays. Items
    are artist names by default (``item="name"``); about a third of the artists have no
    MusicBrainz id, so ``item="mbid"`` treats those rows as malformed. The real file has a few
    malformed lines, hence ``errors="drop"`` by default: they are dropped with a warning that
    counts them and names the first line numbers (``errors="raise"`` stops at them).
    Rows of the same user and artist, if any, sum.
    """
    if item not in ("name", "mbid"):
        raise ValueError(f"item must be 'name' or 'mbid', got {item!r}")
    frame = _read_delimited(
        path,
        sep="\t",
        columns={
            "user": "str",
            "mbid": "str" if item == "mbid" else "str?",
            "name": "str" if item == "name" else "str?",
            "plays": "count",
        },
        errors=errors,
        what="Last.fm 360K plays file",
    )
    return Interactions.from_events(frame, user_col="user", item_col=item, weight_col="plays")


def read_events(
    path: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    *,
    event_col: str | None = None,
    event_weights: Mapping[str, float] | None = None,
    weight_col: str | None = None,
    timestamp_col: str | None = None,
    errors: Literal["raise", "drop"] = "raise",
) -> Interactions:
    """A generic events file (CSV, TSV or Parquet): one row per event.

    Columns: user, item, and optionally an event type (weighted by ``event_weights``, e.g.
    ``{"view": 1, "click": 2, "purchase": 5}``), a numeric weight and a timestamp (Unix
    seconds or any date text pandas parses). This is :meth:`Interactions.from_events` on
    a file, documented here beside the other formats; see it for the validation rules.
    """
    return Interactions.from_events(
        path,
        user_col=user_col,
        item_col=item_col,
        weight_col=weight_col,
        event_col=event_col,
        event_weights=event_weights,
        timestamp_col=timestamp_col,
        errors=errors,
    )


# ---------------------------------------------------------------------------------- download
class ChecksumError(ValueError):
    """A downloaded (or cached) file does not match its published checksum."""


@dataclass(frozen=True)
class RemoteDataset:
    """A public data set: where its official archive lives and how to check and read it."""

    name: str
    url: str
    """The official archive (zip or tar.gz)."""
    member: str
    """Path inside the archive of the file the reader needs."""
    reader: Callable[[Path], Interactions]
    md5: str | None = None
    """The archive's checksum as its publisher gives it (None: none published)."""
    member_md5: str | None = None
    """The member's checksum, for publishers that give file checksums instead."""
    checksum_source: str = ""
    """Where the checksums come from (or why there are none)."""

    @property
    def archive_name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_SIDECAR = "GroupLens' published {}.md5 sidecar"

#: name -> RemoteDataset. Checksums are the publishers' own values, never ones we computed.
REGISTRY: dict[str, RemoteDataset] = {
    spec.name: spec
    for spec in [
        RemoteDataset(
            "ml-100k",
            _GROUPLENS + "ml-100k.zip",
            "ml-100k/u.data",
            read_movielens,
            md5="0e33842e24a9c977be4e0107933c0723",
            checksum_source=_SIDECAR.format("ml-100k.zip"),
        ),
        RemoteDataset(
            "ml-1m",
            _GROUPLENS + "ml-1m.zip",
            "ml-1m/ratings.dat",
            read_movielens,
            md5="c4d9eecfca2ab87c1945afe126590906",
            checksum_source=_SIDECAR.format("ml-1m.zip"),
        ),
        RemoteDataset(
            "ml-10m",
            _GROUPLENS + "ml-10m.zip",
            "ml-10M100K/ratings.dat",
            read_movielens,
            md5="ce571fd55effeba0271552578f2648bd",
            checksum_source=_SIDECAR.format("ml-10m.zip"),
        ),
        RemoteDataset(
            "ml-20m",
            _GROUPLENS + "ml-20m.zip",
            "ml-20m/ratings.csv",
            read_movielens,
            md5="cd245b17a1ae2cc31bb14903e1204af3",
            checksum_source=_SIDECAR.format("ml-20m.zip"),
        ),
        RemoteDataset(
            "ml-25m",
            _GROUPLENS + "ml-25m.zip",
            "ml-25m/ratings.csv",
            read_movielens,
            md5="6b51fb2759a8657d3bfcbfc42b592ada",
            checksum_source=_SIDECAR.format("ml-25m.zip"),
        ),
        RemoteDataset(
            "ml-32m",
            _GROUPLENS + "ml-32m.zip",
            "ml-32m/ratings.csv",
            read_movielens,
            md5="d472be332d4daa821edc399621853b57",
            checksum_source=_SIDECAR.format("ml-32m.zip"),
        ),
        RemoteDataset(
            "ml-latest-small",
            _GROUPLENS + "ml-latest-small.zip",
            "ml-latest-small/ratings.csv",
            read_movielens,
            member_md5="325a6f09399d1c45671f187505e1a100",
            checksum_source=(
                "no published archive checksum found (GroupLens regenerates the 'latest' "
                "archives); member md5 of the 2018-09-26 release as recorded in "
                "data/ml-latest-small/PROVENANCE.txt, which ships the same file"
            ),
        ),
        RemoteDataset(
            "lastfm-2k",
            "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
            "user_artists.dat",
            read_lastfm,
            checksum_source="no published checksum found for the HetRec 2011 archive",
        ),
        RemoteDataset(
            "lastfm-360k",
            "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz",
            "lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv",
            read_lastfm_360k,
            member_md5="be672526eb7c69495c27ad27803148f1",
            checksum_source="file MD5 published in the data set's README (version 1.2, 2010)",
        ),
    ]
}


#: where downloads are cached (defined with every other path in :mod:`alsresearch.paths`)
default_cache_dir = paths.cache_dir


def _check(path: Path, expected: str | None, what: str) -> None:
    if expected is not None and (got := file_digest(path, "md5")) != expected.lower():
        raise ChecksumError(f"{what}: md5 {got} does not match the published md5 {expected}")


def download(
    name: str | RemoteDataset,
    cache_dir: str | Path | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch a public data set's official archive, verify it, cache it; return the data file.

    ``name`` is a key of :data:`REGISTRY` (``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
    ``ml-25m``, ``ml-32m``, ``ml-latest-small``, ``lastfm-2k``, ``lastfm-360k``) or a
    :class:`RemoteDataset`. The archive goes to ``<cache_dir>/<name>/`` (default
    :func:`default_cache_dir`); the file the reader needs is extracted beside it. Both are written to a
    temporary file and renamed into place, so an interrupted download leaves nothing that looks
    complete. The publisher's checksum (of the archive, or of the extracted file where only
    that is published) is verified on download and again on every later call; a cached copy
    that verifies is never downloaded again, one that does not is replaced. Where no checksum
    is published, a warning says so. ``url`` replaces the archive's address, ``base_url`` only
    the part before the file name (mirrors, tests).
    """
    spec = _lookup_remote(name)
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / spec.name
    source = url or (
        base_url.rstrip("/") + "/" + spec.archive_name if base_url is not None else spec.url
    )
    archive = root / spec.archive_name
    member = root / spec.member
    if archive.is_file():
        try:
            _check(archive, spec.md5, f"cached {archive}")
        except ChecksumError as exc:
            warnings.warn(f"{exc}; downloading it again", UserWarning, stacklevel=2)
            archive.unlink()
            member.unlink(missing_ok=True)
    if not archive.is_file():
        _fetch(source, archive, spec, timeout)
        member.unlink(missing_ok=True)
    if not member.is_file():
        _extract(archive, spec.member, member)
    try:
        _check(member, spec.member_md5, f"{member} (from {spec.archive_name})")
    except ChecksumError:
        archive.unlink()
        member.unlink()
        raise
    return member


def load(
    name: str | RemoteDataset,
    cache_dir: str | Path | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    **read_kwargs,
) -> Interactions:
    """:func:`download` a registered data set and read it with its reader.

    ``read_kwargs`` go to the reader, e.g. ``load("ml-1m", min_rating=4.0)`` or
    ``load("lastfm-360k", item="mbid")``.
    """
    spec = _lookup_remote(name)
    return spec.reader(download(spec, cache_dir, url=url, base_url=base_url), **read_kwargs)


def add_command(subparsers) -> None:
    """``alsresearch download NAME``: fetch, verify and cache a public data set."""
    parser = subparsers.add_parser(
        "download",
        help="download a public data set (MovieLens, Last.fm) into the cache",
        description=download.__doc__.split("\n\n")[0],
    )
    parser.add_argument("name", choices=sorted(REGISTRY), help="data set to fetch")
    parser.add_argument(
        "--cache-dir",
        help="cache directory (default: $ALSRESEARCH_CACHE, else $XDG_CACHE_HOME/alsresearch, "
        "else ~/.cache/alsresearch)",
    )
    parser.add_argument("--base-url", help="mirror to fetch the archive from")
    parser.set_defaults(func=_download_command, cache_dir=None)


def _download_command(args) -> int:
    try:
        path = download(args.name, args.cache_dir, base_url=args.base_url)
    except (OSError, ValueError) as exc:
        print(f"alsresearch download: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _lookup_remote(name: str | RemoteDataset) -> RemoteDataset:
    if isinstance(name, RemoteDataset):
        return name
    if name not in REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _fetch(source: str, archive: Path, spec: RemoteDataset, timeout: float) -> None:
    digest = hashlib.md5(usedforsecurity=False)

    def write(f: BinaryIO) -> None:
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
        except OSError as exc:  # URLError, HTTPError, timeouts
            raise OSError(f"could not download {spec.name} from {source}: {exc}") from exc
        if spec.md5 is not None and digest.hexdigest() != spec.md5.lower():
            raise ChecksumError(
                f"{spec.name}: the archive downloaded from {source} has md5 {digest.hexdigest()}, "
                f"not the published md5 {spec.md5} ({spec.checksum_source}); nothing was cached"
            )

    atomic_write(archive, write)
    if spec.md5 is None and spec.member_md5 is None:
        warnings.warn(
            f"{spec.name}: {spec.checksum_source or 'no published checksum'}; the download "
            f"from {source} could not be verified (its md5 is {digest.hexdigest()})",
            UserWarning,
            stacklevel=3,
        )


def _extract(archive: Path, name: str, target: Path) -> None:
    """Extract one member of a zip or tar archive to ``target`` (atomically)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                try:
                    info = z.getinfo(name)
                except KeyError:
                    raise ValueError(f"{archive} has no member {name!r}") from None
                atomic_write(target, lambda f: shutil.copyfileobj(z.open(info), f))
            return
        with tarfile.open(archive) as t:
            try:
                fileobj = t.extractfile(name)
            except KeyError:
                fileobj = None
            if fileobj is None:
                raise ValueError(f"{archive} has no file member {name!r}")
            atomic_write(target, lambda f: shutil.copyfileobj(fileobj, f))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{archive}: not a readable zip or tar archive ({exc})") from exc
