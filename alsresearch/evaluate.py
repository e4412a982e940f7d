"""``evaluate(model, train, test)``: top-k ranking metrics for any fitted model, with
bootstrap intervals.

The evaluator uses only the shared model protocol (``topk_rows``, ``history_scores`` and the id
arrays of :class:`~alsresearch.base.Recommender`), so ALS, the baselines and any later model
are evaluated by the same code.

What is measured (``protocol="standard"``, the default):

- evaluated users: users with at least one test cell (optionally restricted by ``users``);
- each one's top ``k`` over the whole catalogue, with the user's *train* items excluded (items
  in ``train``, the matrix passed here, whatever the model was fitted on);
- relevant items: the user's test items (binary relevance), including cold items (test items
  with no cell in train; see :mod:`alsresearch.split`), which are counted in the result;
- per-user metrics from :mod:`alsresearch.metrics`, averaged over evaluated users (macro
  average); catalogue coverage over the union of the evaluated users' lists; popularity rank
  (mean rank of the recommended items by number of training users, 1 = most popular).

``protocol="fold_in"`` (strong generalization, :func:`alsresearch.split.user_holdout`): the
evaluated users are absent from ``train`` (checked); each one is ranked from their ``fold_in``
history through the model's ``history_scores`` (what ``recommend_for_history`` ranks: the model
folds the history in without retraining), with the *fold-in* items excluded. Everything else is
as above; the per-user ``history`` column counts fold-in items. By default this protocol also
reports :data:`FOLD_IN_METRICS` (Recall@20, Recall@50, NDCG@100, the figures of Liang et al.
2018 and Rendle et al. 2022) next to the @k ones.

Cut-offs: a metric name may carry its own cut-off (``"recall@50"``); a bare name (``"recall"``)
is measured at ``k``. Every user is ranked once, to the largest cut-off, and each metric reads
the first ``j`` items of that list (the top-``j`` is a prefix of the top-``K``: ties always go
to the lower item index).

Uncertainty (:func:`mean_interval`, :func:`paired_difference`, :meth:`EvaluationResult.intervals`,
the interval columns of :func:`compare`): a seeded bootstrap over evaluated users. Per-user
values are resampled with replacement, ``n_boot`` times, by user index (from
``numpy.random.default_rng(seed)``); each resample's mean is one bootstrap mean, and the
interval is the percentile interval of those means at ``confidence``. A paired difference
resamples the per-user differences of two results over the users both evaluated, so that what
is shared (how hard each user's test items are) cancels. Only per-user metrics can be
resampled this way (:data:`BOOTSTRAP_METRICS`); coverage is one figure for the union of all
lists.

Memory: users are ranked in chunks sized so that one chunk's score block would be at most
:data:`SCORE_BLOCK_BYTES`; each chunk is one ``topk_rows`` call with the train items excluded:
by default one matrix product and the compiled top-k kernel; ``ALSModel`` screens the items
instead (:mod:`alsresearch._quantized`) and never forms the block. Under the fold-in protocol a
chunk's block is filled one user at a time by ``history_scores`` and ranked by one call of the
top-k kernel. Beyond the model and the data, the evaluator holds at most one score block, and
``K`` item indices and a few floats per evaluated user. The bootstrap holds at most
:data:`BOOTSTRAP_CELLS` resampled indices at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from alsresearch.base import MAX_N, validate_n
from alsresearch.baselines import PopularityModel
from alsresearch.checks import check_choice, check_float, check_int
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
from alsresearch.split import PROTOCOLS, cold_items
from alsresearch.topk import topk

__all__ = [
    "ALL_METRICS",
    "BOOTSTRAP_CELLS",
    "BOOTSTRAP_METRICS",
    "DEFAULT_BOOT_SEED",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_N_BOOT",
    "FOLD_IN_METRICS",
    "SCORE_BLOCK_BYTES",
    "EvaluationResult",
    "MeanInterval",
    "PairedDifference",
    "check_trained_on",
    "compare",
    "error_bars",
    "evaluate",
    "evaluate_trained_model",
    "flat_metrics",
    "mean_interval",
    "paired_difference",
    "require_test_users",
]

#: every metric ``evaluate`` can report, in report order
ALL_METRICS = (*PER_USER_METRICS, "coverage", "popularity_rank")
#: the metrics that are a mean over users of one value per user, so can be bootstrapped
BOOTSTRAP_METRICS = (*PER_USER_METRICS, "popularity_rank")
#: reported by default next to the @k metrics under ``protocol="fold_in"``
FOLD_IN_METRICS = ("recall@20", "recall@50", "ndcg@100")
#: target bytes of one chunk's float32 score block (twice that if a model returns float64).
#: Larger blocks make the matrix product more efficient; 50k items gives about 1000 users.
SCORE_BLOCK_BYTES = 192 * 2**20
_MAX_CHUNK = 4096
#: resampled user indices drawn at once by the bootstrap (int64: 8 MiB); the chunking depends
#: only on the number of users, so a seed gives the same resamples whatever is resampled
BOOTSTRAP_CELLS = 2**20
#: the defaults of every interval: confidence, bootstrap resamples, seed
DEFAULT_CONFIDENCE = 0.95
DEFAULT_N_BOOT = 2000
DEFAULT_BOOT_SEED = 0


# ---------------------------------------------------------------------- the bootstrap
def _check_interval_args(confidence, n_boot, seed) -> tuple[float, int, int]:
    confidence = check_float(
        confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True
    )
    n_boot = check_int(n_boot, "n_boot", low=1, high=10**7)
    seed = check_int(seed, "bootstrap seed", low=0)
    return confidence, n_boot, seed


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, m)`` means of ``values`` (``(n, m)``: one row per user) over resamples of
    the ``n`` users with replacement, drawn from ``numpy.random.default_rng(seed)``.

    The resampled user indices are drawn in chunks of ``BOOTSTRAP_CELLS // n`` resamples, a
    function of ``n`` only: for a given number of users and seed, every column (and every call,
    whatever ``m``) sees the same resamples."""
    values = np.asarray(values, dtype=np.float64)
    n, m = values.shape
    if n == 0:
        raise NoResultError("no evaluated user to resample: the bootstrap needs at least one")
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, m))
    step = max(1, BOOTSTRAP_CELLS // n)
    for start in range(0, n_boot, step):
        size = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        for j in range(m):  # one column at a time: the same sums whatever m is
            means[start : start + size, j] = values[idx, j].mean(axis=1)
    return means


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the bootstrap
    means (numpy's default linear interpolation), per column."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return low, high


def _column(result: EvaluationResult, metric: str) -> str:
    """The per-user column of ``result`` that holds ``metric`` (``"ndcg"`` means ``ndcg@k``);
    a clear error for an unknown metric, one that is not per user, or one not evaluated."""
    name, at, cut = str(metric).partition("@")
    if name not in ALL_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(BOOTSTRAP_METRICS)}")
    if name not in BOOTSTRAP_METRICS:
        raise ValueError(
            f"{metric} is one figure for the union of all the users' lists, not a mean of "
            "per-user values, so it has no per-user bootstrap; the per-user metrics are "
            f"{list(BOOTSTRAP_METRICS)}"
        )
    column = f"{name}@{cut if at else result.k}"
    if column not in result.per_user.columns:
        measured = [c for c in result.per_user.columns if c.partition("@")[0] in ALL_METRICS]
        raise ValueError(f"{column} was not evaluated; this result has {measured}")
    return column


@dataclass(frozen=True)
class MeanInterval:
    """A metric's mean over evaluated users with its bootstrap percentile interval
    (:func:`mean_interval`)."""

    metric: str
    mean: float
    low: float
    high: float
    n_users: int
    confidence: float
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.metric} {self.mean:.4f} [{100 * self.confidence:g}% CI {self.low:.4f}, "
            f"{self.high:.4f}] over {self.n_users} users"
        )


