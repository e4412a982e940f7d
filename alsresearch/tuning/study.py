"""The study runner: a sweep of one model's hyperparameters with Optuna.

The search space names the model (:attr:`SearchSpace.model <alsresearch.tuning.SearchSpace>`:
``als`` by default, or any registered type, e.g. ``ease``); every trial builds that model from
its sampled arguments, passing the sweep's seed (``random_state``) and thread count
(``num_threads``) only to a model whose constructor takes them.

A sweep (:func:`tune`) drops the test part of the data with the test split
(:class:`~alsresearch.split.SplitSpec`: random, temporal or leave-last, the same spec
``alsresearch evaluate`` and ``promote`` use later) and carves a validation split out of the rest
(the search space's ``validation`` section, :func:`alsresearch.split.validation_split`): every
trial fits on the fit part and is scored by NDCG@k on the validation part, so the test set is
never looked at.

- Seeded TPE sampler; the search space's defaults are enqueued as trial 0, once per study (also
  when a study is resumed).
- Per-iteration pruning, for models with iterations (ALS: ``fit`` takes a ``callback``): the
  callback reports the validation metric after every ``validation.every`` iterations (and the
  last) and a median pruner stops trials that trail the others. A model without iterations
  (EASE) is fitted once and scored once on the validation part; that score is the trial's value.
- Storage (:mod:`alsresearch.tuning.storage`): a SQLite file (by default
  ``experiments/<study>.db`` under :func:`alsresearch.paths.home`), a PostgreSQL server
  (``postgresql+psycopg://...``) or a journal file (``journal:PATH``); ``$ALSRESEARCH_STORAGE``
  when none is given. Studies resume (``load_if_exists``); any number of workers share one
  study: ``workers`` processes of one call, and any number of calls on any number of machines
  with the same storage and study name. Creating the study is race-free (a lock), finished
  trials are committed one by one, so a killed worker loses only its running trial, which is
  marked FAIL after ``GRACE_BEATS * heartbeat`` seconds without a beat and run once more by a
  live worker. The workers together run until ``n_trials`` trials are COMPLETE or PRUNED
  (a trial started when that many are finished or running is marked FAIL as surplus before it
  does any work), and a database server that goes away is waited for ``storage_retry`` seconds.
- A study records the model type, the data (its source spec, fingerprint and shape), the split,
  the seed and the search space; resuming it with any of them changed is refused, naming what
  differs (studies made before the model type was recorded are ALS studies).
- Exports ``trials.csv`` and ``best.json`` (the model type, best parameters, validation metric,
  the defaults' and popularity's validation metric, study name, seed, data and split records,
  environment).
- Recency weighting (a ``half_life`` param, :data:`~alsresearch.tuning.space.DATA_PARAMS`): the
  study keeps the data with each cell's events in memory, and each trial recomputes the fit
  part's counts for its half-life (:meth:`~alsresearch.data.Interactions.decayed`, the reference
  time being the fit part's latest event, or the data's ``as_of``), so no trial rereads the
  events file and no validation or test event moves a training count. When the data have no
  timestamps, or the data source fixes a half-life, the param is dropped from the space with one
  warning. best.json keeps ``model`` and ``params`` (the model's type and arguments, for
  ``alsresearch train --params`` and ``promote``) apart from ``data_params`` (the chosen
  ``half_life``, which ``train`` applies). EASE binarises its training counts, so a half-life
  changes nothing for it.

Optuna is an optional dependency (the ``notebooks`` extra): it is imported inside functions.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alsresearch import files, provenance
from alsresearch.checks import check_int
from alsresearch.data import Interactions
from alsresearch.errors import NoResultError, SpecMismatchError
from alsresearch.limits import MAX_HEARTBEAT, MAX_TRIALS, MAX_WORKERS
from alsresearch.records import data_record
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec, user_holdout, validation_split
from alsresearch.tuning.space import DATA_PARAMS, DEFAULT_MODEL, SearchSpace, model_arguments
from alsresearch.tuning.storage import (
    GRACE_BEATS,
    MAX_STORAGE_RETRY,
    StorageUnavailableError,
    creation_lock,
    mask_url,
    open_storage,
    storage_url,
)

__all__ = [
    "DEFAULT_STORAGE_RETRY",
    "GRACE_BEATS",
    "StorageUnavailableError",
    "TuneFailedError",
    "TuneResult",
    "ValidationData",
    "default_study_name",
    "export_results",
    "load_study",
    "read_data_params",
    "storage_url",
    "tune",
    "validation_data",
]

_FINISHED = ("COMPLETE", "PRUNED")
#: seconds a worker waits for a database server that went away before giving up
DEFAULT_STORAGE_RETRY = 300


class TuneFailedError(NoResultError):
    """A sweep that produced no result: too many trials failed (every one, typically), or no
    trial completed. The command line reports it in one line and exits 1."""


# ---------------------------------------------------------------------------------- data
@dataclass
class ValidationData:
    """What every trial sees: the fit part and the (user-capped) validation part."""

    fit: Interactions
    valid: Interactions
    k: int
    every: int
    #: the fold-in protocol: the validation users' histories (they are absent from ``fit``)
    fold_in: Interactions | None = None


def validation_data(
    data: Interactions,
    space: SearchSpace,
    *,
    seed: int = 0,
    split: SplitSpec = SplitSpec(),  # noqa: B008 (frozen: one shared default is safe)
) -> ValidationData:
    """The tuning data: drop the test part of ``split``, then split the rest into fit and
    validation parts.

    ``split`` is the test split used later to score the chosen model (``alsresearch evaluate``
    and :func:`alsresearch.promote.promote` take the same spec), so its test cells are never
    seen here; a split with ``test_fraction=0`` tunes on all of ``data`` (when it is already a
    training set). The validation part is a seeded random share ``validation.fraction`` of each
    user's remaining cells, and keeps at most ``validation.max_users`` users (a seeded sample)
    so that scoring it every few iterations stays cheap.

    Under the fold-in protocol (``split.protocol == "fold_in"``) validation mirrors the test:
    a share ``validation.fraction`` of the training users (at most ``validation.max_users``)
    is held out of the fit part whole, and each is ranked from a fold-in of the split's
    ``1 - test_fraction`` of their cells (:func:`alsresearch.split.user_holdout`).
    """
    train = split.parts(data).train
    v = space.validation
    if split.protocol == "fold_in":
        eligible = int(np.sum(np.diff(train.matrix.indptr) >= 2))
        if eligible == 0:
            raise ValueError(
                f"no validation users: the data ({data!r}) has no training user with two or "
                "more interactions"
            )
        n_users = min(v["max_users"], eligible, max(1, round(v["fraction"] * eligible)))
        fit, fold_in, valid = user_holdout(
            train, n_users, fold_in_fraction=1 - split.test_fraction, seed=seed
        )
        return ValidationData(fit=fit, valid=valid, k=v["k"], every=v["every"], fold_in=fold_in)
    fit, valid = validation_split(train, "random", test_fraction=v["fraction"], seed=seed)
    users = np.flatnonzero(np.diff(valid.matrix.indptr))
    if len(users) == 0:
        raise ValueError(
            f"no validation users: the data ({data!r}) has no user with two or more interactions"
            " left after the test split"
        )
    if len(users) > v["max_users"]:
        keep = np.zeros(valid.n_users, dtype=bool)
        keep[np.random.default_rng(seed).choice(users, v["max_users"], replace=False)] = True
        valid = valid.select_cells(np.repeat(keep, np.diff(valid.matrix.indptr)))
    return ValidationData(fit=fit, valid=valid, k=v["k"], every=v["every"])


def _validation_score(model, vd: ValidationData) -> float:
    from alsresearch.evaluate import evaluate

    if vd.fold_in is not None:
        kw = {"protocol": "fold_in", "fold_in": vd.fold_in}
    else:
        kw = {}
    result = evaluate(model, vd.fit, vd.valid, k=vd.k, metrics=["ndcg"], **kw)
    return float(result.metrics[f"ndcg@{vd.k}"])


# ---------------------------------------------------------------------------------- storage
def default_study_name(data: Interactions, seed: int, model: str = DEFAULT_MODEL) -> str:
    """``<model>-<data fingerprint[:12]>-s<seed>`` (``als-...`` for ALS): the same model, data
    and seed resume the same study."""
    return f"{model}-{data.fingerprint()[:12]}-s{seed}"


def load_study(storage: str | Path | None, study_name: str, *, retry: float = 0):
    """Open an existing study (for plots and exports); ``storage`` as in :func:`storage_url`
    (a URL, ``journal:PATH``, a SQLite file, or None: ``$ALSRESEARCH_STORAGE`` or the default
    file); ``retry`` seconds of waiting for an unreachable database server."""
    import optuna

    url = storage_url(storage, study_name)
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(url, retry=retry))
    except KeyError:
        raise KeyError(f"no study {study_name!r} in {mask_url(url)}") from None


def _counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


# ---------------------------------------------------------------------------------- records
def _study_record(
    data: Interactions,
    vd: ValidationData,
    source: DataSource | None,
    split: SplitSpec,
    space: SearchSpace,
    seed: int,
    url: str,
) -> dict[str, Any]:
    """What a study is made with, stored in its user attributes (JSON-ready) and copied into
    best.json: the model type, the data, the split, the seed and the search space."""
    record = {
        "model": space.model,
        "data": {**data_record(data, source), "fit_fingerprint": vd.fit.fingerprint()},
        "seed": seed,
        "metric": space.metric,
        "fixed": space.fixed,
        "search_space": space.to_dict(),
        "storage": mask_url(url),
        "split": {
            **split.to_dict(),
            "validation_fraction": space.validation["fraction"],
            "validation_seed": seed,
        },
        "validation_users": int(np.count_nonzero(np.diff(vd.valid.matrix.indptr))),
    }
    return files.to_jsonable(record, "study record")


def _recorded_split(recorded: dict[str, Any] | None) -> dict[str, Any] | None:
    """A study's split record as a SplitSpec record (None: nothing recorded); studies made
    before split kinds existed recorded ``test_fraction`` and ``split_seed`` of a random split."""
    if not recorded or "kind" in recorded:
        return recorded or None
    return {
        "kind": "random",
        "test_fraction": recorded.get("test_fraction"),
        "seed": recorded.get("split_seed"),
    }


def _check_resume(
    attrs: dict[str, Any],
    record: dict[str, Any],
    source: DataSource | None,
    split: SplitSpec,
    where: str,
) -> None:
    """Refuse to resume a study made with another model type, data source, split, data, seed or
    search space, naming what differs. A study made from Interactions without a source spec (or
    resumed without one) is compared by data fingerprint only; one made before the model type
    was recorded swept ALS."""
    what = f"{where} was created with"
    hint = "; pick another study name (--study) or storage"
    try:
        if source is not None:
            source.check_same(attrs["data"].get("source"), what)
        split.check_same(_recorded_split(attrs.get("split")), what)
    except SpecMismatchError as exc:
        raise SpecMismatchError(f"{exc}{hint}") from None
    for name, before, now in (
        ("model", attrs.get("model", DEFAULT_MODEL), record["model"]),
        ("data", attrs["data"].get("fingerprint"), record["data"]["fingerprint"]),
        ("seed", attrs.get("seed"), record["seed"]),
    ):
        if before != now:
            raise SpecMismatchError(f"{what} {name} {before!r}, not {now!r}{hint}")
    before = attrs.get("search_space")
    if isinstance(before, dict):  # spaces recorded before ``model:`` existed swept ALS
        before = {"model": DEFAULT_MODEL, **before}
    if before != record["search_space"]:
        raise SpecMismatchError(f"{what} another search space{hint}")


# ---------------------------------------------------------------------------------- trials
class _Surplus(Exception):
    """Raised by a trial that started after the requested number was already in flight."""


@dataclass
class _Objective:
    space: SearchSpace
    vd: ValidationData
    seed: int
    n_trials: int
    num_threads: int = 0
    #: builds each trial's model as ``model_factory(model_type, arguments)`` instead of the
    #: registered class (``tune --backend spark``: a Spark fit); picklable for worker processes
    model_factory: Callable[[str, dict], Any] | None = None

    def __call__(self, trial) -> float:
        self._check_quota(trial)
        try:
            return self._run(trial)
        except _CAUGHT as exc:  # recorded in the study (Optuna only logs it)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        except KeyboardInterrupt:
            # Optuna marks the trial FAIL (never left RUNNING) and re-raises; it does not
            # count against max_failures when the study is resumed
            trial.set_user_attr("interrupted", True)
            raise

    def _run(self, trial) -> float:
        import optuna

        params, data_params = self.space.sample(trial)
        model = self._model(params)
        vd = self.vd
        if "half_life" in data_params:  # the fit part's counts, recomputed from its own events
            vd = _decayed(vd, data_params["half_life"])
        start = time.perf_counter()
        if self.space.iterative:
            value, pruned = _fit_and_prune(model, vd, trial)
        else:  # one closed-form fit, one score: nothing to prune
            value, pruned = _validation_score(model.fit(vd.fit), vd), False
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        if pruned:
            raise optuna.TrialPruned()
        return value

    def _model(self, params: dict[str, Any]):
        """The space's model with a trial's arguments, and the sweep's seed and threads for a
        model that takes them."""
        from alsresearch.base import model_class

        takes = model_arguments(self.space.model)
        sweep = {"random_state": self.seed, "num_threads": self.num_threads}
        args = {**params, **{k: v for k, v in sweep.items() if k in takes}}
        if self.model_factory is not None:
            return self.model_factory(self.space.model, args)
        return model_class(self.space.model)(**args)

    def _check_quota(self, trial) -> None:
        """Trials are numbered atomically by the storage: when ``n_trials`` trials numbered
        below this one are finished or running, this one is surplus (two workers started at
        once for the last slot) and is marked failed before doing any work."""
        from optuna.trial import TrialState

        ahead = sum(
            1
            for t in trial.study.get_trials(deepcopy=False)
            if t.number < trial.number
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        )
        if ahead >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(
                f"trial {trial.number} not needed: {self.n_trials} trials are done or running"
            )


def _decayed(vd: ValidationData, half_life) -> ValidationData:
    """The validation data with the fit part's counts recomputed from its own events for
    ``half_life`` (:meth:`~alsresearch.data.Interactions.decayed`); under the fold-in protocol
    the held-out users' histories weigh the same way, from the same time."""
    if vd.fold_in is None:
        return replace(vd, fit=vd.fit.decayed(half_life, as_of=vd.fit.as_of))
    ref = vd.fit.as_of
    if ref is None:
        ref = max(int(p.events.times.max()) for p in (vd.fit, vd.fold_in)
                  if p.events is not None and p.events.n_events)  # fmt: skip
    return replace(
        vd,
        fit=vd.fit.decayed(half_life, as_of=ref),
        fold_in=vd.fold_in.decayed(half_life, as_of=ref),
    )


