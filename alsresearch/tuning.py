"""Hyperparameter sweeps of :class:`~alsresearch.als.ALSModel` with Optuna.

The search space is data: ``experiments/search_space.yaml`` (see :class:`SearchSpace`). A sweep
(:func:`tune`) works on the *training* part of a seeded test split and carves a validation
split out of it (:func:`alsresearch.split.validation_split`): every trial fits on the fit part
and is scored by NDCG@k on the validation part, so the test set is never looked at.

- Seeded TPE sampler; the seed's defaults (``ALSModel()``'s hyperparameters) are enqueued as
  trial 0, once per study (also when a study is resumed).
- Per-iteration pruning: the fit callback reports the validation metric after every
  ``validation.every`` iterations and a median pruner stops trials that trail the others.
- Storage: any Optuna RDB URL; by default a SQLite file ``experiments/<study>.db``. Studies
  resume (``load_if_exists``); ``workers`` processes share one study. Finished trials are
  committed one by one, so a killed worker loses only its running trial, which the heartbeat
  marks failed after ``GRACE_BEATS * heartbeat`` seconds without a beat; the sweep then runs
  until exactly ``n_trials`` trials are COMPLETE or PRUNED.
- Exports ``trials.csv`` and ``best.json`` (best parameters, validation metric, the defaults'
  and popularity's validation metric, study name, seed, data fingerprint, environment).

Optuna is an optional dependency (the ``notebooks`` extra): it is imported inside functions.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alsresearch import paths, provenance
from alsresearch.data import Interactions

__all__ = [
    "DEFAULT_SPACE",
    "Param",
    "SearchSpace",
    "TuneResult",
    "export_results",
    "load_study",
    "storage_url",
    "tune",
    "validation_data",
]

#: the shipped search space (in git, beside the experiment files)
DEFAULT_SPACE = paths.resource("search_space.yaml")

_PARAM_KINDS = ("float", "int", "categorical")
_FINISHED = ("COMPLETE", "PRUNED")
#: a running trial without a heartbeat for this many intervals belongs to a dead worker. Generous,
#: because the heartbeat thread needs the GIL, which a long compiled ALS sweep may hold.
GRACE_BEATS = 6
#: the validation settings a search space file may leave out
VALIDATION_DEFAULTS = {"fraction": 0.2, "max_users": 5000, "every": 3, "k": 10}


# ---------------------------------------------------------------------------------- space
@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a float or int range (optionally log-scaled) or choices."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    @classmethod
    def from_dict(cls, name: str, spec: Any, where: str) -> Param:
        where = f"{where}: params.{name}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} must be a mapping with a 'type', got {spec!r}")
        kind = spec.get("type")
        if kind not in _PARAM_KINDS:
            raise ValueError(f"{where}.type must be one of {list(_PARAM_KINDS)}, got {kind!r}")
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(allowed)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{where}.choices must be a non-empty list, got {choices!r}")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError(f"{where}.choices has duplicates: {choices}")
            return cls(name, kind, choices=tuple(choices))
        low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
        number = int if kind == "int" else (int, float)
        for key, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, number):
                raise ValueError(
                    f"{where}.{key} must be a{'n integer' if kind == 'int' else ' number'}, got {value!r}"
                )
        if not isinstance(log, bool):
            raise ValueError(f"{where}.log must be true or false, got {log!r}")
        if not low < high:
            raise ValueError(f"{where}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log-scaled range needs low > 0, got {low}")
        return cls(name, kind, low=low, high=high, log=log)

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class SearchSpace:
    """The searched hyperparameters, the enqueued defaults and the sweep's settings.

    YAML layout (every section but ``params`` and ``defaults`` optional)::

        params:       # name -> {type: float|int, low, high, log} or {type: categorical, choices}
        defaults:     # one value per param: trial 0 of every study
        fixed:        # passed to ALSModel unchanged in every trial (e.g. solver: cg)
        sampler:      # optuna.samplers.TPESampler keyword arguments (seed is set by tune)
        pruner:       # optuna.pruners.MedianPruner keyword arguments
        validation:   # fraction (of each user's training cells), max_users, every, k

    Param names are :class:`~alsresearch.als.ALSModel` keyword arguments.
    """

    params: tuple[Param, ...]
    defaults: dict
    fixed: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, spec: Any, source: str = "<dict>") -> SearchSpace:
        if not isinstance(spec, dict):
            raise ValueError(
                f"{source}: a search space must be a mapping, got {type(spec).__name__}"
            )
        known = {"params", "defaults", "fixed", "sampler", "pruner", "validation"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {unknown}; expected {sorted(known)}")
        raw_params = spec.get("params")
        if not isinstance(raw_params, dict) or not raw_params:
            raise ValueError(f"{source}: 'params' must map at least one name to its range")
        params = tuple(Param.from_dict(n, s, source) for n, s in raw_params.items())
        sections = {}
        for name in ("defaults", "fixed", "sampler", "pruner", "validation"):
            value = spec.get(name) or {}
            if not isinstance(value, dict):
                raise ValueError(f"{source}: '{name}' must be a mapping, got {value!r}")
            sections[name] = dict(value)
        defaults = sections["defaults"]
        names = [p.name for p in params]
        if sorted(defaults) != sorted(names):
            raise ValueError(
                f"{source}: 'defaults' must give exactly the searched params {sorted(names)}, "
                f"got {sorted(defaults)}"
            )
        for p in params:
            if not p.contains(defaults[p.name]):
                raise ValueError(
                    f"{source}: defaults.{p.name} = {defaults[p.name]!r} is outside params.{p.name}"
                )
        clash = sorted(set(sections["fixed"]) & set(names))
        if clash:
            raise ValueError(f"{source}: {clash} are both searched and fixed")
        validation = {**VALIDATION_DEFAULTS, **sections["validation"]}
        bad = sorted(set(validation) - set(VALIDATION_DEFAULTS))
        if bad:
            raise ValueError(
                f"{source}: unknown validation key(s) {bad}; expected {sorted(VALIDATION_DEFAULTS)}"
            )
        fraction = validation["fraction"]
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0 < fraction < 1
        ):
            raise ValueError(f"{source}: validation.fraction must be in (0, 1), got {fraction!r}")
        for key in ("max_users", "every", "k"):
            value = validation[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{source}: validation.{key} must be an integer >= 1, got {value!r}"
                )
        return cls(
            params=params,
            defaults=defaults,
            fixed=sections["fixed"],
            sampler=sections["sampler"],
            pruner=sections["pruner"],
            validation=validation,
            source=source,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> SearchSpace:
        """Read a search space YAML file (the shipped one when ``path`` is None)."""
        from alsresearch.experiments import read_yaml

        path = Path(path) if path is not None else DEFAULT_SPACE
        return cls.from_dict(read_yaml(path, "search space file"), source=str(path))

    @property
    def metric(self) -> str:
        return f"ndcg@{self.validation['k']}"

    def suggest(self, trial) -> dict[str, Any]:
        """ALSModel keyword arguments for one trial: the sampled params plus the fixed ones."""
        return {**self.fixed, **{p.name: p.suggest(trial) for p in self.params}}

    def to_dict(self) -> dict[str, Any]:
        params = {}
        for p in self.params:
            if p.kind == "categorical":
                params[p.name] = {"type": p.kind, "choices": list(p.choices)}
            else:
                params[p.name] = {"type": p.kind, "low": p.low, "high": p.high, "log": p.log}
        return {
            "params": params,
            "defaults": self.defaults,
            "fixed": self.fixed,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "validation": self.validation,
        }


# ---------------------------------------------------------------------------------- data
@dataclass
class ValidationData:
    """What every trial sees: the fit part and the (user-capped) validation part."""

    fit: Interactions
    valid: Interactions
    k: int
    every: int


def validation_data(
    data: Interactions,
    space: SearchSpace,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    split_seed: int = 42,
) -> ValidationData:
    """The tuning data: drop the test part, then split the rest into fit and validation.

    ``test_fraction`` and ``split_seed`` are those of :func:`alsresearch.split.random_holdout`
    used later for the test set (:func:`alsresearch.export.promote` and ``alsresearch
    evaluate`` use the same defaults), so the test cells are never seen here;
    ``test_fraction=0`` tunes on all of ``data`` (when it is already a training set). The
    validation part keeps at most ``validation.max_users`` users (a seeded sample) so that
    scoring it every few iterations stays cheap.
    """
    from alsresearch.split import random_holdout, validation_split

    train = random_holdout(data, test_fraction, seed=split_seed)[0] if test_fraction else data
    v = space.validation
    fit, valid = validation_split(train, "random", test_fraction=v["fraction"], seed=seed)
    users = np.flatnonzero(np.diff(valid.matrix.indptr))
    if len(users) == 0:
        raise ValueError(
            f"no validation users: the data ({data!r}) has no user with two or more interactions"
        )
    if len(users) > v["max_users"]:
        keep = np.zeros(valid.n_users, dtype=bool)
        keep[np.random.default_rng(seed).choice(users, v["max_users"], replace=False)] = True
        valid = valid.select_cells(np.repeat(keep, np.diff(valid.matrix.indptr)))
    return ValidationData(fit=fit, valid=valid, k=v["k"], every=v["every"])


def _validation_score(model, vd: ValidationData) -> float:
    from alsresearch.evaluate import evaluate

    return float(
        evaluate(model, vd.fit, vd.valid, k=vd.k, metrics=["ndcg"]).metrics[f"ndcg@{vd.k}"]
    )


# ---------------------------------------------------------------------------------- storage
def storage_url(storage: str | Path | None, study_name: str) -> str:
    """An Optuna RDB URL: ``storage`` as given when it has a scheme, a plain path becomes a
    SQLite file, None the default ``experiments/<study>.db``."""
    if storage is None:
        storage = paths.experiments_dir() / f"{study_name}.db"
    text = str(storage)
    if "://" in text:
        return text
    path = Path(text).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _storage(url: str, heartbeat: int | None):
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat,
            grace_period=None if heartbeat is None else GRACE_BEATS * heartbeat,
        )


def load_study(storage: str, study_name: str):
    """Open an existing study (for plots and exports)."""
    import optuna

    return optuna.load_study(
        study_name=study_name, storage=_storage(storage_url(storage, study_name), None)
    )


def _counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


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

    def __call__(self, trial) -> float:

        self._check_quota(trial)
        try:
            return self._run(trial)
        except _CAUGHT as exc:  # recorded in the study (Optuna only logs it)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise

    def _run(self, trial) -> float:
        import optuna

        from alsresearch.als import ALSModel

        params = self.space.suggest(trial)
        model = ALSModel(**params, random_state=self.seed, num_threads=self.num_threads)
        last = {"value": math.nan, "pruned": False}
        n_iter = model.config.iterations

        def callback(iteration: int, m) -> bool:
            if iteration % self.vd.every and iteration != n_iter:
                return False
            value = _validation_score(m, self.vd)
            last["value"] = value
            trial.report(value, iteration)
            if trial.should_prune():
                last["pruned"] = True
                return True
            return False

        start = time.perf_counter()
        model.fit(self.vd.fit, callback=callback)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        if last["pruned"]:
            raise optuna.TrialPruned()
        return last["value"]

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


_CAUGHT = (_Surplus, ValueError, FloatingPointError, ArithmeticError, np.linalg.LinAlgError)


def _sampler(space: SearchSpace, seed: int):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, **space.sampler)


def _pruner(space: SearchSpace):
    import optuna

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
) -> None:
    """One worker: run trials until ``n_trials`` are COMPLETE or PRUNED (any worker's)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = _storage(url, heartbeat)
    study = optuna.load_study(study_name=study_name, storage=storage)
    # distinct, reproducible random streams per worker and per resume point
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
        failed = sum(t.state == TrialState.FAIL and not t.user_attrs.get("surplus") for t in trials)
        if done >= objective.n_trials:
            return
        if failed > max_failures:
            last = [
                t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")
            ]
            reason = last[-1].user_attrs.get("error", "no error recorded (a NaN score?)")
            raise RuntimeError(
                f"study {study_name!r}: {failed} failed trials (more than {max_failures}); "
                f"the last one (trial {last[-1].number}): {reason}"
            )
        if done + running >= objective.n_trials:
            time.sleep(min(1.0, heartbeat / 2))  # the last trials are running elsewhere
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # numerical trouble in one trial (an exception or a NaN score) fails that trial
            # only; anything else is a bug and stops the sweep
            study.optimize(objective, n_trials=1, catch=_CAUGHT, callbacks=callbacks)


def _work_in_child(*args) -> None:  # the target of spawned worker processes
    _work(*args)


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

    @property
    def beats_popularity(self) -> bool:
        return self.best_value > self.popularity_value


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def export_results(study, out_dir: str | Path | None, extra: dict | None = None) -> TuneResult:
    """Summarise a finished study; with ``out_dir`` also write trials.csv and best.json."""
    from optuna.trial import TrialState

    attrs = study.user_attrs
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {study.study_name!r} has no COMPLETE trial yet")
    best = study.best_trial
    defaults = [t for t in complete if t.user_attrs.get("role") == "defaults"]
    fixed = attrs.get("fixed", {})
    result = TuneResult(
        study_name=study.study_name,
        storage=attrs.get("storage", ""),
        best_params={**fixed, **best.params, "random_state": attrs.get("seed")},
        best_value=float(best.value),
        best_trial=best.number,
        defaults_value=float(defaults[0].value) if defaults else None,
        popularity_value=float(attrs["popularity_value"]),
        counts=_counts(study),
        best_json=None,
        trials_csv=None,
    )
    if out_dir is None:
        return result
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = study.trials_dataframe()
    result.trials_csv = out / "trials.csv"
    frame.to_csv(result.trials_csv, index=False)
    metric = attrs.get("metric", "ndcg@10")
    record = {
        "study": study.study_name,
        "storage": result.storage,
        "seed": attrs.get("seed"),
        "metric": metric,
        "params": result.best_params,
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
    result.best_json = out / "best.json"
    result.best_json.write_text(json.dumps(_clean(record), indent=2, sort_keys=False) + "\n")
    return result


# ---------------------------------------------------------------------------------- tune
def tune(
    data: Interactions,
    *,
    n_trials: int = 50,
    seed: int = 0,
    out_dir: str | Path | None = None,
    storage: str | Path | None = None,
    study_name: str | None = None,
    space: SearchSpace | str | Path | None = None,
    workers: int = 1,
    test_fraction: float = 0.2,
    split_seed: int = 42,
    heartbeat: int = 10,
    max_failures: int | None = None,
    quiet: bool = False,
) -> TuneResult:
    """Run (or resume) a sweep until ``n_trials`` trials are COMPLETE or PRUNED.

    The study name defaults to ``als-<data fingerprint[:12]>-s<seed>``, so the same data and
    seed resume the same study; a study created on other data or another seed is refused.
    ``workers > 1`` starts that many processes (each fitting with ``cpu_count // workers``
    threads). ``heartbeat`` is Optuna's heartbeat interval in seconds: a trial whose worker
    died is marked FAIL after ``GRACE_BEATS * heartbeat`` seconds and its slot is run again.
    """
    import optuna

    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 1:
        raise ValueError(f"heartbeat must be an integer number of seconds >= 1, got {heartbeat!r}")
    if not isinstance(space, SearchSpace):
        space = SearchSpace.load(space)
    fingerprint = data.fingerprint()
    study_name = study_name or f"als-{fingerprint[:12]}-s{seed}"
    url = storage_url(storage, study_name)
    vd = validation_data(data, space, seed=seed, test_fraction=test_fraction, split_seed=split_seed)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=_storage(url, None),
        direction="maximize",
        load_if_exists=True,
    )
    data_record = {
        "fingerprint": fingerprint,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "nnz": data.nnz,
        "fit_fingerprint": vd.fit.fingerprint(),
    }
    attrs = study.user_attrs
    if "data" in attrs:
        for key, now in (("data", data_record["fingerprint"]), ("seed", seed)):
            before = attrs["data"]["fingerprint"] if key == "data" else attrs["seed"]
            if before != now:
                raise ValueError(
                    f"study {study_name!r} in {url} was created with {key} {before!r}, "
                    f"not {now!r}: pick another --study name or storage"
                )
        if attrs.get("search_space") != _clean(space.to_dict()):
            raise ValueError(
                f"study {study_name!r} in {url} was created with another search space; "
                "pick another --study name or storage"
            )
    else:
        from alsresearch.baselines import PopularityModel

        popularity = _validation_score(PopularityModel().fit(vd.fit), vd)
        for key, value in {
            "data": data_record,
            "seed": seed,
            "metric": space.metric,
            "fixed": space.fixed,
            "search_space": _clean(space.to_dict()),
            "storage": url,
            "split": {
                "test_fraction": test_fraction,
                "split_seed": split_seed,
                "validation_fraction": space.validation["fraction"],
                "validation_seed": seed,
            },
            "validation_users": int(np.count_nonzero(np.diff(vd.valid.matrix.indptr))),
            "popularity_value": popularity,
        }.items():
            study.set_user_attr(key, _clean(value))
    study.enqueue_trial(space.defaults, user_attrs={"role": "defaults"}, skip_if_exists=True)

    max_failures = n_trials if max_failures is None else max_failures
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    objective = _Objective(space, vd, seed, n_trials, num_threads=threads)
    args = (study_name, url, objective, 0, heartbeat, max_failures, quiet)
    if not quiet:
        print(
            f"study {study_name} ({url}): {n_trials} trials, {workers} worker(s); "
            f"popularity {space.metric} on validation {study.user_attrs['popularity_value']:.4f}",
            flush=True,
        )
    if workers == 1:
        _work(*args)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_work_in_child, args=(*args[:3], w, *args[4:]), daemon=False)
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"{len(bad)} of {workers} workers failed (exit codes {bad})")
    result = export_results(study, out_dir)
    if not quiet:
        verdict = "beats" if result.beats_popularity else "does NOT beat"
        print(
            f"best trial {result.best_trial}: {space.metric} {result.best_value:.4f} on validation "
            f"(defaults {result.defaults_value}, popularity {result.popularity_value:.4f}): "
            f"ALS {verdict} popularity; params {result.best_params}",
            flush=True,
        )
        if result.best_json:
            print(f"wrote {result.best_json} and {result.trials_csv}", flush=True)
    return result


