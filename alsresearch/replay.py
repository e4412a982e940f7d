"""Replay timestamped interactions period by period: the daily (or weekly) retrain loop.

The question it answers: can a retrain that starts from the previous period's model and runs
only a few iterations (a warm start, ``ALSModel.fit(..., init=previous)``) replace a full
retrain from random factors?

Periods. Time is cut at ``n_periods + 1`` cut-offs ``t_0 < t_1 < ... < t_n``, ``period_days``
days apart (:func:`cutoffs`). By default ``t_n`` is the UTC midnight after the latest cell, so
the last period ends with the data; with ``start``, ``t_0 = start``.

Step ``i`` (``0 .. n_periods - 1``, :func:`period_split`):

- train: every cell with ``timestamp < t_i`` (the cut-off rule of
  :func:`alsresearch.split.temporal_holdout`; a cell's timestamp is its latest event), in the
  id space of the users and items that have such a cell: the ids a model retrained at ``t_i``
  knows. Row and column order follow the input's.
- test: the cells with ``t_i <= timestamp < t_{i+1}`` whose user and item are in train: the
  next period's new cells (a cell is in one part only). Cells of users with no training cell
  (cold users) and, for known users, of items with none (cold items) cannot be ranked by any
  model trained at ``t_i``: they are counted (:class:`Period`), not evaluated.

Models (:func:`replay`): ``"cold"`` fits ``params["iterations"]`` iterations from the random
init at every step; ``"warm"`` fits ``warm_iterations`` iterations from the previous step's
warm model (users and items matched by external id keep their factors, new ones start from
the random draw). Step 0 has no previous model: the warm chain starts with a full fit (the
cold model itself when both are replayed). Each model is evaluated on its step's test by
:func:`alsresearch.evaluate.evaluate`, its train items excluded. :func:`summarize` pools the
retrain steps (1 and later: step 0 is the same full fit for both) into one figure per mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch.als import ALSModel
from alsresearch.checks import check_float, check_int
from alsresearch.data import Interactions, format_time, parse_time
from alsresearch.evaluate import evaluate

__all__ = ["DAY", "MODES", "Period", "cutoffs", "period_split", "periods", "replay", "summarize"]

#: seconds in a day: periods are whole multiples of it (or fractions, for a test)
DAY = 86_400
#: the retrain strategies :func:`replay` compares
MODES = ("warm", "cold")


@dataclass(frozen=True)
class Period:
    """One step of the replay: what a model retrained at ``start`` learns from and is
    scored on."""

    start: int
    """Train cut-off (Unix seconds): train holds the cells before it."""
    end: int
    """Test holds the cells in ``[start, end)`` of users and items train knows."""
    train: Interactions
    """The cells before ``start``, in the id space of their users and items."""
    test: Interactions
    """The next period's cells of known users and items, in train's id space."""
    n_period_cells: int
    """Every cell in ``[start, end)``, evaluated or not."""
    n_cold_user_cells: int
    """Cells in the period of users with no training cell (not in test)."""
    n_cold_item_cells: int
    """Cells in the period of known users on items with no training cell (not in test)."""


def _timestamps(data: Interactions) -> np.ndarray:
    if data.timestamps is None:
        raise ValueError(
            "the replay cuts time into periods and needs each cell's timestamp, but these "
            "interactions have none: read them with a timestamp column (DataSource "
            "timestamp_col / the TIMESTAMP_COL parameter, Interactions.from_events(..., "
            "timestamp_col=...)), or use the shipped MovieLens, which has one"
        )
    if data.nnz == 0:
        raise ValueError("the replay needs at least one cell")
    return data.timestamps


def cutoffs(data: Interactions, period_days: float, n_periods: int, start=None) -> np.ndarray:
    """The ``n_periods + 1`` cut-offs (int64 Unix seconds), ``period_days`` days apart.

    Without ``start`` the last one is the UTC midnight after the latest cell (the last
    period ends with the data); ``start`` (a time, see :func:`alsresearch.data.parse_time`)
    is the first one. Raises ValueError without timestamps, or when no cell precedes the
    first cut-off (the first step would have nothing to train on)."""
    stamps = _timestamps(data)
    period = check_float(period_days, "period_days", low=0.0, low_open=True) * DAY
    n_periods = check_int(n_periods, "n_periods", low=1)
    steps = np.arange(n_periods + 1, dtype=np.float64) * period
    if start is None:
        end = (int(stamps.max()) // DAY + 1) * DAY
        cuts = np.floor(end - steps[::-1]).astype(np.int64)
    else:
        cuts = np.floor(parse_time(start, "start") + steps).astype(np.int64)
    if not np.any(stamps < cuts[0]):
        raise ValueError(
            f"no cell precedes the first cut-off {format_time(cuts[0])} (the earliest is at "
            f"{format_time(int(stamps.min()))}): the first step has nothing to train on; "
            "use fewer or shorter periods, or a later start"
        )
    return cuts


def _subspace(data: Interactions, users: np.ndarray, items: np.ndarray) -> Interactions:
    """``data`` in the id space of the rows ``users`` and columns ``items`` (boolean masks)
    that hold every stored cell; cells keep their order, timestamps and events."""
    m = data.matrix
    columns = np.cumsum(items) - 1
    indptr = np.concatenate([[0], np.cumsum(np.diff(m.indptr)[users])])
    matrix = sp.csr_matrix(
        (m.data, columns[m.indices].astype(np.int32), indptr),
        shape=(int(users.sum()), int(items.sum())),
    )
    return Interactions(
        matrix,
        data.user_ids[users],
        data.item_ids[items],
        data.timestamps,
        events=data.events,
        half_life=data.half_life,
        as_of=data.as_of,
    )


def period_split(data: Interactions, start, end) -> Period:
    """Train on the cells before ``start``; test on the cells in ``[start, end)`` of the users
    and items train knows (the module doc has the rules). ``start`` and ``end`` are times
    (Unix seconds or text, see :func:`alsresearch.data.parse_time`), ``start < end``."""
    stamps = _timestamps(data)
    start, end = parse_time(start, "start"), parse_time(end, "end")
    if end <= start:
        raise ValueError(f"end ({format_time(end)}) must be after start ({format_time(start)})")
    before = stamps < start
    if not before.any():
        raise ValueError(
            f"no cell precedes {format_time(start)} (the earliest is at "
            f"{format_time(int(stamps.min()))}): nothing to train on"
        )
    m = data.matrix
    rows = np.repeat(np.arange(data.n_users), np.diff(m.indptr))
    users = np.zeros(data.n_users, dtype=bool)
    users[rows[before]] = True
    items = np.zeros(data.n_items, dtype=bool)
    items[m.indices[before]] = True
    within = (stamps >= start) & (stamps < end)
    known_user = users[rows]
    known = within & known_user & items[m.indices]
    return Period(
        start=start,
        end=end,
        train=_subspace(data.select_cells(before), users, items),
        test=_subspace(data.select_cells(known), users, items),
        n_period_cells=int(within.sum()),
        n_cold_user_cells=int((within & ~known_user).sum()),
        n_cold_item_cells=int((within & known_user & ~items[m.indices]).sum()),
    )


def periods(data: Interactions, period_days: float, n_periods: int, start=None) -> Iterator[Period]:
    """The replay's steps: :func:`period_split` between consecutive :func:`cutoffs`."""
    cuts = cutoffs(data, period_days, n_periods, start)
    for lo, hi in pairwise(cuts):
        yield period_split(data, int(lo), int(hi))


