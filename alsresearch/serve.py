"""The REST service: a promoted model answering over HTTP, swapped for a newly promoted one
without a failed request.

``alsresearch serve --model models/als_baseline.npz`` (FastAPI + uvicorn, loopback by default)
loads the model file, its card (``als_baseline.json``) and its popularity fallback
(``als_baseline.popularity.npz``), all written by :func:`alsresearch.promote.promote`, and
answers:

- ``GET /recommendations/{user_id}?n=10``: ``{"user_id": 42, "recommendations": [{"item_id":
  1337, "score": 0.94}, ...], "model": "als_baseline", "model_version": "3f2a9c01b7d4",
  "source": "als"}`` (``"source"`` is the served model's type: ``"als"``, or ``"ease"`` for an
  EASE model file). Unknown users get the most popular items with ``"source":
  "popularity"``. Items the user has in the training data are never recommended.
  ``model_version`` is the first 12 hex digits of the served model file's sha256 (the one its
  card records), so every answer says which model file gave it.
- ``POST /recommendations/batch`` ``{"user_ids": [...], "n": 10}``: a list of the same objects in
  request order (duplicates allowed), all known users ranked in one vectorised call, all by the
  same model.
- ``POST /recommendations/history`` ``{"item_ids": [...], "n": 10}``: fold-in recommendations
  for an anonymous session (:meth:`~alsresearch.base.Recommender.recommend_for_history`); the
  given items are never recommended back. Item ids the model does not know are *ignored* and
  listed in ``"unknown_item_ids"`` (a session may contain items newer than the model); with no
  known item left the answer is the popularity list (``"source": "popularity"``).
- ``GET /health`` (names the live model), ``GET /model`` (the live model card, plus ``"live"``:
  which files, their sha256 and when they were loaded), ``/docs`` and ``/openapi.json``.

``GET /recommendations/batch`` and ``GET /recommendations/history`` are 405 (``Allow: POST``),
never a look-up of a user called "batch" (a string-id model's user "batch" is reached through
the batch endpoint).

Ids keep the type they had in training: a model trained on integer ids takes and returns JSON
integers (a path ``user_id`` that is not an integer is a 422), one trained on string ids takes
and returns strings.

**Limits.** Every request over one is refused at once, before any scoring:

- the request body: at most ``--max-body-bytes`` (default :data:`~alsresearch.limits.MAX_BODY_BYTES`, 2**20 =
  1,048,576 bytes); a longer one is a 413 before it is parsed, by its Content-Length or, for a
  chunked body, as soon as the bytes received pass the limit (the rest is never read);
- ``n`` in 1..1000 (:data:`~alsresearch.limits.MAX_N`); a batch of 1..10,000 user ids
  (:data:`~alsresearch.limits.MAX_BATCH`); a history of 1..10,000 item ids;
- the work of one batch, ``len(user_ids) x n``, at most :data:`~alsresearch.limits.MAX_BATCH_WORK` (100,000: the
  largest batch at the default n = 10, or 100 users at n = 1000); more is a 422 naming the limit.
  Split larger jobs into several batches. The limit keeps the worst accepted batch short
  enough that single-user requests answering meanwhile stay fast (tests/test_serve_limits.py;
  the README quotes the times).

Other bad input (malformed JSON, ids of the wrong type, unknown fields) is a 422; every error
(4xx and 5xx) is a JSON object ``{"message": ..., "detail": [{"loc", "msg", "type"}, ...]}``
whose ``message`` says what was wrong.

**Concurrency.** The event loop only reads requests and writes answers; scoring runs in worker
threads, in two lanes so that a large batch never holds up a single-user request: single-user
and history requests in a pool of two threads, batches in one thread of their own (batches
queue behind each other). The numba kernels of the scoring path release the GIL and so does
BLAS, and a batch answer is serialised to JSON user by user, so singles keep answering while the
largest accepted batch runs. ``alsresearch serve`` runs each kernel on ``--threads`` threads
(default 1, in every worker thread; :func:`alsresearch._jit.set_thread_limit`): on a busy
machine multi-threaded kernels spend their time waiting for descheduled threads
(benchmarks/bench_serve.py).

**Model swaps.** ``alsresearch serve --watch`` checks the model file, its card and its
popularity file every ``--watch-interval`` seconds (inode, size and modification time), and
SIGHUP asks for a check at once (with or without ``--watch``). A changed set is loaded in the
background with the same checks as start-up (each file's sha256 against the card, the
popularity fallback's items against the model's) plus one test recommendation and one fold-in,
and must keep the live model's id types (integer or string ids: the endpoints' schemas depend
on them). Only then is it swapped in, by replacing one reference: a request reads the reference
once, so each answer, and each batch as a whole, comes from exactly one model. While a promotion
is renaming its files (its journal exists), or when the files do not match the card, the
service waits for the next check (a promotion or a copy may be half-way); a set that stays
inconsistent for two checks, or that fails to load, is refused with one WARNING line naming the
file and the problem, and the old model keeps serving. ``GET /model`` then still reports the old
one.

A model file that is missing, unreadable or inconsistent with its card stops start-up with one
line on stderr naming the path and the problem (exit status 1).
"""

import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import numpy as np
import scipy.sparse as sp

from alsresearch._jit import set_thread_limit
from alsresearch.base import MODEL_TYPES, Recommender, load_model
from alsresearch.checks import check_int
from alsresearch.data import Interactions
from alsresearch.errors import ModelFileError
from alsresearch.limits import MAX_BATCH, MAX_BATCH_WORK, MAX_BODY_BYTES, MAX_N

