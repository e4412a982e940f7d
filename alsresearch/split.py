"""Train/test splits of an :class:`~alsresearch.data.Interactions`, in the same id space.

Every split returns ``(train, test)``: two Interactions with the *same* users and items (in the
same order) as the input, so every matrix is ``n_users x n_items`` and rows line up with the
model's rows. A split moves whole stored cells (a (user, item) pair with its count and
timestamp): an item is never in both parts for one user.

Invariants (tested in tests/test_split.py):

- train and test are disjoint, and together they are exactly the input (counts add up, cell for
  cell, timestamps follow their cells);
- the same seed gives the same split; different seeds give different splits;
- temporal splits respect time order (see each function for the exact statement);
- a user with a single cell stays wholly in train (nothing would be left to learn from).

How many cells of a user go to test (:func:`random_holdout`, :func:`temporal_holdout` with
``test_fraction``): with ``n`` cells, ``n_test = round(test_fraction * n)`` rounded half up, then
clipped to ``1 .. n - 1`` when ``n >= 2`` (every user with two or more cells keeps at least one
cell in train and gets at least one test cell, so is evaluated), and 0 when ``n <= 1``. Users
with few cells therefore give a larger share than ``test_fraction`` (a 2-cell user gives 1 of 2):
the overall test share is a little above ``test_fraction`` on data with many light users.

Cold items: a test cell whose item has no cell left in train (:func:`cold_items`). They are
kept in the test set as relevant items (removing them would flatter every model); a model can
still rank them, though it learned nothing about them. :func:`alsresearch.evaluate.evaluate`
counts them in its result.

:func:`validation_split` applies the same kinds of split inside a training set, so that tuning
never looks at the test set.

Strong generalization (:func:`user_holdout`): whole users are held out of training, and each
one's cells split into a fold-in history (what the model is shown, through
``recommend_for_history``, without retraining) and test cells. It returns three Interactions,
``(train, fold_in, test)``, in the same id space: the held-out users' rows of ``train`` are
empty. :class:`SplitSpec` names it ``protocol="fold_in"``; :meth:`SplitSpec.parts` gives the
parts of either protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alsresearch.checks import check_choice, check_float, check_int
from alsresearch.data import Interactions
from alsresearch.errors import SpecMismatchError

__all__ = [
    "DEFAULT_HOLDOUT_USERS",
    "DEFAULT_SPLIT_SEED",
    "DEFAULT_TEST_FRACTION",
    "NOTEBOOK_PARAMETERS",
    "PROTOCOLS",
    "SPLIT_KINDS",
    "SplitParts",
    "SplitSpec",
    "cold_items",
    "leave_last_out",
    "random_holdout",
    "temporal_holdout",
    "user_holdout",
    "validation_split",
]


#: the held-out share of each user's cells, and the seed of the test split: the defaults of
#: every command, notebook and experiment file (through :class:`SplitSpec`)
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 42
#: the share of eligible users held out whole by the fold-in protocol (:func:`user_holdout`)
DEFAULT_HOLDOUT_USERS = 0.2
#: how a split is evaluated: ``"standard"`` (every user trains; test cells are held out of
#: each user's history) or ``"fold_in"`` (held-out users never train: strong generalization)
PROTOCOLS = ("standard", "fold_in")


def _check_fraction(test_fraction) -> float:
    return check_float(
        test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True
    )


def _check_seed(seed) -> int:
    return check_int(seed, "seed", low=0)


def _need_timestamps(interactions: Interactions, what: str) -> np.ndarray:
    if interactions.timestamps is None:
        raise ValueError(
            f"{what} needs timestamps, but these interactions have none: build them with "
            "Interactions.from_events(..., timestamp_col=...) (or use random_holdout)"
        )
    return interactions.timestamps


def _cells_per_user(interactions: Interactions) -> np.ndarray:
    return np.diff(interactions.matrix.indptr)


def _n_test(n_cells: np.ndarray, test_fraction: float) -> np.ndarray:
    """Test cells per user: round half up, clipped to 1..n-1 for n >= 2, 0 for n <= 1."""
    n_test = np.floor(test_fraction * n_cells + 0.5).astype(np.int64)
    n_test = np.clip(n_test, 1, np.maximum(n_cells - 1, 1))
    return np.where(n_cells >= 2, n_test, 0)


def _last_cells(interactions: Interactions, key: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """Mask of each user's ``n_test[u]`` cells with the largest ``key`` (ties: higher item index
    last, i.e. to test first)."""
    m = interactions.matrix
    n_cells = np.diff(m.indptr)
    rows = np.repeat(np.arange(interactions.n_users), n_cells)
    order = np.lexsort((m.indices, key, rows))  # by user, then key, then item index
    position = np.empty(m.nnz, dtype=np.int64)
    position[order] = np.arange(m.nnz) - m.indptr[rows[order]]
    return position >= (n_cells - n_test)[rows]


def _apply(interactions: Interactions, test_mask: np.ndarray) -> tuple[Interactions, Interactions]:
    return interactions.select_cells(~test_mask), interactions.select_cells(test_mask)


def random_holdout(
    interactions: Interactions, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Per user, a seeded uniformly random ``test_fraction`` of their cells go to test.

    The number of test cells per user follows the module rule (round half up, at least one
    and at most ``n - 1`` for users with ``n >= 2`` cells, none for single-cell users). Which
    cells is uniform without replacement, from ``numpy.random.default_rng(seed)``; the result
    depends only on the interactions and the seed. Timestamps are not needed (and are kept).
    """
    test_fraction = _check_fraction(test_fraction)
    rng = np.random.default_rng(_check_seed(seed))
    key = rng.random(interactions.nnz)
    n_test = _n_test(_cells_per_user(interactions), test_fraction)
    return _apply(interactions, _last_cells(interactions, key, n_test))