def _row(step: int, mode: str, period: Period, model: ALSModel, seconds: float, k: int) -> dict:
    scored = evaluate(model, period.train, period.test, k=k, metrics=["ndcg", "recall"])
    matched = model.warm_start or {"users": 0, "items": 0}
    return {
        "step": step,
        "mode": mode,
        "train_end": format_time(period.start),
        "test_end": format_time(period.end),
        "init": "previous" if model.warm_start is not None else "random",
        "iterations": len(model.loss_history),
        "fit_seconds": seconds,
        "loss": model.loss_history[-1],
        f"ndcg@{k}": scored.metrics[f"ndcg@{k}"],
        f"recall@{k}": scored.metrics[f"recall@{k}"],
        "train_users": period.train.n_users,
        "train_items": period.train.n_items,
        "train_cells": period.train.nnz,
        "test_users": scored.n_users,
        "test_cells": period.test.nnz,
        "period_cells": period.n_period_cells,
        "cold_user_cells": period.n_cold_user_cells,
        "cold_item_cells": period.n_cold_item_cells,
        "matched_users": matched["users"],
        "matched_items": matched["items"],
    }


def _fit(params: Mapping[str, Any], data: Interactions, init: ALSModel | None = None):
    model = ALSModel(**params)
    start = time.perf_counter()
    model.fit(data, init=init)
    return model, time.perf_counter() - start