__all__ = [
    "DEFAULT_WATCH_INTERVAL",
    "ModelWatcher",
    "RecommendationService",
    "create_app",
    "run",
]

DEFAULT_N = 10
#: seconds between two checks of the model files under ``--watch``
DEFAULT_WATCH_INTERVAL = 2.0
#: hex digits of the model file's sha256 that every answer carries as ``model_version``
VERSION_DIGITS = 12
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SHOW = 5
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
#: client addresses that count as this machine (``POST /updates``)
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_SINGLE_WORKERS = 2
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

log = logging.getLogger("alsresearch.serve")


class RecommendationService:
    """The service logic without the web framework: the model, its fallback and its card.

    ``for_users`` and ``for_history`` return the JSON-ready dicts the endpoints send. A service
    is never changed after it is built: a new model is a new service (see :class:`ModelWatcher`).
    """

    def __init__(
        self,
        model: Recommender,
        fallback: Recommender,
        card: dict[str, Any],
        name: str,
        live: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.fallback = fallback
        self.card = card
        self.name = name
        #: which files are served: paths, the model file's sha256, when they were loaded
        self.live = dict(live or {})
        self.version = str(self.live.get("model_sha256", ""))[:VERSION_DIGITS]
        if self.live.get("updates"):  # rows updated since the file was loaded: "<sha>+<n>"
            self.version += f"+{self.live['updates']}"
        if not np.array_equal(fallback.item_ids, model.item_ids):
            raise ModelFileError(
                f"{name}: the popularity fallback has other item ids than the model"
            )
        # popularity scores are the same for every user: rank once, slice per request
        n = min(MAX_N, fallback.n_items)
        idx, val = fallback.topk_rows(np.zeros(1, dtype=np.int64), n, exclude_seen=False)
        keep = idx[0] >= 0
        self._popular_recs = _recommendations(fallback.item_ids[idx[0][keep]], val[0][keep])

    @classmethod
    def load(cls, model_path: str | FilePath) -> "RecommendationService":
        """Load ``model_path`` and, beside it, its card and popularity fallback.

        Without a card the service describes the model from the file; without a popularity
        file it counts popularity from the model's own training data (the same
        :class:`~alsresearch.baselines.PopularityModel`). A card whose recorded checksums do
        not match the files raises ModelFileError (a half-copied or mixed-up artefact), and so
        does the journal of a promotion that is renaming the files (or was killed doing so).
        """
        from alsresearch.artefact import artefact_paths
        from alsresearch.baselines import PopularityModel
        from alsresearch.files import file_digest
        from alsresearch.provenance import utc_now

        files = artefact_paths(model_path)
        if files.journal.exists():
            raise _UnsettledFiles(
                f"{files.journal}: a promotion of {files.model.name} was interrupted between "
                "its renames; `alsresearch promote --recover` puts the previous files back"
            )
        # the files checked against the card before any is loaded: a half-copied set waits
        digest = file_digest(files.model) if files.model.is_file() else ""
        card: dict[str, Any] = {}
        has_card = files.card.exists()
        if has_card:
            card = _read_strict_card(files.card)
            problem = digest and _card_mismatch(card, files, digest)
            if problem:
                raise _UnsettledFiles(problem)
        model = load_model(files.model)  # a missing or unreadable file: its own error
        name = str(card.get("name", files.model.name.removesuffix(".npz")))
        if not has_card:
            card = {
                "name": name,
                "model_type": model.model_type,
                "params": model.get_config(),
                "note": f"no model card beside {files.model.name}",
            }
        if files.popularity.exists():
            fallback = load_model(files.popularity)
        else:
            seen = Interactions(model.seen, model.user_ids, model.item_ids)
            fallback = PopularityModel().fit(seen)
        live = {
            "model_file": str(files.model),
            "model_sha256": digest,
            "card_file": str(files.card) if has_card else None,
            "popularity_file": str(files.popularity) if files.popularity.exists() else None,
            "card_created": card.get("created"),
            "loaded_at": utc_now(),
        }
        return cls(model, fallback, card, name, live)

    def self_test(self) -> None:
        """One recommendation and one fold-in, as a request would ask: warms the kernels (and
        the model's screen) and proves the model answers before it takes traffic."""
        self.for_users([self.model.user_ids[0].item()], DEFAULT_N)
        self.for_history([self.model.item_ids[0].item()], DEFAULT_N)

    # ------------------------------------------------------------------ answers
    def _popular(self, n: int) -> list[dict[str, Any]]:
        return self._popular_recs[:n]

    def _popular_filtered(self, n: int, items, exclude) -> list[dict[str, Any]]:
        """The popularity list under candidate filters (the same for every user)."""
        idx, val = self.fallback.filtered_topk_rows(
            np.zeros(1, np.int64), n, False, items, exclude, unknown="ignore"
        )
        keep = idx[0] >= 0
        return _recommendations(self.fallback.item_ids[idx[0][keep]], val[0][keep])

    def _answer(self, user, recommendations: list[dict[str, Any]], source: str) -> dict[str, Any]:
        return {
            "user_id": user,
            "recommendations": recommendations,
            "model": self.name,
            "model_version": self.version,
            "source": source,
        }

    def for_users(
        self,
        users: list,
        n: int = DEFAULT_N,
        items: list | None = None,
        exclude: list | None = None,
    ) -> list[dict[str, Any]]:
        """Recommendations for each of ``users`` (external ids, in order, duplicates allowed).

        Known users are ranked together in one :meth:`~alsresearch.base.Recommender.topk_rows`
        call, seen items excluded; unknown users get the popularity list. ``items`` (an allow
        list) and ``exclude`` (a deny list) filter every list, the popularity one too; ids the
        model does not know in them are ignored (they cannot be recommended anyway).
        """
        filtered = items is not None or exclude is not None
        rows = np.atleast_1d(self.model.user_index(users, missing="ignore"))
        known = np.flatnonzero(rows >= 0)
        out: list[dict[str, Any] | None] = [None] * len(users)
        if known.size:
            if filtered:
                idx, val = self.model.filtered_topk_rows(
                    rows[known], n, True, items, exclude, unknown="ignore"
                )
            else:
                idx, val = self.model.topk_rows(rows[known], n)
            item_ids = self.model.item_ids
            for pos, i, v in zip(known.tolist(), idx, val, strict=True):
                keep = i >= 0
                recs = _recommendations(item_ids[i[keep]], v[keep])
                out[pos] = self._answer(users[pos], recs, self.model.model_type)
        if known.size < len(users):
            popular = (
                self._popular(n) if not filtered else self._popular_filtered(n, items, exclude)
            )
            for pos in np.flatnonzero(rows < 0).tolist():
                out[pos] = self._answer(users[pos], popular, "popularity")
        return out  # type: ignore[return-value]

    def for_history(self, items: list, n: int = DEFAULT_N) -> dict[str, Any]:
        """Fold-in recommendations for an anonymous user who has ``items``; unknown ids are
        ignored and listed; with no known item, the popularity list."""
        idx = np.atleast_1d(self.model.item_index(items, missing="ignore"))
        unknown = list(
            dict.fromkeys(it for it, i in zip(items, idx.tolist(), strict=True) if i < 0)
        )
        known = [it for it, i in zip(items, idx.tolist(), strict=True) if i >= 0]
        if not known:
            recs, source = self._popular(n), "popularity"
        else:
            try:
                ids, scores = self.model.recommend_for_history(known, n=n)
                source = self.model.model_type
            except FloatingPointError:  # a fold-in system too ill-conditioned to solve
                ids, scores = self.fallback.recommend_for_history(known, n=n)
                source = "popularity"
            recs = _recommendations(ids, scores)
        return {
            "recommendations": recs,
            "model": self.name,
            "model_version": self.version,
            "source": source,
            "unknown_item_ids": unknown,
        }

    def with_updates(self, users: list | None, items: list | None) -> "RecommendationService":
        """A new service whose model has the given rows re-solved or added (the live one keeps
        answering meanwhile): ``items`` (``[{"item_id", "user_ids", "counts"}]``, each item's
        full history: known items re-solved, new ones added), then ``users`` (``[{"user_id",
        "item_ids", "counts"}]``, likewise). Counts default to 1 each. The popularity fallback
        is recounted from the updated histories. Unknown ids in a history, a model without
        updates (only ALS has them) or a repeated row are a ValueError naming them."""
        from alsresearch.baselines import PopularityModel
        from alsresearch.provenance import utc_now

        if not hasattr(self.model, "update_users"):
            raise ValueError(
                f"a {self.model.model_type} model takes no updates: promote a new model file"
            )
        model = copy.deepcopy(self.model)
        counts = {"users_updated": 0, "users_added": 0, "items_updated": 0, "items_added": 0}
        if items:
            args = (model.user_index, model.n_users, "user")
            ids, m = _history_rows(items, "item_id", "user_ids", *args)
            known = model.item_index(ids, missing="ignore") >= 0
            model.update_items(Interactions(m.T.tocsr(), model.user_ids, ids))
            counts["items_updated"], counts["items_added"] = int(known.sum()), int((~known).sum())
        if users:
            args = (model.item_index, model.n_items, "item")
            ids, m = _history_rows(users, "user_id", "item_ids", *args)
            known = model.user_index(ids, missing="ignore") >= 0
            model.update_users(Interactions(m, ids, model.item_ids))
            counts["users_updated"], counts["users_added"] = int(known.sum()), int((~known).sum())
        fallback = PopularityModel().fit(Interactions(model.seen, model.user_ids, model.item_ids))
        n = int(self.live.get("updates", 0)) + 1
        live = {**self.live, "updates": n, "updated_at": utc_now(), "last_update": counts}
        return RecommendationService(model, fallback, self.card, self.name, live)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.name,
            "model_version": self.version,
            "model_type": self.model.model_type,
            "users": self.model.n_users,
            "items": self.model.n_items,
            "loaded_at": self.live.get("loaded_at"),
        }

    def model_card(self) -> dict[str, Any]:
        """The card as promoted, with ``"live"``: the files served and when they were loaded."""
        return {**self.card, "live": {**self.live, "model_version": self.version}}

    def id_kinds(self) -> tuple[str, str]:
        """("integer" | "string") of the user ids and of the item ids."""
        return _id_kind(self.model.user_ids), _id_kind(self.model.item_ids)


