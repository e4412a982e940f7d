"""Readers of public data-set formats, each returning :class:`~alsresearch.data.Interactions`.

- :func:`load_default`: the shipped MovieLens ml-latest-small (every rating one interaction).
- :func:`read_movielens` (``u.data``, ``ratings.dat``, ``ratings.csv``), :func:`read_lastfm`
  (HetRec 2011 ``user_artists.dat``), :func:`read_lastfm_360k`, :func:`read_retailrocket`
  (RetailRocket's ``events.csv``: typed, timestamped e-commerce events), :func:`read_events`
  (any CSV/Parquet events file).

The fixed-layout readers share one parser (:func:`_read_delimited`): a malformed line raises a
ValueError naming the file, the line (as an editor numbers it), the field, what was expected
and what was found, or, with ``errors="drop"``, is dropped with a warning that counts them.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from alsresearch import paths
from alsresearch.checks import check_choice, check_float
from alsresearch.data import Interactions, text_ids

__all__ = [
    "RETAILROCKET_EVENT_WEIGHTS",
    "load_default",
    "read_events",
    "read_lastfm",
    "read_lastfm_360k",
    "read_movielens",
    "read_retailrocket",
]

#: Column kinds of :func:`_read_delimited`: "int", "float" and "count" (>= 0) must parse as
#: finite numbers, "id" must be non-empty and is kept exactly as written (int64 only when every
#: id of the file is canonical int64 text, see :func:`~alsresearch.data.text_ids`; else
#: the exact strings, so "007" and "7" stay two ids), "intid" is an "id" that must be written
#: as an integer (digits, optionally after "-": the formats whose ids are numbers), "str?" is
#: any text, possibly empty (a field that is not used), "sep" must be empty (the gaps
#: that reading a "::" file with sep=":" leaves between fields); a tuple of strings means one
#: of them (an event type).
_NUMERIC = {"int": np.int64, "float": np.float64, "count": np.float64}
_SHOW_LINES = 5
#: Id fields are read as Arrow text: exact, and faster than Python strings.
_TEXT = {"id": pd.ArrowDtype(pa.string()), "intid": pd.ArrowDtype(pa.string())}


def _read_delimited(
    path: str | Path,
    *,
    sep: str,
    columns: Mapping[str, str | tuple[str, ...]],
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
    check_choice(errors, "errors", ("raise", "drop"))
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
                dtype={
                    n: np.float64 if typed and n in numeric else _TEXT.get(columns[n], str)
                    for n in names
                }
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
        elif kind == "id":
            wrong = (col == "").to_numpy(dtype=bool, na_value=True)
            expected = "an id"
        elif kind == "intid":
            wrong = ~col.str.fullmatch("-?[0-9]+").to_numpy(dtype=bool, na_value=False)
            expected = "an integer id"
        elif kind == "sep":
            wrong = (col != "").to_numpy()
            expected = f"the separator {sep * 2!r}"
        elif isinstance(kind, tuple):
            wrong = ~col.isin(kind).to_numpy()
            expected = f"one of {', '.join(kind)}"
        else:
            wrong = np.zeros(len(col), bool)  # "str?": any text
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
    for name in keep:
        if columns[name] in ("id", "intid"):
            result[name] = text_ids(result[name])
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
    ratings = {"user": "intid", "item": "intid", "rating": "float", "timestamp": "int"}
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
        layout = {"user": "intid", "_1": "sep", "item": "intid", "_2": "sep", "rating": "float"}
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
    permission, cite Harper & Konstan (2015); see the ``README.txt`` beside the data
    (``paths.resource("ml-latest-small")``; ``data/ml-latest-small/`` in a checkout).
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
        columns={"user": "intid", "item": "intid", "plays": "count"},
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
    check_choice(item, "item", ("name", "mbid"))
    frame = _read_delimited(
        path,
        sep="\t",
        columns={
            "user": "id",
            "mbid": "id" if item == "mbid" else "str?",
            "name": "id" if item == "name" else "str?",
            "plays": "count",
        },
        errors=errors,
        what="Last.fm 360K plays file",
    )
    return Interactions.from_events(frame, user_col="user", item_col=item, weight_col="plays")


#: Default weights of RetailRocket's event types, by increasing intent, as the seed's
#: view / click / purchase: a view is the weakest signal; adding to the cart is a deliberate step
#: towards buying, worth a few views; a transaction is the purchase itself. The cells of an
#: item bought after a view and an add-to-cart sum all three (1 + 3 + 5). These are defaults,
#: not tuned values: ``event_weights`` (``--event-weights``) replaces them.
RETAILROCKET_EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "addtocart": 3.0, "transaction": 5.0}

_RETAILROCKET_HEADER = ["timestamp", "visitorid", "event", "itemid", "transactionid"]


def read_retailrocket(
    path: str | Path,
    event_weights: Mapping[str, float] | None = None,
    errors: Literal["raise", "drop"] = "raise",
) -> Interactions:
    """RetailRocket's ``events.csv`` (Kaggle, "Retailrocket recommender system dataset").

    Comma separated with the header ``timestamp,visitorid,event,itemid,transactionid``: the
    time in *milliseconds* since the epoch, the visitor, the event type (``view``,
    ``addtocart`` or ``transaction``), the item, and the transaction id (empty except on
    transactions; not used). Users are visitors, items are items; each event weighs
    ``event_weights[event]`` (default :data:`RETAILROCKET_EVENT_WEIGHTS`) and the events of a
    (visitor, item) pair sum. A cell's timestamp is its latest event's, in Unix seconds (the
    milliseconds floored), the unit of every :class:`~alsresearch.data.Interactions`.

    ``event_weights`` replaces the defaults as a whole; a type it leaves out is then unknown.
    Lines with an unknown event type, or otherwise malformed, raise a ValueError naming the
    line and the field, or with ``errors="drop"`` are dropped with a warning that counts them.
    """
    weights = dict(RETAILROCKET_EVENT_WEIGHTS if event_weights is None else event_weights)
    foreign = [kind for kind in weights if kind not in RETAILROCKET_EVENT_WEIGHTS]
    if foreign or not weights:
        raise ValueError(
            f"event_weights: {foreign or 'no type'} given, expected weights for RetailRocket's "
            f"event types ({', '.join(RETAILROCKET_EVENT_WEIGHTS)})"
        )
    for kind, value in weights.items():
        weights[kind] = check_float(value, f"event_weights[{kind!r}]", low=0.0)
    frame = _read_delimited(
        path,
        sep=",",
        columns={
            "timestamp": "int",
            "visitorid": "intid",
            "event": tuple(weights),
            "itemid": "intid",
            "transactionid": "str?",
        },
        header=_RETAILROCKET_HEADER,
        errors=errors,
        what="RetailRocket events file",
    )
    frame["timestamp"] //= 1000
    return Interactions.from_events(
        frame,
        user_col="visitorid",
        item_col="itemid",
        event_col="event",
        event_weights=weights,
        timestamp_col="timestamp",
    )


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
    ``{"view": 1, "click": 2, "purchase": 5}``), a numeric weight and a timestamp (ISO 8601
    text in any mix of forms, or epoch seconds or milliseconds inferred from the magnitude).
    Ids are kept exactly as written: in a CSV/TSV an id column is int64 only when every id
    round-trips through int64 unchanged, else every id is its exact text (``007`` and ``7``
    are two users); Parquet keeps the file's column types. This is
    :meth:`Interactions.from_events` on a file, documented here beside the other formats; see
    it and :mod:`alsresearch.data` for the rules.
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
