"""``evaluate(model, train, test)``: top-k ranking metrics for any fitted model.

The evaluator uses only the shared model protocol (``topk_rows`` and the id arrays of
:class:`~alsresearch.base.Recommender`), so ALS, the baselines and any later model are
evaluated by the same code.

What is measured:

- evaluated users: users with at least one test cell (optionally restricted by ``users``);
- each one's top ``k`` over the whole catalogue, with the user's *train* items excluded (items
  in ``train``, the matrix passed here, whatever the model was fitted on);
- relevant items: the user's test items (binary relevance), including cold items (test items
  with no cell in train; see :mod:`alsresearch.split`), which are counted in the result;
- per-user metrics from :mod:`alsresearch.metrics`, averaged over evaluated users (macro
  average); catalogue coverage over the union of the evaluated users' lists; popularity rank
  (mean rank of the recommended items by number of training users, 1 = most popular).

Memory: users are ranked in chunks sized so that one chunk's score block would be at most
:data:`SCORE_BLOCK_BYTES`; each chunk is one ``topk_rows`` call with the train items excluded:
by default one matrix product and the compiled top-k kernel; ``ALSModel`` screens the items
instead (:mod:`alsresearch._quantized`) and never forms the block. Beyond the model and the
data, the evaluator holds at most one score block, and ``k`` item indices and a few floats per
evaluated user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from alsresearch.base import validate_n
from alsresearch.baselines import PopularityModel
from alsresearch.checks import check_int
from alsresearch.data import Interactions, coerce_interactions
from alsresearch.errors import NoResultError
from alsresearch.metrics import (
    PER_USER_METRICS,
    coverage_at_k,
    per_user_metrics,
    popularity_rank_at_k,
    popularity_ranks,
)
from alsresearch.records import check_training
from alsresearch.split import cold_items

__all__ = [
    "ALL_METRICS",
    "SCORE_BLOCK_BYTES",
    "EvaluationResult",
    "check_trained_on",
    "compare",
    "evaluate",
    "evaluate_trained_model",
    "flat_metrics",
    "require_test_users",
]

#: every metric ``evaluate`` can report, in report order
ALL_METRICS = (*PER_USER_METRICS, "coverage", "popularity_rank")
#: target bytes of one chunk's float32 score block (twice that if a model returns float64).
#: Larger blocks make the matrix product more efficient; 50k items gives about 1000 users.
SCORE_BLOCK_BYTES = 192 * 2**20
_MAX_CHUNK = 4096


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    ``metrics`` maps ``"<name>@<k>"`` to the mean over evaluated users (coverage: over the
    union of their lists). ``per_user`` has one row per evaluated user: ``user_id`` (external),
    ``history`` (number of distinct training items), ``n_test``, ``n_cold`` (test items with no
    training data) and one column per per-user metric. ``recommended`` holds each evaluated
    user's top-k item indices (rows as in ``per_user``; -1 pads short lists).
    """

    k: int
    metrics: dict[str, float]
    per_user: pd.DataFrame
    n_users: int
    n_items: int
    n_test_cells: int
    n_cold_items: int
    n_cold_cells: int
    recommended: np.ndarray = field(repr=False)
    buckets: tuple[int, ...] = (5, 20)

    def by_history(self, buckets: Sequence[int] | None = None) -> pd.DataFrame:
        """Metric means by training-history length.

        ``buckets=(5, 20)`` gives the groups 1-5, 6-20 and 21+ training items (a group "0" comes
        first when some evaluated users have no training items, e.g. after a global time
        cut-off). Columns: ``n_users`` and each metric (coverage within the group's lists).
        Groups without users are omitted.
        """
        edges = _check_buckets(self.buckets if buckets is None else buckets)
        history = self.per_user["history"].to_numpy()
        bounds = [(0, 0), *zip([1, *[e + 1 for e in edges]], [*edges, None], strict=True)]
        rows = []
        for lo, hi in bounds:
            mask = (history >= lo) & (history <= (np.inf if hi is None else hi))
            if not mask.any():
                continue
            label = str(lo) if hi == lo else (f"{lo}+" if hi is None else f"{lo}-{hi}")
            row = {"history": label, "n_users": int(mask.sum())}
            for name in self.metrics:
                if name.startswith("coverage@"):
                    row[name] = coverage_at_k(self.recommended[mask], self.n_items)
                else:
                    row[name] = float(self.per_user.loc[mask, name].mean())
            rows.append(row)
        return pd.DataFrame(rows).set_index("history")

    def to_dict(self) -> dict:
        """JSON-serialisable summary (no per-user rows), for run records."""
        return {
            "k": self.k,
            "metrics": dict(self.metrics),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_test_cells": self.n_test_cells,
            "n_cold_items": self.n_cold_items,
            "n_cold_cells": self.n_cold_cells,
        }

    def __str__(self) -> str:
        figures = ", ".join(f"{name}={value:.4f}" for name, value in self.metrics.items())
        return (
            f"EvaluationResult({self.n_users} users, {self.n_items} items, "
            f"{self.n_cold_items} cold test items: {figures})"
        )