def _id_kind(ids: np.ndarray) -> str:
    return "integer" if ids.dtype.kind in "iu" else "string"


def _read_strict_card(path: FilePath) -> dict[str, Any]:
    """The card, which /model will send, so it must be strict JSON; ModelFileError if not."""
    from alsresearch.artefact import read_card

    try:
        card = read_card(path)
        json.dumps(card, allow_nan=False)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable model card ({exc})") from exc
    return card


class _UnsettledFiles(ModelFileError):
    """The files do not form one promoted set: a promotion's journal exists, or a file does
    not match the sha256 its card records. Maybe half-way through a promotion or a copy, so the
    watcher looks once more before refusing; at start-up it is an error like any other."""


def _card_mismatch(card: dict[str, Any], files, model_digest: str) -> str | None:
    """Why the model and popularity files do not match the sha256s ``card`` records (None when
    they do, or when the card records none); ``model_digest`` is the model file's, computed."""
    from alsresearch.files import file_digest

    recorded = card.get("files")
    for path in (files.model, files.popularity):
        entry = recorded.get(path.name) if isinstance(recorded, dict) else None
        if not isinstance(entry, dict) or not path.exists():
            continue
        digest = model_digest if path == files.model else file_digest(path)
        if entry.get("sha256") != digest:
            return (
                f"{path}: does not match its model card {files.card.name} (sha256 differs): "
                "a mixed-up or half-copied artefact; promote again"
            )
    return None