def _to_seconds(cutoff) -> int:
    if isinstance(cutoff, bool):
        raise ValueError(f"cutoff must be a time, got {cutoff!r}")
    if isinstance(cutoff, int | float | np.integer | np.floating):
        if not np.isfinite(cutoff):
            raise ValueError(f"cutoff must be finite, got {cutoff}")
        return int(cutoff)
    try:
        stamp = pd.Timestamp(cutoff)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cutoff {cutoff!r} is not a time: {exc}") from exc
    if stamp is pd.NaT:
        raise ValueError(f"cutoff {cutoff!r} is not a time")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int((stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))


def temporal_holdout(
    interactions: Interactions,
    cutoff=None,
    test_fraction: float | None = None,
) -> tuple[Interactions, Interactions]:
    """Hold out the future: by a global time ``cutoff`` or each user's latest ``test_fraction``.

    Give exactly one of:

    - ``cutoff``: Unix seconds, or anything ``pandas.Timestamp`` parses (naive times are UTC).
      Cells with ``timestamp >= cutoff`` go to test, the rest to train. Time order: every train
      cell is older than every test cell, across all users. Users whose cells are all after the
      cut-off have no training history (they are evaluated as cold users); users with nothing
      after it are not in test.
    - ``test_fraction``: per user, the latest ``n_test`` cells (module rule for ``n_test``) go to
      test. Time order, per user: no train cell is newer than a test cell. Cells with equal
      timestamps are ordered by item index (higher index counts as later).

    A cell's timestamp is the latest event on that (user, item) pair (see
    :class:`~alsresearch.data.Interactions`). Raises ValueError without timestamps.
    """
    stamps = _need_timestamps(interactions, "temporal_holdout")
    if (cutoff is None) == (test_fraction is None):
        raise ValueError("temporal_holdout needs exactly one of cutoff or test_fraction")
    if cutoff is not None:
        return _apply(interactions, stamps >= _to_seconds(cutoff))
    n_test = _n_test(_cells_per_user(interactions), _check_fraction(test_fraction))
    return _apply(interactions, _last_cells(interactions, stamps, n_test))


def leave_last_out(
    interactions: Interactions,
    seed: int = 0,
    use_timestamps: bool | None = None,
) -> tuple[Interactions, Interactions]:
    """One test cell per user with at least two cells; single-cell users stay in train.

    With timestamps (``use_timestamps=None`` uses them when present) the test cell is the
    user's latest (ties: the higher item index), so no train cell is newer than it. Without
    timestamps (or ``use_timestamps=False``) it is a seeded uniformly random cell, from
    ``numpy.random.default_rng(seed)``; ``seed`` is unused when timestamps decide.
    """
    seed = _check_seed(seed)
    if use_timestamps is None:
        use_timestamps = interactions.timestamps is not None
    if use_timestamps:
        key = _need_timestamps(interactions, "leave_last_out(use_timestamps=True)")
    else:
        key = np.random.default_rng(seed).random(interactions.nnz)
    n_test = (_cells_per_user(interactions) >= 2).astype(np.int64)
    return _apply(interactions, _last_cells(interactions, key, n_test))


