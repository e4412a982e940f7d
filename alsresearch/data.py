"""Events -> :class:`Interactions`: the users x items count matrix with its external ids.

An :class:`Interactions` is built once, validated once, and then passed along the pipeline
(split -> fit -> evaluate -> tune -> promote -> serve). Splits keep the *same id space*: every
matrix derived from one data set is ``n_users x n_items`` with rows and columns that line up.

Counts follow Hu, Koren & Volinsky (2008): ``r_ui`` is "the number of times user u interacted
with item i". Each event adds its weight (1 by default, or a per-event-type weight such as
view 1, click 2, purchase 5); duplicate (user, item) pairs sum. Cells whose weights sum to
exactly zero carry no interaction and are not stored.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch.errors import UnknownIdError

__all__ = ["Interactions", "coerce_interactions", "read_table"]

_SHOW_ROWS = 5


def _as_id_array(values: Iterable) -> np.ndarray:
    """External ids as int64 when every id is an integer, else as unicode strings.

    These two kinds survive ``np.savez`` with ``allow_pickle=False`` and JSON, and ints stay
    ints end to end (the service answers with the type the training data had).
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if (
        arr.dtype.kind == "f"
        and arr.size
        and np.all(np.isfinite(arr))
        and np.all(arr == np.round(arr))
    ):
        return arr.astype(np.int64)
    if arr.dtype.kind == "U":
        return arr
    return np.array([str(v) for v in arr.tolist()], dtype=str) if arr.size else arr.astype(str)


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
    """

    __slots__ = ("__dict__", "item_ids", "matrix", "timestamps", "user_ids")

    def __init__(
        self,
        matrix: sp.spmatrix | sp.sparray,
        user_ids: Iterable | None = None,
        item_ids: Iterable | None = None,
        timestamps: np.ndarray | None = None,
    ) -> None:
        if not sp.issparse(matrix):
            raise TypeError(
                f"Interactions needs a scipy sparse matrix, got {type(matrix).__name__}"
            )
        m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        if m.ndim != 2:
            raise ValueError(f"the interaction matrix must be 2-D, got shape {m.shape}")
        if not m.has_canonical_format:
            if timestamps is not None:
                raise ValueError("timestamps need a canonical CSR matrix (sorted, no duplicates)")
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
        m.eliminate_zeros()
        n_users, n_items = m.shape
        self.matrix = m
        self.user_ids = _as_id_array(np.arange(n_users) if user_ids is None else user_ids)
        self.item_ids = _as_id_array(np.arange(n_items) if item_ids is None else item_ids)
        for name, ids, n in (
            ("user_ids", self.user_ids, n_users),
            ("item_ids", self.item_ids, n_items),
        ):
            if ids.shape != (n,):
                raise ValueError(f"{name} has {ids.shape} entries, the matrix needs {n}")
            if len(pd.unique(ids)) != n:
                raise ValueError(f"{name} contains duplicates")
        self.timestamps = timestamps

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
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} cells{ts})"

    # ------------------------------------------------------------------ ids
    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids)

    @cached_property
    def _user_rows(self) -> dict:
        return {u: r for r, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def _item_rows(self) -> dict:
        return {i: r for r, i in enumerate(self.item_ids.tolist())}

    def user_index(self, ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Row numbers of external user ids; ``missing="ignore"`` gives -1 for unknown ids."""
        one = _single_plain_id(ids, self.user_ids)
        if one is not None and (row := self._user_rows.get(one)) is not None:
            return np.array([row], dtype=np.int64) if isinstance(ids, list) else np.int64(row)
        return _lookup(self._user_lookup, ids, "user", missing)

    def item_index(self, ids, missing: Literal["raise", "ignore"] = "raise") -> np.ndarray:
        """Column numbers of external item ids; ``missing="ignore"`` gives -1 for unknown ids."""
        one = _single_plain_id(ids, self.item_ids)
        if one is not None and (row := self._item_rows.get(one)) is not None:
            return np.array([row], dtype=np.int64) if isinstance(ids, list) else np.int64(row)
        return _lookup(self._item_lookup, ids, "item", missing)

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
        """A new Interactions in the same id space (used by splits)."""
        if matrix.shape != self.shape:
            raise ValueError(f"matrix shape {matrix.shape} does not match {self.shape}")
        return Interactions(matrix, self.user_ids, self.item_ids, timestamps)

    def select_cells(self, mask: np.ndarray) -> Interactions:
        """Keep the stored cells where ``mask`` (aligned with ``matrix.data``) is True."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.nnz,):
            raise ValueError(f"mask must have {self.nnz} entries, got {mask.shape}")
        m = self.matrix
        rows = np.repeat(np.arange(self.n_users), np.diff(m.indptr))[mask]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.n_users))])
        sub = sp.csr_matrix((m.data[mask], m.indices[mask], indptr), shape=self.shape)
        ts = None if self.timestamps is None else self.timestamps[mask]
        return Interactions(sub, self.user_ids, self.item_ids, ts)

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
    ) -> Interactions:
        """Build the count matrix from an events table (DataFrame, CSV or Parquet file).

        Each row is one event. Its weight is ``weight_col`` (1 when not given) times
        ``event_weights[event]`` when ``event_col`` is given (every type counts 1 when
        ``event_weights`` is None). Events on the same (user, item) sum.

        Bad rows (null ids, non-numeric, negative, NaN or infinite weights, unknown event types,
        unparseable timestamps) raise a ValueError naming the column, how many rows are bad and
        the first row numbers (0-based data rows). With ``errors="drop"`` they are dropped and a
        warning says how many, by reason. Nothing is dropped silently.
        """
        if errors not in ("raise", "drop"):
            raise ValueError(f"errors must be 'raise' or 'drop', got {errors!r}")
        source = "events"
        if not isinstance(events, pd.DataFrame):
            source = str(events)
            columns = [c for c in (user_col, item_col, weight_col, event_col, timestamp_col) if c]
            events = read_table(events, columns=columns)
        required = {"user_col": user_col, "item_col": item_col}
        optional = {
            "weight_col": weight_col,
            "event_col": event_col,
            "timestamp_col": timestamp_col,
        }
        missing = [
            f"{arg}={col!r}"
            for arg, col in {**required, **optional}.items()
            if col is not None and col not in events.columns
        ]
        if missing:
            raise ValueError(
                f"{source}: missing column(s) {', '.join(missing)}; "
                f"available columns: {list(events.columns)}"
            )
        if event_weights is not None and event_col is None:
            raise ValueError("event_weights needs event_col (the column holding the event type)")

        n = len(events)
        bad: dict[str, np.ndarray] = {}
        users = events[user_col]
        items = events[item_col]
        bad[f"null id in {user_col!r}"] = users.isna().to_numpy()
        bad[f"null id in {item_col!r}"] = items.isna().to_numpy()

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
            stamps, bad_ts = _parse_timestamps(events[timestamp_col])
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
        frame = pd.DataFrame({"key": key, "w": weights})
        agg = {"w": "sum"}
        if stamps is not None:
            frame["ts"] = stamps
            agg["ts"] = "max"
        cells = frame.groupby("key", sort=True).agg(agg)
        keys = cells.index.to_numpy(dtype=np.int64)
        rows, cols = keys // n_items, keys % n_items
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_users))])
        matrix = sp.csr_matrix(
            (cells["w"].to_numpy(dtype=np.float64), cols.astype(np.int32), indptr),
            shape=(n_users, n_items),
        )
        ts = cells["ts"].to_numpy(dtype=np.int64) if stamps is not None else None
        return cls(matrix, np.asarray(u_ids), np.asarray(i_ids), ts)


def _parse_timestamps(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the epoch as int64; numbers are taken as Unix seconds, text is parsed."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        return np.where(bad, 0, values).astype(np.int64), bad
    parsed = pd.to_datetime(col, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=0)
    return seconds.astype(np.int64), bad


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


def read_table(
    path: str | Path, columns: list[str] | None = None, sep: str | None = None
) -> pd.DataFrame:
    """Read an events file: Parquet (``.parquet``/``.pq``) or delimited text (CSV, TSV).

    Raises FileNotFoundError naming the path, and ValueError naming the file and what failed
    to parse (pandas' message carries the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"events file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            return pd.read_parquet(path, columns=columns)
        if sep is None:
            sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(path, sep=sep, usecols=columns)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(
            f"{path}: could not parse as {'Parquet' if 'parquet' in str(suffixes) else 'delimited text'}: {exc}"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def coerce_interactions(X) -> Interactions:
    """Accept an :class:`Interactions` or a scipy sparse users x items matrix of raw counts."""
    if isinstance(X, Interactions):
        return X
    if sp.issparse(X):
        return Interactions.from_matrix(X)
    raise TypeError(
        f"expected Interactions or a scipy sparse users x items matrix, got {type(X).__name__}"
    )