# ---------------------------------------------------------------------- hot swap
def _history_rows(rows: list, id_key: str, history_key: str, index, n_other: int, other: str):
    """``(ids, counts)`` of update rows ``[{id_key: id, history_key: [...], "counts": [...]}]``:
    the ids as an array and a CSR of their histories over the model's ``other`` side (``index``
    maps those ids, unknown ones a ValueError naming them)."""
    ids = [row[id_key] for row in rows]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1}, key=str)[:5]
        raise ValueError(f"updates: {id_key} {repeated} given more than once")
    r, c, w = [], [], []
    for pos, row in enumerate(rows):
        history = list(row[history_key])
        counts = row.get("counts")
        counts = [1.0] * len(history) if counts is None else list(counts)
        if len(counts) != len(history):
            raise ValueError(
                f"updates: {id_key} {row[id_key]!r} has {len(history)} {history_key} and "
                f"{len(counts)} counts"
            )
        idx = np.asarray(index(history, missing="ignore"), dtype=np.int64)
        if (idx < 0).any():
            unknown = [h for h, i in zip(history, idx.tolist(), strict=True) if i < 0][:5]
            raise ValueError(
                f"updates: {id_key} {row[id_key]!r} names {other} ids the model does not know: "
                f"{unknown}"
                + (" (add new items first, in the same request)" if other == "item" else "")
            )
        r += [pos] * len(idx)
        c += idx.tolist()
        w += counts
    m = sp.csr_matrix((np.asarray(w, np.float64), (r, c)), shape=(len(rows), n_other))
    return np.asarray(ids), m


class _Live:
    """The one reference every request reads: ``live.service`` (replaced, never changed)."""

    def __init__(self, service: RecommendationService) -> None:
        self.service = service


def _signature(files) -> tuple:
    """(inode, size, mtime) of each artefact file and whether a promotion journal exists: a
    rename (``os.replace``) or an in-place write changes it."""
    out: list = []
    for path in (files.model, files.popularity, files.card):
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    out.append(files.journal.exists())
    return tuple(out)