def replay(
    data: Interactions,
    period_days: float,
    n_periods: int,
    params: Mapping[str, Any],
    warm_iterations: int,
    modes: Sequence[str] = MODES,
    start=None,
    k: int = 10,
) -> pd.DataFrame:
    """Retrain at every cut-off and score each model on the next period (the module doc).

    ``params`` are :class:`~alsresearch.als.ALSModel` keyword arguments (``iterations`` is the
    full fit's; give ``random_state`` for a seeded replay); ``warm_iterations`` the warm
    retrain's iterations; ``modes`` ``"warm"``, ``"cold"`` or both. Returns one row per step
    and mode: the period (``train_end``, ``test_end``, ISO UTC), how the fit started
    (``init``: ``"previous"`` or ``"random"``), ``iterations``, ``fit_seconds`` (wall time of
    the fit alone), the final training ``loss``, ``ndcg@k`` and ``recall@k`` on the period
    (NaN when it has no known user's cell), the sizes of train and test, the period's cells
    not evaluated (``cold_user_cells``, ``cold_item_cells``) and the warm start's matched
    users and items (0 for a random start).
    """
    params = dict(params)
    warm_iterations = check_int(warm_iterations, "warm_iterations", low=1)
    modes = list(dict.fromkeys(modes))
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes must be some of {MODES}, got {modes!r}")
    k = check_int(k, "k", low=1)
    rows = []
    previous: ALSModel | None = None
    for step, period in enumerate(periods(data, period_days, n_periods, start)):
        cold = None
        if "cold" in modes:
            cold, seconds = _fit(params, period.train)
            rows.append(_row(step, "cold", period, cold, seconds, k))
        if "warm" in modes:
            if previous is None and cold is not None:  # the chain starts from the full fit
                previous = cold
                rows.append({**rows[-1], "mode": "warm"})
                continue
            if previous is None:
                previous, seconds = _fit(params, period.train)
            else:
                warm = {**params, "iterations": warm_iterations}
                previous, seconds = _fit(warm, period.train, init=previous)
            rows.append(_row(step, "warm", period, previous, seconds, k))
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """One figure per mode over the retrain steps (step 1 on) of a :func:`replay` table.

    ``<mode>_ndcg@k`` and ``<mode>_recall@k`` pool the evaluated users of every step (each
    step's mean weighted by its ``test_users``: the mean over all (step, user) pairs);
    ``<mode>_fit_seconds`` sums the fit times, ``<mode>_iterations`` averages the iterations;
    ``retrain_steps`` and ``evaluated_users`` count what was pooled. With both modes,
    ``warm_over_cold_ndcg@k`` and ``warm_over_cold_fit_seconds`` are the ratios. NaN where
    nothing was evaluated (no retrain step, or no test user)."""
    retrains = table[table["step"] >= 1]
    summary: dict[str, float] = {}
    for mode in MODES:
        rows = retrains[retrains["mode"] == mode]
        if not (table["mode"] == mode).any():
            continue
        users = rows["test_users"].to_numpy(dtype=np.float64)
        for metric in (f"ndcg@{k}", f"recall@{k}"):
            values = np.nan_to_num(rows[metric].to_numpy(dtype=np.float64)) * users
            summary[f"{mode}_{metric}"] = values.sum() / users.sum() if users.sum() else np.nan
        summary[f"{mode}_fit_seconds"] = float(rows["fit_seconds"].sum())
        summary[f"{mode}_iterations"] = float(rows["iterations"].mean()) if len(rows) else np.nan
        summary["retrain_steps"] = float(len(rows))
        summary["evaluated_users"] = float(users.sum())
    if "warm_fit_seconds" in summary and "cold_fit_seconds" in summary:
        for name in (f"ndcg@{k}", "fit_seconds"):
            cold = summary[f"cold_{name}"]
            summary[f"warm_over_cold_{name}"] = summary[f"warm_{name}"] / cold if cold else np.nan
    return {name: float(value) for name, value in summary.items()}