@dataclass(frozen=True)
class PairedDifference:
    """``mean(a - b)`` of a per-user metric over the users two results share, with its paired
    bootstrap percentile interval and two-sided bootstrap p-value (:func:`paired_difference`).

    ``n_users``: users evaluated by both (the pairs resampled); ``n_unmatched``: users
    evaluated by only one of the two, left out."""

    metric: str
    difference: float
    low: float
    high: float
    p_value: float
    n_users: int
    n_unmatched: int
    confidence: float
    n_boot: int
    seed: int

    def excludes(self, value: float = 0.0) -> bool:
        """True when the whole interval lies above ``value`` (a lift larger than it)."""
        return self.low > value

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        floor = 2 / (self.n_boot + 1)  # the smallest p the bootstrap can give
        p = f"p <= {floor:.2g}" if self.p_value <= floor else f"p = {self.p_value:.3g}"
        return (
            f"{self.metric} difference {self.difference:.4f} [{100 * self.confidence:g}% CI "
            f"{self.low:.4f}, {self.high:.4f}], {p}, {self.n_users} users"
        )


def mean_interval(
    result: EvaluationResult,
    metric: str = "ndcg@10",
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_BOOT_SEED,
) -> MeanInterval:
    """The mean of a per-user ``metric`` over ``result``'s users, with a seeded bootstrap
    percentile interval at ``confidence`` (see the module docstring). ``metric`` names a
    column of ``result.per_user`` (``"ndcg@10"``; a bare ``"ndcg"`` means ``ndcg@<k>``)."""
    confidence, n_boot, seed = _check_interval_args(confidence, n_boot, seed)
    column = _column(result, metric)
    values = result.per_user[column].to_numpy(dtype=np.float64)
    low, high = _percentile_interval(_bootstrap_means(values[:, None], n_boot, seed), confidence)
    return MeanInterval(
        column,
        float(np.mean(values)),
        float(low[0]),
        float(high[0]),
        len(values),
        confidence,
        n_boot,
        seed,
    )