class ModelWatcher:
    """Loads a newly promoted model in the background and swaps it in (see the module
    docstring, *Model swaps*).

    :meth:`check` looks once (``force=True``: load and check even when the files look
    unchanged) and returns what it did: ``"unchanged"``, ``"waiting"`` (a promotion or copy
    seems half-way: look again next time), ``"refused"`` (logged once per set of files; the old
    model keeps serving) or ``"swapped"``. :meth:`start` runs checks in a daemon thread every
    ``interval`` seconds (None: only when :meth:`request` asks, as SIGHUP does). ``prepare``
    runs first in that thread (kernel thread settings).
    """

    def __init__(
        self,
        live: _Live,
        model_path: str | FilePath,
        interval: float | None,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        from alsresearch.artefact import artefact_paths

        self.live = live
        self.files = artefact_paths(model_path)
        self.interval = interval
        self._prepare = prepare
        self._live_sig: tuple | None = None
        self._pending: tuple | None = None
        self._refused: tuple | None = None
        self._wake = threading.Event()
        self._forced = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def mark_live(self, signature: tuple) -> None:
        """The files with ``signature`` are the ones being served."""
        self._live_sig = signature

    def request(self) -> None:
        """Check now (thread- and signal-safe): what SIGHUP does."""
        self._forced = True
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        if self._prepare is not None:
            self._prepare()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            if self._stop.is_set():
                break
            self._wake.clear()
            forced, self._forced = self._forced, False
            try:
                self.check(force=forced)
            except Exception:  # never let the watcher die: the old model keeps serving
                log.exception("model reload of %s failed unexpectedly", self.files.model)

    def check(self, force: bool = False) -> str:
        with self._lock:
            return self._check(force)

    def _check(self, force: bool) -> str:
        sig = _signature(self.files)
        if not force and sig in (self._live_sig, self._refused):
            return "unchanged"
        try:
            candidate = RecommendationService.load(self.files.model)
            old = self.live.service
            if candidate.id_kinds() != old.id_kinds():
                users, items = candidate.id_kinds()
                raise ModelFileError(
                    f"{self.files.model}: incompatible: its user ids are {users} and item ids "
                    f"{items}, the running service's are {' and '.join(old.id_kinds())}; "
                    "restart the service to serve it"
                )
            candidate.self_test()
        except _UnsettledFiles as exc:  # a promotion renaming, or a copy half-way
            return self._wait(sig, str(exc))
        except (ModelFileError, OSError, ValueError, FloatingPointError) as exc:
            if _signature(self.files) != sig:
                return "waiting"  # changed while loading: look again next time
            return self._refuse(sig, str(exc))
        if _signature(self.files) != sig:
            return "waiting"
        old = self.live.service
        self.live.service = candidate  # the swap: one reference assignment
        self._live_sig, self._pending, self._refused = sig, None, None
        log.info(
            "now serving %s %s (%s), was %s",
            candidate.name,
            candidate.version,
            self.files.model,
            old.version,
        )
        return "swapped"

    def apply(self, change: Callable[[RecommendationService], RecommendationService]):
        """Replace the live service by ``change(live service)`` under the swap lock, so an
        update and a model-file swap never overwrite each other; returns the new service."""
        with self._lock:
            new = change(self.live.service)
            self.live.service = new
            return new

    def _wait(self, sig: tuple, problem: str) -> str:
        """A set that may be half-written: wait one check; refuse it if it stays so."""
        if self._pending == sig:
            return self._refuse(sig, problem)
        self._pending = sig
        log.debug("model reload waits: %s", problem)
        return "waiting"

    def _refuse(self, sig: tuple, problem: str) -> str:
        self._refused, self._pending = sig, None
        service = self.live.service
        log.warning(
            "model reload refused, still serving %s %s: %s",
            service.name,
            service.version,
            " ".join(problem.split()),
        )
        return "refused"


# ---------------------------------------------------------------------- worker lanes
@dataclass
class _Lanes:
    """Worker threads for scoring: ``single`` (single users, histories) and ``batch``."""

    single: ThreadPoolExecutor
    batch: ThreadPoolExecutor

    def shutdown(self) -> None:
        for pool in (self.single, self.batch):
            pool.shutdown(wait=False, cancel_futures=True)


def _start_lanes(threads: int) -> _Lanes:
    def init() -> None:
        set_thread_limit(threads)

    batch = ThreadPoolExecutor(1, thread_name_prefix="score-batch", initializer=init)
    single = ThreadPoolExecutor(_SINGLE_WORKERS, thread_name_prefix="score", initializer=init)
    return _Lanes(single, batch)


# ---------------------------------------------------------------------- request body limit
class _BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is answered 413 before the
    app sees it, by its Content-Length or, without one (chunked), as soon as the bytes
    received pass the limit; the rest of the body is never read. An accepted body is read here
    (at most ``limit`` bytes) and handed on unchanged."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.limit:
                    await self._refuse(send, f"Content-Length {length}")
                    return
        messages: list[dict] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send, f"more than {self.limit} bytes received")
                return
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, what: str) -> None:
        message = (
            f"the request body is too large ({what}): the limit is {self.limit} bytes "
            "(alsresearch serve --max-body-bytes)"
        )
        body = _JSON(
            {
                "message": message,
                "detail": [{"loc": ["body"], "msg": message, "type": "body_too_large"}],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------- the web app
def _recommendations(items, scores) -> list[dict[str, Any]]:
    """``[{"item_id": ..., "score": ...}]`` with plain Python ids and float scores (JSON has no
    NaN: a NaN score, which finite factors never give, is written as 0)."""
    items = np.asarray(items).tolist()
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64)).tolist()
    return [{"item_id": i, "score": s} for i, s in zip(items, scores, strict=True)]


def _id_types(ids: np.ndarray, what: str):
    """(JSON body type, path type) for ids of the kind the model was trained with."""
    from annotated_types import Ge, Le
    from fastapi import Path
    from pydantic import BeforeValidator, Strict

    if ids.dtype.kind in "iu":
        desc = f"{what} id (an integer, as in the training data)"
        # a BeforeValidator goes last: it then runs first and the constraints stay in the schema
        body = Annotated[
            int, Strict(), Ge(INT64_MIN), Le(INT64_MAX), BeforeValidator(_integral_number)
        ]
        path = Annotated[
            int,
            Path(ge=INT64_MIN, le=INT64_MAX, description=desc),
            BeforeValidator(_integer_text),
        ]
    else:
        desc = f"{what} id (a string, as in the training data)"
        body = Annotated[str, Strict()]
        path = Annotated[str, Path(description=desc)]
    return body, path


def _integral_number(value):
    """JSON has one number type: 42.0 is the integer 42 (as JSON Schema says); 42.5, "42" and
    true stay what they are and fail the strict integer check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _integer_text(value):
    """Path ids of an integer-id model must be written as integers: '42' yes, '42.0' no."""
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise ValueError(f"this model's ids are integers; {value!r} is not one")
    return value


def _message(errors) -> str:
    """One readable sentence from pydantic errors: ``where: what`` for the first few."""
    parts = []
    for err in errors[:_SHOW]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    more = f" (and {len(errors) - _SHOW} more)" if len(errors) > _SHOW else ""
    return "; ".join(parts) + more


def _render(answer: Any) -> bytes:
    """One answer as compact JSON bytes."""
    return _JSON(answer).encode()


def _render_list(answers: list[dict[str, Any]]) -> bytes:
    """A list of answers as one JSON array, encoded answer by answer: each encoder call holds
    the GIL only for one user's list, so other threads run between them."""
    return b"[" + b",".join(_render(a) for a in answers) + b"]"


