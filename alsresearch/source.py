"""The one description of where interactions come from: :class:`DataSource`.

A data source names a file (or the shipped MovieLens data), its format, and for a generic events
file its columns: user, item, an optional numeric weight, an optional event type with per-type
weights (``view=1,click=2,purchase=5``), an optional timestamp, and the policy for bad rows.
It is built once, from command-line options, a notebook's parameters or an experiment file's
``data:`` block, and it is recorded (:meth:`DataSource.to_dict`) wherever data is used:
results.json, best.json, model files and model cards. Before a model is scored on data,
:meth:`DataSource.check_same` compares the two records and names every field that differs.

Formats:

- ``events`` (default): any CSV/TSV/Parquet events file, read by
  :meth:`~alsresearch.data.Interactions.from_events` with the column options;
- ``retailrocket``: RetailRocket's ``events.csv`` (timestamp in ms, visitorid, event, itemid,
  transactionid), event weights from :data:`~alsresearch.datasets.RETAILROCKET_EVENT_WEIGHTS`
  unless ``event_weights`` is given;
- ``movielens``, ``lastfm``, ``lastfm-360k``: the public readers of
  :mod:`alsresearch.datasets`, with their fixed layouts.

With no path, the shipped MovieLens ml-latest-small (every rating one interaction, with its
timestamps) is read.

Recency weighting: ``half_life`` (a duration such as ``"30D"``; None: no decay) weighs each event
by ``0.5 ** (age / half_life)``, its age counted from ``as_of`` or else from the latest event of
the data at hand; every split re-decays its training part to the part's own latest event, so
no test event moves a training count (:meth:`~alsresearch.data.Interactions.decayed`, and the
rules in :mod:`alsresearch.data`). Both need timestamps: an events file with ``timestamp_col``,
the shipped MovieLens, or the ``movielens`` and ``retailrocket`` formats. ``as_of`` alone
changes no count: it is checked (no event after it) and fixes the reference time of a half-life
that ``alsresearch tune`` searches. Both are recorded in canonical text (``"30D"``,
``"2018-09-24T00:00:00Z"``), so two spellings of one duration compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from alsresearch import datasets
from alsresearch.checks import check_choice, check_float
from alsresearch.data import (
    Interactions,
    format_duration,
    format_time,
    parse_half_life,
    parse_time,
)
from alsresearch.errors import SpecMismatchError

__all__ = [
    "FORMATS",
    "NOTEBOOK_PARAMETERS",
    "DataSource",
    "format_event_weights",
    "parse_event_weights",
]

#: format name -> what reads it (see the module docstring)
FORMATS = ("events", "retailrocket", "movielens", "lastfm", "lastfm-360k")

#: field -> the name of the notebook parameter that carries it (the ``parameters`` cells)
NOTEBOOK_PARAMETERS = {
    "path": "EVENTS",
    "format": "DATA_FORMAT",
    "user_col": "USER_COL",
    "item_col": "ITEM_COL",
    "weight_col": "WEIGHT_COL",
    "event_col": "EVENT_COL",
    "event_weights": "EVENT_WEIGHTS",
    "timestamp_col": "TIMESTAMP_COL",
    "errors": "DATA_ERRORS",
    "half_life": "HALF_LIFE",
    "as_of": "AS_OF",
}

_COLUMN_FIELDS = ("user_col", "item_col", "weight_col", "event_col", "timestamp_col")
#: the recency-weighting fields (they need timestamps)
_DECAY_FIELDS = ("half_life", "as_of")
#: fields each non-generic format accepts besides path and format
_FORMAT_FIELDS = {
    "retailrocket": {"event_weights", "errors", *_DECAY_FIELDS},
    "movielens": {*_DECAY_FIELDS},
    "lastfm": set(),
    "lastfm-360k": {"errors"},
}


def parse_event_weights(text: str | Mapping[str, Any] | None) -> dict[str, float] | None:
    """``"view=1,click=2,purchase=5"`` (or a mapping, or None/"") as ``{type: weight}``.

    Weights must be finite and >= 0; a type given twice, a missing ``=`` or a non-number is an
    error naming the entry.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, Mapping):
        pairs = [(str(k), v) for k, v in text.items()]
    elif isinstance(text, str):
        pairs = []
        for entry in text.split(","):
            name, sep, value = entry.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(
                    f"event weights: expected TYPE=WEIGHT entries separated by commas "
                    f"(e.g. view=1,click=2,purchase=5), got {entry.strip()!r} in {text!r}"
                )
            try:
                number = float(value)
            except ValueError:
                raise ValueError(
                    f"event weights: the weight of {name.strip()!r} is not a number: {value.strip()!r}"
                ) from None
            pairs.append((name.strip(), number))
    else:
        raise ValueError(f"event weights must be TYPE=WEIGHT text or a mapping, got {text!r}")
    weights: dict[str, float] = {}
    for name, value in pairs:
        if name in weights:
            raise ValueError(f"event weights: type {name!r} is given twice")
        weights[name] = check_float(value, f"event weight of {name!r}", low=0.0)
    if not weights:
        raise ValueError("event weights: no TYPE=WEIGHT entry given")
    return weights