def paired_difference(
    result_a: EvaluationResult,
    result_b: EvaluationResult,
    metric: str = "ndcg@10",
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_BOOT_SEED,
) -> PairedDifference:
    """How much better ``result_a`` is than ``result_b`` on a per-user ``metric``: a seeded
    paired bootstrap over the users both evaluated.

    Users are matched by external ``user_id`` (ValueError when the two share none; the number
    matched is ``n_users``, those left out ``n_unmatched``), in ``result_a``'s order. With
    ``d_u = a_u - b_u`` for each matched user:

    - ``difference`` = mean of ``d_u``;
    - ``low``, ``high``: the percentile interval at ``confidence`` of the means of ``n_boot``
      resamples of the ``d_u`` (users drawn with replacement, ``default_rng(seed)``);
    - ``p_value``, two-sided: ``min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (n_boot +
      1))`` over the bootstrap means ``d*``. It is the smallest ``1 - confidence`` at which
      the percentile interval would no longer cover 0 (so ``p < 1 - confidence`` when the
      interval excludes 0, up to the quantile interpolation), with the usual ``+1`` so that a
      finite bootstrap never reports 0: its floor is ``2 / (n_boot + 1)``.

    A result against itself gives ``difference = low = high = 0`` and ``p_value = 1``.
    """
    confidence, n_boot, seed = _check_interval_args(confidence, n_boot, seed)
    column = _column(result_a, metric)
    if _column(result_b, metric) != column:
        raise ValueError(
            f"{metric!r} means {column} in the first result (k={result_a.k}) but "
            f"{_column(result_b, metric)} in the second (k={result_b.k}): name the cut-off"
        )
    a = result_a.per_user[["user_id", column]]
    b = result_b.per_user[["user_id", column]]
    pairs = a.merge(b, on="user_id", how="inner", suffixes=("_a", "_b"), validate="one_to_one")
    n_unmatched = len(a) + len(b) - 2 * len(pairs)
    if pairs.empty:
        raise ValueError(
            f"the two results share no evaluated user ({len(a)} and {len(b)} users): a paired "
            "comparison needs the same users, e.g. both models evaluated on one test split"
        )
    d = pairs[f"{column}_a"].to_numpy(np.float64) - pairs[f"{column}_b"].to_numpy(np.float64)
    means = _bootstrap_means(d[:, None], n_boot, seed)[:, 0]
    low, high = _percentile_interval(means[:, None], confidence)
    below, above = np.count_nonzero(means <= 0), np.count_nonzero(means >= 0)
    p_value = min(1.0, 2.0 * (1 + min(below, above)) / (n_boot + 1))
    return PairedDifference(
        column,
        float(np.mean(d)),
        float(low[0]),
        float(high[0]),
        float(p_value),
        len(d),
        n_unmatched,
        confidence,
        n_boot,
        seed,
    )


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    ``metrics`` maps ``"<name>@<cut-off>"`` to the mean over evaluated users (coverage: over
    the union of their lists). ``per_user`` has one row per evaluated user: ``user_id``
    (external), ``history`` (number of distinct items the model ranked from: training items,
    or fold-in items under ``protocol="fold_in"``), ``n_test``, ``n_cold`` (test items with no
    training data) and one column per per-user metric. ``recommended`` holds each evaluated
    user's top-K item indices, K the largest cut-off (rows as in ``per_user``; -1 pads short
    lists). ``k`` is the cut-off of the bare metric names.
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
    protocol: str = "standard"

    def by_history(
        self,
        buckets: Sequence[int] | None = None,
        confidence: float | None = None,
        n_boot: int = DEFAULT_N_BOOT,
        seed: int = DEFAULT_BOOT_SEED,
    ) -> pd.DataFrame:
        """Metric means by history length (training items; fold-in items under the fold-in
        protocol).

        ``buckets=(5, 20)`` gives the groups 1-5, 6-20 and 21+ items (a group "0" comes first
        when some evaluated users have no training items, e.g. after a global time cut-off).
        Columns: ``n_users`` and each metric (coverage within the group's lists); with a
        ``confidence``, each per-user metric is followed by ``<metric>_low`` and
        ``<metric>_high``, its bootstrap interval over the group's users (as
        :func:`mean_interval`). Groups without users are omitted.
        """
        edges = _check_buckets(self.buckets if buckets is None else buckets)
        if confidence is not None:
            confidence, n_boot, seed = _check_interval_args(confidence, n_boot, seed)
        history = self.per_user["history"].to_numpy()
        bounds = [(0, 0), *zip([1, *[e + 1 for e in edges]], [*edges, None], strict=True)]
        rows = []
        for lo, hi in bounds:
            mask = (history >= lo) & (history <= (np.inf if hi is None else hi))
            if not mask.any():
                continue
            label = str(lo) if hi == lo else (f"{lo}+" if hi is None else f"{lo}-{hi}")
            group = self.per_user.loc[mask]
            group_intervals = (
                None if confidence is None else _intervals(group, confidence, n_boot, seed)
            )
            row = {"history": label, "n_users": int(mask.sum())}
            for name in self.metrics:
                if name.startswith("coverage@"):
                    cut = int(name.partition("@")[2])
                    row[name] = coverage_at_k(self.recommended[mask, :cut], self.n_items)
                    continue
                row[name] = float(group[name].mean())
                if group_intervals is not None:
                    row[f"{name}_low"], row[f"{name}_high"] = group_intervals.loc[
                        name, ["low", "high"]
                    ]
            rows.append(row)
        return pd.DataFrame(rows).set_index("history")

    def intervals(
        self,
        confidence: float = DEFAULT_CONFIDENCE,
        n_boot: int = DEFAULT_N_BOOT,
        seed: int = DEFAULT_BOOT_SEED,
    ) -> pd.DataFrame:
        """Every per-user metric's mean with its bootstrap interval: one row per metric,
        columns ``mean``, ``low``, ``high``. All metrics share the same resamples of users, and
        each row equals :func:`mean_interval` of that metric with the same arguments."""
        confidence, n_boot, seed = _check_interval_args(confidence, n_boot, seed)
        return _intervals(self.per_user, confidence, n_boot, seed)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (no per-user rows), for run records."""
        return {
            "k": self.k,
            "protocol": self.protocol,
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
            f"EvaluationResult({self.protocol} protocol, {self.n_users} users, "
            f"{self.n_items} items, {self.n_cold_items} cold test items: {figures})"
        )


def _metric_columns(per_user: pd.DataFrame) -> list[str]:
    return [c for c in per_user.columns if c.partition("@")[0] in BOOTSTRAP_METRICS]


def _intervals(per_user: pd.DataFrame, confidence: float, n_boot: int, seed: int) -> pd.DataFrame:
    """``mean``/``low``/``high`` of every per-user metric column of ``per_user`` (NaN when it
    has no row)."""
    columns = _metric_columns(per_user)
    values = per_user[columns].to_numpy(dtype=np.float64)
    table = pd.DataFrame(index=pd.Index(columns, name="metric"), columns=["mean", "low", "high"])
    if len(values) == 0:
        return table.astype(float)
    low, high = _percentile_interval(_bootstrap_means(values, n_boot, seed), confidence)
    table["mean"], table["low"], table["high"] = values.mean(axis=0), low, high
    return table.astype(float)


def _check_buckets(buckets: Sequence[int]) -> list[int]:
    edges = [check_int(e, "each history bucket edge", low=1) for e in buckets]
    if any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"buckets must be increasing positive integers, got {buckets!r}")
    return edges


def _check_metrics(
    metrics: Iterable[str] | None, k: int, protocol: str = "standard"
) -> list[tuple[str, int]]:
    """``(name, cut-off)`` pairs, in the order given, without repeats: a name's ``"@j"``
    suffix is its cut-off, a bare name is measured at ``k``. By default every metric at ``k``,
    and :data:`FOLD_IN_METRICS` too under the fold-in protocol."""
    if metrics is None:
        metrics = [*ALL_METRICS, *(FOLD_IN_METRICS if protocol == "fold_in" else ())]
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = [str(m) for m in metrics]
    unknown = [m for m in metrics if m.partition("@")[0] not in ALL_METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
    pairs = []
    for m in metrics:
        name, at, cut = m.partition("@")
        if not at:
            pairs.append((name, k))
            continue
        try:
            value = int(cut)
        except ValueError:
            raise ValueError(
                f"metric {m!r}: the cut-off after '@' must be an integer, got {cut!r}"
            ) from None
        pairs.append((name, check_int(value, f"the cut-off of {m!r}", low=1, high=MAX_N)))
    return list(dict.fromkeys(pairs))


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


def _check_fold_in(train: Interactions, fold_in, rows: np.ndarray) -> Interactions:
    """``fold_in`` as Interactions in train's id space; the evaluated ``rows`` must have a
    fold-in history and no training cell (else the model has seen them)."""
    if fold_in is None:
        raise ValueError(
            "protocol 'fold_in' needs fold_in=: the held-out users' histories (the fold_in part "
            "of alsresearch.split.user_holdout, or SplitSpec.parts(data).fold_in)"
        )
    fold_in = coerce_interactions(fold_in)
    if not train.same_id_space(fold_in):
        raise ValueError(
            f"fold_in ({fold_in.n_users} users x {fold_in.n_items} items) is not in train's id "
            f"space ({train.n_users} x {train.n_items}): take both from one user_holdout"
        )
    trained = rows[np.diff(train.matrix.indptr)[rows] > 0]
    if len(trained):
        raise ValueError(
            f"protocol 'fold_in': {len(trained)} evaluated users have training cells (e.g. user "
            f"{train.user_ids[trained[0]].tolist()!r}); held-out users must be absent from "
            "train (split with alsresearch.split.user_holdout)"
        )
    empty = rows[np.diff(fold_in.matrix.indptr)[rows] == 0]
    if len(empty):
        raise ValueError(
            f"protocol 'fold_in': {len(empty)} evaluated users have test cells but no fold-in "
            f"history to rank from (e.g. user {train.user_ids[empty[0]].tolist()!r})"
        )
    return fold_in


def _fold_in_topk(model, history, block: np.ndarray, n: int) -> np.ndarray:
    """Top-``n`` item indices of each user row in ``block`` ranked from that row of
    ``history`` (CSR counts) by ``model.history_scores``, the history's items excluded: what
    ``recommend_for_history`` returns, for a block of users at once."""
    n_items = history.shape[1]
    scores = np.empty((len(block), n_items), dtype=np.float32)  # as recommend_for_history
    indptr, indices, counts = history.indptr, history.indices, history.data
    for r, u in enumerate(block):
        lo, hi = indptr[u], indptr[u + 1]
        row = np.asarray(
            model.history_scores(indices[lo:hi].astype(np.int64), counts[lo:hi].astype(np.float64))
        )
        if row.shape != (n_items,):
            raise ValueError(
                f"{type(model).__name__}.history_scores returned shape {row.shape}, expected "
                f"({n_items},)"
            )
        scores[r] = row
    top, _ = topk(scores, min(n, n_items), history, block, inplace=True)
    return top


def evaluate(
    model,
    train,
    test,
    k: int = 10,
    metrics: Iterable[str] | None = None,
    users=None,
    buckets: Sequence[int] = (5, 20),
    chunk_size: int | None = None,
    *,
    protocol: str = "standard",
    fold_in=None,
) -> EvaluationResult:
    """Top-``k`` metrics of a fitted ``model`` on ``test``, with ``train`` items excluded (or,
    under ``protocol="fold_in"``, held-out users ranked from their ``fold_in`` histories).

    Parameters
    ----------
    model:
        Any fitted :class:`~alsresearch.base.Recommender` (fitted on ``train``).
    train, test:
        :class:`~alsresearch.data.Interactions` in the same id space (from
        :mod:`alsresearch.split`); scipy sparse matrices are accepted too.
    k:
        List length of the bare metric names (1..100000).
    metrics:
        Names from :data:`ALL_METRICS` (``"ndcg"``, ``"hit_rate"``, ``"precision"``,
        ``"recall"``, ``"map"``, ``"mrr"``, ``"coverage"``, ``"popularity_rank"``), each
        measured at ``k``, or with its own cut-off: ``"recall@50"``. Default: all of them at
        ``k``, plus :data:`FOLD_IN_METRICS` under the fold-in protocol.
    users:
        External user ids to restrict the evaluation to (unknown ids raise UnknownIdError);
        of these, users without test items are skipped. Default: every user with a test item.
    buckets:
        Default history groups for :meth:`EvaluationResult.by_history`.
    chunk_size:
        Users scored per block; by default a float32 block is at most :data:`SCORE_BLOCK_BYTES`.
    protocol:
        ``"standard"`` (every evaluated user trained; their train items are excluded) or
        ``"fold_in"`` (evaluated users are absent from ``train``; each is ranked through
        ``history_scores`` from their ``fold_in`` row, which is excluded). Nothing is refitted.
    fold_in:
        Under ``protocol="fold_in"``: the held-out users' histories, in train's id space (from
        :func:`~alsresearch.split.user_holdout`); not allowed otherwise.
    """
    k = validate_n(k)
    protocol = check_choice(protocol, "protocol", PROTOCOLS)
    wanted = _check_metrics(metrics, k, protocol)
    depth = max(cut for _, cut in wanted)
    buckets = tuple(_check_buckets(buckets))
    train, test = coerce_interactions(train), coerce_interactions(test)
    _check_id_spaces(model, train, test)
    if protocol == "standard" and fold_in is not None:
        raise ValueError("fold_in is only used by protocol='fold_in'")
    n_items = train.n_items

    n_test = np.diff(test.matrix.indptr)
    rows = np.flatnonzero(n_test > 0)
    if users is not None:
        wanted_users = np.unique(train.user_index(list(np.atleast_1d(users))))
        rows = np.intersect1d(rows, wanted_users)
    if protocol == "fold_in":
        fold_in = _check_fold_in(train, fold_in, rows)
        history_matrix = fold_in.matrix
    else:
        history_matrix = train.matrix
    if chunk_size is None:
        chunk_size = max(1, min(_MAX_CHUNK, SCORE_BLOCK_BYTES // (4 * n_items)))
    else:
        chunk_size = check_int(chunk_size, "chunk_size", low=1)

    cuts = sorted({cut for _, cut in wanted})
    per_user_at = {c: [n for n, cut in wanted if cut == c and n in PER_USER_METRICS] for c in cuts}
    rank_cuts = [c for c in cuts if ("popularity_rank", c) in wanted]
    ranks = popularity_ranks(train.matrix) if rank_cuts else None
    recommended = np.empty((len(rows), depth), dtype=np.int32 if n_items < 2**31 else np.int64)
    columns: dict[str, np.ndarray] = {
        f"{n}@{c}": np.empty(len(rows))
        for n, c in wanted
        if n in PER_USER_METRICS or n == "popularity_rank"
    }

    width = min(depth, n_items)
    for start in range(0, len(rows), chunk_size):
        block = rows[start : start + chunk_size]
        if protocol == "fold_in":
            top = _fold_in_topk(model, history_matrix, block, depth)
        else:
            top, _ = model.topk_rows(block, depth, exclude=train.matrix)  # <= n_items columns
        if top.shape != (len(block), width):
            raise ValueError(
                f"{type(model).__name__}.topk_rows returned shape {top.shape}, "
                f"expected {(len(block), width)}"
            )
        idx = np.full((len(block), depth), -1, dtype=np.int64)
        idx[:, :width] = top
        out = slice(start, start + len(block))
        recommended[out] = idx
        relevant = test.matrix[block]
        for cut, names in per_user_at.items():
            if names:
                for name, values in per_user_metrics(idx[:, :cut], relevant, names).items():
                    columns[f"{name}@{cut}"][out] = values
        for cut in rank_cuts:
            columns[f"popularity_rank@{cut}"][out] = popularity_rank_at_k(idx[:, :cut], ranks)

    history = np.diff(history_matrix.indptr)[rows]
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
            **columns,
        }
    )
    summary: dict[str, float] = {}
    for name, cut in wanted:
        key = f"{name}@{cut}"
        if not len(rows):
            summary[key] = float("nan")
        elif name == "coverage":
            summary[key] = coverage_at_k(recommended[:, :cut], n_items)
        else:
            summary[key] = float(np.mean(columns[key]))
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
        protocol=protocol,
    )


def compare(
    models: dict,
    train: Interactions,
    test: Interactions,
    k: int = 10,
    *,
    metrics: Iterable[str] | None = None,
    protocol: str = "standard",
    fold_in=None,
    confidence: float | None = DEFAULT_CONFIDENCE,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_BOOT_SEED,
):
    """Evaluate fitted models on one split: ``(table, results)``.

    ``table`` has one row per model and one column per metric, each per-user metric followed
    by ``<metric>_low`` and ``<metric>_high``: its bootstrap percentile interval at
    ``confidence`` (:meth:`EvaluationResult.intervals`; ``confidence=None`` leaves them out).
    ``results`` maps each name to its :class:`EvaluationResult` (for per-user and by-history
    views, and :func:`paired_difference`). ``metrics``, ``protocol`` and ``fold_in`` go to
    :func:`evaluate`.
    """
    if confidence is not None:
        confidence, n_boot, seed = _check_interval_args(confidence, n_boot, seed)
    results = {
        name: evaluate(model, train, test, k=k, metrics=metrics, protocol=protocol, fold_in=fold_in)
        for name, model in models.items()
    }
    rows = {}
    for name, result in results.items():
        bounds = None if confidence is None else result.intervals(confidence, n_boot, seed)
        row: dict[str, float] = {}
        for metric, value in result.metrics.items():
            row[metric] = value
            if bounds is not None and metric in bounds.index:
                row[f"{metric}_low"] = bounds.loc[metric, "low"]
                row[f"{metric}_high"] = bounds.loc[metric, "high"]
        rows[name] = row
    table = pd.DataFrame(rows).T
    table.index.name = "model"
    return table, results


def error_bars(table: pd.DataFrame, metric: str) -> np.ndarray:
    """``(2, rows)``: how far each row's ``metric`` lies above its ``<metric>_low`` and below
    its ``<metric>_high`` column (a :func:`compare` or ``by_history(confidence=...)`` table),
    as matplotlib's ``yerr`` takes them."""
    missing = [c for c in (metric, f"{metric}_low", f"{metric}_high") if c not in table.columns]
    if missing:
        raise ValueError(f"the table has no {missing} column(s): was it made with a confidence?")
    value = table[metric].to_numpy(dtype=np.float64)
    low = table[f"{metric}_low"].to_numpy(dtype=np.float64)
    high = table[f"{metric}_high"].to_numpy(dtype=np.float64)
    return np.vstack([value - low, high - value])


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
    popularity fitted on the same training part: ``(table, data, train, test)`` (the table
    with the bootstrap interval columns of :func:`compare`; under the fold-in protocol, the
    held-out users ranked from their fold-in histories).

    Refuses (ValueError / :class:`~alsresearch.errors.SpecMismatchError`, naming what
    differs) a split that holds nothing out or leaves no test user, a model whose ``training`` record names another
    data spec or split, and a model not fitted on exactly this training part.
    """
    if not split.holds_out:
        raise ValueError("a split with test_fraction 0 leaves no test set to evaluate on")
    check_training(model.training, source, split, f"{what}: the model was trained on")
    data = source.load()
    parts = split.parts(data)
    train, test = parts.train, parts.test
    check_trained_on(model, train, what)
    require_test_users(test, f"the test part of {split}")
    popularity = PopularityModel().fit(train)
    table, _ = compare(
        {model.model_type: model, "popularity": popularity},
        train,
        test,
        k=k,
        protocol=parts.protocol,
        fold_in=parts.fold_in,
    )
    return table, data, train, test
