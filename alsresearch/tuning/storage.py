"""Where a study lives: storage URLs, password masking, heartbeats, retries and the creation lock.

Three kinds of storage, one URL each (:func:`storage_url`):

- ``sqlite:///path`` (or a plain file path; the default, ``experiments/<study>.db``): one
  machine, any number of worker processes;
- ``postgresql+psycopg://user[:password]@host:port/db`` (the ``postgres`` extra, psycopg 3; any
  SQLAlchemy URL Optuna's RDBStorage takes works the same way): workers on any number of
  machines;
- ``journal:PATH``: Optuna's JournalFileBackend, an append-only log file on a shared file system,
  for when no database is at hand.

What every worker gets, whatever the storage (:func:`open_storage`):

- **Heartbeats.** Every running trial beats every ``heartbeat`` seconds from its own thread; a
  RUNNING trial without a beat for ``GRACE_BEATS * heartbeat`` seconds belongs to a dead worker.
  The next live worker marks it FAIL and queues its configuration once more (Optuna's
  ``RetryHeartbeatStaleTrialCallback``, ``max_retry=1``). The fits release the GIL (numba
  ``nogil=True`` kernels on Python threads, :mod:`alsresearch._jit`), so a long fit does not
  starve the heartbeat thread (tests/test_postgres.py measures the gaps between beats during a
  fit longer than three grace periods). Optuna's journal storage has no heartbeat of its own:
  :class:`_JournalStorage` records each beat as a trial system attribute (one journal line per
  beat) stamped with the worker's wall clock, so there the machines' clocks must agree to well
  within the grace period (NTP).
- **Retries** (RDB servers; ``retry`` seconds, :class:`_RetryingStorage`): a storage call that
  fails because the server cannot be reached (restarted, network down) is retried with
  exponential backoff (0.5 s doubling to at most 15 s) until it succeeds or ``retry`` seconds
  have passed since the first failure; then :class:`StorageUnavailableError` names the (masked)
  storage and the error. The running trial keeps its place: its reports, its heartbeat and its
  result are written once the server is back. Nothing is committed twice: a call is retried only
  when the server did not answer it, and a state update the server did apply before the line
  dropped is recognised (the trial already holds that state) rather than failed.
- **Race-free creation** (:func:`creation_lock`): creating the tables and the study, recording
  what the study is made with and queueing trial 0 happen under one lock (a PostgreSQL advisory
  lock; a lock file beside a SQLite or journal file), so workers started in the same second
  all succeed and trial 0 is queued once.

Passwords: every URL that is printed, recorded (the study, best.json, results.json) or put in an
error message goes through :func:`mask_url` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alsresearch import paths
from alsresearch.errors import MissingExtraError, SetupError

__all__ = [
    "ENV_VAR",
    "GRACE_BEATS",
    "JOURNAL_PREFIX",
    "MAX_STORAGE_RETRY",
    "StorageUnavailableError",
    "creation_lock",
    "mask_url",
    "open_storage",
    "storage_kind",
    "storage_url",
]

#: the environment variable ``--storage`` (and :func:`storage_url`) falls back to
ENV_VAR = "ALSRESEARCH_STORAGE"
#: the prefix of a journal file storage: ``journal:PATH``
JOURNAL_PREFIX = "journal:"
#: a running trial without a heartbeat for this many intervals belongs to a dead worker (the
#: heartbeat thread is not starved by a fit: the kernels release the GIL)
GRACE_BEATS = 3
#: the longest ``retry`` (seconds) a worker may wait for an unreachable database: a day
MAX_STORAGE_RETRY = 86_400
#: the longest wait between two attempts of a failed storage call, in seconds
MAX_BACKOFF = 15.0
_HEARTBEAT_ATTR = "alsresearch:heartbeat"

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/?#@\s]*):[^@\s/]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&\s]*", re.IGNORECASE)


class StorageUnavailableError(SetupError):
    """The study's database could not be reached for longer than the retry time. The command
    line reports it in one line (the masked storage and the error) and exits 1; rerunning the
    same command resumes the study."""


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``
    (``postgresql+psycopg://user:***@host/db``), also a ``password=`` query argument; the one
    function every printed or recorded storage URL and error message goes through."""
    text = _URL_PASSWORD.sub(r"\g<head>:***@", str(text))
    return _QUERY_PASSWORD.sub(r"\g<head>***", text)


def storage_kind(url: str) -> str:
    """``sqlite``, ``journal`` or the URL's scheme without its driver (``postgresql``)."""
    if url.startswith(JOURNAL_PREFIX):
        return "journal"
    return url.split("://", 1)[0].split("+", 1)[0]


