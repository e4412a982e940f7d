"""Events -> :class:`Interactions`: the users x items count matrix with its external ids.

An :class:`Interactions` is built once, validated once, and then passed along the pipeline
(split -> fit -> evaluate -> tune -> promote -> serve). Splits keep the *same id space*: every
matrix derived from one data set is ``n_users x n_items`` with rows and columns that line up.

Counts follow Hu, Koren & Volinsky (2008): ``r_ui`` is "the number of times user u interacted
with item i". Each event adds its weight (1 by default, or a per-event-type weight such as
view 1, click 2, purchase 5); duplicate (user, item) pairs sum. Cells whose weights sum to
exactly zero carry no interaction and are not stored.

Ids are kept exactly as written (:func:`text_ids` is the one rule for text):

- Text (a CSV/TSV file, a public reader's id field) is read as text. A column becomes int64
  only when *every* id round-trips through int64 unchanged: ``0`` or ``-?[1-9][0-9]*`` within
  int64 (no leading zeros, no ``+``, no ``-0``, no whitespace). Canonical negatives such as
  ``-5`` round-trip, so they are ints, as they are in an integer column of a DataFrame or
  Parquet file. Otherwise every id stays the exact string of the file: ``007``, ``07`` and
  ``7`` are three users, and ``18446744073709551615`` (beyond int64) stays that text.
  In a text file only an empty cell is a missing id (``NA``, ``null`` are ids like any other).
- DataFrames and Parquet files keep their own column type: integer columns are int64 (uint64
  values beyond int64 become their exact decimal text); string columns stay strings even when
  they look numeric; float columns must hold integral values within +-2**53 (exact in float64),
  else a ValueError names the column. A null id (empty cell, NaN, a null in a nullable integer
  column) is a bad row: an error, or dropped with ``errors="drop"``; the other ids stay exact.
- Timestamps (:func:`_parse_timestamps`) become int64 Unix seconds (floored): ISO 8601 text in
  any mix of forms (``Z`` or an offset or none, which is UTC; fractional seconds; date only),
  datetime columns, or epoch numbers whose unit is inferred from their magnitude.

Recency-weighted counts (``half_life``). When events have timestamps, an event of age ``a``
can weigh ``w_e * 0.5 ** (a / half_life)``, with ``a = t_ref - t_e`` and ``t_ref`` the latest
event of the interactions (or an explicit ``as_of``); a cell's count is the sum of its events'
decayed weights, and the model's confidence is ``1 + alpha * count`` (or its log scaling) as
usual. To recompute counts for any half-life without rereading the events, an Interactions
built from timestamped events keeps each cell's events (their times and weights, grouped by
cell: :class:`CellEvents`, numpy arrays only): :meth:`Interactions.decayed`. Rules:

- ``half_life=None`` is no decay: the counts are exactly the plain sums of the event weights.
- ``t_ref`` is the latest event *of the Interactions at hand*: a part selected from it (every
  split, through :meth:`Interactions.select_cells`) is re-decayed to its own latest event, so the
  counts of a training part depend on training events only (a test event never moves them).
  An explicit ``as_of`` is kept by every part. Changing ``t_ref`` multiplies every count by one
  factor, so for ``scaling="raw"`` it only rescales alpha; it still must not come from the test.
- An event after ``as_of`` is an error (a decay weight above 1 would reward the future); filter
  the events first to train "as of" an earlier date.
- A cell never decays to zero: it stays an interaction (preference 1) whose count is at least
  the smallest normal float64 (an event thousands of half-lives old underflows otherwise), so
  every half-life gives the same cells (the same sparsity pattern) as no decay.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from alsresearch.errors import UnknownIdError

__all__ = [
    "CellEvents",
    "Interactions",
    "coerce_interactions",
    "format_duration",
    "format_time",
    "parse_half_life",
    "parse_time",
    "read_table",
    "text_ids",
]

_SHOW_ROWS = 5


_INT64_MAX = np.iinfo(np.int64).max
#: Floats hold every integer up to 2**53 exactly; an id column of floats beyond it has lost digits.
_FLOAT_EXACT = 2**53
_log = logging.getLogger(__name__)


def _as_id_array(values: Iterable) -> np.ndarray:
    """External ids as int64 when every id is an integer that fits, else as unicode strings.

    These two kinds survive ``np.savez`` with ``allow_pickle=False`` and JSON, and ints stay
    ints end to end (the service answers with the type the training data had). uint64 ids
    beyond int64, and floats beyond 2**53, become text rather than wrap or round.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64)
    if arr.dtype.kind == "u":
        if arr.size and arr.max() > _INT64_MAX:
            return arr.astype(str)
        return arr.astype(np.int64)
    if (
        arr.dtype.kind == "f"
        and arr.size
        and np.all(np.isfinite(arr))
        and np.all(arr == np.round(arr))
        and np.all(np.abs(arr) <= _FLOAT_EXACT)
    ):
        return arr.astype(np.int64)
    if arr.dtype.kind == "U":
        return arr
    return np.array([str(v) for v in arr.tolist()], dtype=str) if arr.size else arr.astype(str)