def _error(status: int, message: str, kind: str, headers=None, loc=None):
    from fastapi.responses import JSONResponse

    detail = [{"loc": loc or [], "msg": message, "type": kind}]
    return JSONResponse(
        status_code=status, content={"message": message, "detail": detail}, headers=headers
    )


def create_app(
    model_path: str | FilePath,
    *,
    title: str = "alsresearch",
    threads: int = 0,
    max_body_bytes: int = MAX_BODY_BYTES,
    watch: bool = False,
    watch_interval: float = DEFAULT_WATCH_INTERVAL,
    allow_updates: bool = False,
):
    """The FastAPI app serving ``model_path`` (loaded now; ModelFileError / FileNotFoundError
    when it cannot be).

    ``threads``: numba threads per kernel in the worker threads (0: numba's default).
    ``max_body_bytes``: the largest request body accepted (413 above it). ``watch``: check the
    model files every ``watch_interval`` seconds and swap in a newly promoted model; SIGHUP
    asks for a check either way (when the app runs in the main thread, as under uvicorn).
    ``allow_updates``: take ``POST /updates`` (rows re-solved or added between retrains, see
    :meth:`RecommendationService.with_updates`) from loopback clients; off by default (403).
    """
    from fastapi import Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi_offline import FastAPIOffline
    from pydantic import (
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        Strict,
        create_model,
        model_validator,
    )
    from starlette.exceptions import HTTPException

    from alsresearch.artefact import artefact_paths

    threads = check_int(threads, "threads", low=0)
    max_body_bytes = check_int(max_body_bytes, "max_body_bytes", low=1)
    if not watch_interval > 0:
        raise ValueError(f"watch_interval must be > 0 seconds, got {watch_interval}")
    signature = _signature(artefact_paths(model_path))
    live = _Live(RecommendationService.load(model_path))
    first = live.service
    UserId, UserPath = _id_types(first.model.user_ids, "user")
    ItemId, _ = _id_types(first.model.item_ids, "item")
    N = Annotated[
        int,
        Strict(),
        Field(ge=1, le=MAX_N, description=f"list length, 1..{MAX_N}"),
        BeforeValidator(_integral_number),
    ]
    # the model type that ranked the list ("als", "ease", ...), or "popularity" for the fallback
    Source = Literal[tuple(MODEL_TYPES)]
    Count = Annotated[float, Field(ge=0, allow_inf_nan=False)]
    forbid = ConfigDict(extra="forbid")
    version_doc = "first 12 hex digits of the model file's sha256 (GET /model: live)"
    candidates_doc = (
        f"an allow list: rank only these items (at most {MAX_BATCH}); ids the model does not "
        "know are ignored; the popularity fallback honours it too"
    )
    exclude_doc = (
        f"a deny list: never recommend these items, on top of the user's own (at most "
        f"{MAX_BATCH}); ids the model does not know are ignored"
    )

    score_doc = (
        "what the score means depends on source: als, the predicted preference x_u . y_i "
        "(the dot product of the user's and the item's factors; the model fits 1 for items a "
        "user has and 0 otherwise, so scores lie near [0, 1]); ease, the item's weight for the "
        "user, x_u B (same scale); popularity, the share of training users who have the item, "
        "in [0, 1]. Higher is better; lists are ordered by score, ties by catalogue order"
    )
    source_doc = (
        "which ranked the list: the served model's type (als, ease, ...) for a known user, "
        "popularity for an unknown one"
    )
    Recommendation = create_model(
        "Recommendation",
        item_id=(ItemId, ...),
        score=(float, Field(..., description=score_doc)),
    )
    UserRecommendations = create_model(
        "UserRecommendations",
        user_id=(UserId, ...),
        recommendations=(list[Recommendation], ...),
        model=(str, ...),
        model_version=(str, Field(..., description=version_doc)),
        source=(Source, Field(..., description=source_doc)),
    )
    HistoryRecommendations = create_model(
        "HistoryRecommendations",
        recommendations=(list[Recommendation], ...),
        model=(str, ...),
        model_version=(str, Field(..., description=version_doc)),
        source=(Source, Field(..., description=source_doc)),
        unknown_item_ids=(list[ItemId], ...),
    )

    def within_work_limit(request):
        work = len(request.user_ids) * request.n
        if work > MAX_BATCH_WORK:
            raise ValueError(
                f"the batch asks for len(user_ids) x n = {len(request.user_ids)} x {request.n} "
                f"= {work} recommendations, over the limit of {MAX_BATCH_WORK} per batch; "
                "split it into smaller batches"
            )
        return request

    BatchRequest = create_model(
        "BatchRequest",
        __config__=forbid,
        __doc__=f"At most {MAX_BATCH_WORK} recommendations per batch: len(user_ids) x n <= "
        f"{MAX_BATCH_WORK} (e.g. {MAX_BATCH} users at n = {MAX_BATCH_WORK // MAX_BATCH}, or "
        f"{MAX_BATCH_WORK // MAX_N} users at n = {MAX_N}); more is a 422.",
        __validators__={"work": model_validator(mode="after")(within_work_limit)},
        user_ids=(
            Annotated[list[UserId], Field(min_length=1, max_length=MAX_BATCH)],
            Field(..., description=f"1..{MAX_BATCH} user ids; order kept, duplicates allowed"),
        ),
        n=(N, DEFAULT_N),
        candidate_items=(
            Annotated[list[ItemId], Field(max_length=MAX_BATCH)] | None,
            Field(None, description=candidates_doc),
        ),
        exclude_items=(
            Annotated[list[ItemId], Field(max_length=MAX_BATCH)] | None,
            Field(None, description=exclude_doc),
        ),
    )
    HistoryRequest = create_model(
        "HistoryRequest",
        __config__=forbid,
        item_ids=(
            Annotated[list[ItemId], Field(min_length=1, max_length=MAX_BATCH)],
            Field(..., description="the session's items (repeats count as more interactions)"),
        ),
        n=(N, DEFAULT_N),
    )

    class Health(BaseModel):
        status: str
        model: str
        model_version: str
        model_type: str
        users: int
        items: int
        loaded_at: str | None

    class ErrorDetail(BaseModel):
        loc: list[str | int]
        msg: str
        type: str

    class Error(BaseModel):
        """Every error: ``message`` says what was wrong; ``detail`` lists each problem."""

        message: str
        detail: list[ErrorDetail]

    errors = {
        413: {"model": Error, "description": f"request body over {max_body_bytes} bytes"},
        422: {"model": Error, "description": "invalid request: the message says what and where"},
    }

    # warm up (numba kernels, BLAS, the screen) and prove the model answers before traffic
    set_thread_limit(threads)
    first.self_test()
    if len(first.model.user_ids) > 1:  # the batch path too
        first.for_users(np.resize(first.model.user_ids, 64).tolist(), DEFAULT_N)
    lanes = _start_lanes(threads)
    watcher = ModelWatcher(
        live,
        model_path,
        watch_interval if watch else None,
        prepare=lambda: set_thread_limit(threads),
    )
    watcher.mark_live(signature)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        hup = False
        watcher.start()
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, watcher.request)
                hup = True
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            watcher.stop()
            lanes.shutdown()

    # /docs and /redoc from JavaScript and CSS shipped in a package (fastapi-offline), not a
    # CDN: research machines and serving hosts are often offline
    app = FastAPIOffline(
        title=title,
        version="1",
        summary=f"Recommendations from the promoted model {first.name!r}",
        description=__doc__,
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, limit=max_body_bytes)

    async def scored(lane: ThreadPoolExecutor, work: Callable[[], bytes]) -> Response:
        body = await asyncio.get_running_loop().run_in_executor(lane, work)
        return Response(content=body, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        found = [
            {k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in exc.errors()
        ]
        message = _message(found)
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type.lower():
            message = f"the body must be JSON sent as Content-Type: application/json ({message})"
        return JSONResponse(status_code=422, content={"message": message, "detail": found})

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 400:  # FastAPI could not even read the body (e.g. not UTF-8)
            message = f"the body must be UTF-8 JSON: {exc.detail}"
            return _error(422, message, "json_invalid", loc=["body"])
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            message = f"{where}: method not allowed; this path takes {allow}"
            return _error(405, message, "method_not_allowed", headers=exc.headers)
        if exc.status_code == 404:
            message = f"{where}: no such endpoint (see /docs)"
            return _error(404, message, "not_found", headers=exc.headers)
        return _error(exc.status_code, f"{where}: {exc.detail}", "http_error", exc.headers)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError):
        return _error(422, str(exc), "value_error")

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        message = f"internal error while answering {request.method} {request.url.path}: {exc}"
        return _error(500, message, "internal_error")

    @app.post("/recommendations/batch", response_model=list[UserRecommendations], responses=errors)
    async def recommend_batch(request: BatchRequest):
        """Top-``n`` items for each user, in request order (duplicates allowed), all from one
        model. At most ``len(user_ids) x n`` = MAX_BATCH_WORK recommendations (see BatchRequest).
        """
        service = live.service  # read once: the whole batch comes from this model
        users, n = request.user_ids, request.n
        items, exclude = request.candidate_items, request.exclude_items
        return await scored(
            lanes.batch, lambda: _render_list(service.for_users(users, n, items, exclude))
        )

    @app.post("/recommendations/history", response_model=HistoryRecommendations, responses=errors)
    async def recommend_history(request: HistoryRequest):
        """Fold-in top-``n`` for an anonymous session; unknown item ids are ignored and listed."""
        service = live.service
        items, n = request.item_ids, request.n
        return await scored(lanes.single, lambda: _render(service.for_history(items, n)))

    class UserUpdate(BaseModel):
        model_config = forbid
        user_id: UserId
        item_ids: Annotated[list[ItemId], Field(max_length=MAX_BATCH)]
        counts: Annotated[list[Count], Field(max_length=MAX_BATCH)] | None = None

    class ItemUpdate(BaseModel):
        model_config = forbid
        item_id: ItemId
        user_ids: Annotated[list[UserId], Field(max_length=MAX_BATCH)]
        counts: Annotated[list[Count], Field(max_length=MAX_BATCH)] | None = None

    class UpdateRequest(BaseModel):
        """Rows to re-solve (known ids) or add (new ids) from their full current history,
        items first, then users; counts default to 1 each."""

        model_config = forbid
        users: Annotated[list[UserUpdate], Field(max_length=MAX_BATCH)] | None = None
        items: Annotated[list[ItemUpdate], Field(max_length=MAX_BATCH)] | None = None

    class UpdateResult(BaseModel):
        model: str
        model_version: str
        users_updated: int
        users_added: int
        items_updated: int
        items_added: int

    @app.post(
        "/updates",
        response_model=UpdateResult,
        responses={**errors, 403: errors[422]},
        include_in_schema=allow_updates,  # documented where it can be used
    )
    async def update(body: UpdateRequest, request: Request):
        """Re-solve or add users and items from their histories without a restart (the
        model file is unchanged: the next promoted file replaces these updates). Off unless
        the service was started with ``--allow-updates``, and then from loopback only."""
        if not allow_updates:
            return _error(
                403, "updates are off: start the service with --allow-updates", "forbidden"
            )
        client = request.client.host if request.client else ""
        if client not in LOOPBACK:
            return _error(403, f"updates are taken from loopback only, not {client}", "forbidden")
        users = None if body.users is None else [u.model_dump() for u in body.users]
        items = None if body.items is None else [i.model_dump() for i in body.items]

        def work() -> bytes:
            new = watcher.apply(lambda service: service.with_updates(users, items))
            result = {"model": new.name, "model_version": new.version, **new.live["last_update"]}
            return json.dumps(result).encode()

        return await scored(lanes.batch, work)

    async def post_only(request: Request):
        raise HTTPException(405, headers={"Allow": "POST"})

    # before the GET route below, whose {user_id} would otherwise take "batch" as a user id
    for path in ("/recommendations/batch", "/recommendations/history"):
        app.add_api_route(path, post_only, methods=["GET"], include_in_schema=False)

    n_query = Query(ge=1, le=MAX_N, description=f"list length, 1..{MAX_N}")
    integer_items = first.model.item_ids.dtype.kind in "iu"
    # what parse_ids reads: comma-separated integers (spaces allowed) for an integer-id model
    id_list = r"^ *([+-]?[0-9]+)? *(, *([+-]?[0-9]+)? *)*$" if integer_items else None

    def parse_ids(text: str, name: str) -> list:
        """A comma-separated id list of a query parameter, as the model's kind of ids."""
        ids = [part.strip(" ") for part in text.split(",") if part.strip(" ")]
        if len(ids) > MAX_BATCH:
            raise ValueError(f"{name}: at most {MAX_BATCH} item ids, got {len(ids)}")
        if not integer_items:
            return ids
        bad = [i for i in ids if not _INTEGER_TEXT.fullmatch(i)]
        if bad:
            raise ValueError(f"{name}: this model's item ids are integers; {bad[0]!r} is not one")
        return [int(i) for i in ids]

    @app.get(
        "/recommendations/{user_id}",
        response_model=UserRecommendations,
        responses={422: errors[422]},
    )
    async def recommend(
        user_id: UserPath,
        n: Annotated[int, n_query] = DEFAULT_N,
        exclude: Annotated[
            str | None, Query(pattern=id_list, description=f"comma-separated: {exclude_doc}")
        ] = None,
        candidates: Annotated[
            str | None, Query(pattern=id_list, description=f"comma-separated: {candidates_doc}")
        ] = None,
    ):
        """Top-``n`` items for one user; unknown users get the popularity list."""
        service = live.service
        deny, allow = (
            None if text is None else parse_ids(text, name)
            for text, name in ((exclude, "exclude"), (candidates, "candidates"))
        )
        return await scored(
            lanes.single, lambda: _render(service.for_users([user_id], n, allow, deny)[0])
        )

    @app.get("/health", response_model=Health)
    async def health():
        """Status and the live model (its name, version and when it was loaded)."""
        return JSONResponse(live.service.health())

    @app.get("/model", response_model=dict[str, Any])
    async def model_card():
        """The live model card written at promotion (parameters, metrics, split, provenance),
        with ``live``: the files served, the model file's sha256 and when it was loaded."""
        return JSONResponse(live.service.model_card())

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _exact_integer_bounds(default_openapi())
        return app.openapi_schema

    app.openapi = openapi
    app.state.live = live
    app.state.watcher = watcher
    return app


def _exact_integer_bounds(node):
    """FastAPI's OpenAPI models hold ``minimum``/``maximum`` as floats, which turns the int64 id
    bounds into 2**63 (one past the end); put the exact integers back."""
    exact = {float(INT64_MIN): INT64_MIN, float(INT64_MAX): INT64_MAX}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("minimum", "maximum") and isinstance(value, float) and value.is_integer():
                node[key] = exact.get(value, int(value))
            else:
                _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)
    return node


# ---------------------------------------------------------------------- running
def run(
    model_path: str | FilePath,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
    threads: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    watch: bool = False,
    watch_interval: float = DEFAULT_WATCH_INTERVAL,
    allow_updates: bool = False,
) -> None:
    """Load the model and serve it with uvicorn until stopped.

    ``threads`` caps BLAS and numba threads for scoring (1 by default: requests are small, and
    on a busy machine multi-threaded kernels wait for their threads); 0 keeps the libraries'
    defaults (all cores). ``max_body_bytes``, ``watch``, ``watch_interval`` and
    ``allow_updates``: see :func:`create_app`. A model that cannot be loaded raises ModelFileError /
    FileNotFoundError / ValueError naming the file, before the port is bound.
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    threads = check_int(threads, "threads", low=0)
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")  # for the whole process
    app = create_app(
        model_path,
        threads=threads,
        max_body_bytes=max_body_bytes,
        watch=watch,
        watch_interval=watch_interval,
        allow_updates=allow_updates,
    )
    log_config = copy.deepcopy(LOGGING_CONFIG)  # the service's own lines look like uvicorn's
    log_config["loggers"]["alsresearch"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        log_config=log_config,
    )
