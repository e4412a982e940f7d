"""implicit 0.7's ``AlternatingLeastSquares`` on :class:`~alsresearch.als.ALSModel`.

Code written against benfred/implicit's CPU ALS runs unchanged with one import changed::

    from implicit.als import AlternatingLeastSquares                    # before
    from alsresearch.compat.implicit import AlternatingLeastSquares     # after
    model = AlternatingLeastSquares(factors=64, regularization=0.05, alpha=2.0)

The class has implicit's constructor, attributes and methods (``fit``, ``recommend``,
``similar_items``, ``similar_users``, ``recalculate_user`` / ``recalculate_item``,
``partial_fit_users`` / ``partial_fit_items``, ``save`` / ``load``) with implicit's argument
names, defaults, return shapes and input errors. Every fit, fold-in and ranking runs on one
:class:`~alsresearch.als.ALSModel` (:attr:`AlternatingLeastSquares.als_model`):

========================  ===============================================================
implicit                  ALSModel
========================  ===============================================================
``alpha``                 ``alpha`` with ``confidence="linear"``: observed cells weigh
                          ``alpha * r``, unobserved ones 1 (implicit's objective; ALSModel's
                          default ``"hkv"`` weighs observed cells ``1 + alpha * r``)
``regularization``        ``regularization`` (must be > 0 here, see below)
``use_cg``                ``solver="cg"`` (True) or ``"cholesky"`` (False)
``cg_steps`` attribute    ``cg_steps`` (default 4 with ALSModel's schedule, not
                          implicit's 3 on every row: a lower loss at a lower cost)
``factors``,              the same names
``iterations``,
``dtype``,
``num_threads``,
``random_state``
``use_native``            accepted and stored, no effect: the kernels are always compiled
``calculate_training_``   accepted; the loss is computed every iteration anyway
``loss``                  (``ALSModel.loss_history``); True passes it to ``callback``
                          and logs it, as implicit does
========================  ===============================================================

Where this class differs from implicit, on purpose:

- ``regularization`` must be > 0. implicit accepts 0; ALSModel solves every row in the
  basis where ``Y^T Y + lambda I`` is the identity, which is positive definite for any factors
  only when lambda > 0 (with lambda = 0, fewer items than factors, or factors that collapse,
  make it singular). Use a small positive value instead (e.g. 1e-6).
- ``fit`` always starts from seeded random factors (with an int ``random_state``, the same
  initial factors as implicit's); implicit continues from factors already set (a second
  ``fit``, or factors assigned before it). A warning says so when factors were set.
- Counts must be finite and >= 0: implicit's negative entries ("disliked", ``p = 0`` with
  confidence ``alpha * |r|``) are a ValueError, and stored zeros are dropped (an unobserved
  cell of weight 1; implicit gives them weight 0).
- Lists shorter than ``N`` (fewer candidate items than ``N``): implicit fills the tail with
  the filtered items at ``-FLT_MAX`` and then with item 0 at score 0 past the catalogue; here
  the tail is id -1 with score ``-FLT_MAX`` of the factors' dtype (implicit's own padding in
  its batch helpers). The ranked entries are the same.
- Ids out of range (negative ones included) are an IndexError; numpy indexing in implicit
  wraps negative ids around.
- ``recommend`` ranks by :meth:`ALSModel.topk_rows` (ties to the lower item index) when the
  ``user_items`` rows are the users' training rows and no other filter is asked for, and
  otherwise scores every item (:meth:`ALSModel.score_rows`, or :meth:`ALSModel.history_scores`
  with ``recalculate_user``) and ranks with the shared top-k kernel; implicit's own top-k
  orders tied scores its own way.
- A model saved before ``fit`` saves its hyperparameters only (as implicit does); ``load``
  gives an unfitted model. Files are implicit's ``.npz`` keys, read with
  ``allow_pickle=False``, plus the training rows' items (``seen_indptr``, ``seen_indices``),
  which implicit's ``load`` keeps as plain attributes: a file saved here loads in implicit,
  and one saved by implicit loads here.
- Not provided: ``explain``, ``to_gpu`` and the deprecated ``recommend_all`` / ``rank_items``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from alsresearch.als import ALSConfig, ALSModel
from alsresearch.base import score_chunk
from alsresearch.data import Interactions
from alsresearch.errors import ModelFileError, NotFittedError
from alsresearch.files import atomic_write
from alsresearch.topk import topk

__all__ = ["AlternatingLeastSquares", "ParameterWarning"]

log = logging.getLogger(__name__)

#: the hyperparameters implicit's ``save`` writes (and ``load`` reads back as attributes)
_SAVED_PARAMS = (
    "factors",
    "regularization",
    "alpha",
    "dtype",
    "use_native",
    "use_cg",
    "iterations",
    "calculate_training_loss",
    "num_threads",
    "random_state",
    "cg_steps",
)
#: norms below this count as this, so a zero vector has cosine 0 with everything (implicit's)
_MIN_NORM = 1e-10


class ParameterWarning(Warning):
    """A call was given an input it had to convert (implicit's ``ParameterWarning``)."""


#: CG steps of the compat class (ALSModel's schedule): from implicit's uniform start, 4 end
#: below implicit's CG loss, where ALSModel's default 3 assumes its normal start
CG_STEPS = 4


class _Engine(ALSModel):
    """The :class:`ALSModel` behind the class, with a way to take factors from outside a fit
    (``load``, assigned factors, ``partial_fit_*`` growing the catalogue), as ``load_model``
    does with a model file's arrays."""

    def adopt(
        self,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        seen: sp.csr_matrix,
        loss_history: list[float] | None = None,
    ) -> None:
        n_users, n_items = len(user_factors), len(item_factors)
        self._set_training_data(Interactions(seen, np.arange(n_users), np.arange(n_items)))
        self.set_state(
            {
                "user_factors": user_factors,
                "item_factors": item_factors,
                "loss_history": np.asarray(loss_history or [], dtype=np.float64),
            }
        )


def _empty_rows(n_rows: int, n_columns: int) -> sp.csr_matrix:
    return sp.csr_matrix((n_rows, n_columns), dtype=np.float32)


_CSR = (sp.csr_matrix, sp.csr_array)


def _is_csr(m) -> bool:
    return isinstance(m, _CSR)


def _as_csr(m, name: str) -> sp.csr_matrix:
    """``m`` as CSR; other sparse formats are converted with implicit's ParameterWarning."""
    if _is_csr(m):
        return m
    if not sp.issparse(m):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(m).__name__}")
    start = time.perf_counter()
    converted = m.tocsr()
    warnings.warn(
        f"Method expects CSR input, and was passed {type(m).__name__} instead. "
        f"Converting to CSR took {time.perf_counter() - start} seconds",
        ParameterWarning,
        stacklevel=3,
    )
    return converted