def _canonical_int64(text: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """The ids as int64 when every (non-null) text round-trips through int64 unchanged, else
    None. Vectorised in Arrow: parse, print back, compare; one odd value keeps it all text."""
    text = text.drop_null()
    if len(text) == 0:
        return np.empty(0, dtype=np.int64)
    try:
        ints = pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # not an integer, or beyond int64
    if not pc.all(pc.equal(pc.cast(ints, text.type), text)).as_py():
        return None  # "007", "-0": an integer, but not written the one way int64 prints it
    return np.asarray(ints, dtype=np.int64) if isinstance(ints, pa.Array) else ints.to_numpy()


def _arrow_text(values) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pd.api.extensions.ExtensionArray) and hasattr(values, "__arrow_array__"):
        arr = pa.array(values)
    else:
        arr = pa.array(np.asarray(values, dtype=object), from_pandas=True)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if pa.types.is_null(arr.type):
            return arr.cast(pa.string())
        raise TypeError(f"text_ids needs text, got {arr.type}")
    return arr


def text_ids(col: pd.Series) -> pd.Series:
    """The id rule for text: an id column read as text becomes int64 when every non-null
    value is canonical int64 text (nullable Int64 when some are null), else it stays the exact
    text, as a ``str`` column.

    Canonical int64 text is ``0`` or ``-?[1-9][0-9]*`` within int64, i.e. what int64 prints
    back: ``"7"`` and ``"-5"`` qualify; ``"007"``, ``"+7"``, ``"-0"``, ``" 7"`` and
    ``"18446744073709551615"`` do not, and one of them keeps the whole column as text, so
    ``"007"`` and ``"7"`` stay two ids.
    """
    ints = _canonical_int64(_arrow_text(col))
    if ints is None:
        return col.astype("str")
    null = col.isna().to_numpy()
    if not null.any():
        return pd.Series(ints, index=col.index, name=col.name)
    values = np.zeros(len(col), dtype=np.int64)
    values[~null] = ints
    return pd.Series(pd.arrays.IntegerArray(values, null), index=col.index, name=col.name)


