"""Hyperparameter sweeps of a model (ALS by default, or any registered type the search space
names, e.g. EASE) with Optuna.

- :mod:`~alsresearch.tuning.space`: the search space as data (:class:`SearchSpace`, read from
  YAML; the package ships the ALS default and an EASE space);
- :mod:`~alsresearch.tuning.study`: the study runner (:func:`tune`): validation data carved out
  of the training part of the test split, the worker loop, best.json and trials.csv;
- :mod:`~alsresearch.tuning.storage`: where a study lives (SQLite, PostgreSQL, a journal file),
  heartbeats, retries while a database server is away, password masking.

Optuna is an optional dependency (the ``notebooks`` extra), imported only when a sweep runs.
"""

from __future__ import annotations

from alsresearch.tuning.space import VALIDATION_DEFAULTS, Param, SearchSpace
from alsresearch.tuning.storage import (
    ENV_VAR,
    GRACE_BEATS,
    StorageUnavailableError,
    mask_url,
    storage_url,
)
from alsresearch.tuning.study import (
    DEFAULT_STORAGE_RETRY,
    TuneFailedError,
    TuneResult,
    ValidationData,
    default_study_name,
    export_results,
    load_study,
    tune,
    validation_data,
)

__all__ = [
    "DEFAULT_STORAGE_RETRY",
    "ENV_VAR",
    "GRACE_BEATS",
    "VALIDATION_DEFAULTS",
    "Param",
    "SearchSpace",
    "StorageUnavailableError",
    "TuneFailedError",
    "TuneResult",
    "ValidationData",
    "default_study_name",
    "export_results",
    "load_study",
    "mask_url",
    "storage_url",
    "tune",
    "validation_data",
]