def _check_holdout_users(users, what: str = "users") -> float | int:
    """A share of users in (0, 1) as a float, or a number of users >= 1 as an int."""
    if isinstance(users, bool) or not isinstance(users, int | float | np.integer | np.floating):
        raise ValueError(
            f"{what} must be a share of users in (0, 1) or a number of users >= 1, got {users!r}"
        )
    if isinstance(users, int | np.integer):
        return check_int(users, f"{what} (a number of users)", low=1)
    return check_float(
        users, f"{what} (a share of users)", low=0.0, high=1.0, low_open=True, high_open=True
    )


def _n_held_out(users: float | int, n_eligible: int, what: str) -> int:
    if n_eligible == 0:
        raise ValueError(
            "user_holdout: no user has two or more cells, so none can be held out (a held-out "
            "user needs at least one fold-in and one test cell)"
        )
    if isinstance(users, int):
        if users > n_eligible:
            raise ValueError(
                f"{what} asks for {users} held-out users, but only {n_eligible} users have two "
                "or more cells"
            )
        return users
    return int(min(n_eligible, max(1, np.floor(users * n_eligible + 0.5))))


def user_holdout(
    interactions: Interactions,
    users: float | int = DEFAULT_HOLDOUT_USERS,
    fold_in_fraction: float = 1 - DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> tuple[Interactions, Interactions, Interactions]:
    """Hold out whole users (strong generalization): ``(train, fold_in, test)``.

    Liang et al., "Variational Autoencoders for Collaborative Filtering" (WWW 2018) and Rendle
    et al., "Revisiting the Performance of iALS on Item Recommendation Benchmarks" (RecSys 2022)
    evaluate this way: the model never trains on the held-out users; at evaluation each one's
    fold-in history is folded in (``recommend_for_history``) and the test cells are ranked.

    - Eligible users have two or more cells (a held-out user needs at least one fold-in and one
      test cell); users with fewer stay in train, as in every split here.
    - ``users``: a share of the eligible users in (0, 1) (``round(users * n_eligible)``, half
      up, at least 1), or a number of users (an ``int``, 1 .. n_eligible). They are drawn
      uniformly without replacement from ``numpy.random.default_rng(seed)``.
    - Each held-out user with ``n`` cells gives ``round(fold_in_fraction * n)`` (half up,
      clipped to 1 .. n - 1) cells to ``fold_in`` and the rest to ``test``; which cells is
      uniform without replacement, from the same generator (drawn after the users).

    The three parts are disjoint, add up to the input cell for cell (counts and timestamps
    follow their cells), and share the input's id space: a held-out user's row is empty in
    ``train``, other users' rows are empty in ``fold_in`` and ``test``. Deterministic for a
    given input and seed.
    """
    users = _check_holdout_users(users)
    fold_in_fraction = check_float(
        fold_in_fraction, "fold_in_fraction", low=0.0, high=1.0, low_open=True, high_open=True
    )
    rng = np.random.default_rng(_check_seed(seed))
    n_cells = _cells_per_user(interactions)
    eligible = np.flatnonzero(n_cells >= 2)
    n_out = _n_held_out(users, len(eligible), "users")
    held = np.zeros(interactions.n_users, dtype=bool)
    held[rng.choice(eligible, size=n_out, replace=False)] = True
    n_fold_in = np.clip(np.floor(fold_in_fraction * n_cells + 0.5).astype(np.int64), 1, None)
    n_fold_in = np.minimum(n_fold_in, n_cells - 1)
    n_test = np.where(held, n_cells - n_fold_in, 0)
    key = rng.random(interactions.nnz)
    test_mask = _last_cells(interactions, key, n_test)
    rows = np.repeat(np.arange(interactions.n_users), n_cells)
    in_held = held[rows]
    return (
        interactions.select_cells(~in_held),
        interactions.select_cells(in_held & ~test_mask),
        interactions.select_cells(test_mask),
    )


#: kind name -> split function, for :class:`SplitSpec` and :func:`validation_split`
SPLIT_KINDS = {
    "random": random_holdout,
    "temporal": temporal_holdout,
    "leave_last": leave_last_out,
}


#: SplitSpec field -> the notebook parameter that carries it (the ``parameters`` cells)
NOTEBOOK_PARAMETERS = {
    "kind": "SPLIT",
    "test_fraction": "TEST_FRACTION",
    "seed": "SPLIT_SEED",
    "protocol": "PROTOCOL",
    "holdout_users": "HOLDOUT_USERS",
}
#: the fields of the fold-in protocol, with the values a record without them means (a standard
#: split: :meth:`SplitSpec.to_dict` leaves them out of standard splits' records)
_ADDED_FIELDS = {"protocol": "standard", "holdout_users": DEFAULT_HOLDOUT_USERS}


@dataclass(frozen=True)
class SplitParts:
    """What :meth:`SplitSpec.parts` returns: Interactions in one id space.

    ``train`` is what a model is fitted on; ``test`` the held-out cells (None when the spec
    holds nothing out); ``fold_in`` (protocol ``"fold_in"`` only, else None) the held-out users'
    histories, which the evaluator folds in (``evaluate(..., protocol="fold_in",
    fold_in=parts.fold_in)``) and excludes from their rankings.
    """

    train: Interactions
    test: Interactions | None
    fold_in: Interactions | None = None

    @property
    def protocol(self) -> str:
        return "standard" if self.fold_in is None else "fold_in"


@dataclass(frozen=True)
class SplitSpec:
    """The one description of a test split: its protocol, kind, held-out fraction and seed.

    Built from ``--split/--test-fraction/--split-seed`` (and ``--protocol/--holdout-users``
    where a command takes them), from a notebook's parameters (:data:`NOTEBOOK_PARAMETERS`:
    ``SPLIT``, ``TEST_FRACTION``, ``SPLIT_SEED``, ``PROTOCOL``, ``HOLDOUT_USERS``), or from an
    experiment file's ``split:`` block; recorded (:meth:`to_dict`) in results.json, best.json,
    model files and model cards, and compared (:meth:`check_same`) before a model is scored on a
    split.

    ``protocol="standard"`` (the default): every user trains, and part of each user's cells is
    held out:

    - ``"random"``: :func:`random_holdout` with ``test_fraction`` and ``seed``;
    - ``"temporal"``: :func:`temporal_holdout`, each user's latest ``test_fraction`` of cells
      (needs timestamps; ``seed`` is unused);
    - ``"leave_last"``: :func:`leave_last_out`, one cell per user (the latest with timestamps,
      else a seeded random one; ``test_fraction`` is unused).

    ``protocol="fold_in"`` (strong generalization, :func:`user_holdout`): ``holdout_users`` (a
    share of the users with two or more cells, or a number of users) never train; a seeded
    random ``test_fraction`` of each one's cells is test, the rest
    (``fold_in_fraction = 1 - test_fraction``) the fold-in history. Only ``kind="random"``.
    ``holdout_users`` means nothing to the standard protocol: giving it another value than the
    default there is an error.

    ``test_fraction = 0`` means no test split: :meth:`apply` returns ``(data, None)`` (a model
    for serving, fitted on everything).
    """

    kind: str = "random"
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = DEFAULT_SPLIT_SEED
    protocol: str = "standard"
    holdout_users: float | int = DEFAULT_HOLDOUT_USERS

    def __post_init__(self) -> None:
        check_choice(self.kind, "split kind", SPLIT_KINDS)
        check_choice(self.protocol, "split protocol", PROTOCOLS)
        fraction = check_float(
            self.test_fraction, "test_fraction", low=0.0, high=1.0, high_open=True
        )
        object.__setattr__(self, "test_fraction", fraction)
        object.__setattr__(self, "seed", check_int(self.seed, "split seed", low=0))
        users = _check_holdout_users(self.holdout_users, "holdout_users")
        object.__setattr__(self, "holdout_users", users)
        if self.protocol == "standard" and users != DEFAULT_HOLDOUT_USERS:
            raise ValueError(
                f"holdout_users ({users!r}) is only used by the fold_in protocol; the standard "
                "protocol holds out cells of every user, not whole users"
            )
        if self.protocol == "fold_in" and self.kind != "random":
            raise ValueError(
                "the fold_in protocol splits each held-out user's cells at random: split kind "
                f"must be 'random', got {self.kind!r}"
            )

    @property
    def holds_out(self) -> bool:
        """Whether :meth:`apply` leaves a test part (``test_fraction > 0``)."""
        return self.test_fraction > 0

    def apply(self, data: Interactions) -> tuple[Interactions, Interactions | None]:
        """``(train, test)`` in ``data``'s id space; ``(data, None)`` when nothing is held out.

        The fold-in protocol makes three parts: :meth:`parts` (ValueError here, so that no
        caller scores held-out users as if they had trained)."""
        if not self.holds_out:
            return data, None
        if self.protocol == "fold_in":
            raise ValueError(
                "the fold_in protocol splits the data into train, fold-in and test parts: use "
                "SplitSpec.parts(data) and evaluate(..., protocol='fold_in', "
                "fold_in=parts.fold_in)"
            )
        if self.kind == "random":
            return random_holdout(data, self.test_fraction, seed=self.seed)
        if self.kind == "temporal":
            return temporal_holdout(data, test_fraction=self.test_fraction)
        return leave_last_out(data, seed=self.seed)

    def parts(self, data: Interactions) -> SplitParts:
        """The split's parts under either protocol (see :class:`SplitParts`)."""
        if self.protocol == "fold_in" and self.holds_out:
            train, fold_in, test = user_holdout(
                data, self.holdout_users, fold_in_fraction=1 - self.test_fraction, seed=self.seed
            )
            return SplitParts(train, test, fold_in)
        return SplitParts(*self.apply(data))

    def to_dict(self) -> dict[str, Any]:
        """The spec as a record. A standard split is recorded as it was before the protocol
        existed (kind, test_fraction, seed); ``protocol`` and ``holdout_users`` appear for the
        fold-in protocol."""
        record = asdict(self)
        if self.protocol == "standard":
            for name in _ADDED_FIELDS:
                del record[name]
        return record

    @classmethod
    def from_notebook_parameters(cls, namespace: dict[str, Any]) -> SplitSpec:
        """From a notebook's split parameters (see :data:`NOTEBOOK_PARAMETERS`; those a
        notebook does not define keep their defaults)."""
        return cls(
            **{
                name: namespace[param]
                for name, param in NOTEBOOK_PARAMETERS.items()
                if param in namespace
            }
        )

    def to_notebook_parameters(self) -> dict[str, Any]:
        """Every split parameter of a notebook (the fold-in ones too, which :meth:`to_dict`
        leaves out of a standard split's record)."""
        return {param: getattr(self, name) for name, param in NOTEBOOK_PARAMETERS.items()}

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "split") -> SplitSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them, missing ones keep
        their defaults."""
        names = list(NOTEBOOK_PARAMETERS)
        if not isinstance(record, dict):
            raise ValueError(f"{where} must be a mapping of {'/'.join(names)}, got {record!r}")
        unknown = sorted(set(record) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {', '.join(names)}")
        return cls(**record)

    def check_same(self, recorded: dict[str, Any] | None, what: str) -> None:
        """Raise :class:`~alsresearch.errors.SpecMismatchError` when ``recorded`` (another
        spec's :meth:`to_dict`, e.g. from a model file) differs from this one, naming every
        field that differs. ``what`` names the other side ("the model was trained on").
        A record without ``protocol`` and ``holdout_users`` (a standard split, or one written
        before the protocol existed) is compared as a standard split."""
        if recorded is None:
            return
        recorded = {**_ADDED_FIELDS, **recorded}
        differs = [
            f"{key} {recorded.get(key)!r} there, {value!r} here"
            for key, value in asdict(self).items()
            if recorded.get(key) != value
        ]
        if differs:
            raise SpecMismatchError(f"{what} a different split: " + "; ".join(differs))


def validation_split(
    train: Interactions,
    kind: Literal["random", "temporal", "leave_last"] = "random",
    **kwargs,
) -> tuple[Interactions, Interactions]:
    """Split a *training* set again, into (fit part, validation part), for tuning.

    ``kind`` picks :func:`random_holdout` (``test_fraction``, ``seed``), :func:`temporal_holdout`
    (``cutoff`` or ``test_fraction``) or :func:`leave_last_out` (``seed``, ``use_timestamps``);
    ``kwargs`` go to it unchanged. Hyperparameters are chosen on the validation part and the
    test set is never looked at. Use a seed different from the test split's seed (the cells
    differ anyway, since the test cells are no longer in ``train``).
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {kind!r}; known kinds: {sorted(SPLIT_KINDS)}")
    return SPLIT_KINDS[kind](train, **kwargs)


def cold_items(train: Interactions, test: Interactions) -> np.ndarray:
    """Item indices that appear in ``test`` but have no cell in ``train`` (sorted)."""
    in_train = np.bincount(train.matrix.indices, minlength=train.n_items) > 0
    in_test = np.bincount(test.matrix.indices, minlength=test.n_items) > 0
    return np.flatnonzero(in_test & ~in_train)