def _id_values(col: pd.Series, name: str) -> tuple[np.ndarray | pd.Series, np.ndarray]:
    """(ids, null mask) of an id column, keeping the column's own type (see the module doc):
    int64 values (nulls as 0), or a text Series. Raises a ValueError naming the column when
    its values cannot be kept exactly."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        col, dtype = col.astype(object), np.dtype(object)
    null = col.isna().to_numpy()
    if pd.api.types.is_bool_dtype(dtype):
        raise ValueError(f"id column {name!r} holds booleans; ids must be integers or text")
    if pd.api.types.is_integer_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype) and (col.max() or 0) > _INT64_MAX:
            # beyond int64: the exact decimal text of every id (Arrow prints uint64 exactly)
            return pd.Series(pa.array(col.array).cast(pa.string()), dtype="str"), null
        return col.to_numpy(dtype=np.int64, na_value=0), null
    if pd.api.types.is_float_dtype(dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(values)
        kept = values[~null]
        wrong = ~np.isfinite(kept) | (kept != np.round(kept)) | (np.abs(kept) > _FLOAT_EXACT)
        if wrong.any():
            raise ValueError(
                f"id column {name!r} is float and holds {int(wrong.sum())} value(s) that are "
                f"not whole numbers within +-2**53 (exact in float64), e.g. "
                f"{kept[wrong][:_SHOW_ROWS].tolist()}; store ids as integers or text"
            )
        return np.where(null, 0.0, values).astype(np.int64), null
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return col, null
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(col, skipna=True)
        if kind in ("string", "empty"):
            return col.astype("str"), null
        if kind == "integer":
            try:
                return col.to_numpy(dtype=np.int64, na_value=0), null
            except OverflowError:  # Python ints beyond int64: their exact text
                text = [None if n else str(v) for v, n in zip(col.tolist(), null, strict=True)]
                return pd.Series(text, dtype="str"), null
        if kind in ("floating", "mixed-integer-float"):
            return _id_values(pd.Series(col.to_numpy(dtype=np.float64, na_value=np.nan)), name)
        raise ValueError(
            f"id column {name!r} mixes kinds of values ({kind}); ids must be all integers or "
            f"all text, e.g. {col[~null].head(_SHOW_ROWS).tolist()}"
        )
    raise ValueError(f"id column {name!r} has dtype {dtype}; ids must be integers or text")


# ---------------------------------------------------------------------------- recency decay
#: the smallest count a stored cell decays to (the smallest normal float64; see the module doc)
_MIN_DECAYED = np.finfo(np.float64).tiny
_DIGITS = r"[0-9]+(\.[0-9]*)?"


def parse_half_life(value) -> float | None:
    """A half-life as float seconds (None: no decay).

    Accepts a ``pandas.Timedelta``, a ``datetime.timedelta``, a ``numpy.timedelta64``, text
    pandas understands (``"30D"``, ``"14 days"``, ``"12h"``, ``"P30D"``), or a number of seconds
    (also as text: ``"86400"``, which pandas alone would read as nanoseconds). It must be finite
    and > 0; anything else is a ValueError naming the value.
    """
    if value is None:
        return None
    what = f"half_life must be a duration > 0 (e.g. '30D', '14 days', or seconds), got {value!r}"
    if isinstance(value, bool):
        raise ValueError(what)
    if isinstance(value, np.timedelta64):  # before numbers: numpy counts it an integer
        value = pd.Timedelta(value)
    if isinstance(value, int | float | np.integer | np.floating):
        seconds = float(value)
    elif isinstance(value, str) and pd.Series([value.strip()]).str.fullmatch(_DIGITS).iloc[0]:
        seconds = float(value)
    elif isinstance(value, str | datetime.timedelta):  # pandas.Timedelta is a timedelta
        try:
            delta = pd.Timedelta(value.strip() if isinstance(value, str) else value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{what} ({exc})") from None
        if delta is pd.NaT:
            raise ValueError(what)
        seconds = delta.total_seconds()
    else:
        raise ValueError(what)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(what)
    return seconds


def format_duration(seconds: float) -> str:
    """Canonical text of a duration in seconds, read back by :func:`parse_half_life`: whole
    days as ``"30D"``, else whole hours ``"12h"``, minutes ``"90min"``, or seconds ``"45s"``."""
    for unit, size in (("D", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds!r}s"


def parse_time(value, name: str = "as_of") -> int:
    """A point in time as int64 Unix seconds (floored), like the timestamps of an Interactions.

    Accepts Unix seconds (a number, or digits as text), or anything ``pandas.Timestamp``
    parses (ISO 8601 text, ``datetime``, ``pandas.Timestamp``; naive times are UTC). Numbers
    of 1e11 and more look like milliseconds and are refused, as are NaT, booleans and
    non-finite numbers, with a ValueError naming ``name``.
    """
    what = f"{name} must be a time (Unix seconds, or text such as '2018-09-01T00:00:00Z')"
    if isinstance(value, bool | np.timedelta64 | datetime.timedelta) or value is None:
        raise ValueError(f"{what}, got {value!r}")
    if isinstance(value, str) and pd.Series([value.strip()]).str.fullmatch(_DIGITS).iloc[0]:
        value = float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        if not math.isfinite(value) or abs(value) >= _EPOCH_MS_FROM:
            raise ValueError(f"{what}, got {value!r} (not finite, or beyond seconds: >= 1e11)")
        return math.floor(value)
    try:
        stamp = pd.Timestamp(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"{what}, got {value!r} ({exc})") from None
    if stamp is pd.NaT:
        raise ValueError(f"{what}, got {value!r}")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int((stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))


def format_time(seconds: int) -> str:
    """Unix seconds as ISO 8601 UTC text, ``2018-09-24T14:27:32Z`` (read back by
    :func:`parse_time`)."""
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, eq=False)
class CellEvents:
    """The events behind the stored cells of an :class:`Interactions`, grouped by cell in the
    matrix's cell order (``matrix.data``), kept to recompute decayed counts for any half-life.

    Events of cell ``j`` are ``[indptr[j], indptr[j + 1])`` of ``times`` and ``weights``; when
    every cell holds exactly one event ``indptr`` is None (events are cells: no index at all).
    Memory: 16 bytes per event (8 when one event per cell, whose times are the cells'
    timestamps), plus 8 per cell when cells hold several events.
    """

    times: np.ndarray
    """int64 Unix seconds of each event."""
    weights: np.ndarray
    """float64 weight of each event (weight column x event-type weight), before decay."""
    indptr: np.ndarray | None = None
    """int64, one more than the number of cells; None: one event per cell."""

    @property
    def n_cells(self) -> int:
        return len(self.times) if self.indptr is None else len(self.indptr) - 1

    @property
    def n_events(self) -> int:
        return len(self.times)

    def _per_cell(self, ufunc, values: np.ndarray) -> np.ndarray:
        if self.indptr is None:
            return values.copy()
        if self.n_cells == 0:
            return np.empty(0, dtype=values.dtype)
        return ufunc.reduceat(values, self.indptr[:-1])

    def latest(self) -> np.ndarray:
        """The latest event time of each cell (int64)."""
        return self._per_cell(np.maximum, self.times)

    def counts(self, half_life: float | None, t_ref: int | None = None) -> np.ndarray:
        """Each cell's count: the sum of its events' weights, each times ``0.5 ** ((t_ref -
        t_e) / half_life)`` (``half_life`` in seconds; None: no decay, the plain sums), at
        least :data:`_MIN_DECAYED` when decayed."""
        if half_life is None:
            return self._per_cell(np.add, self.weights)
        age = (t_ref - self.times).astype(np.float64)
        decayed = self._per_cell(np.add, self.weights * np.exp2(-age / half_life))
        return np.maximum(decayed, _MIN_DECAYED)

    def select(self, mask: np.ndarray) -> CellEvents:
        """The events of the cells where ``mask`` (one entry per cell) is True."""
        if self.indptr is None:
            return CellEvents(self.times[mask], self.weights[mask])
        sizes = np.diff(self.indptr)
        keep = np.repeat(mask, sizes)
        kept = sizes[mask]
        if np.all(kept == 1):
            return CellEvents(self.times[keep], self.weights[keep])
        indptr = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        return CellEvents(self.times[keep], self.weights[keep], indptr)


def checked_ids(values: Iterable, n: int, name: str) -> np.ndarray:
    """External ids as :class:`Interactions` keeps them (int64 or unicode strings, see
    :func:`_as_id_array`), checked: ``n`` of them, no duplicates; else a ValueError naming
    ``name``."""
    ids = _as_id_array(values)
    if ids.shape != (n,):
        raise ValueError(f"{name} has {ids.shape} entries, the matrix needs {n}")
    if len(pd.unique(ids)) != n:
        raise ValueError(f"{name} contains duplicates")
    return ids


class IdLookup:
    """Positions of external ids in one id array (``ids[p]`` is the id of position ``p``).

    Nothing is built until the first lookup: then a dict for the one-plain-id case (pandas'
    indexer has a fixed cost per call that dominates a one-id lookup) or a ``pandas.Index``
    for the rest, each on its first use, so a model that only ranks by position (``alsresearch
    recommend-all``) or a service that has not answered yet holds no lookup table.
    """

    __slots__ = ("__dict__", "ids", "kind")

    def __init__(self, ids: np.ndarray, kind: str) -> None:
        self.ids = ids
        self.kind = kind

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.ids)

    @cached_property
    def _rows(self) -> dict:
        return {v: r for r, v in enumerate(self.ids.tolist())}

    @property
    def built(self) -> list[str]:
        """Which tables have been built so far: ``"dict"``, ``"index"`` (empty: none)."""
        return [
            name for name, attr in (("dict", "_rows"), ("index", "_index")) if attr in self.__dict__
        ]

    def index(self, ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Positions of ``ids`` (one id or a list); unknown ids raise :class:`UnknownIdError`
        naming the ``kind``, or give -1 with ``missing="ignore"``."""
        one = _single_plain_id(ids, self.ids)
        if one is not None and (row := self._rows.get(one)) is not None:
            return np.array([row], dtype=np.int64) if isinstance(ids, list) else np.int64(row)
        return _lookup(self._index, ids, self.kind, missing)