# ---------------------------------------------------------------------------------- CLI
def add_command(subparsers) -> None:
    from alsresearch.experiments import HelpFormatter, add_data_arguments, add_split_arguments

    p = subparsers.add_parser(
        "tune",
        help="sweep ALS hyperparameters with Optuna (validation NDCG@10, test set untouched)",
        description=(
            "Sweep ALS hyperparameters (search space: experiments/search_space.yaml) with a "
            "seeded TPE sampler and per-iteration median pruning. Trials fit on the training "
            "part of a seeded test split minus a validation split and are scored by NDCG@10 on "
            "that validation split; the test part is never looked at (use `alsresearch "
            "evaluate` with the same --test-fraction/--split-seed). Re-running the same command "
            "resumes the study until --trials trials are complete or pruned. Writes trials.csv "
            "and best.json (for `alsresearch train --params`) into --out."
        ),
        formatter_class=HelpFormatter,
    )
    add_data_arguments(p)
    p.add_argument("--trials", type=int, default=50, help="COMPLETE or PRUNED trials to reach")
    p.add_argument("--seed", type=int, default=0, help="sampler, validation split and ALS seed")
    p.add_argument(
        "--out", type=Path, help="output directory (default experiments/runs/tune-<study>)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes on the one study")
    p.add_argument(
        "--storage", help="Optuna storage URL or SQLite file (default experiments/<study>.db)"
    )
    p.add_argument("--study", help="study name (default als-<data fingerprint>-s<seed>)")
    p.add_argument(
        "--space", type=Path, help="search space YAML (default: experiments/search_space.yaml)"
    )
    add_split_arguments(p)
    p.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help=f"seconds between worker heartbeats; a dead worker's trial is failed after "
        f"{GRACE_BEATS}x that without a beat",
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args) -> int:
    from alsresearch.experiments import load_data

    data = load_data(args.events, args.user_col, args.item_col, args.weight_col)
    space = SearchSpace.load(args.space)  # None: the shipped file
    name = args.study or f"als-{data.fingerprint()[:12]}-s{args.seed}"
    out = args.out or paths.runs_dir() / f"tune-{name}"
    result = tune(
        data,
        n_trials=args.trials,
        seed=args.seed,
        out_dir=out,
        storage=args.storage,
        study_name=name,
        space=space,
        workers=args.workers,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        heartbeat=args.heartbeat,
        quiet=args.quiet,
    )
    if not result.beats_popularity:
        print(
            "warning: no ALS configuration beat popularity on validation; consider more trials "
            "or serving the popularity baseline",
            file=sys.stderr,
        )
    return 0