def _check_buckets(buckets: Sequence[int]) -> list[int]:
    edges = [check_int(e, "each history bucket edge", low=1) for e in buckets]
    if any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"buckets must be increasing positive integers, got {buckets!r}")
    return edges


def _check_metrics(metrics: Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(ALL_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [str(m).split("@")[0] for m in metrics]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
    return list(dict.fromkeys(names))


def _check_id_spaces(model, train: Interactions, test: Interactions) -> None:
    if not train.same_id_space(test):
        raise ValueError(
            f"train ({train.n_users} users x {train.n_items} items) and test ({test.n_users} x "
            f"{test.n_items}) are not in the same id space: split one Interactions with "
            "alsresearch.split so both keep the same users and items in the same order"
        )
    model_users = getattr(model, "user_ids", None)
    model_items = getattr(model, "item_ids", None)
    if model_users is None or model_items is None:
        raise ValueError(f"{type(model).__name__} is not fitted: fit it on train first")
    if not (
        np.array_equal(model_users, train.user_ids) and np.array_equal(model_items, train.item_ids)
    ):
        raise ValueError(
            f"the model's id space ({len(model_users)} users x {len(model_items)} items) is not "
            f"train's ({train.n_users} x {train.n_items}): fit the model on the train split"
        )


def evaluate(
    model,
    train,
    test,
    k: int = 10,
    metrics: Iterable[str] | None = None,
    users=None,
    buckets: Sequence[int] = (5, 20),
    chunk_size: int | None = None,
) -> EvaluationResult:
    """Top-``k`` metrics of a fitted ``model`` on ``test``, with ``train`` items excluded.

    Parameters
    ----------
    model:
        Any fitted :class:`~alsresearch.base.Recommender` (fitted on ``train``).
    train, test:
        :class:`~alsresearch.data.Interactions` in the same id space (from
        :mod:`alsresearch.split`); scipy sparse matrices are accepted too.
    k:
        List length (1..100000).
    metrics:
        Names from :data:`ALL_METRICS` (``"ndcg"``, ``"hit_rate"``, ``"precision"``,
        ``"recall"``, ``"map"``, ``"mrr"``, ``"coverage"``, ``"popularity_rank"``; an ``"@k"``
        suffix is ignored); all by default.
    users:
        External user ids to restrict the evaluation to (unknown ids raise UnknownIdError);
        of these, users without test items are skipped. Default: every user with a test item.
    buckets:
        Default history groups for :meth:`EvaluationResult.by_history`.
    chunk_size:
        Users scored per block; by default a float32 block is at most :data:`SCORE_BLOCK_BYTES`.
    """
    k = validate_n(k)
    names = _check_metrics(metrics)
    buckets = tuple(_check_buckets(buckets))
    train, test = coerce_interactions(train), coerce_interactions(test)
    _check_id_spaces(model, train, test)
    n_items = train.n_items

    n_test = np.diff(test.matrix.indptr)
    rows = np.flatnonzero(n_test > 0)
    if users is not None:
        wanted = np.unique(train.user_index(list(np.atleast_1d(users))))
        rows = np.intersect1d(rows, wanted)
    if chunk_size is None:
        chunk_size = max(1, min(_MAX_CHUNK, SCORE_BLOCK_BYTES // (4 * n_items)))
    else:
        chunk_size = check_int(chunk_size, "chunk_size", low=1)

    user_metrics = [n for n in names if n in PER_USER_METRICS]
    ranks = popularity_ranks(train.matrix) if "popularity_rank" in names else None
    recommended = np.empty((len(rows), k), dtype=np.int32 if n_items < 2**31 else np.int64)
    columns: dict[str, np.ndarray] = {n: np.empty(len(rows)) for n in user_metrics}
    if ranks is not None:
        columns["popularity_rank"] = np.empty(len(rows))

    for start in range(0, len(rows), chunk_size):
        block = rows[start : start + chunk_size]
        top, _ = model.topk_rows(block, k, exclude=train.matrix)  # at most n_items columns
        if top.shape != (len(block), min(k, n_items)):
            raise ValueError(
                f"{type(model).__name__}.topk_rows returned shape {top.shape}, "
                f"expected {(len(block), min(k, n_items))}"
            )
        idx = np.full((len(block), k), -1, dtype=np.int64)
        idx[:, : top.shape[1]] = top
        out = slice(start, start + len(block))
        recommended[out] = idx
        for name, values in per_user_metrics(idx, test.matrix[block], user_metrics).items():
            columns[name][out] = values
        if ranks is not None:
            columns["popularity_rank"][out] = popularity_rank_at_k(idx, ranks)

    history = np.diff(train.matrix.indptr)[rows]
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold_items(train, test)] = True
    test_rows = test.matrix[rows]
    cold_cells = is_cold[test_rows.indices]
    cold_per_user = np.bincount(
        np.repeat(np.arange(len(rows)), np.diff(test_rows.indptr))[cold_cells],
        minlength=len(rows),
    )
    per_user = pd.DataFrame(
        {
            "user_id": train.user_ids[rows],
            "history": history,
            "n_test": n_test[rows],
            "n_cold": cold_per_user,
            **{f"{name}@{k}": columns[name] for name in names if name in columns},
        }
    )
    summary: dict[str, float] = {}
    for name in names:
        key = f"{name}@{k}"
        if name == "coverage":
            summary[key] = coverage_at_k(recommended, n_items) if len(rows) else float("nan")
        else:
            summary[key] = float(np.mean(columns[name])) if len(rows) else float("nan")
    return EvaluationResult(
        k=k,
        metrics=summary,
        per_user=per_user,
        n_users=len(rows),
        n_items=n_items,
        n_test_cells=int(n_test[rows].sum()),
        n_cold_items=len(np.unique(test_rows.indices[cold_cells])),
        n_cold_cells=int(cold_per_user.sum()),
        recommended=recommended,
        buckets=buckets,
    )


def compare(models: dict, train: Interactions, test: Interactions, k: int = 10):
    """Evaluate fitted models on one split: ``(table, results)``.

    ``table`` has one row per model and one column per metric; ``results`` maps each name to
    its :class:`EvaluationResult` (for per-user and by-history views).
    """
    results = {name: evaluate(model, train, test, k=k) for name, model in models.items()}
    table = pd.DataFrame({name: r.metrics for name, r in results.items()}).T
    table.index.name = "model"
    return table, results


def flat_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``{"<model>_<metric>": value}`` from a :func:`compare` table (for results.json)."""
    return {
        f"{model}_{name}": float(v) for model, row in table.iterrows() for name, v in row.items()
    }


def check_trained_on(model, train: Interactions, what: str = "the model") -> None:
    """Raise ValueError unless ``model`` was fitted on exactly ``train``: the same users and
    items in the same order, and the same cells. Scoring a model on a test split it was not
    trained beside would score items it was trained on as if they were new."""
    seen = train.matrix.copy()
    seen.data[:] = 1
    if not (
        np.array_equal(model.user_ids, train.user_ids)
        and np.array_equal(model.item_ids, train.item_ids)
        and (model.seen != seen).nnz == 0
    ):
        raise ValueError(
            f"{what} was not trained on the training part of this split of these data: "
            "evaluating it would score items it was trained on. Train it with the same data "
            "source and split (`alsresearch train` with the same options)."
        )


def require_test_users(test: Interactions, what: str = "the test split") -> int:
    """The number of users with at least one test cell; NoResultError when there is none (no
    figure could be measured: a command that got here has no result to give)."""
    n_users = int((np.diff(coerce_interactions(test).matrix.indptr) > 0).sum())
    if n_users == 0:
        raise NoResultError(
            f"{what} leaves no test user (no user has a held-out cell): nothing to evaluate; "
            "use more data or a larger test fraction"
        )
    return n_users


def evaluate_trained_model(model, source, split, k: int = 10, what: str = "the model"):
    """Score a saved model on the test part of the split it was trained beside, against item
    popularity fitted on the same training part: ``(table, data, train, test)``.

    Refuses (ValueError / :class:`~alsresearch.errors.SpecMismatchError`, naming what
    differs) a split that holds nothing out or leaves no test user, a model whose ``training`` record names another
    data spec or split, and a model not fitted on exactly this training part.
    """
    if not split.holds_out:
        raise ValueError("a split with test_fraction 0 leaves no test set to evaluate on")
    check_training(model.training, source, split, f"{what}: the model was trained on")
    data = source.load()
    train, test = split.apply(data)
    check_trained_on(model, train, what)
    require_test_users(test, f"the test part of {split}")
    popularity = PopularityModel().fit(train)
    table, _ = compare({model.model_type: model, "popularity": popularity}, train, test, k=k)
    return table, data, train, test
