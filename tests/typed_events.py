"""Typed, timestamped events that a test writes, and what a model should be trained on,
computed independently with pandas: the reference of the end-to-end tests (command line,
notebook, experiment file) for event types, event weights and the temporal split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch.data import Interactions

#: the weight of each event type, as a mapping and as the text of --event-weights
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 5.0}
EVENT_WEIGHTS_TEXT = "view=1,click=2,purchase=5"
#: columns of the written file (none of them the readers' defaults)
COLUMNS = {
    "user_col": "visitor",
    "item_col": "product",
    "event_col": "event",
    "timestamp_col": "ts",
}
#: a held-out share that is not SplitSpec's default, so a record that ignored it would differ
TEST_FRACTION = 0.25


def write_typed_events(
    path: Path, seed: int = 0, n_users: int = 30, n_items: int = 25, n_events: int = 900
) -> pd.DataFrame:
    """Write ``n_events`` random events (visitor, product, event, ts) to ``path`` (CSV) and
    return them. Every event has its own timestamp (Unix seconds), so each user's cells have
    distinct latest times and a temporal split has no ties to break."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "visitor": rng.integers(1000, 1000 + n_users, size=n_events),
            "product": [f"p{j:03d}" for j in rng.integers(0, n_items, size=n_events)],
            "event": rng.choice(list(EVENT_WEIGHTS), size=n_events, p=[0.7, 0.2, 0.1]),
            "ts": 1_600_000_000 + 60 * rng.permutation(n_events),
        }
    )
    frame.to_csv(path, index=False)
    return frame


def expected_cells(events: pd.DataFrame, test_fraction: float = TEST_FRACTION) -> pd.DataFrame:
    """One row per (visitor, product): the summed event weights, the latest timestamp, and
    ``test``: whether a temporal split holds the cell out (each user's latest
    ``round_half_up(test_fraction * n)`` of ``n`` cells, at least one and at most ``n - 1``
    when ``n >= 2``, none when ``n == 1``)."""
    weighted = events.assign(weight=events["event"].map(EVENT_WEIGHTS))
    cells = weighted.groupby(["visitor", "product"], as_index=False).agg(
        count=("weight", "sum"), ts=("ts", "max")
    )
    n = cells.groupby("visitor")["product"].transform("size").to_numpy()
    n_test = np.where(n >= 2, np.clip(np.floor(test_fraction * n + 0.5), 1, n - 1), 0)
    from_latest = cells.groupby("visitor")["ts"].rank(ascending=False, method="first")
    return cells.assign(test=from_latest.to_numpy() <= n_test)


def as_interactions(cells: pd.DataFrame, all_cells: pd.DataFrame) -> Interactions:
    """``cells`` as counts over the id space of ``all_cells`` (ids sorted, as the readers
    sort them), with their timestamps."""
    users = np.sort(all_cells["visitor"].unique())
    items = np.sort(all_cells["product"].unique())
    rows = np.searchsorted(users, cells["visitor"].to_numpy())
    cols = np.searchsorted(items, cells["product"].to_numpy())
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(users)))])
    matrix = sp.csr_matrix(
        (cells["count"].to_numpy(dtype=np.float64)[order], cols[order], indptr),
        shape=(len(users), len(items)),
    )
    return Interactions(matrix, users, items, cells["ts"].to_numpy()[order])
