"""Hyperparameter sweeps of a model (ALS by default, or any registered type the search space
names, e.g. EASE) with Optuna.

- :mod:`~alsresearch.tuning.space`: the search space as data (:class:`SearchSpace`, read from
  YAML; the package ships the ALS default and an EASE space);
- :mod:`~alsresearch.tuning.study`: the study runner (:func:`tune`): validation data carved out
  of the training part of the test split, storage, the worker loop, best.json and trials.csv.

Optuna is an optional dependency (the ``notebooks`` extra), imported only when a sweep runs.
"""

from __future__ import annotations

from alsresearch.tuning.space import VALIDATION_DEFAULTS, Param, SearchSpace
from alsresearch.tuning.study import (
    GRACE_BEATS,
    TuneFailedError,
    TuneResult,
    ValidationData,
    default_study_name,
    export_results,
    load_study,
    storage_url,
    tune,
    validation_data,
)

__all__ = [
    "GRACE_BEATS",
    "VALIDATION_DEFAULTS",
    "Param",
    "SearchSpace",
    "TuneFailedError",
    "TuneResult",
    "ValidationData",
    "default_study_name",
    "export_results",
    "load_study",
    "storage_url",
    "tune",
    "validation_data",
]
