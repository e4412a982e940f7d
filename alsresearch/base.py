"""The protocol every model shares, and the model file format.

Every model (ALS, popularity, random) is a :class:`Recommender`: ``fit``, ``recommend``,
``recommend_batch``, ``recommend_for_history``, ``save``/``load`` and ``score_rows`` (a block of
users' scores over the whole catalogue, in the model's internal row order). Evaluation, tuning,
export and serving use only this protocol, never ``isinstance`` branches.

A subclass implements:

- the abstract hooks ``fit``, ``score_rows``, ``history_scores`` (fold-in for a new user),
  ``get_config`` (JSON-serialisable hyperparameters, passed back to ``__init__``),
  ``get_state`` and ``set_state`` (learned arrays);
- optionally ``rank_rows``, a faster top-k than scoring every item (ALS screens them);
- a class attribute ``model_type`` registered in :data:`MODEL_TYPES`.

Model files are a single ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp

from alsresearch.checks import check_int
from alsresearch.data import IdLookup, Interactions, checked_ids
from alsresearch.errors import ModelFileError, NotFittedError
from alsresearch.files import atomic_write, to_jsonable
from alsresearch.limits import MAX_TOP_N
from alsresearch.topk import topk

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODEL_TYPES",
    "Recommender",
    "load_model",
    "model_class",
    "validate_n",
]

FORMAT_NAME = "alsresearch-model"
FORMAT_VERSION = 1
#: the longest list the library ranks (:data:`alsresearch.limits.MAX_TOP_N`): larger than the
#: service's ``limits.MAX_N`` (1000), because offline studies (recall@k at large k) want long
#: lists and the caller owns the machine, while the service answers anyone on the network
MAX_N = MAX_TOP_N
SCORE_CHUNK = 2048
#: at most this many bytes of scores per chunk of users scored at once (a factor model
#: computes float64 dot products and keeps float32: 12 bytes a score), so a large catalogue
#: takes fewer users a chunk instead of more memory
SCORE_CHUNK_BYTES = 64 * 2**20


def score_chunk(n_items: int) -> int:
    """Users per chunk of :meth:`Recommender.score_rows` calls: ``SCORE_CHUNK``, fewer where
    their scores would pass ``SCORE_CHUNK_BYTES``."""
    return max(1, min(SCORE_CHUNK, SCORE_CHUNK_BYTES // (12 * max(n_items, 1))))


#: model_type -> "module:Class"; load_model dispatches on the type stored in the file.
MODEL_TYPES = {
    "als": "alsresearch.als:ALSModel",
    "popularity": "alsresearch.baselines:PopularityModel",
    "random": "alsresearch.baselines:RandomModel",
    "ease": "alsresearch.baselines:EASEModel",
    "spark_als": "alsresearch.spark:SparkALSModel",  # pyspark imported only to fit
}


def validate_n(n, n_max: int = MAX_N) -> int:
    """``n`` as an int in 1..n_max, else a ValueError naming the problem."""
    return check_int(n, "n", low=1, high=n_max)


class Recommender(ABC):
    """Base class: id maps, seen items, top-N and the model file, shared by every model.

    ``training``: what the model was fitted on, as recorded by whoever fitted it (e.g.
    ``{"data": DataSource.to_dict(), "split": SplitSpec.to_dict(), "part": "train"}``), or
    None. It is saved in the model file and read back, so a model can be checked against the
    data and split it is scored on.
    """

    model_type: ClassVar[str] = ""

    user_ids: np.ndarray
    item_ids: np.ndarray
    seen: sp.csr_matrix
    training: dict[str, Any] | None = None

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def fit(self, X, **kwargs) -> Self:
        """Learn from an Interactions (or scipy sparse counts), then call
        ``self._set_training_data(interactions)``; return self."""

    @abstractmethod
    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores of users ``rows`` (internal indices) for every item: ``(len(rows), n_items)``."""

    @abstractmethod
    def history_scores(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Scores of every item, ``(n_items,)``, for a user not in training who has the items
        ``item_idx`` with counts ``weights`` (fold-in)."""

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """The hyperparameters, JSON-serialisable, accepted back by ``__init__``."""

    @abstractmethod
    def get_state(self) -> dict[str, np.ndarray]:
        """The learned arrays, saved in the model file as they are."""

    @abstractmethod
    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state`'s arrays (after the training data is set); raise
        ValueError when they do not fit it."""

    # ------------------------------------------------------------------ training data
    def _set_training_data(self, interactions: Interactions) -> None:
        """Remember the id maps and which items each user has (excluded from top-N); a refit
        forgets the previous ``training`` record."""
        seen = interactions.matrix.copy()
        seen.data = np.ones_like(seen.data, dtype=np.float32)
        seen = sp.csr_matrix(seen, dtype=np.float32)
        self._set_seen(interactions.user_ids, interactions.item_ids, seen)

    def _set_seen(self, user_ids: np.ndarray, item_ids: np.ndarray, seen: sp.csr_matrix) -> None:
        """:meth:`_set_training_data` from checked parts, kept as they are (no copies): ids as
        :class:`Interactions` holds them, ``seen`` a canonical float32 CSR of ones. The id
        lookups are built on the first lookup (:class:`~alsresearch.data.IdLookup`)."""
        self.training = None
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.seen = seen
        self._user_lookup = IdLookup(user_ids, "user")
        self._item_lookup = IdLookup(item_ids, "item")

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "seen")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return self.seen.shape[0]

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self.seen.shape[1]

    def user_index(self, users, missing="raise") -> np.ndarray:
        self._check_fitted()
        return self._user_lookup.index(users, missing)

    def item_index(self, items, missing="raise") -> np.ndarray:
        self._check_fitted()
        return self._item_lookup.index(items, missing)

    def knows_user(self, user) -> bool:
        return bool(self.user_index([user], missing="ignore")[0] >= 0)

    # ------------------------------------------------------------------ top-N
    def _exclusions(self, exclude_seen: bool, exclude: sp.csr_matrix | None):
        """The matrix whose rows list the items each user must not get, or None."""
        if exclude is None:
            return self.seen if exclude_seen else None
        if not isinstance(exclude, sp.csr_matrix):  # keep the caller's object: scipy caches
            exclude = sp.csr_matrix(exclude)  # has_sorted_indices on it, checked every call
        if exclude.shape != self.seen.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, the model {self.seen.shape}")
        return exclude

    def topk_rows(
        self,
        rows: np.ndarray,
        n: int,
        exclude_seen: bool = True,
        exclude: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item indices and scores for internal user rows, in chunks of users.

        ``exclude`` (users x items, the model's shape) replaces the model's own seen items as
        the items each user must not get (the evaluator passes the train split).
        Returns ``(idx, scores)`` of shape ``(len(rows), n)``; -1 / -inf pad users with fewer
        than ``n`` unseen items.
        """
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        n = min(validate_n(n), self.n_items)
        return self.rank_rows(rows, n, self._exclusions(exclude_seen, exclude))

    def rank_rows(
        self, rows: np.ndarray, n: int, mask: sp.csr_matrix | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`topk_rows` with checked arguments (``mask``: the items to exclude, or None):
        by default ``score_rows`` on chunks of users and the shared top-k kernel; a model with
        a faster way overrides this hook."""
        idx = np.empty((len(rows), n), dtype=np.int64)
        val = np.empty((len(rows), n), dtype=np.float32)
        step = score_chunk(self.n_items)
        for start in range(0, len(rows), step):
            block = rows[start : start + step]
            scores = np.ascontiguousarray(self.score_rows(block))  # ranked in its own dtype
            i, v = topk(scores, n, mask, block, inplace=True)
            idx[start : start + len(block)] = i
            val[start : start + len(block)] = v
        return idx, val

    def _to_external(self, idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = idx >= 0
        return self.item_ids[idx[keep]], val[keep]

    def recommend(
        self,
        user,
        n: int = 10,
        exclude_seen: bool = True,
        items=None,
        exclude=None,
        unknown: Literal["raise", "ignore"] = "raise",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (item ids, scores) for a known user, best first; raises UnknownIdError.

        Candidate filters, by external item id: ``items`` restricts the ranking to an allow
        list (scored directly, never a scan of the catalogue), ``exclude`` adds a deny list on
        top of the seen items. Ids the model does not know in either are an UnknownIdError, or
        dropped with ``unknown="ignore"``. Fewer than ``n`` items when the filters leave fewer.

        One ranking rule on every path (``recommend``, ``recommend_batch``, ``topk_rows``,
        ``recommend_for_history``, :func:`~alsresearch.evaluate.evaluate`, the service): items
        are ordered by their float32 score, highest first, and equal scores by the lower item
        index (the order of the catalogue, ``item_ids``). A factor model's score is the float64
        dot product of its factors rounded to float32, whichever way it is computed, so the
        same user gets the same list from every path."""
        return self.recommend_batch([user], n, exclude_seen, items, exclude, unknown)[0]

    def recommend_batch(
        self,
        users,
        n: int = 10,
        exclude_seen: bool = True,
        items=None,
        exclude=None,
        unknown: Literal["raise", "ignore"] = "raise",
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``recommend`` for many known users at once, in the order given (duplicates allowed),
        the same filters for all."""
        rows = self.user_index(list(users))
        idx, val = self.filtered_topk_rows(rows, n, exclude_seen, items, exclude, unknown)
        return [self._to_external(i, v) for i, v in zip(idx, val, strict=True)]

    def filtered_topk_rows(
        self,
        rows: np.ndarray,
        n: int,
        exclude_seen: bool = True,
        items=None,
        exclude=None,
        unknown: Literal["raise", "ignore"] = "raise",
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`topk_rows` with :meth:`recommend`'s candidate filters (external item ids)."""
        self._check_fitted()
        if unknown not in ("raise", "ignore"):
            raise ValueError(f"unknown must be 'raise' or 'ignore', got {unknown!r}")
        rows = np.asarray(rows, dtype=np.int64)
        n = min(validate_n(n), self.n_items)
        if items is None and exclude is None:
            return self.topk_rows(rows, n, exclude_seen)
        deny = np.zeros(0, np.int64) if exclude is None else self._filter_ids(exclude, unknown)
        if items is None:  # the deny list on top of the seen items, through rank_rows
            mask = _row_mask(self.seen, rows, exclude_seen, deny, np.arange(self.n_items))
            mask = mask.tocoo()  # its rows placed at the users' rows, as rank_rows reads it
            spread = sp.csr_matrix(
                (mask.data, (rows[mask.row], mask.col)), shape=(self.n_users, self.n_items)
            )
            return self.rank_rows(rows, n, spread)
        allow = np.unique(self._filter_ids(items, unknown))  # sorted: ties go by catalogue index
        idx = np.full((len(rows), n), -1, dtype=np.int64)
        val = np.full((len(rows), n), -np.inf, dtype=np.float32)
        if len(allow):
            scores = np.ascontiguousarray(self.score_items(rows, allow), dtype=np.float32)
            mask = _row_mask(self.seen, rows, exclude_seen, deny, allow)
            m = min(n, len(allow))
            i, v = topk(scores, m, mask, np.arange(len(rows)), inplace=True)
            idx[:, :m] = np.where(i >= 0, allow[np.maximum(i, 0)], -1)
            val[:, :m] = v
        return idx, val

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of users ``rows`` for the item indices ``items`` only (``len(rows) x
        len(items)``): by default columns of :meth:`score_rows`; a model that can score a few
        items without the whole catalogue overrides this."""
        return self.score_rows(rows)[:, items]

    def _filter_ids(self, ids, unknown: str) -> np.ndarray:
        if isinstance(ids, str) or not hasattr(ids, "__len__"):
            raise TypeError(f"item filters must be lists of item ids, got {ids!r}")
        idx = np.asarray(self.item_index(list(ids), missing=unknown), dtype=np.int64)
        return idx[idx >= 0]

    def recommend_for_history(
        self, items, weights=None, n: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` for an anonymous user who has ``items`` (external ids, with optional
        counts ``weights``); the given items are excluded. Unknown items raise UnknownIdError."""
        self._check_fitted()
        n = min(validate_n(n), self.n_items)
        items = list(items)
        if not items:
            raise ValueError("items must name at least one item")
        item_idx = self.item_index(items)
        w = np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(items),):
            raise ValueError(f"weights must have one entry per item ({len(items)}), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and >= 0")
        # duplicates sum, as in Interactions.from_events
        uniq, inverse = np.unique(item_idx, return_inverse=True)
        w = np.bincount(inverse, weights=w).astype(np.float64)
        scores = np.asarray(self.history_scores(uniq, w), dtype=np.float32)[None, :]
        exclude = sp.csr_matrix((np.ones(len(uniq)), uniq, [0, len(uniq)]), shape=(1, self.n_items))
        idx, val = topk(scores, n, exclude, np.zeros(1, dtype=np.int64), inplace=True)
        return self._to_external(idx[0], val[0])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the model to one ``.npz`` file (atomically: a temporary file, then rename)."""
        self._check_fitted()
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT_NAME),
            "format_version": np.array(FORMAT_VERSION),
            "model_type": np.array(self.model_type),
            "config": np.array(json.dumps(self.get_config(), sort_keys=True)),
            "training": np.array(json.dumps(to_jsonable(self.training, "training"))),
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "seen_indptr": self.seen.indptr,
            "seen_indices": self.seen.indices,
        }
        for key, value in self.get_state().items():
            arrays[f"state_{key}"] = np.asarray(value)
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model file written by ``save``; the file must hold this class's model type."""
        model = load_model(path)
        if not isinstance(model, cls):
            raise ModelFileError(f"{path}: holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _row_mask(
    seen: sp.csr_matrix, rows: np.ndarray, exclude_seen: bool, deny: np.ndarray, columns
) -> sp.csr_matrix:
    """Which of ``columns`` (sorted item indices) each of ``rows`` must not get: its seen items
    (when ``exclude_seen``) and the ``deny`` list, as a ``len(rows) x len(columns)`` CSR of
    positions in ``columns`` (sorted, the form the top-k kernels read)."""
    position = np.full(seen.shape[1], -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    r_parts, c_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if exclude_seen:
        sub = seen[rows]
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        c = position[sub.indices]
        r_parts.append(r[c >= 0])
        c_parts.append(c[c >= 0])
    d = position[deny]
    d = np.unique(d[d >= 0])
    r_parts.append(np.repeat(np.arange(len(rows)), len(d)))
    c_parts.append(np.tile(d, len(rows)))
    r, c = np.concatenate(r_parts), np.concatenate(c_parts)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), len(columns)))


def model_class(model_type: str) -> type[Recommender]:
    """The class registered for ``model_type`` in :data:`MODEL_TYPES` (imported on demand)."""
    module_name, cls_name = MODEL_TYPES[model_type].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load_model(path: str | Path, *, ranking_only: bool = False) -> Recommender:
    """Load any model saved by :meth:`Recommender.save`.

    The seen items stay in the file's own index arrays (no copy of the matrix), and the id
    lookups are built on the first lookup by id. ``ranking_only``: for a job that ranks
    the known users by position (``alsresearch recommend-all``), the seen matrix's values (all
    ones) are one read-only ``1.0`` broadcast over its cells instead of an array of them, 4
    bytes a cell less; the model answers the same, but its ``seen.data`` cannot be written and
    scipy may copy it where an operation needs the values (refitting replaces it).

    A missing, truncated, foreign or wrong-version file raises :class:`ModelFileError` (or
    FileNotFoundError) naming the path and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
            if "format" not in files or str(npz["format"]) != FORMAT_NAME:
                raise ModelFileError(
                    f"{path}: not an alsresearch model file (no '{FORMAT_NAME}' marker)"
                )
            version = int(npz["format_version"])
            if version != FORMAT_VERSION:
                raise ModelFileError(
                    f"{path}: model format version {version}, this code reads version {FORMAT_VERSION}"
                )
            needed = {"model_type", "config", "user_ids", "item_ids", "seen_indptr", "seen_indices"}
            if not needed <= files:
                raise ModelFileError(f"{path}: missing entries {sorted(needed - files)}")
            model_type = str(npz["model_type"])
            config = json.loads(str(npz["config"]))
            data = {k: npz[k] for k in npz.files}
    except ModelFileError:
        raise
    except (
        zipfile.BadZipFile,
        EOFError,
        OSError,
        KeyError,
        ValueError,
        json.JSONDecodeError,
    ) as exc:
        raise ModelFileError(
            f"{path}: unreadable model file ({type(exc).__name__}: {exc})"
        ) from exc
    if model_type not in MODEL_TYPES:
        raise ModelFileError(
            f"{path}: unknown model type {model_type!r} (known: {sorted(MODEL_TYPES)})"
        )
    cls = model_class(model_type)
    try:
        model = cls(**config)
        n_users, n_items = len(data["user_ids"]), len(data["item_ids"])
        indptr, indices = data.pop("seen_indptr"), data.pop("seen_indices")
        ones = np.broadcast_to(np.float32(1), len(indices)) if ranking_only else None
        seen = sp.csr_matrix(
            (np.ones(len(indices), np.float32) if ones is None else ones, indices, indptr),
            shape=(n_users, n_items),
        )  # shares the file's index arrays
        seen.check_format(full_check=True)
        if not seen.has_canonical_format:  # as Interactions makes it: sorted, each item once
            seen = sp.csr_matrix(
                (np.ones(seen.nnz, np.float32), seen.indices, seen.indptr), seen.shape
            )
            seen.sum_duplicates()
            seen.data[:] = 1
        user_ids = checked_ids(data.pop("user_ids"), n_users, "user_ids")
        item_ids = checked_ids(data.pop("item_ids"), n_items, "item_ids")
        model._set_seen(user_ids, item_ids, seen)
        model.set_state({k[len("state_") :]: v for k, v in data.items() if k.startswith("state_")})
        if "training" in data:  # absent in files written before it was recorded
            model.training = json.loads(str(data["training"]))
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ModelFileError(
            f"{path}: inconsistent model file ({type(exc).__name__}: {exc})"
        ) from exc
    return model