class Interactions:
    """A users x items matrix of raw interaction counts, with external ids.

    Attributes
    ----------
    matrix:
        ``scipy.sparse.csr_matrix`` of float64 counts, canonical (sorted indices, no duplicate
        entries, no stored zeros), shape ``(n_users, n_items)``.
    user_ids, item_ids:
        External ids; ``user_ids[u]`` is the id of row ``u``. int64 when every id is an integer,
        else unicode strings.
    timestamps:
        Optional int64 array aligned with ``matrix.data``: the latest event time (seconds since
        the Unix epoch) of each (user, item) cell. Temporal splits need it.
    events:
        Optional :class:`CellEvents`: each cell's events (times and weights), kept when the
        interactions were built from timestamped events, so :meth:`decayed` can recompute the
        counts for any half-life. Splits carry them (:meth:`select_cells`).
    half_life:
        The half-life (float seconds) the counts are decayed with; None: plain sums.
    as_of:
        The decay's reference time (int Unix seconds) when fixed; None: the latest event of
        these interactions (see the module doc).
    """

    __slots__ = (
        "__dict__",
        "as_of",
        "events",
        "half_life",
        "item_ids",
        "matrix",
        "timestamps",
        "user_ids",
    )

    def __init__(
        self,
        matrix: sp.spmatrix | sp.sparray,
        user_ids: Iterable | None = None,
        item_ids: Iterable | None = None,
        timestamps: np.ndarray | None = None,
        *,
        events: CellEvents | None = None,
        half_life: float | None = None,
        as_of: int | None = None,
    ) -> None:
        """``events`` (aligned with the cells), ``half_life`` and ``as_of`` describe how the
        counts were made from events; :meth:`from_events`, :meth:`decayed` and
        :meth:`select_cells` set them (the counts are not recomputed here). ``timestamps``
        default to each cell's latest event when ``events`` are given."""
        if not sp.issparse(matrix):
            raise TypeError(
                f"Interactions needs a scipy sparse matrix, got {type(matrix).__name__}"
            )
        m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        if m.ndim != 2:
            raise ValueError(f"the interaction matrix must be 2-D, got shape {m.shape}")
        if not m.has_canonical_format:
            if timestamps is not None or events is not None:
                raise ValueError(
                    "timestamps and events need a canonical CSR matrix (sorted, no duplicates)"
                )
            m.sum_duplicates()
        bad = ~np.isfinite(m.data) | (m.data < 0)
        if bad.any():
            raise ValueError(
                f"interaction counts must be finite and >= 0: {int(bad.sum())} bad entries, "
                f"e.g. {m.data[bad][:_SHOW_ROWS].tolist()}"
            )
        if timestamps is not None:
            timestamps = np.asarray(timestamps, dtype=np.int64)
            if timestamps.shape != (m.nnz,):
                raise ValueError(
                    f"timestamps must have one entry per stored cell ({m.nnz}), got {timestamps.shape}"
                )
            keep = m.data != 0
            if not keep.all():
                timestamps = timestamps[keep]
        if events is not None:
            if events.n_cells != m.nnz:
                raise ValueError(
                    f"events must describe every stored cell ({m.nnz}), got {events.n_cells}"
                )
            keep = m.data != 0
            if not keep.all():
                events = events.select(keep)
            latest = events.times if events.indptr is None else events.latest()
            if timestamps is None:
                timestamps = latest
            elif not np.array_equal(timestamps, latest):
                raise ValueError("timestamps must be the latest event of each cell")
        elif half_life is not None or as_of is not None:
            raise ValueError("half_life and as_of need the events (with their timestamps)")
        m.eliminate_zeros()
        n_users, n_items = m.shape
        self.matrix = m
        self.user_ids = checked_ids(
            np.arange(n_users) if user_ids is None else user_ids, n_users, "user_ids"
        )
        self.item_ids = checked_ids(
            np.arange(n_items) if item_ids is None else item_ids, n_items, "item_ids"
        )
        self.timestamps = timestamps
        self.events = events
        self.half_life = half_life
        self.as_of = as_of

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return self.matrix.nnz

    def __repr__(self) -> str:
        ts = ", timestamps" if self.timestamps is not None else ""
        if self.half_life is not None:
            ts += f", half-life {format_duration(self.half_life)}"
        if self.as_of is not None:
            ts += f" as of {format_time(self.as_of)}"
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} cells{ts})"

    # ------------------------------------------------------------------ ids
    @cached_property
    def _user_lookup(self) -> IdLookup:
        return IdLookup(self.user_ids, "user")

    @cached_property
    def _item_lookup(self) -> IdLookup:
        return IdLookup(self.item_ids, "item")

    def user_index(self, ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Row numbers of external user ids; ``missing="ignore"`` gives -1 for unknown ids."""
        return self._user_lookup.index(ids, missing)

    def item_index(self, ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Column numbers of external item ids; ``missing="ignore"`` gives -1 for unknown ids."""
        return self._item_lookup.index(ids, missing)

    def same_id_space(self, other: Interactions) -> bool:
        """True when ``other`` has the same users and items in the same order."""
        return (
            self.shape == other.shape
            and np.array_equal(self.user_ids, other.user_ids)
            and np.array_equal(self.item_ids, other.item_ids)
        )

    # ------------------------------------------------------------------ derived
    def with_matrix(
        self, matrix: sp.spmatrix, timestamps: np.ndarray | None = None
    ) -> Interactions:
        """A new Interactions in the same id space. The events (and any decay) are not carried:
        they belong to the old cells (a split that keeps them uses :meth:`select_cells`)."""
        if matrix.shape != self.shape:
            raise ValueError(f"matrix shape {matrix.shape} does not match {self.shape}")
        return Interactions(matrix, self.user_ids, self.item_ids, timestamps)

    def select_cells(self, mask: np.ndarray) -> Interactions:
        """Keep the stored cells where ``mask`` (aligned with ``matrix.data``) is True.

        The cells keep their events. Decayed counts without an ``as_of`` are re-decayed to the
        part's own latest event, so a part's counts depend on its own events only (a split's
        training counts never see a test event); with ``as_of`` they are kept as they are."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.nnz,):
            raise ValueError(f"mask must have {self.nnz} entries, got {mask.shape}")
        m = self.matrix
        rows = np.repeat(np.arange(self.n_users), np.diff(m.indptr))[mask]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.n_users))])
        counts = m.data[mask]
        events = None if self.events is None else self.events.select(mask)
        if events is not None and self.half_life is not None and self.as_of is None:
            t_ref = int(events.times.max()) if events.n_events else 0
            counts = events.counts(self.half_life, t_ref)
        sub = sp.csr_matrix((counts, m.indices[mask], indptr), shape=self.shape)
        if events is not None:
            return Interactions(
                sub,
                self.user_ids,
                self.item_ids,
                events=events,
                half_life=self.half_life,
                as_of=self.as_of,
            )
        ts = None if self.timestamps is None else self.timestamps[mask]
        return Interactions(sub, self.user_ids, self.item_ids, ts)

    def decayed(self, half_life, as_of=None) -> Interactions:
        """The same cells with recency-weighted counts, recomputed from the kept events.

        Each event weighs ``w_e * 0.5 ** ((t_ref - t_e) / half_life)`` and a cell's count is
        the sum over its events; ``t_ref`` is ``as_of`` when given, else the latest event of
        these interactions. ``half_life`` is a duration (see :func:`parse_half_life`), None for
        no decay (the plain sums, exactly as :meth:`from_events` counts them); ``as_of`` a time
        (see :func:`parse_time`), recorded and kept by every part selected later. The rules
        (no event after ``as_of``; a cell never decays to zero) are in the module doc.

        Raises ValueError without events (interactions not built from timestamped events), for
        a bad ``half_life`` or ``as_of``, and when an event is later than ``as_of``.
        """
        seconds = parse_half_life(half_life)
        t_ref = None if as_of is None else parse_time(as_of)
        if self.events is None:
            raise ValueError(
                "recency-weighted counts (half_life, as_of) need each event's time, and these "
                "interactions have none: build them with Interactions.from_events(..., "
                "timestamp_col=<the column holding each event's time>)"
            )
        events = self.events
        latest = int(events.times.max()) if events.n_events else None
        if t_ref is not None and latest is not None and latest > t_ref:
            late = int(np.count_nonzero(events.times > t_ref))
            raise ValueError(
                f"as_of {format_time(t_ref)} precedes {late} event(s) (the latest at "
                f"{format_time(latest)}): decay needs every event at or before its reference "
                "time; give a later as_of, or leave out the later events first"
            )
        ref = t_ref if t_ref is not None else latest
        m = self.matrix
        counts = events.counts(seconds, ref) if m.nnz else m.data.copy()
        matrix = sp.csr_matrix((counts, m.indices, m.indptr), shape=self.shape)
        return Interactions(
            matrix,
            self.user_ids,
            self.item_ids,
            self.timestamps,
            events=events,
            half_life=seconds,
            as_of=t_ref,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per stored cell: user_id, item_id, count (and timestamp when known)."""
        coo = self.matrix.tocoo()
        frame = pd.DataFrame(
            {
                "user_id": self.user_ids[coo.row],
                "item_id": self.item_ids[coo.col],
                "count": coo.data,
            }
        )
        if self.timestamps is not None:
            frame["timestamp"] = self.timestamps
        return frame

    def fingerprint(self) -> str:
        """SHA-256 of the counts, ids and timestamps: names a data set in run records."""
        h = hashlib.sha256()
        m = self.matrix
        for arr in (
            np.asarray(m.shape, np.int64),
            m.indptr.astype(np.int64),
            m.indices.astype(np.int64),
            m.data,
        ):
            h.update(np.ascontiguousarray(arr).tobytes())
        for ids in (self.user_ids, self.item_ids):
            h.update(str(ids.dtype).encode())
            h.update(ids.tobytes())
        if self.timestamps is not None:
            h.update(self.timestamps.tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_matrix(cls, matrix, user_ids=None, item_ids=None) -> Interactions:
        """Wrap a scipy sparse users x items matrix of raw counts (ids default to 0..n-1)."""
        return cls(matrix, user_ids, item_ids)

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame | str | Path,
        user_col: str = "user_id",
        item_col: str = "item_id",
        weight_col: str | None = None,
        event_col: str | None = None,
        event_weights: Mapping[str, float] | None = None,
        timestamp_col: str | None = None,
        errors: Literal["raise", "drop"] = "raise",
        half_life=None,
        as_of=None,
    ) -> Interactions:
        """Build the count matrix from an events table (DataFrame, CSV or Parquet file).

        Each row is one event. Its weight is ``weight_col`` (1 when not given) times
        ``event_weights[event]`` when ``event_col`` is given (every type counts 1 when
        ``event_weights`` is None). Events on the same (user, item) sum.

        With ``timestamp_col``, each cell's events (times and weights) are kept
        (:attr:`events`), and ``half_life`` (a duration, see :func:`parse_half_life`; None: no
        decay) weighs each event by ``0.5 ** (age / half_life)``, its age counted from
        ``as_of`` (a time, see :func:`parse_time`) or else from the latest event: see
        :meth:`decayed` and the module doc. ``half_life`` or ``as_of`` without
        ``timestamp_col`` is a ValueError, as is an event after ``as_of``.

        Ids and timestamps follow the module's rules (ids kept exactly as written; see
        :func:`text_ids`, :func:`_parse_timestamps`).

        Bad rows (null ids, non-numeric, negative, NaN or infinite weights, unknown event types,
        unparseable timestamps) raise a ValueError naming the column, how many rows are bad and
        the first row numbers (0-based data rows). With ``errors="drop"`` they are dropped and a
        warning says how many, by reason. Nothing is dropped silently.
        """
        if errors not in ("raise", "drop"):
            raise ValueError(f"errors must be 'raise' or 'drop', got {errors!r}")
        decay = half_life is not None or as_of is not None
        if decay:  # checked before any file is read
            parse_half_life(half_life)
            if as_of is not None:
                parse_time(as_of)
            if timestamp_col is None:
                raise ValueError(
                    "half_life and as_of weigh events by their age, which needs each event's "
                    "time: give timestamp_col (the timestamp column; none was given)"
                )
        source = "events"
        if not isinstance(events, pd.DataFrame):
            source = str(events)
            columns = [c for c in (user_col, item_col, weight_col, event_col, timestamp_col) if c]
            events = read_table(events, columns=columns, id_columns=[user_col, item_col])
        check_event_columns(
            list(events.columns), source, event_weights,
            user_col=user_col, item_col=item_col, weight_col=weight_col, event_col=event_col,
            timestamp_col=timestamp_col,
        )  # fmt: skip

        n = len(events)
        bad: dict[str, np.ndarray] = {}
        users, bad[f"null id in {user_col!r}"] = _id_values(events[user_col], user_col)
        items, bad[f"null id in {item_col!r}"] = _id_values(events[item_col], item_col)

        weights = np.ones(n, dtype=np.float64)
        if weight_col is not None:
            raw = events[weight_col]
            w = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad[f"non-numeric value in {weight_col!r}"] = np.isnan(w) & raw.notna().to_numpy()
            bad[f"missing value in {weight_col!r}"] = raw.isna().to_numpy()
            bad[f"infinite value in {weight_col!r}"] = np.isinf(w)
            bad[f"negative value in {weight_col!r}"] = w < 0
            weights = w
        if event_col is not None:
            kinds = events[event_col]
            if event_weights is None:
                bad[f"null event type in {event_col!r}"] = kinds.isna().to_numpy()
            else:
                for kind, value in event_weights.items():
                    if not np.isfinite(value) or value < 0:
                        raise ValueError(
                            f"event_weights[{kind!r}] must be finite and >= 0, got {value}"
                        )
                mapped = kinds.map(dict(event_weights)).to_numpy(dtype=np.float64, na_value=np.nan)
                bad[f"unknown event type in {event_col!r} (known: {sorted(event_weights)})"] = (
                    np.isnan(mapped)
                )
                weights = weights * np.nan_to_num(mapped, nan=0.0)

        stamps = None
        if timestamp_col is not None:
            stamps, bad_ts = _parse_timestamps(events[timestamp_col], timestamp_col)
            bad[f"unparseable or missing timestamp in {timestamp_col!r}"] = bad_ts

        any_bad = np.zeros(n, dtype=bool)
        for mask in bad.values():
            any_bad |= mask
        if any_bad.any():
            reasons = {k: v for k, v in bad.items() if v.any()}
            detail = "; ".join(
                f"{k}: {int(v.sum())} row(s), first at row(s) {np.flatnonzero(v)[:_SHOW_ROWS].tolist()}"
                for k, v in reasons.items()
            )
            if errors == "raise":
                raise ValueError(
                    f"{source}: {int(any_bad.sum())} bad row(s) of {n}. {detail}. "
                    "Fix the data or pass errors='drop' to drop them."
                )
            warnings.warn(
                f"{source}: dropped {int(any_bad.sum())} bad row(s) of {n}. {detail}",
                UserWarning,
                stacklevel=2,
            )
            keep = ~any_bad
            users, items, weights = users[keep], items[keep], weights[keep]
            stamps = None if stamps is None else stamps[keep]

        if len(users) == 0:
            raise ValueError(f"{source}: no events left to build interactions from")
        u_codes, u_ids = pd.factorize(users, sort=True)
        i_codes, i_ids = pd.factorize(items, sort=True)
        n_users, n_items = len(u_ids), len(i_ids)
        key = u_codes.astype(np.int64) * n_items + i_codes.astype(np.int64)
        # one sort groups the events of each cell; reduceat sums weights and takes the latest time
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        keys = key[starts]
        event_w = np.asarray(weights, dtype=np.float64)[order]
        cell_w = np.add.reduceat(event_w, starts)
        events = None
        if stamps is not None:
            # each cell's events, for recency-weighted counts; cells whose weights sum to 0
            # carry no interaction and are left out with their events
            keep = cell_w != 0
            bounds = np.append(starts, len(key)).astype(np.int64)
            sizes = np.diff(bounds)
            in_kept = np.repeat(keep, sizes)
            times, event_w = stamps[order][in_kept], event_w[in_kept]
            kept_sizes = sizes[keep]
            indptr_e = None
            if not np.all(kept_sizes == 1):
                indptr_e = np.concatenate([[0], np.cumsum(kept_sizes)]).astype(np.int64)
            events = CellEvents(times, event_w, indptr_e)
            keys, cell_w = keys[keep], cell_w[keep]
        rows, cols = keys // n_items, keys % n_items
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_users))])
        matrix = sp.csr_matrix(
            (cell_w, cols.astype(np.int32), indptr),
            shape=(n_users, n_items),
        )
        data = cls(matrix, np.asarray(u_ids), np.asarray(i_ids), events=events)
        return data.decayed(half_life, as_of) if decay else data