def _id_array(ids, n: int, what: str) -> np.ndarray:
    """``ids`` (one id or a sequence) as an int64 array, each in 0..n-1, else IndexError."""
    if isinstance(ids, int | np.integer) and not isinstance(ids, bool):  # one id: no reductions
        if not 0 <= ids < n:
            raise IndexError(f"{what} [{int(ids)}] are not in the model (ids 0..{n - 1})")
        return np.array([ids], dtype=np.int64)
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise ValueError(f"{what} must be integers, got {arr.dtype} values")
    arr = arr.astype(np.int64, copy=False).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)][:5].tolist()
        raise IndexError(f"{what} {bad} are not in the model (ids 0..{n - 1})")
    return arr


def _subset(ids, n: int, what: str) -> np.ndarray:
    """The ``items`` / ``users`` argument: sorted unique ids in 0..n-1."""
    arr = np.unique(np.asarray(ids).reshape(-1))
    if arr.size == 0:
        raise ValueError(f"{what} must name at least one id")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got {arr.dtype} values")
    if arr[0] < 0 or arr[-1] >= n:
        raise IndexError(f"Some ids in the {what} parameter are not in the model")
    return arr.astype(np.int64)


def _given(ids) -> bool:
    """implicit tests ``if filter_items:``; this also takes numpy arrays."""
    return ids is not None and np.size(ids) > 0