def _fit_and_prune(model, vd: ValidationData, trial) -> tuple[float, bool]:
    """Fit a model with iterations, scoring it on the validation part after every
    ``vd.every`` iterations and after the last, reporting each score to the trial and stopping
    the fit when the pruner says so: ``(the last score, whether the trial was pruned)``."""
    last = {"value": math.nan, "iteration": 0, "scored": -1, "pruned": False}

    def score(iteration: int, m) -> bool:
        value = _validation_score(m, vd)
        last.update(value=value, scored=iteration)
        trial.report(value, iteration)
        last["pruned"] = trial.should_prune()
        return last["pruned"]

    def callback(iteration: int, m) -> bool:
        last["iteration"] = iteration
        return iteration % vd.every == 0 and score(iteration, m)

    model.fit(vd.fit, callback=callback)
    if last["scored"] != last["iteration"]:  # the last iteration was between two scores
        score(last["iteration"], model)
    return last["value"], last["pruned"]


_CAUGHT = (_Surplus, ValueError, FloatingPointError, ArithmeticError, np.linalg.LinAlgError)


def _sampler(space: SearchSpace, seed: int):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, **space.sampler)


def _pruner(space: SearchSpace):
    import optuna

    if not space.iterative:  # nothing is reported before a trial's one score
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(**space.pruner)