#: Epoch numbers below this magnitude are seconds (1e11 s is the year 5138), from it up to
#: _EPOCH_TOO_BIG milliseconds (1e11 ms is 1973-03-03); larger ones (micro-, nanoseconds) refused.
_EPOCH_MS_FROM = 1e11
_EPOCH_TOO_BIG = 1e14
_EPOCH_TEXT = r"-?[0-9]+(\.[0-9]*)?"
_ISO_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"


def _parse_timestamps(col: pd.Series, name: str = "timestamp") -> tuple[np.ndarray, np.ndarray]:
    """(int64 Unix seconds, floored; bad-row mask) of a timestamp column.

    - Datetime columns: naive values are UTC.
    - ISO 8601 text, any mix of forms in one column: ``2024-01-01T00:00:00Z``, with an offset
      (``+02:00``) or none (naive = UTC), fractional seconds (``.5``), a space for ``T``,
      date only (``2024-01-02`` = midnight UTC). Other text is an unparseable (bad) row.
    - Numbers, or text that is all digits: epoch seconds or milliseconds, inferred from the
      magnitude: every ``|value| < 1e11`` seconds, every ``1e11 <= |value| < 1e14``
      milliseconds; the inferred unit is logged (INFO, naming the column). A column that mixes
      the two ranges, holds larger values, or mixes numbers and ISO text is refused with a
      ValueError naming the column and why.
    """
    if pd.api.types.is_bool_dtype(col.dtype):
        raise ValueError(f"timestamp column {name!r} holds booleans, not times")
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col.dtype):
        parsed = col.dt.tz_convert("UTC") if col.dt.tz is not None else col.dt.tz_localize("UTC")
        return _utc_seconds(parsed)
    if pd.api.types.is_integer_dtype(col.dtype):
        bad = col.isna().to_numpy()
        return _epoch_seconds(col.to_numpy(dtype=np.int64, na_value=0), bad, col, name), bad
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        return _epoch_seconds(np.where(bad, 0.0, values), bad, col, name), bad
    text = col.astype("str")
    present = text.notna().to_numpy()
    numeric = text.str.fullmatch(_EPOCH_TEXT).to_numpy(dtype=bool, na_value=False)
    if numeric.any():
        iso = text.str.match(_ISO_TEXT).to_numpy(dtype=bool, na_value=False)
        if iso.any():
            a, b = np.flatnonzero(numeric)[0], np.flatnonzero(iso)[0]
            raise ValueError(
                f"timestamp column {name!r} mixes epoch numbers and ISO 8601 dates (row {a}: "
                f"{text.iloc[a]!r}, row {b}: {text.iloc[b]!r}); write every time one way"
            )
        values = pd.to_numeric(text.where(numeric), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        bad = ~np.isfinite(values)
        return _epoch_seconds(np.where(bad, 0.0, values), bad, col, name), bad
    parsed = pd.to_datetime(text.where(present), format="ISO8601", utc=True, errors="coerce")
    return _utc_seconds(parsed)


def _utc_seconds(parsed: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    bad = parsed.isna().to_numpy()
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=0)
    return seconds.astype(np.int64), bad


def _epoch_seconds(values: np.ndarray, bad: np.ndarray, col: pd.Series, name: str) -> np.ndarray:
    """Epoch numbers (bad rows already zeroed) as floored int64 seconds, the unit inferred."""
    size = np.abs(values[~bad])
    if size.size and size.max() >= _EPOCH_TOO_BIG:
        row = int(np.flatnonzero(~bad & (np.abs(values) >= _EPOCH_TOO_BIG))[0])
        raise ValueError(
            f"timestamp column {name!r}: epoch numbers up to {col.iloc[row]!r} (row {row}) are "
            "beyond milliseconds (>= 1e14); give seconds or milliseconds since 1970-01-01 UTC"
        )
    small = np.abs(values) < _EPOCH_MS_FROM
    if (small & ~bad).any() and (~small & ~bad).any():
        a = int(np.flatnonzero(small & ~bad)[0])
        b = int(np.flatnonzero(~small & ~bad)[0])
        raise ValueError(
            f"timestamp column {name!r} is ambiguous: it mixes epoch seconds (< 1e11, row {a}: "
            f"{col.iloc[a]!r}) and epoch milliseconds (>= 1e11, row {b}: {col.iloc[b]!r}); "
            "write every time in one unit"
        )
    millis = bool((~small & ~bad).any())
    _log.info(
        "timestamp column %r: epoch %s inferred from the magnitude",
        name,
        "milliseconds" if millis else "seconds",
    )
    if values.dtype.kind == "i":
        return values // 1000 if millis else values
    return np.floor(values / 1000 if millis else values).astype(np.int64)


def _single_plain_id(ids, known: np.ndarray):
    """The id when ``ids`` is one plain ``int`` (int ids) or ``str`` (string ids), alone or as a
    one-element list: the single-request case, answered from a dict (pandas' indexer has a
    fixed cost per call that dominates a one-id lookup). Anything else, and unknown ids, take the general path with its errors."""
    one = ids[0] if isinstance(ids, list) and len(ids) == 1 else ids
    kind = known.dtype.kind
    if (type(one) is int and kind in "iu") or (type(one) is str and kind in "OU"):
        return one
    return None


def _lookup(index: pd.Index, ids, kind: str, missing: str) -> np.ndarray:
    scalar = np.ndim(ids) == 0
    values = np.atleast_1d(np.asarray(ids, dtype=object if index.dtype == object else None))
    try:
        pos = index.get_indexer(values)
    except (TypeError, ValueError):
        pos = np.array([index.get_loc(v) if v in index else -1 for v in values], dtype=np.int64)
    pos = np.asarray(pos, dtype=np.int64)
    if missing == "raise" and (pos < 0).any():
        unknown = values[pos < 0][:_SHOW_ROWS].tolist()
        raise UnknownIdError(f"unknown {kind} id(s): {unknown}", kind=kind, ids=unknown)
    return pos[0] if scalar else pos


#: Id columns are read as Arrow text: as exact as ``dtype=str`` and several times faster.
_ARROW_TEXT = pd.ArrowDtype(pa.string())
#: pandas' default missing-value markers, kept for the columns that are not ids.
_NA_TEXT = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip


def check_event_columns(
    available: list, source: str, event_weights=None, **columns: str | None
) -> None:
    """The column options of an events table (``user_col=...``, ``item_col=...``, ...) against
    its ``available`` columns: a ValueError names every missing one and what there is, and
    ``event_weights`` without ``event_col``. Shared by :meth:`Interactions.from_events` and the
    Spark reader (:mod:`alsresearch.spark`)."""
    missing = [
        f"{arg}={col!r}" for arg, col in columns.items() if col is not None and col not in available
    ]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {', '.join(missing)}; available columns: {available}"
        )
    if event_weights is not None and columns.get("event_col") is None:
        raise ValueError("event_weights needs event_col (the column holding the event type)")