def storage_url(storage: str | Path | None, study_name: str) -> str:
    """The storage of a study as one URL: ``storage`` as given when it has a scheme
    (``postgresql+psycopg://...``, ``sqlite:///...``), ``journal:PATH`` with the path made
    absolute, a plain path as a SQLite file; None: the environment variable
    ``ALSRESEARCH_STORAGE`` when set, else the SQLite file ``experiments/<study>.db`` under the
    working directory (or ``$ALSRESEARCH_HOME``)."""
    if storage is None or str(storage) == "":
        storage = os.environ.get(ENV_VAR) or paths.experiments_dir() / f"{study_name}.db"
    text = str(storage)
    if text.startswith(JOURNAL_PREFIX):
        path = Path(text[len(JOURNAL_PREFIX) :]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{JOURNAL_PREFIX}{path}"
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _file_of(url: str) -> Path | None:
    """The file a SQLite or journal URL names (None: a server, or SQLite in memory)."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX) :])
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :])
    return None


# ---------------------------------------------------------------------------------- errors
def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the server could not be reached or dropped the
    connection, rather than refusing the statement: only those calls are retried."""
    import sqlalchemy.exc

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if type(exc).__module__.startswith("psycopg") and type(exc).__name__ in (
            "OperationalError",
            "InterfaceError",
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    """The root error's first line (SQLAlchemy's own wrapping and background links dropped)."""
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    return f"{type(root).__name__}: {lines[0] if lines else ''}"


class _Retry:
    """Calls retried while the server is unreachable, for at most ``seconds`` after the first
    failure of each call, with exponential backoff; one line on stderr when the storage goes
    away and one when it is back."""

    def __init__(self, url: str, seconds: float):
        self.where = mask_url(url)
        self.seconds = float(seconds)

    def __call__(self, fn: Callable, *args, **kwargs):
        first = None
        delay = 0.5
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                now = time.monotonic()
                if first is None:
                    first = now
                    if self.seconds > 0:
                        print(
                            f"[pid {os.getpid()}] storage {self.where} unreachable "
                            f"({_first_line(exc)}); retrying for up to {self.seconds:g} s",
                            file=sys.stderr,
                            flush=True,
                        )
                if now - first + delay > self.seconds:
                    raise StorageUnavailableError(
                        f"storage {self.where} unreachable"
                        + (f" for {self.seconds:g} s" if self.seconds > 0 else "")
                        + f": {mask_url(_first_line(exc))}; rerun the same command to resume"
                    ) from None
                time.sleep(delay)
                delay = min(2 * delay, MAX_BACKOFF)
                continue
            if first is not None:
                print(
                    f"[pid {os.getpid()}] storage {self.where} reachable again after "
                    f"{time.monotonic() - first:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            return result


# ---------------------------------------------------------------------------------- storages
def _missing_driver(url: str, exc: BaseException) -> MissingExtraError:
    return MissingExtraError(
        f"storage {mask_url(url)}: its database driver is not installed ({exc}); for "
        "PostgreSQL: pip install 'alsresearch[postgres]' (psycopg 3, URLs "
        "postgresql+psycopg://user@host:port/db)"
    )


def _stale_callback():
    """Optuna's callback that queues a dead worker's trial once more (named
    RetryFailedTrialCallback before Optuna 4.9)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if cls is None:  # Optuna < 4.9
        cls = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=1)


class _Unbeaten:
    """RUNNING trials that never beat (their worker died between creating the trial and its
    first beat, a window of milliseconds that a SIGKILL can still hit) are stale once this
    process has seen them without a beat for a grace period, by its own clock (so no two
    machines' clocks are compared)."""

    def __init__(self):
        self.first_seen: dict[int, float] = {}

    def stale(self, unbeaten: list[int], grace: float) -> list[int]:
        now = time.monotonic()
        self.first_seen = {i: self.first_seen.get(i, now) for i in unbeaten}
        return [i for i, seen in self.first_seen.items() if now - seen > grace]


def _rdb_class():
    """RDBStorage that also fails the RUNNING trials that never beat (:class:`_Unbeaten`)."""
    import optuna
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    class _RDBStorage(optuna.storages.RDBStorage):
        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            stale = super()._get_stale_trial_ids(study_id)
            with _create_scoped_session(self.scoped_session, True) as session:
                running = (
                    session.query(models.TrialModel)
                    .filter(models.TrialModel.state == TrialState.RUNNING)
                    .filter(models.TrialModel.study_id == study_id)
                    .all()
                )
                unbeaten = [t.trial_id for t in running if not t.heartbeats]
            if not hasattr(self, "_unbeaten"):
                self._unbeaten = _Unbeaten()
            return stale + self._unbeaten.stale(unbeaten, self.grace_period)

    return _RDBStorage


def _rdb(url: str, heartbeat: int | None):
    import optuna

    if url.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:  # a server: reconnect transparently after a restart, give up connecting in 10 s
        engine_kwargs = {"pool_pre_ping": True}
        if storage_kind(url) == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        callback_name = (
            "heartbeat_stale_trial_callback"
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
            else "failed_trial_callback"
        )
        kwargs = {
            "heartbeat_interval": heartbeat,
            "grace_period": GRACE_BEATS * heartbeat,
            callback_name: _stale_callback(),
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return _rdb_class()(url, engine_kwargs=engine_kwargs, **kwargs)
        except ImportError as exc:
            raise _missing_driver(url, exc.__cause__ or exc) from None


def _journal_class():
    """JournalStorage with heartbeats: each beat is a trial system attribute holding the
    worker's wall-clock time (Optuna's journal storage has no heartbeat of its own)."""
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class _JournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
        def __init__(self, backend, heartbeat: int | None):
            super().__init__(backend)
            self._interval = heartbeat
            self._callback = None if heartbeat is None else _stale_callback()
            self._unbeaten = _Unbeaten()

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker failed it meanwhile: its tell will say so

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            assert self._interval is not None
            grace = GRACE_BEATS * self._interval
            oldest = time.time() - grace
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            stale = [
                t._trial_id
                for t in running
                if t.system_attrs.get(_HEARTBEAT_ATTR, oldest + 1) < oldest
            ]
            unbeaten = [t._trial_id for t in running if _HEARTBEAT_ATTR not in t.system_attrs]
            return stale + self._unbeaten.stale(unbeaten, grace)

        def get_heartbeat_interval(self) -> int | None:
            return self._interval

        def get_heartbeat_stale_trial_callback(self):
            return self._callback

        get_failed_trial_callback = get_heartbeat_stale_trial_callback  # Optuna < 4.9

    return _JournalStorage


def _retrying_class():
    import optuna
    from optuna.storages import BaseStorage
    from optuna.storages._heartbeat import BaseHeartbeat

    class _RetryingStorage(BaseStorage, BaseHeartbeat):
        """A storage (Optuna's cached RDB storage) whose every call is retried while the server
        is unreachable; heartbeats and stale-trial checks go to the RDB storage the same way."""

        def __init__(self, rdb, retry: _Retry):
            self._rdb = rdb
            self._inner = optuna.storages.get_storage(rdb)  # the cache of finished trials
            self._retry = retry

        def set_trial_state_values(self, trial_id, state, values=None):
            attempts = []

            def call():
                attempts.append(1)
                try:
                    return self._inner.set_trial_state_values(trial_id, state, values)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # a retry of an update the server applied before the line dropped
                    held = self._rdb.get_trial(trial_id)
                    if len(attempts) > 1 and held.state == state and held.values == values:
                        return True
                    raise

            return self._retry(call)

        # the heartbeat side: the RDB storage's own (the cache has none)
        def record_heartbeat(self, trial_id):
            # the heartbeat thread keeps trying; the trial's own next call reports the outage
            with contextlib.suppress(StorageUnavailableError):
                self._retry(self._rdb.record_heartbeat, trial_id)

        def _get_stale_trial_ids(self, study_id):
            return self._retry(self._rdb._get_stale_trial_ids, study_id)

        def get_heartbeat_interval(self):
            return self._rdb.get_heartbeat_interval()

        def get_heartbeat_stale_trial_callback(self):
            return self._rdb.get_heartbeat_stale_trial_callback()

        get_failed_trial_callback = get_heartbeat_stale_trial_callback  # Optuna < 4.9

    def forward(name):
        def method(self, *args, **kwargs):
            return self._retry(getattr(self._inner, name), *args, **kwargs)

        method.__name__ = name
        return method

    names = [
        n for n in dir(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))
    ]
    for name in names:
        if name not in _RetryingStorage.__dict__:
            setattr(_RetryingStorage, name, forward(name))
    _RetryingStorage.__abstractmethods__ = frozenset()
    return _RetryingStorage


def open_storage(url: str, *, heartbeat: int | None = None, retry: float = 0):
    """The Optuna storage of ``url`` (:func:`storage_url`): with ``heartbeat`` (seconds),
    running trials beat and dead workers' trials are failed and queued once more; ``retry``
    (seconds) is how long a call to an unreachable database server is retried before
    :class:`StorageUnavailableError` (opening the storage included; 0: fail at once)."""
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        return _journal_class()(JournalFileBackend(str(_file_of(url))), heartbeat)
    retrying = _Retry(url, retry)
    rdb = retrying(_rdb, url, heartbeat)
    if url.startswith("sqlite"):  # a local file: nothing to reach
        return optuna.storages.get_storage(rdb)
    return _retrying_class()(rdb, retrying)


@contextlib.contextmanager
def creation_lock(url: str, retry: float = 0) -> Iterator[None]:
    """Held while a worker creates (or opens) a study, records what it is made with and queues
    trial 0: a PostgreSQL advisory lock on the server, an exclusive lock on ``<file>.create-lock``
    beside a SQLite or journal file; other servers rely on their own constraints (Optuna's
    ``load_if_exists``)."""
    file = _file_of(url)
    if file is not None:
        import fcntl

        file.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{file}.create-lock", "a") as fh:  # not .lock: the journal uses that
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if storage_kind(url) != "postgresql":
        yield
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(b"alsresearch study creation").digest()[:8], "big") >> 1

    def connect():
        try:
            engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        except ImportError as exc:
            raise _missing_driver(url, exc) from None
        connection = engine.connect()
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        return engine, connection

    engine, connection = _Retry(url, retry)(connect)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a dropped connection has released it already
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        with contextlib.suppress(Exception):
            connection.close()
        engine.dispose()
