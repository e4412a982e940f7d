"""Run records: ``results.json`` beside every executed notebook and every scored model, and the
``training`` record a model file carries.

``results.json`` (:func:`write_results`) holds the run's parameters and metrics, the data it
read (:class:`~alsresearch.source.DataSource` record, fingerprint and shape), the split
(:class:`~alsresearch.split.SplitSpec` record) and the training part's fingerprint, the seed,
durations, and :func:`~alsresearch.provenance.environment_record` (git commit and dirty flag,
package versions, threads). Every notebook's last cell writes one; the runner
(:mod:`alsresearch.runner`) adds the run's status and timing; ``alsresearch evaluate --out``
writes one.

A model's ``training`` record (:func:`training_record`) says which data source, split and part
it was fitted on, its seed (:mod:`alsresearch.seeds`) and, for a warm start, the model file it
started from (:func:`init_record`); :func:`check_training` refuses to score it on data read
another way or on another split, naming what differs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from alsresearch import files, provenance
from alsresearch.data import Interactions
from alsresearch.seeds import UNSET, seed_record
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec

__all__ = [
    "RESULTS_FILE",
    "check_training",
    "init_record",
    "read_results",
    "training_record",
    "upper_case_parameters",
    "write_results",
]

RESULTS_FILE = "results.json"

_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


def upper_case_parameters(namespace: dict) -> dict:
    """The notebook's parameters: its UPPER_CASE names bound to plain values (the convention
    of every ``parameters`` cell), e.g. ``upper_case_parameters(globals())``."""
    return {
        k: v
        for k, v in namespace.items()
        if _UPPER.match(k) and (v is None or isinstance(v, bool | int | float | str))
    }


def shape_record(data: Interactions) -> dict[str, Any]:
    """Which interactions, exactly: fingerprint and shape."""
    return {
        "fingerprint": data.fingerprint(),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "nnz": data.nnz,
    }


def data_record(data: Interactions | None, source: DataSource | None) -> dict[str, Any]:
    """The ``"data"`` entry of every record (results.json, best.json, model cards): the spec
    the data was read with (None when the caller built the Interactions itself) and, when
    given, the data's fingerprint and shape."""
    return {
        "source": None if source is None else source.to_dict(),
        **({} if data is None else shape_record(data)),
    }


def write_results(
    output_dir: str | Path,
    *,
    params: dict,
    metrics: dict,
    data: Interactions | None = None,
    source: DataSource | None = None,
    split: SplitSpec | None = None,
    train: Interactions | None = None,
    seed: int | None = UNSET,
    durations: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``results.json`` into ``output_dir`` (the last cell of every notebook calls this).

    ``metrics`` must map names to numbers (NaN is stored as null). ``data`` is recorded by
    fingerprint and shape with ``source``, the spec it was read with (``"data"``); ``split`` is
    the split's spec (``"split"``) and ``train`` the part a model was fitted on, by fingerprint
    and shape (``"train"``), so the record names exactly the counts a model saw.

    ``seed`` is the run's model seed (``"seed"``); given as None it states an unseeded run
    (``"seed": null, "unseeded": true``); leave it out where no seed applies (``"seed": null``).
    """
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"metrics[{name!r}] must be a number, got {value!r}")
    record = {
        "parameters": params,
        "metrics": metrics,
        "data": None if data is None and source is None else data_record(data, source),
        "split": None if split is None else split.to_dict(),
        "train": None if train is None else shape_record(train),
        "seed": None if seed is UNSET else seed,
        **({} if seed is UNSET or seed is not None else {"unseeded": True}),
        "durations": durations or {},
        **(extra or {}),
        "created": provenance.utc_now(),
        "environment": provenance.environment_record(),
    }
    return files.write_json(Path(output_dir) / RESULTS_FILE, record, "results")


def read_results(path: str | Path) -> dict:
    """A ``results.json`` record, from its path or its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def training_record(
    source: DataSource | None,
    split: SplitSpec,
    part: str | None = None,
    *,
    model=None,
    init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a model was trained on, for ``model.training``: the data spec (None when the
    caller built the Interactions itself), the split, and the part: by default ``"train"``
    (``split.apply(data)[0]``), or ``"all"`` when the split holds nothing out; a promoted
    model is refitted on all the data after its split was scored (``part="all"``).

    ``model``: the fitted model; for one that takes a seed, its ``random_state`` and whether
    it was unseeded (:func:`~alsresearch.seeds.seed_record`). ``init``: for a warm start, the
    model file it started from (:func:`init_record`)."""
    record = {
        "data": None if source is None else source.to_dict(),
        "split": split.to_dict(),
        "part": part or ("train" if split.holds_out else "all"),
    }
    config = {} if model is None else model.get_config()
    if "random_state" in config:
        record.update(seed_record(config["random_state"]))
    if init is not None:
        record["init"] = init
    return record


def init_record(
    path: str | Path, model_type: str, warm_start: dict[str, int] | None = None
) -> dict[str, Any]:
    """Which model file a warm start began from: its path, sha256 (of the file as it is now:
    call this when the file is loaded, before a promotion may replace it), model type, and the
    rows matched by id (``model.warm_start``, set after the fit)."""
    return {
        "path": str(path),
        "sha256": files.file_digest(path),
        "model_type": model_type,
        "warm_start": warm_start,
    }


def check_training(
    training: dict[str, Any] | None, source: DataSource, split: SplitSpec, what: str
) -> None:
    """Raise :class:`~alsresearch.errors.SpecMismatchError` when a model's ``training`` record
    names another data spec or another split than ``source`` and ``split``, naming every field
    that differs. ``what`` names the model (e.g. ``"model.npz: the model was trained on"``).
    A model without a record passes here; :func:`alsresearch.evaluate.check_trained_on` still
    compares its cells with the training part."""
    if not training:
        return
    source.check_same(training.get("data"), what)
    split.check_same(training.get("split"), what)