def read_table(
    path: str | Path,
    columns: list[str] | None = None,
    sep: str | None = None,
    id_columns: Iterable[str] = (),
) -> pd.DataFrame:
    """Read an events file: Parquet (``.parquet``/``.pq``) or delimited text (CSV, TSV).

    ``id_columns`` of a text file are read as text, where only an empty cell is missing, then
    made int64 by :func:`text_ids` when every id is canonical int64 text (nullable Int64 when
    a cell is empty). Parquet keeps the file's types; integer columns come back as nullable
    integers so a null does not turn ids into floats.

    Raises FileNotFoundError naming the path, and ValueError naming the file and what failed
    to parse (pandas' message carries the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"events file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    id_columns = list(id_columns)
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            table = pq.read_table(path, columns=columns)
            return table.to_pandas(types_mapper=_nullable_int)
        if sep is None:
            sep = "\t" if ".tsv" in suffixes else ","
        if not id_columns:
            return pd.read_csv(path, sep=sep, usecols=columns)
        names = columns
        if names is None:
            names = pd.read_csv(path, sep=sep, nrows=0).columns.tolist()
        frame = pd.read_csv(
            path,
            sep=sep,
            usecols=columns,
            dtype={c: _ARROW_TEXT for c in id_columns if c in names},
            keep_default_na=False,
            na_values={c: [""] if c in id_columns else _NA_TEXT for c in names},
        )
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, pa.ArrowInvalid) as exc:
        raise ValueError(
            f"{path}: could not parse as {'Parquet' if 'parquet' in str(suffixes) else 'delimited text'}: {exc}"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    for c in id_columns:
        if c in frame.columns:
            frame[c] = text_ids(frame[c])
    return frame


def _nullable_int(arrow_type: pa.DataType):
    if pa.types.is_integer(arrow_type):
        return pd.api.types.pandas_dtype(
            str(arrow_type).replace("int", "Int").replace("uInt", "UInt")
        )
    return None


def coerce_interactions(X) -> Interactions:
    """Accept an :class:`Interactions` or a scipy sparse users x items matrix of raw counts."""
    if isinstance(X, Interactions):
        return X
    if sp.issparse(X):
        return Interactions.from_matrix(X)
    raise TypeError(
        f"expected Interactions or a scipy sparse users x items matrix, got {type(X).__name__}"
    )