def _progress(study, trial) -> None:
    counts = _counts(study)
    done = sum(counts.get(s, 0) for s in _FINISHED)
    value = "" if trial.value is None else f" {trial.value:.4f}"
    try:
        best = f", best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = ""
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    print(
        f"[pid {os.getpid()}] trial {trial.number} {trial.state.name}{value} ({params}); "
        f"{done} finished{best}",
        flush=True,
    )


def _work(
    study_name: str,
    url: str,
    objective: _Objective,
    worker: int,
    heartbeat: int,
    max_failures: int,
    quiet: bool,
    retry: float = 0,
) -> None:
    """One worker: run trials until ``n_trials`` are COMPLETE or PRUNED (any worker's).

    ``worker`` is this worker's slot in the study (:func:`_claim_slots`): workers started on
    their own, on other machines, draw distinct sampler streams."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url, heartbeat=heartbeat, retry=retry)
    study = optuna.load_study(study_name=study_name, storage=storage)
    # distinct, reproducible random streams per worker slot and per resume point
    n_before = len(study.get_trials(deepcopy=False))
    seed = int(np.random.SeedSequence([objective.seed, worker, n_before]).generate_state(1)[0])
    study.sampler = _sampler(objective.space, seed)
    study.pruner = _pruner(objective.space)
    callbacks = [] if quiet else [_progress]
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        failed = [
            t
            for t in trials
            if t.state == TrialState.FAIL
            and not t.user_attrs.get("surplus")
            and not t.user_attrs.get("interrupted")
        ]
        if done >= objective.n_trials:
            return
        if len(failed) > max_failures:
            reason = failed[-1].user_attrs.get("error", "no error recorded (a NaN score?)")
            raise TuneFailedError(
                f"study {study_name!r}: {len(failed)} failed trials (more than {max_failures}) "
                f"and {done} finished; the last one (trial {failed[-1].number}): {reason}"
            )
        if done + running >= objective.n_trials:
            time.sleep(min(1.0, heartbeat / 2))  # the last trials are running elsewhere
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # numerical trouble in one trial (an exception or a NaN score) fails that trial
            # only; anything else is a bug and stops the sweep
            try:
                study.optimize(objective, n_trials=1, catch=_CAUGHT, callbacks=callbacks)
            except StorageUnavailableError:
                raise
            except Exception as exc:
                # Optuna's trial bookkeeping can fail over the storage's error (it reads the
                # trial back from the unreachable storage): report the storage's error
                cause = _storage_error(exc)
                if cause is not None:
                    raise cause from None
                if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
                    raise
                # another worker failed this trial (its heartbeats stopped reaching the storage
                # for a grace period, e.g. during an outage) and queued it again: its result
                # is dropped here and the retry runs it once more
                print(
                    f"[pid {os.getpid()}] {exc}: another worker took it for dead and queued it "
                    "again",
                    file=sys.stderr,
                    flush=True,
                )


def _storage_error(exc: BaseException) -> StorageUnavailableError | None:
    """The :class:`StorageUnavailableError` behind ``exc``, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StorageUnavailableError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _claim_slots(study, workers: int) -> int:
    """The first of ``workers`` worker slots of this call in the study (called under the
    creation lock): 0 for the first call on a study, so one worker on a fresh study always
    draws the same trials, and distinct slots for workers started on their own."""
    first = int(study.user_attrs.get("worker_slots", 0))
    study.set_user_attr("worker_slots", first + workers)
    return first