def format_event_weights(weights: Mapping[str, float] | None) -> str:
    """The inverse of :func:`parse_event_weights`: ``"view=1,click=2,purchase=5"`` ("" for None)."""
    if not weights:
        return ""
    return ",".join(f"{k}={float(v):g}" for k, v in weights.items())


def _text(value: Any, name: str) -> str | None:
    """An optional text option: None or "" (a notebook's "unset") become None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | Path):
        raise ValueError(f"{name} must be text, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class DataSource:
    """Where the interactions come from and how they are read (see the module docstring)."""

    path: str | None = None
    """The events file; None: the shipped MovieLens ml-latest-small."""
    format: str = "events"
    user_col: str = "user_id"
    item_col: str = "item_id"
    weight_col: str | None = None
    """A numeric column multiplied into each event's weight (None: 1)."""
    event_col: str | None = None
    """The event-type column; its types are weighted by ``event_weights``."""
    event_weights: dict[str, float] | None = field(default=None, hash=False)
    """Per-type weights (None: every type counts 1)."""
    timestamp_col: str | None = None
    errors: str = "raise"
    """Bad rows: ``"raise"`` an error naming them, or ``"drop"`` them with a warning."""
    half_life: str | None = None
    """Recency weighting: each event weighs ``0.5 ** (age / half_life)`` (None: no decay).
    Any duration :func:`~alsresearch.data.parse_half_life` reads, kept as canonical text."""
    as_of: str | None = None
    """The time ages are counted from (None: the latest event of the data at hand), as ISO
    8601 UTC text; no event may be later."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "path", _text(self.path, "path"))
        check_choice(self.format, "data format", FORMATS)
        for name in ("user_col", "item_col"):
            if _text(getattr(self, name), name) is None:
                raise ValueError(f"{name} must name a column, got {getattr(self, name)!r}")
        for name in ("weight_col", "event_col", "timestamp_col"):
            set_(self, name, _text(getattr(self, name), name))
        set_(self, "event_weights", parse_event_weights(self.event_weights))
        check_choice(self.errors, "errors", ("raise", "drop"))
        half_life = None if self.half_life == "" else parse_half_life(self.half_life)
        set_(self, "half_life", None if half_life is None else format_duration(half_life))
        as_of = None if self.as_of in (None, "") else parse_time(self.as_of, "as_of")
        set_(self, "as_of", None if as_of is None else format_time(as_of))
        if self.format == "events":
            changed = [
                f.name
                for f in fields(self)
                if getattr(self, f.name) != f.default and f.name not in _DECAY_FIELDS
            ]
            decay = [name for name in _DECAY_FIELDS if getattr(self, name) is not None]
            if self.path is not None and decay and self.timestamp_col is None:
                raise ValueError(
                    f"{' and '.join(decay)} weigh events by their age, which needs a timestamp "
                    "column: give timestamp_col (--timestamp-col)"
                )
            if self.path is None and changed:
                raise ValueError(
                    f"option(s) {changed} describe an events file, but no path is given (the "
                    "shipped MovieLens data has a fixed layout)"
                )
            if self.event_weights is not None and self.event_col is None:
                raise ValueError(
                    "event weights need an event column (event_col / --event-col): the column "
                    "holding the event type"
                )
        else:
            if self.path is None:
                raise ValueError(f"data format {self.format!r} needs a path")
            allowed = _FORMAT_FIELDS[self.format]
            stray = [
                f.name
                for f in fields(self)
                if f.name not in ("path", "format", *allowed) and getattr(self, f.name) != f.default
            ]
            if stray:
                raise ValueError(
                    f"option(s) {stray} have no effect with data format {self.format!r} "
                    f"(its layout is fixed; it takes {sorted(allowed) or 'no option'})"
                )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, record: Mapping[str, Any], where: str = "data") -> DataSource:
        """From a :meth:`to_dict` record or an experiment file's ``data:`` block."""
        if not isinstance(record, Mapping):
            raise ValueError(f"{where} must be a mapping of data-source fields, got {record!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(record) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {known}")
        return cls(**record)

    @classmethod
    def from_notebook_parameters(cls, namespace: Mapping[str, Any]) -> DataSource:
        """From a notebook's parameters (``EVENTS``, ``USER_COL``, ..., see
        :data:`NOTEBOOK_PARAMETERS`), e.g. ``DataSource.from_notebook_parameters(globals())``;
        parameters a notebook does not define keep their defaults."""
        return cls(
            **{
                name: namespace[param]
                for name, param in NOTEBOOK_PARAMETERS.items()
                if param in namespace
            }
        )

    def to_notebook_parameters(self) -> dict[str, Any]:
        """The notebook parameters that describe this source (unset values as ""; the
        recency-weighting ones only when set, as in :meth:`to_dict`)."""
        record = self.to_dict()
        record["event_weights"] = format_event_weights(self.event_weights)
        return {
            NOTEBOOK_PARAMETERS[name]: "" if value is None else value
            for name, value in record.items()
        }

    def with_tuned(self, data_params: Mapping[str, Any] | None, where: str) -> DataSource:
        """This source with the data params a sweep chose (best.json's ``data_params``, e.g.
        ``{"half_life": "30D"}``; None or empty: unchanged). A half-life this source already
        gives must be the same duration as the tuned one: a ValueError names both otherwise
        (``where`` names the sweep's record)."""
        if not data_params:
            return self
        unknown = sorted(set(data_params) - {"half_life"})
        if unknown:
            raise ValueError(f"{where}: unknown data param(s) {unknown}; expected half_life")
        seconds = parse_half_life(data_params.get("half_life"))
        tuned = None if seconds is None else format_duration(seconds)
        if self.half_life is None:
            return self if tuned is None else replace(self, half_life=tuned)
        if self.half_life != tuned:
            raise ValueError(
                f"half_life {self.half_life!r} is given, but {where} was tuned with half_life "
                f"{tuned!r} (None: no decay); leave --half-life out to use the tuned one"
            )
        return self

    # ------------------------------------------------------------------ using
    def load(self) -> Interactions:
        """Read the interactions (errors name the file, the row and the field)."""
        if self.format == "events" and self.path is not None:
            return Interactions.from_events(
                Path(self.path),
                user_col=self.user_col,
                item_col=self.item_col,
                weight_col=self.weight_col,
                event_col=self.event_col,
                event_weights=self.event_weights,
                timestamp_col=self.timestamp_col,
                errors=self.errors,
                half_life=self.half_life,
                as_of=self.as_of,
            )
        if self.path is None:
            data = datasets.load_default()
        elif self.format == "retailrocket":
            data = datasets.read_retailrocket(
                self.path, event_weights=self.event_weights, errors=self.errors
            )
        elif self.format == "movielens":
            data = datasets.read_movielens(self.path)
        elif self.format == "lastfm":
            data = datasets.read_lastfm(self.path)
        else:
            data = datasets.read_lastfm_360k(self.path, errors=self.errors)
        if self.half_life is None and self.as_of is None:
            return data
        return data.decayed(self.half_life, as_of=self.as_of)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready; the path made absolute so the record stands on its own.
        ``half_life`` and ``as_of`` appear only when set, so the records of data read without
        recency weighting are those written before it existed (and compare equal to them)."""
        record = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in _DECAY_FIELDS or getattr(self, f.name) is not None
        }
        if self.path is not None:
            record["path"] = str(Path(self.path).expanduser().resolve())
        record["event_weights"] = None if self.event_weights is None else dict(self.event_weights)
        return record

    def describe(self) -> str:
        """One line for logs: the file (or the shipped default) and the options that differ
        from their defaults."""
        extra = [
            f"{f.name}={format_event_weights(self.event_weights) if f.name == 'event_weights' else getattr(self, f.name)}"
            for f in fields(self)
            if f.name != "path" and getattr(self, f.name) != f.default
        ]
        name = "the shipped MovieLens ml-latest-small" if self.path is None else self.path
        return name + (f" ({', '.join(extra)})" if extra else "")

    def check_same(self, recorded: Mapping[str, Any] | None, what: str) -> None:
        """Raise :class:`~alsresearch.errors.SpecMismatchError` when ``recorded`` (a
        :meth:`to_dict` record, e.g. from a model file) reads data differently from this
        source, naming every field that differs. The file's location is not compared (the data
        itself is checked by fingerprint where it matters); how it is read is. ``what`` names
        the other side, e.g. ``"the model was trained on"``."""
        if recorded is None:
            return
        mine = self.to_dict()
        keys = [*mine, *(k for k in _DECAY_FIELDS if k not in mine)]
        differs = [
            f"{key} {recorded.get(key)!r} there, {mine.get(key)!r} here"
            for key in keys
            if key != "path" and recorded.get(key) != mine.get(key)
        ]
        if (recorded.get("path") is None) != (self.path is None):
            differs.insert(0, f"path {recorded.get('path')!r} there, {mine['path']!r} here")
        if differs:
            raise SpecMismatchError(f"{what} data read another way: " + "; ".join(differs))