def _seed(random_state) -> int | None:
    """An int seed for :class:`ALSConfig` from implicit's ``random_state`` (None, an int, a
    numpy Generator or RandomState: a seed is drawn from those, advancing them)."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**32))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    return random_state


def _padded(idx: np.ndarray, val: np.ndarray, width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Top-k results widened to ``width`` columns, ids int32, scores in ``dtype``, and every
    missing entry (index -1) as id -1 with score ``-finfo(dtype).max``."""
    b, n = idx.shape
    if n == width and (idx[0, -1] >= 0 if b == 1 else (idx[:, -1] >= 0).all()):  # full lists
        return idx.astype(np.int32), val.astype(dtype, copy=False)
    ids = np.full((b, width), -1, dtype=np.int32)
    scores = np.full((b, width), -np.finfo(dtype).max, dtype=dtype)
    ids[:, :n] = idx
    scores[:, :n] = val
    missing = ids < 0
    if missing.any():
        scores[missing] = -np.finfo(dtype).max
    return ids, scores


class AlternatingLeastSquares:
    """implicit 0.7's CPU ``AlternatingLeastSquares`` (same constructor and methods), backed by
    :class:`~alsresearch.als.ALSModel` with ``confidence="linear"``: it minimises implicit's
    objective ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)`` with
    ``c_ui = alpha * r_ui`` on the stored cells of ``user_items`` and 1 elsewhere. See the
    module docstring for the parameter mapping and the few deliberate differences.

    Parameters
    ----------
    factors, regularization, alpha, dtype, iterations, num_threads, random_state:
        As implicit's, passed to :class:`~alsresearch.als.ALSConfig`. ``regularization`` must
        be > 0; ``random_state`` may be None, an int, or a numpy Generator / RandomState (a
        seed is drawn from those at fit).
    use_native:
        Accepted for compatibility; no effect (the kernels are always compiled).
    use_cg:
        True: ``solver="cg"`` (warm-started conjugate gradient, ``cg_steps``); False:
        ``solver="cholesky"`` (every row solved exactly).
    calculate_training_loss:
        True: pass each iteration's loss to ``fit``'s callback and log it (logger
        ``alsresearch.compat.implicit``, level INFO), normalised as implicit's is (the
        objective divided by the total confidence, ``sum alpha r + unobserved cells``).

    Attributes
    ----------
    user_factors, item_factors:
        numpy arrays ``(n_users, factors)`` and ``(n_items, factors)`` after ``fit`` (None
        before). Assigning them (both, with the same number of columns) replaces the model's.
    cg_steps:
        CG steps per row and half-sweep with ALSModel's schedule (see ALSConfig.cg_steps);
        default :data:`CG_STEPS`, one more than ALSModel's, because the compat class starts from
        implicit's uniform factors, which need it to end below implicit's CG loss.
    fit_callback:
        implicit's older way to give ``fit`` a callback (used when ``callback`` is None).
    """

    def __init__(
        self,
        factors: int = 100,
        regularization: float = 0.01,
        alpha: float = 1.0,
        dtype=np.float32,
        use_native: bool = True,
        use_cg: bool = True,
        iterations: int = 15,
        calculate_training_loss: bool = False,
        num_threads: int = 0,
        random_state=None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.dtype = np.dtype(dtype)
        self.use_native = use_native
        self.use_cg = use_cg
        self.iterations = iterations
        self.calculate_training_loss = calculate_training_loss
        self.num_threads = num_threads
        self.random_state = random_state
        self.cg_steps = CG_STEPS
        self.fit_callback: Callable | None = None
        self._model: _Engine | None = None
        self._pending: dict[str, np.ndarray] = {}  # one of the factors, assigned alone
        self._norms: dict[str, np.ndarray] = {}  # "user" / "item" -> float64 norms
        self._items_side: _Engine | None = None  # items as rows: fold-in of items
        seed = random_state if isinstance(random_state, int | np.integer) else None
        self._config(seed=seed)  # invalid hyperparameters fail here, not at fit

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in _SAVED_PARAMS if name != "cg_steps"
        )
        return f"AlternatingLeastSquares({fields})"

    def _config(self, seed: int | None) -> dict[str, Any]:
        """ALSModel's keyword arguments for the current attributes (validated)."""
        if isinstance(self.regularization, int | float | np.integer | np.floating) and not (
            self.regularization > 0
        ):
            raise ValueError(
                f"regularization must be > 0, got {self.regularization}: ALSModel solves "
                "every row in the basis where Y^T Y + lambda I is the identity, which is "
                "positive definite for any factors only when lambda > 0 (implicit accepts 0, "
                "where fewer items than factors or collapsing factors make the systems "
                "singular); use a small positive value such as 1e-6"
            )
        params = {
            "factors": self.factors,
            "iterations": self.iterations,
            "alpha": self.alpha,
            "regularization": self.regularization,
            "solver": "cg" if self.use_cg else "cholesky",
            "cg_steps": self.cg_steps,
            "initialization": "uniform",  # implicit's start: the same seed, the same factors
            "confidence": "linear",
            "dtype": self.dtype,
            "random_state": seed,
            "num_threads": self.num_threads,
        }
        ALSConfig(**params)  # raises ValueError naming the bad field
        return params

    # ------------------------------------------------------------------ factors
    @property
    def als_model(self) -> ALSModel:
        """The fitted :class:`ALSModel` behind this object (it shares its arrays): evaluate,
        save or serve it with the rest of alsresearch. Its users and items are the rows and
        columns of the training matrix, with ids 0..n-1."""
        return self._fitted()

    @property
    def user_factors(self) -> np.ndarray | None:
        if self._model is not None:
            return self._model.user_factors
        return self._pending.get("user_factors")

    @user_factors.setter
    def user_factors(self, value) -> None:
        self._assign("user_factors", value)

    @property
    def item_factors(self) -> np.ndarray | None:
        if self._model is not None:
            return self._model.item_factors
        return self._pending.get("item_factors")

    @item_factors.setter
    def item_factors(self, value) -> None:
        self._assign("item_factors", value)

    def _assign(self, name: str, value) -> None:
        """Replace one factor matrix; the model is rebuilt once both have the same columns
        (until then the other one is kept as it was)."""
        factors = {"user_factors": self.user_factors, "item_factors": self.item_factors}
        if value is None:
            raise ValueError(f"{name} must be a 2-D float array, got None")
        arr = np.asarray(value)
        if arr.ndim != 2 or arr.dtype.kind != "f":
            raise ValueError(f"{name} must be a 2-D float array, got {arr.dtype} {arr.shape}")
        factors[name] = arr
        users, items = factors["user_factors"], factors["item_factors"]
        if users is None or items is None or users.shape[1] != items.shape[1]:
            self._pending = {k: v for k, v in factors.items() if v is not None}
            self._model = None
            self._invalidate()
            return
        self.factors = users.shape[1]
        seen = None
        if self._model is not None and self._model.seen.shape == (len(users), len(items)):
            seen = self._model.seen
        self._build(users, items, seen)

    def _build(
        self,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        seen: sp.csr_matrix | None,
        loss_history: list[float] | None = None,
    ) -> None:
        """A new engine on these factors (converted to ``dtype`` when they are not)."""
        engine = _Engine(**self._config(seed=None))
        if seen is None:
            seen = _empty_rows(len(user_factors), len(item_factors))
        engine.adopt(user_factors, item_factors, seen, loss_history)
        self._model = engine
        self._pending = {}
        self._invalidate()

    def _invalidate(self) -> None:
        """Forget what was derived from the factors (norms, the item-side engine)."""
        self._norms = {}
        self._items_side = None

    def _fitted(self) -> _Engine:
        if self._model is None:
            raise NotFittedError(
                "AlternatingLeastSquares is not fitted: call fit() or load() first, or assign "
                "both user_factors and item_factors"
            )
        return self._model

    def _item_engine(self) -> _Engine:
        """An engine with items as rows and users as columns, sharing the factors: its
        ``fold_in`` solves an item against the fixed user factors."""
        if self._items_side is None:
            model = self._fitted()
            engine = _Engine(**self._config(seed=None))
            seen = _empty_rows(model.n_items, model.n_users)
            engine.adopt(model.item_factors, model.user_factors, seen)
            self._items_side = engine
        return self._items_side

    def _norm(self, side: str) -> np.ndarray:
        """Norms of the user or item factors (float64, at least ``_MIN_NORM``), cached."""
        if side not in self._norms:
            F = self._fitted().user_factors if side == "user" else self._fitted().item_factors
            norms = np.linalg.norm(F, axis=1).astype(np.float64)
            norms[norms < _MIN_NORM] = _MIN_NORM
            self._norms[side] = norms
        return self._norms[side]

    # ------------------------------------------------------------------ fit
    def fit(self, user_items, show_progress: bool = True, callback: Callable | None = None):
        """Factorise ``user_items`` (users x items, CSR; other sparse formats are converted
        with a :class:`ParameterWarning`): the stored values ``r`` get confidence
        ``alpha * r``, every other cell 1 (implicit's model).

        ``callback(iteration, seconds, loss)`` runs after every iteration, as implicit's:
        ``iteration`` counts from 0, ``seconds`` is that iteration's wall time and ``loss``
        the normalised training loss when ``calculate_training_loss``, else None; its return
        value is ignored. ``show_progress`` prints one line per iteration to stderr.
        Always starts from new seeded random factors (see the module docstring)."""
        user_items = _as_csr(user_items, "user_items")
        if self.user_factors is not None or self.item_factors is not None:
            warnings.warn(
                "fit starts from new random factors: the factors already set are not used "
                "(implicit's fit would continue from them)",
                RuntimeWarning,
                stacklevel=2,
            )
        params = self._config(seed=_seed(self.random_state))
        callback = callback or self.fit_callback
        n_users, n_items = user_items.shape
        positive = user_items.data[user_items.data > 0]
        weight = float(self.alpha) * float(positive.sum()) + n_users * n_items - positive.size
        clock = [time.perf_counter()]

        def each(iteration: int, model: ALSModel) -> None:
            now = time.perf_counter()
            loss = None
            if self.calculate_training_loss:
                loss = model.loss_history[-1] / weight
                log.info("loss %.4f", loss)
            if callback is not None:
                callback(iteration - 1, now - clock[0], loss)
            clock[0] = time.perf_counter()

        model = _Engine(**params)
        model.fit(user_items, callback=each, show_progress=show_progress)
        self._model = model
        self._pending = {}
        self._invalidate()
        if self.calculate_training_loss and model.loss_history:
            log.info("Final training loss %.4f", model.loss_history[-1] / weight)

    # ------------------------------------------------------------------ recommend
    def recommend(
        self,
        userid,
        user_items,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items=None,
        recalculate_user: bool = False,
        items=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` (item ids, scores) for one user id, or for an array of ids: 1-D arrays of
        ``N`` entries, or 2-D with one row per id. Row ``i`` of ``user_items`` (CSR) holds
        the items of ``userid[i]``: excluded from the list when
        ``filter_already_liked_items``, and the history that ``recalculate_user`` folds in
        (then ``userid`` need not be a known user). ``filter_items`` excludes items for every
        user; ``items`` ranks only those items (not with ``filter_items``; ``N`` is then at
        most their number). Entries past the last candidate are id -1, score
        ``-finfo(dtype).max``. Scores are ``user_factors[u] . item_factors[i]``."""
        model = self._fitted()
        n_users, n_items = model.seen.shape
        scalar = np.isscalar(userid)
        count = 1 if scalar else len(userid)
        if filter_already_liked_items or recalculate_user:
            if not _is_csr(user_items):
                raise ValueError("user_items needs to be a CSR sparse matrix")
            if user_items.shape[0] != count:
                raise ValueError("user_items must contain 1 row for every user in userids")
        if isinstance(N, bool) or not isinstance(N, int | np.integer) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}")
        if items is not None:
            if _given(filter_items):
                raise ValueError("Can't set both items and filter_items in recommend call")
            items = _subset(items, n_items, "items")
            N = min(int(N), len(items))
        if recalculate_user:
            rows = np.arange(count, dtype=np.int64)
        else:
            rows = _id_array(userid, n_users, "userids")
        if _given(filter_items):
            filter_items = _id_array(filter_items, n_items, "filter_items")
        else:
            filter_items = None
        n = min(int(N), n_items if items is None else len(items))
        plain = not recalculate_user and items is None and filter_items is None
        if plain and not filter_already_liked_items:
            idx, val = model.topk_rows(rows, n, exclude_seen=False)
        elif plain and self._training_rows(rows, user_items):
            idx, val = model.topk_rows(rows, n, exclude_seen=True)
        else:
            liked = user_items if filter_already_liked_items else None
            history = user_items if recalculate_user else None
            idx, val = self._ranked(rows, n, liked, history, filter_items, items)
        ids, scores = _padded(idx, val, int(N), model.item_factors.dtype)
        if items is not None:
            ids = np.where(ids >= 0, items[np.maximum(ids, 0)], -1)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def _training_rows(self, rows: np.ndarray, user_items) -> bool:
        """Whether row ``i`` of ``user_items`` stores exactly the items user ``rows[i]`` had
        in training (then the model's own seen items are the same filter)."""
        seen = self._fitted().seen
        if len(rows) == 1:
            u = int(rows[0])
            mine = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
            given = user_items.indices[user_items.indptr[0] : user_items.indptr[1]]
            if mine.dtype == given.dtype:  # the usual int32: a byte comparison, no temporaries
                return mine.tobytes() == given.tobytes()
            return np.array_equal(mine, given)
        lengths = seen.indptr[rows + 1] - seen.indptr[rows]
        if not np.array_equal(lengths, np.diff(user_items.indptr)):
            return False
        given = user_items.indices[user_items.indptr[0] : user_items.indptr[-1]]
        return np.array_equal(seen[rows].indices, given)

    def _ranked(
        self,
        rows: np.ndarray,
        n: int,
        liked: sp.csr_matrix | None,
        history: sp.csr_matrix | None,
        filter_items: np.ndarray | None,
        items: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` over every item's score: user ``rows[i]``'s factors, or the fold-in of
        row ``i`` of ``history``; minus row ``i`` of ``liked`` and ``filter_items``; only
        ``items`` when given (indices into ``items``)."""
        model = self._fitted()
        n_items = model.n_items
        for m in (liked, history):
            if m is not None and m.nnz and m.indices.max() >= n_items:
                raise IndexError(f"user_items names items beyond the model's {n_items}")
        idx = np.empty((len(rows), n), dtype=np.int64)
        val = np.empty((len(rows), n), dtype=np.float32)
        step = score_chunk(n_items)
        for lo in range(0, len(rows), step):
            hi = min(len(rows), lo + step)
            if history is None:
                scores = model.score_rows(rows[lo:hi])
            else:
                scores = np.empty((hi - lo, n_items), dtype=np.float32)
                for r in range(lo, hi):
                    a, b = history.indptr[r], history.indptr[r + 1]
                    scores[r - lo] = model.history_scores(history.indices[a:b], history.data[a:b])
            if liked is not None:
                a, b = liked.indptr[lo], liked.indptr[hi]
                at = np.repeat(np.arange(hi - lo), np.diff(liked.indptr[lo : hi + 1]))
                scores[at, liked.indices[a:b]] = -np.inf
            if filter_items is not None:
                scores[:, filter_items] = -np.inf
            if items is not None:
                scores = scores[:, items]
            i, v = topk(scores, n, inplace=True)
            idx[lo:hi] = i
            val[lo:hi] = v
        return idx, val

    # ------------------------------------------------------------------ fold-in
    def recalculate_user(self, userid, user_items) -> np.ndarray:
        """Factors of the users whose items are the rows of ``user_items`` (one exact solve
        each against the fixed item factors, :meth:`ALSModel.fold_in`), not stored:
        ``(factors,)`` for one id, ``(len(userid), factors)`` for an array."""
        model = self._fitted()
        user_items = _as_csr(user_items, "user_items")
        count = 1 if np.isscalar(userid) else len(userid)
        if user_items.shape[0] != count:
            raise ValueError("user_items should have one row for every item in user")
        out = self._fold_in(model, user_items)
        return out[0] if np.isscalar(userid) else out

    def recalculate_item(self, itemid, item_users) -> np.ndarray:
        """Factors of the items whose users are the rows of ``item_users`` (one exact solve
        each against the fixed user factors), not stored; shaped as :meth:`recalculate_user`."""
        self._fitted()
        item_users = _as_csr(item_users, "item_users")
        count = 1 if np.isscalar(itemid) else len(itemid)
        if item_users.shape[0] != count:
            raise ValueError("item_users must contain 1 row for every item in itemids")
        out = self._fold_in(self._item_engine(), item_users)
        return out[0] if np.isscalar(itemid) else out

    @staticmethod
    def _fold_in(engine: ALSModel, rows: sp.csr_matrix) -> np.ndarray:
        out = np.empty((rows.shape[0], engine.config.factors), dtype=engine.dtype)
        for r in range(rows.shape[0]):
            a, b = rows.indptr[r], rows.indptr[r + 1]
            out[r] = engine.fold_in(rows.indices[a:b], rows.data[a:b])
        return out

    def partial_fit_users(self, userids, user_items) -> None:
        """Recompute the factors of ``userids`` from their rows in ``user_items`` (as
        :meth:`recalculate_user`) and store them; ids past the last user add users (rows of
        zeros for any ids skipped)."""
        if user_items.shape[0] != len(userids):
            raise ValueError("user_items must contain 1 row for every user in userids")
        new = self.recalculate_user(np.asarray(userids), user_items)
        self._store("user", userids, new)

    def partial_fit_items(self, itemids, item_users) -> None:
        """Recompute the factors of ``itemids`` from their rows in ``item_users`` (users who
        have each item) and store them; ids past the last item add items."""
        if item_users.shape[0] != len(itemids):  # implicit's words, "user" included
            raise ValueError("item_users must contain 1 row for every user in itemids")
        new = self.recalculate_item(np.asarray(itemids), item_users)
        self._store("item", itemids, new)

    def _store(self, side: str, ids, new: np.ndarray) -> None:
        """Write rows ``ids`` of the user or item factors, growing them for new ids."""
        model = self._fitted()
        ids = np.asarray(ids).reshape(-1)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"{side}ids must be integers, got {ids.dtype} values")
        if ids.size and ids.min() < 0:
            raise IndexError(f"{side}ids must be >= 0, got {int(ids.min())}")
        users, items = model.user_factors, model.item_factors
        current = users if side == "user" else items
        if ids.size == 0:
            return
        if ids.max() < len(current):
            current[ids] = new
            if side == "item":  # the engine keeps the item Gram matrix and screen
                model.set_state(model.get_state())
            self._invalidate()
            return
        grown = np.zeros((int(ids.max()) + 1, current.shape[1]), dtype=current.dtype)
        grown[: len(current)] = current
        grown[ids] = new
        seen = model.seen
        if side == "user":
            users = grown
            extra = _empty_rows(len(grown) - seen.shape[0], seen.shape[1])
            seen = sp.vstack([seen, extra], format="csr")
        else:
            items = grown
            seen = sp.csr_matrix(
                (seen.data, seen.indices, seen.indptr), (seen.shape[0], len(grown))
            )
        self._build(users, items, seen, model.loss_history)

    # ------------------------------------------------------------------ similar
    def similar_items(
        self, itemid, N: int = 10, recalculate_item: bool = False, item_users=None,
        filter_items=None, items=None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The ``N`` items with the highest cosine similarity of factors to ``itemid`` (one id
        or an array: 1-D or 2-D results, as :meth:`recommend`), the item itself included
        (first, at about 1) as in implicit. ``recalculate_item``: the query's factors are
        folded in from ``item_users`` (one row of users per query). ``filter_items`` excludes
        items; ``items`` ranks only those (not with ``filter_items``)."""
        model = self._fitted()
        if recalculate_item:
            queries = np.atleast_2d(self.recalculate_item(itemid, item_users))
            norms = np.linalg.norm(queries, axis=1).astype(np.float64)
            norms[norms < _MIN_NORM] = _MIN_NORM
        else:
            ids = _id_array(itemid, model.n_items, "itemids")
            queries, norms = model.item_factors[ids], self._norm("item")[ids]
        if items is not None and _given(filter_items):
            raise ValueError("Can't set both items and filter_items in similar_items call")
        return self._similar(queries, norms, "item", N, filter_items, items, np.isscalar(itemid))

    def similar_users(
        self, userid, N: int = 10, filter_users=None, users=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` users with the highest cosine similarity of factors to ``userid`` (one id
        or an array), the user itself included, as :meth:`similar_items`."""
        model = self._fitted()
        ids = _id_array(userid, model.n_users, "userids")
        if users is not None and _given(filter_users):
            raise ValueError("Can't set both users and filter_users in similar_users call")
        queries, norms = model.user_factors[ids], self._norm("user")[ids]
        return self._similar(queries, norms, "user", N, filter_users, users, np.isscalar(userid))

    def _similar(self, queries, query_norms, side, N, exclude, subset, scalar):
        """Top-``N`` cosine similarities of ``queries`` (rows) to the ``side``'s factors."""
        if isinstance(N, bool) or not isinstance(N, int | np.integer) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}")
        model = self._fitted()
        factors = model.user_factors if side == "user" else model.item_factors
        norms = self._norm(side)
        what = f"{side}s"
        exclude = _id_array(exclude, len(norms), f"filter_{what}") if _given(exclude) else None
        if subset is not None:  # never with exclude (the callers refuse both)
            subset = _subset(subset, len(factors), what)
            factors, norms = factors[subset], norms[subset]
        n = min(int(N), len(factors))
        idx = np.empty((len(queries), n), dtype=np.int64)
        val = np.empty((len(queries), n), dtype=np.float64)
        step = score_chunk(len(factors))
        for lo in range(0, len(queries), step):
            hi = min(len(queries), lo + step)
            scores = np.asarray(queries[lo:hi] @ factors.T, dtype=np.float64)
            scores /= norms[None, :]
            scores /= query_norms[lo:hi, None]
            if exclude is not None:
                scores[:, exclude] = -np.inf
            idx[lo:hi], val[lo:hi] = topk(scores, n, inplace=True)
        ids, scores = _padded(idx, val, int(N), model.item_factors.dtype)
        if subset is not None:
            ids = np.where(ids >= 0, subset[np.maximum(ids, 0)], -1)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    # ------------------------------------------------------------------ persistence
    def save(self, fileobj_or_path) -> None:
        """Write the model to a ``.npz`` file (implicit's keys; a path gets ``.npz`` appended
        when it lacks it, and is written atomically) or to an open binary file. A model never
        fitted saves its hyperparameters only, as implicit's does."""
        arrays: dict[str, Any] = {name: getattr(self, name) for name in _SAVED_PARAMS}
        arrays["dtype"] = self.dtype.name
        if not isinstance(self.random_state, int | np.integer) or isinstance(
            self.random_state, bool
        ):
            del arrays["random_state"]  # None or a generator: not storable without pickle
        if self._model is not None:
            model = self._model
            arrays["user_factors"] = model.user_factors
            arrays["item_factors"] = model.item_factors
            arrays["seen_indptr"] = model.seen.indptr
            arrays["seen_indices"] = model.seen.indices
        elif self._pending:
            arrays.update(self._pending)
        if isinstance(fileobj_or_path, str | os.PathLike):
            path = os.fspath(fileobj_or_path)
            path = path if path.endswith(".npz") else path + ".npz"
            atomic_write(path, lambda fh: np.savez(fh, **arrays))
        else:
            np.savez(fileobj_or_path, **arrays)

    @classmethod
    def load(cls, fileobj_or_path) -> AlternatingLeastSquares:
        """Read a model written by :meth:`save` or by implicit's ``save`` (a path, with
        ``.npz`` appended when it lacks it, or an open binary file), with
        ``allow_pickle=False``. Bad contents raise :class:`~alsresearch.errors.ModelFileError`
        naming the entry."""
        source = fileobj_or_path
        if isinstance(source, str | os.PathLike):
            source = os.fspath(source)
            source = source if source.endswith(".npz") else source + ".npz"
        name = source if isinstance(source, str) else getattr(source, "name", "file")
        with np.load(source, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        params = {}
        for key in _SAVED_PARAMS:
            if key in arrays:
                value = arrays[key]
                if value.shape != ():
                    raise ModelFileError(f"{name}: {key} must be one value, got {value.shape}")
                params[key] = str(value) if key == "dtype" else value.item()
        cg_steps = params.pop("cg_steps", None)
        try:
            model = cls(**params)
            if cg_steps is not None:
                model.cg_steps = cg_steps
                model._config(seed=None)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{name}: bad hyperparameters ({exc})") from exc
        users, items = arrays.get("user_factors"), arrays.get("item_factors")
        if users is None and items is None:
            return model
        if users is None or items is None:  # saved with only one assigned: kept pending
            model._pending = {k: arrays[k] for k in ("user_factors", "item_factors") if k in arrays}
            return model
        seen = None
        if "seen_indptr" in arrays and "seen_indices" in arrays:
            indices = arrays["seen_indices"]
            try:
                seen = sp.csr_matrix(
                    (np.ones(len(indices), np.float32), indices, arrays["seen_indptr"]),
                    shape=(len(users), len(items)),
                )
                seen.check_format(full_check=True)
            except ValueError as exc:
                raise ModelFileError(f"{name}: inconsistent seen_indptr / seen_indices") from exc
        try:
            if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
                raise ValueError(
                    f"user_factors {users.shape} and item_factors {items.shape} must be 2-D "
                    "with the same number of columns"
                )
            model.factors = users.shape[1]
            model._build(users, items, seen)
        except ValueError as exc:
            raise ModelFileError(f"{name}: {exc}") from exc
        return model