def _work_in_child(*args) -> None:  # the target of spawned worker processes
    """:func:`_work`, ending the process with one line and exit code 1 on
    :class:`TuneFailedError` or :class:`StorageUnavailableError`, and quietly with 130 on
    Ctrl-C (no traceback from any)."""
    try:
        _work(*args)
    except (TuneFailedError, StorageUnavailableError) as exc:
        print(f"worker {args[3]}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# ---------------------------------------------------------------------------------- results
@dataclass
class TuneResult:
    study_name: str
    storage: str
    best_params: dict
    best_value: float
    best_trial: int
    defaults_value: float | None
    popularity_value: float
    counts: dict
    best_json: Path | None
    trials_csv: Path | None
    data_params: dict = field(default_factory=dict)
    """The best trial's searched data params (``half_life``), kept out of ``best_params``."""
    model: str = DEFAULT_MODEL
    """The swept model's type: ``best_params`` are its class's arguments."""

    @property
    def beats_popularity(self) -> bool:
        return self.best_value > self.popularity_value


def export_results(study, out_dir: str | Path | None, extra: dict | None = None) -> TuneResult:
    """Summarise a finished study; with ``out_dir`` also write trials.csv and best.json."""
    from optuna.trial import TrialState

    attrs = study.user_attrs
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise TuneFailedError(f"study {study.study_name!r} has no COMPLETE trial")
    best = study.best_trial
    defaults = [t for t in complete if t.user_attrs.get("role") == "defaults"]
    fixed = attrs.get("fixed", {})
    model_type = attrs.get("model", DEFAULT_MODEL)  # studies before model types: ALS
    model_params = {k: v for k, v in best.params.items() if k not in DATA_PARAMS}
    # the seed every trial's model was built with, for a model that takes one
    seed = (
        {"random_state": attrs.get("seed")} if "random_state" in model_arguments(model_type) else {}
    )
    result = TuneResult(
        study_name=study.study_name,
        storage=attrs.get("storage", ""),
        best_params={**fixed, **model_params, **seed},
        best_value=float(best.value),
        best_trial=best.number,
        defaults_value=float(defaults[0].value) if defaults else None,
        popularity_value=float(attrs["popularity_value"]),
        counts=_counts(study),
        best_json=None,
        trials_csv=None,
        data_params={k: v for k, v in best.params.items() if k in DATA_PARAMS},
        model=model_type,
    )
    if out_dir is None:
        return result
    out = Path(out_dir)
    frame = study.trials_dataframe()
    result.trials_csv = files.atomic_write(
        out / "trials.csv", lambda fh: frame.to_csv(fh, index=False)
    )
    metric = attrs.get("metric", "ndcg@10")
    record = {
        "study": study.study_name,
        "storage": result.storage,
        "seed": attrs.get("seed"),
        "metric": metric,
        "model": result.model,
        "params": result.best_params,
        **({"data_params": result.data_params} if result.data_params else {}),
        "best_trial": result.best_trial,
        "validation": {
            metric: result.best_value,
            f"defaults_{metric}": result.defaults_value,
            f"popularity_{metric}": result.popularity_value,
            "beats_popularity": result.beats_popularity,
            "n_users": attrs.get("validation_users"),
        },
        "trials": result.counts,
        "data": attrs.get("data", {}),
        "split": attrs.get("split", {}),
        "search_space": attrs.get("search_space", {}),
        "created": provenance.utc_now(),
        "environment": provenance.environment_record(),
        **(extra or {}),
    }
    result.best_json = files.write_json(out / "best.json", record, "best.json")
    return result


def read_data_params(path: str | Path) -> dict[str, Any]:
    """The ``data_params`` of a best.json (the chosen ``half_life``), {} when the file has
    none (a sweep that did not search them, or a plain JSON object of ALS parameters)."""
    import json

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read its data_params: {exc}") from exc
    found = record.get("data_params") if isinstance(record, dict) else None
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ValueError(f"{path}: data_params must be a mapping, got {found!r}")
    return found


# ---------------------------------------------------------------------------------- tune
def _space_for_data(space: SearchSpace, data: Interactions) -> SearchSpace:
    """The space without a ``half_life`` param the data cannot use (one warning says why):
    data without timestamps have no events to decay, and data already decayed by their source
    (``--half-life``) have a half-life fixed."""
    if "half_life" not in space.data_params:
        return space
    reason = None
    if data.events is None:
        reason = "the data have no timestamps (give the events' timestamp column, --timestamp-col)"
    elif data.half_life is not None:
        reason = "the data source fixes it (--half-life); drop that option to search it"
    if reason is None:
        return space
    warnings.warn(f"{space.source}: half_life is not searched: {reason}", UserWarning, stacklevel=3)
    return space.without("half_life")


def tune(
    data: Interactions,
    *,
    split: SplitSpec = SplitSpec(),  # noqa: B008 (frozen: one shared default is safe)
    source: DataSource | None = None,
    n_trials: int = 50,
    seed: int = 0,
    out_dir: str | Path | None = None,
    storage: str | Path | None = None,
    study_name: str | None = None,
    space: SearchSpace | str | Path | None = None,
    workers: int = 1,
    heartbeat: int = 10,
    max_failures: int | None = None,
    quiet: bool = False,
    storage_retry: int = DEFAULT_STORAGE_RETRY,
    model_factory: Callable[[str, dict], Any] | None = None,
) -> TuneResult:
    """Run (or resume) a sweep until ``n_trials`` trials are COMPLETE or PRUNED.

    ``data`` is the whole data set; the test part of ``split`` is dropped before anything else
    (:func:`validation_data`). ``source`` is the spec ``data`` was read with (None when the
    caller built the Interactions itself); it is recorded, with ``split``, in the study and in
    best.json. The study name defaults to :func:`default_study_name`, so the same model, data
    and seed resume the same study; a study created with another model type, data source,
    split, data, seed or search space is refused (:class:`~alsresearch.errors.SpecMismatchError`
    naming what differs). ``space`` is a :class:`SearchSpace` (its ``model`` says which model
    every trial fits), a YAML path, or None for the package's default (ALS). ``workers > 1``
    starts that many processes (each fitting with ``cpu_count // workers`` threads).
    Workers started on their own (other calls, other machines) with the same ``storage`` and
    ``study_name`` share the study the same way: together they stop at ``n_trials``.
    ``storage`` is a SQLite file, a database URL (``postgresql+psycopg://user@host/db``) or
    ``journal:PATH`` (:func:`~alsresearch.tuning.storage.storage_url`; None:
    ``$ALSRESEARCH_STORAGE`` or ``experiments/<study>.db``); its password is masked wherever it
    is printed or recorded. ``heartbeat`` is the heartbeat interval in seconds: a trial whose
    worker died is marked FAIL after ``GRACE_BEATS * heartbeat`` seconds and its configuration
    is run once more by a live worker. ``storage_retry`` is how long (seconds) a worker waits
    for a database server that cannot be reached (restarted, network down), retrying with
    backoff, before it stops with :class:`StorageUnavailableError` (one line naming the masked
    storage and the error; rerunning resumes). More than
    ``max_failures`` failed trials (default ``n_trials``) stop the sweep with
    :class:`TuneFailedError` naming the last error (so does a sweep with no COMPLETE trial). Ctrl-C
    (KeyboardInterrupt) leaves the study readable: the running trial is marked FAIL (and
    ``interrupted``, not counted as a failure on resume), nothing is exported. With ``out_dir``,
    trials.csv and best.json are written there. ``model_factory`` (``factory(model type,
    arguments)``) builds each trial's model instead of the space's registered class: ``tune
    --backend spark`` passes one that fits on Spark (a model whose ``fit`` calls the callback
    once, after the fit, is scored once and never pruned mid-fit).
    """
    import optuna

    n_trials = check_int(n_trials, "n_trials", low=1, high=MAX_TRIALS)
    seed = check_int(seed, "seed", low=0)
    workers = check_int(workers, "workers", low=1, high=MAX_WORKERS)
    heartbeat = check_int(heartbeat, "heartbeat (seconds)", low=1, high=MAX_HEARTBEAT)
    storage_retry = check_int(
        storage_retry, "storage_retry (seconds)", low=0, high=MAX_STORAGE_RETRY
    )
    max_failures = (
        n_trials if max_failures is None else check_int(max_failures, "max_failures", low=0)
    )
    if not isinstance(space, SearchSpace):
        space = SearchSpace.load(space)
    space = _space_for_data(space, data)
    study_name = study_name or default_study_name(data, seed, space.model)
    url = storage_url(storage, study_name)
    vd = validation_data(data, space, seed=seed, split=split)
    record = _study_record(data, vd, source, split, space, seed, url)

    where = mask_url(url)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # one worker at a time creates the tables and the study, records what it is made with and
    # queues trial 0: workers started in the same second all succeed, trial 0 is queued once
    with creation_lock(url, storage_retry):
        study = optuna.create_study(
            study_name=study_name,
            storage=open_storage(url, retry=storage_retry),
            direction="maximize",
            load_if_exists=True,
        )
        if "data" in study.user_attrs:
            _check_resume(
                study.user_attrs, record, source, split, f"study {study_name!r} in {where}"
            )
        else:
            from alsresearch.baselines import PopularityModel

            record["popularity_value"] = _validation_score(PopularityModel().fit(vd.fit), vd)
            for key, value in record.items():
                study.set_user_attr(key, value)
        study.enqueue_trial(
            space.trial_zero(), user_attrs={"role": "defaults"}, skip_if_exists=True
        )
        first_slot = _claim_slots(study, workers)

    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    objective = _Objective(space, vd, seed, n_trials, threads, model_factory)
    args = (study_name, url, objective, first_slot, heartbeat, max_failures, quiet, storage_retry)
    if not quiet:
        data_text = "the given interactions" if source is None else source.describe()
        part = f"minus the test part of {split}" if split.holds_out else "(no test split)"
        print(
            f"study {study_name} ({where}): {n_trials} trials, {workers} worker(s), on "
            f"{data_text} {part}; popularity {space.metric} on validation "
            f"{study.user_attrs['popularity_value']:.4f}",
            flush=True,
        )
    if workers == 1:
        _work(*args)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_work_in_child, args=(*args[:3], first_slot + w, *args[4:]), daemon=False
            )
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:  # Ctrl-C reached the workers too: let them mark their trials
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
            raise
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise TuneFailedError(
                f"{len(bad)} of {workers} workers failed (exit codes {bad}); see their messages"
            )
    result = export_results(study, out_dir)
    if not quiet:
        verdict = "beats" if result.beats_popularity else "does NOT beat"
        print(
            f"best trial {result.best_trial}: {space.metric} {result.best_value:.4f} on validation "
            f"(defaults {result.defaults_value}, popularity {result.popularity_value:.4f}): "
            f"{result.model} {verdict} popularity; params {result.best_params}"
            + (f", data params {result.data_params}" if result.data_params else ""),
            flush=True,
        )
        if result.best_json:
            print(f"wrote {result.best_json} and {result.trials_csv}", flush=True)
    return result
