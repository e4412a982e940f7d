"""Notebook experiments run by papermill, their ``results.json`` records, and the script steps.

An experiment file (YAML, in ``experiments/``) lists notebooks and their parameters::

    name: demo
    summary: [als_ndcg@10, popularity_ndcg@10]   # metric columns of the printed table
    steps:
      - name: sweep                               # unique; names the output folder
        notebook: notebooks/03_sweep_alpha_factors.ipynb  # absolute or repository-relative
        parameters: {N_TRIALS: 20}                # for every run of this step
        grid: {SEED: [0, 1]}                      # optional: one run per combination
        # or parameter_sets: [{...}, {...}]       # optional: one run per set
      - name: promote
        notebook: notebooks/04_promote_export.ipynb
        parameters: {SWEEP_DIR: "${sweep.output_dir}"}  # a previous step's output folder

:func:`run_experiment` executes every run into ``experiments/runs/<UTC time>-<name>/<NN>-<step>/``
(the executed notebook and its ``results.json``), prints progress and a summary table, and saves
the table as ``summary.csv``. Each notebook receives ``OUTPUT_DIR`` (its run folder) and writes
``results.json`` itself in its last cell with :func:`write_results`; the runner adds the run's
status, timing and kernel. Notebooks run in the caller's working directory, so relative paths
in parameters (``EVENTS=data/plays.csv``) mean what they mean on the command line. A failing notebook is reported with its failing cell and the other
runs still run (``fail_fast`` stops instead); runs that refer to a failed step are skipped.

The notebooks run in a kernel started from *this* interpreter (``sys.executable -m
ipykernel_launcher``), whatever kernels are registered, so they use the same environment and code
as the command that started them.

Also here: the ``alsresearch run``, ``train`` and ``evaluate`` commands and the helpers they
share with the notebooks (:func:`load_data`, :func:`compare`). papermill is an optional
dependency (the ``notebooks`` extra), imported inside functions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from alsresearch import paths, provenance
from alsresearch.data import Interactions

__all__ = [
    "Experiment",
    "Run",
    "compare",
    "flat_metrics",
    "load_data",
    "load_experiment",
    "run_experiment",
    "write_results",
]

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.csv"
OUTPUT_PARAMETER = "OUTPUT_DIR"
_REF = re.compile(r"\$\{([A-Za-z0-9_-]+)\.output_dir\}")
_STEP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------------------- data
def load_data(
    events: str | Path | None = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    weight_col: str | None = None,
) -> Interactions:
    """The events file as Interactions, or the shipped MovieLens data when ``events`` is empty."""
    if not events:
        from alsresearch.datasets import load_default

        return load_default()
    return Interactions.from_events(
        Path(events), user_col=user_col, item_col=item_col, weight_col=weight_col or None
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--events and its column options (shared by tune, train and evaluate)."""
    parser.add_argument(
        "--events",
        type=Path,
        help="events file (CSV, TSV or Parquet), one row per event; default: the shipped "
        "MovieLens ml-latest-small ratings",
    )
    parser.add_argument("--user-col", default="user_id", help="user id column of --events")
    parser.add_argument("--item-col", default="item_id", help="item id column of --events")
    parser.add_argument(
        "--weight-col", help="count/weight column of --events (default: every row counts 1)"
    )


def _data_from_args(args) -> Interactions:
    return load_data(args.events, args.user_col, args.item_col, args.weight_col)


def compare(models: dict, train: Interactions, test: Interactions, k: int = 10):
    """Evaluate fitted models on one split: ``(table, results)``.

    ``table`` has one row per model and one column per metric; ``results`` maps each name to
    its :class:`~alsresearch.evaluate.EvaluationResult` (for per-user and by-history views).
    """
    from alsresearch.evaluate import evaluate

    results = {name: evaluate(model, train, test, k=k) for name, model in models.items()}
    table = pd.DataFrame({name: r.metrics for name, r in results.items()}).T
    table.index.name = "model"
    return table, results


def flat_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``{"<model>_<metric>": value}`` from a :func:`compare` table (for results.json)."""
    return {
        f"{model}_{name}": float(v) for model, row in table.iterrows() for name, v in row.items()
    }


# ---------------------------------------------------------------------------------- records
def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable ({value!r})")


_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


def upper_case_parameters(namespace: dict) -> dict:
    """The notebook's parameters: its UPPER_CASE names bound to plain values (the convention
    of every ``parameters`` cell), e.g. ``upper_case_parameters(globals())``."""
    return {
        k: v
        for k, v in namespace.items()
        if _UPPER.match(k) and (v is None or isinstance(v, bool | int | float | str))
    }


def write_results(
    output_dir: str | Path,
    *,
    params: dict,
    metrics: dict,
    data: Interactions | None = None,
    seed: int | None = None,
    durations: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``results.json`` into ``output_dir`` (the last cell of every notebook calls this).

    ``metrics`` must map names to numbers (NaN is stored as null). The record also holds the
    parameters, the data set's fingerprint and shape, the seed, durations in seconds, and
    :func:`~alsresearch.provenance.environment_record` (git commit and dirty flag, package
    versions, threads).
    """
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"metrics[{name!r}] must be a number, got {value!r}")
    record = {
        "parameters": params,
        "metrics": metrics,
        "data": None
        if data is None
        else {
            "fingerprint": data.fingerprint(),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "nnz": data.nnz,
        },
        "seed": seed,
        "durations": durations or {},
        **(extra or {}),
        "created": provenance.utc_now(),
        "environment": provenance.environment_record(),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    path.write_text(json.dumps(_jsonable(record, "results"), indent=2) + "\n")
    return path


def read_results(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} at {path}")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------- spec
@dataclass
class Run:
    """One notebook execution: a step with one parameter set."""

    step: str
    label: str  # folder name: NN-step[-i]
    notebook: Path
    parameters: dict
    requires: tuple[str, ...] = ()
    status: str = "pending"  # ok | failed | skipped
    seconds: float | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    output_dir: Path | None = None


@dataclass
class Experiment:
    name: str
    source: Path
    runs: list[Run]
    summary: list[str]
    description: str = ""


def _notebook_path(value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.notebook must be a path to a .ipynb file, got {value!r}")
    path = Path(value)
    if not path.is_absolute():
        path = paths.home() / path
    if not path.is_file():
        raise FileNotFoundError(f"{where}.notebook: {path} does not exist")
    return path


def _parameter_sets(step: dict, where: str) -> list[dict]:
    base = step.get("parameters") or {}
    grid = step.get("grid")
    sets = step.get("parameter_sets")
    if not isinstance(base, dict):
        raise ValueError(f"{where}.parameters must be a mapping, got {base!r}")
    if grid is not None and sets is not None:
        raise ValueError(f"{where}: give either 'grid' or 'parameter_sets', not both")
    if grid is not None:
        if not isinstance(grid, dict) or not grid:
            raise ValueError(f"{where}.grid must map parameter names to lists of values")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}.grid.{key} must be a non-empty list, got {values!r}")
        keys = list(grid)
        return [
            {**base, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(grid[k] for k in keys))
        ]
    if sets is not None:
        if not isinstance(sets, list) or not sets or not all(isinstance(s, dict) for s in sets):
            raise ValueError(f"{where}.parameter_sets must be a non-empty list of mappings")
        return [{**base, **s} for s in sets]
    return [dict(base)]


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REF.findall(value)
    return []


def _notebook_parameters(notebook: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def read_yaml(path: Path, what: str):
    """The parsed content of a YAML file; a missing file or bad YAML is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc


def load_experiment(path: str | Path, overrides: dict | None = None) -> Experiment:
    """Read and check an experiment file: notebooks exist, parameters exist in each notebook's
    ``parameters`` cell, references name earlier single-run steps. ``overrides`` (e.g. from
    ``--set``) replace the value of a parameter in every run whose notebook has it."""
    path = Path(path)
    spec = read_yaml(path, "experiment file")
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping with 'steps', got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "description", "summary", "steps"})
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; expected name, description, summary, steps"
        )
    name = spec.get("name") or path.stem
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise ValueError(f"{path}: name must use letters, digits, '-' or '_', got {name!r}")
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ValueError(f"{path}: 'steps' must be a non-empty list")
    summary = spec.get("summary") or []
    if not isinstance(summary, list) or not all(isinstance(s, str) for s in summary):
        raise ValueError(f"{path}: 'summary' must be a list of metric names")
    overrides = dict(overrides or {})
    used_overrides: set[str] = set()
    runs: list[Run] = []
    runs_per_step: dict[str, int] = {}
    for i, step in enumerate(steps):
        where = f"{path}: steps[{i}]"
        if not isinstance(step, dict):
            raise ValueError(f"{where} must be a mapping with 'notebook'")
        bad = sorted(set(step) - {"name", "notebook", "parameters", "grid", "parameter_sets"})
        if bad:
            raise ValueError(
                f"{where}: unknown key(s) {bad}; expected name, notebook, parameters, grid, parameter_sets"
            )
        notebook = _notebook_path(step.get("notebook"), where)
        step_name = step.get("name") or notebook.stem
        if not isinstance(step_name, str) or not _STEP_NAME.match(step_name):
            raise ValueError(
                f"{where}.name must use letters, digits, '-' or '_', got {step_name!r}"
            )
        if step_name in runs_per_step:
            raise ValueError(f"{where}: step name {step_name!r} is used twice")
        known = _notebook_parameters(notebook)
        if OUTPUT_PARAMETER not in known:
            raise ValueError(
                f"{where}: {notebook.name} has no {OUTPUT_PARAMETER} in its parameters cell "
                "(the runner passes the run folder there)"
            )
        sets = _parameter_sets(step, where)
        for params in sets:
            stray = sorted(set(params) - known)
            if stray:
                raise ValueError(
                    f"{where}: parameter(s) {stray} are not in {notebook.name}'s parameters cell "
                    f"(known: {sorted(known - {OUTPUT_PARAMETER})})"
                )
            if OUTPUT_PARAMETER in params:
                raise ValueError(f"{where}: {OUTPUT_PARAMETER} is set by the runner")
            for key in overrides:
                if key in known:
                    params[key] = overrides[key]
                    used_overrides.add(key)
        requires: set[str] = set()
        for params in sets:
            for key, value in params.items():
                for ref in _refs(value):
                    if ref not in runs_per_step:
                        raise ValueError(
                            f"{where}: parameter {key} refers to step {ref!r}, which is not an "
                            f"earlier step (earlier: {list(runs_per_step)})"
                        )
                    if runs_per_step[ref] != 1:
                        raise ValueError(
                            f"{where}: parameter {key} refers to step {ref!r}, which has "
                            f"{runs_per_step[ref]} runs (one output folder is needed)"
                        )
                    requires.add(ref)
        runs_per_step[step_name] = len(sets)
        for j, params in enumerate(sets):
            label = f"{i + 1:02d}-{step_name}" + (f"-{j + 1}" if len(sets) > 1 else "")
            runs.append(Run(step_name, label, notebook, params, tuple(sorted(requires))))
    unused = sorted(set(overrides) - used_overrides)
    if unused:
        raise ValueError(f"--set: no notebook of {path} has parameter(s) {unused}")
    return Experiment(name, path, runs, summary, spec.get("description") or "")


# ---------------------------------------------------------------------------------- runner
def _kernel_manager_class(stderr_path: Path):
    """A kernel manager that starts ``sys.executable -m ipykernel_launcher``: this
    interpreter's environment, with no kernelspec registration needed (CI builds .venv from
    nothing), and immune to a user-level "python3" kernelspec pointing elsewhere. The kernel's
    own stderr (start-up chatter, crashes) goes to ``stderr_path`` in the run folder."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisPythonKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python ({sys.prefix})",
                    language="python",
                )
            return self._kernel_spec

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            with open(stderr_path, "ab") as log:
                kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return ThisPythonKernelManager


def _resolve(params: dict, outputs: dict[str, Path]) -> dict:
    def sub(value):
        if isinstance(value, str):
            return _REF.sub(lambda m: str(outputs[m.group(1)]), value)
        return value

    return {k: sub(v) for k, v in params.items()}


def _short(params: dict, limit: int = 90) -> str:
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_error(exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        first = (exc.source or "").strip().splitlines()
        snippet = f" [{first[0][:60]}]" if first else ""
        return f"executed cell {exc.cell_index} (In [{exc.exec_count}]){snippet}: {exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"


def _execute(run: Run, parameters: dict, log) -> None:
    import papermill

    out = run.output_dir
    out.mkdir(parents=True, exist_ok=True)
    started = provenance.utc_now()
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(run.notebook),
            str(out / run.notebook.name),
            parameters={**parameters, OUTPUT_PARAMETER: str(out)},
            kernel_name="python3",
            kernel_manager_class=_kernel_manager_class(out / "kernel-stderr.log"),
            progress_bar=False,
            cwd=os.getcwd(),  # relative paths in parameters mean what they meant to the caller
        )
        record = read_results(out)
        run.status = "ok"
    except Exception as exc:  # a failed run is reported; the others go on
        run.status, run.error = "failed", _describe_error(exc)
        record = {"parameters": parameters, "metrics": {}, "error": run.error}
        if isinstance(exc, FileNotFoundError):
            run.error = (
                f"the notebook wrote no {RESULTS_FILE} (its last cell must call write_results)"
            )
            record["error"] = run.error
        record["environment"] = provenance.environment_record()
    run.seconds = time.perf_counter() - t0
    run.metrics = record.get("metrics") or {}
    record["run"] = {
        "status": run.status,
        "step": run.step,
        "notebook": str(run.notebook),
        "executed_notebook": str(out / run.notebook.name),
        "started": started,
        "seconds": round(run.seconds, 3),
        "kernel": sys.executable,
    }
    (out / RESULTS_FILE).write_text(json.dumps(_jsonable(record, "results"), indent=2) + "\n")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_table(runs: list[Run], columns: list[str] | None = None) -> pd.DataFrame:
    """One row per run: step, status, seconds, then metric columns (all when not given)."""
    rows = []
    for r in runs:
        row = {
            "run": r.label,
            "status": r.status,
            "seconds": None if r.seconds is None else round(r.seconds, 1),
        }
        names = columns if columns else list(r.metrics)
        for name in names:
            row[name] = r.metrics.get(name)
        row["error"] = r.error or ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def run_experiment(
    experiment: Experiment | str | Path,
    *,
    fail_fast: bool = False,
    runs_dir: str | Path | None = None,
    overrides: dict | None = None,
    log=print,
) -> tuple[Path, list[Run]]:
    """Execute every run of an experiment; returns (the run folder, the runs with status)."""
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment, overrides)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root = Path(runs_dir) if runs_dir else paths.runs_dir()
    out = root / f"{stamp}-{experiment.name}"
    n = 2
    while out.exists():  # two runs in the same second
        out = root / f"{stamp}-{experiment.name}-{n}"
        n += 1
    out.mkdir(parents=True)
    shutil.copyfile(experiment.source, out / "experiment.yaml")
    log(f"experiment {experiment.name}: {len(experiment.runs)} run(s) into {out}")
    outputs: dict[str, Path] = {}
    status: dict[str, str] = {}
    total = len(experiment.runs)
    for i, run in enumerate(experiment.runs, 1):
        run.output_dir = out / run.label
        missing = [s for s in run.requires if status.get(s) != "ok"]
        if missing or (fail_fast and "failed" in status.values()):
            run.status = "skipped"
            run.error = (
                f"needs step(s) {missing}, which did not succeed" if missing else "--fail-fast"
            )
            log(f"[{i}/{total}] {run.label}: skipped ({run.error})")
        else:
            params = _resolve(run.parameters, outputs)
            log(f"[{i}/{total}] {run.label}: {run.notebook.name} ({_short(params)}) ...")
            _execute(run, params, log)
            if run.status == "ok":
                log(f"[{i}/{total}] {run.label}: ok in {run.seconds:.1f} s")
            else:
                log(f"[{i}/{total}] {run.label}: FAILED after {run.seconds:.1f} s at {run.error}")
                log(f"        executed notebook: {run.output_dir / run.notebook.name}")
        outputs.setdefault(run.step, run.output_dir)
        status[run.step] = "failed" if status.get(run.step) == "failed" else run.status
    table = summary_table(experiment.runs, experiment.summary)
    table.to_csv(out / SUMMARY_FILE)
    shown = table.drop(columns="error").T.map(_cell)  # one column per run: many metrics fit
    log(f"\nsummary ({out / SUMMARY_FILE}):\n{shown.to_string()}")
    return out, experiment.runs


# ---------------------------------------------------------------------------------- CLI
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when there is one worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def add_command(subparsers) -> None:
    fmt = HelpFormatter
    p = subparsers.add_parser(
        "run",
        help="run an experiment file: notebooks executed by papermill",
        description=(
            "Execute the notebooks of an experiment file (YAML) with their parameter sets into "
            "experiments/runs/<UTC time>-<name>/: one executed notebook and one results.json "
            "per run, and summary.csv. A failing notebook is reported with its failing cell; "
            "the other runs still run unless --fail-fast. Exit code 1 when any run failed."
        ),
        formatter_class=fmt,
    )
    p.add_argument("experiment", type=Path, help="experiment YAML, e.g. experiments/demo.yaml")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing run")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a notebook parameter in every run that has it (VALUE parsed as YAML); repeatable",
    )
    p.set_defaults(func=_cmd_run)

    t = subparsers.add_parser(
        "train",
        help="fit ALS with given parameters (e.g. tune's best.json) and save the model",
        description=(
            "Fit ALS with the parameters in --params (tune's best.json, or a JSON object of "
            "ALSModel arguments) and save the model (.npz). By default it fits on the training "
            "part of the seeded test split (--test-fraction, --split-seed), so `alsresearch "
            "evaluate` can score it on the held-out part; --test-fraction 0 fits on all data "
            "(for serving; such a model cannot be evaluated on this data)."
        ),
        formatter_class=fmt,
    )
    add_data_arguments(t)
    t.add_argument("--params", type=Path, required=True, help="best.json or a JSON parameter file")
    t.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    add_split_arguments(t)
    t.set_defaults(func=_cmd_train)

    e = subparsers.add_parser(
        "evaluate",
        help="score a trained model on the held-out test split, against popularity",
        description=(
            "Re-create the seeded test split of `alsresearch train` (same --events, "
            "--test-fraction, --split-seed), check that the model was trained on exactly its "
            "training part, and print top-k metrics of the model and of item popularity fitted "
            "on the same training part."
        ),
        formatter_class=fmt,
    )
    add_data_arguments(e)
    e.add_argument("--model", type=Path, required=True, help="model file from `alsresearch train`")
    e.add_argument("--k", type=int, default=10, help="list length of the metrics")
    e.add_argument("--out", type=Path, help="also write the figures to this folder's results.json")
    add_split_arguments(e)
    e.set_defaults(func=_cmd_evaluate)


def add_split_arguments(parser) -> None:
    """--test-fraction and --split-seed: the one seeded test split of tune, train, evaluate and
    promote (the same values give the same split everywhere)."""
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of each user's cells held out as test (0: no test split)",
    )
    parser.add_argument("--split-seed", type=int, default=42, help="seed of the test split")


def _parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _cmd_run(args) -> int:
    _, runs = run_experiment(
        args.experiment, fail_fast=args.fail_fast, overrides=_parse_overrides(args.set or [])
    )
    failed = [r for r in runs if r.status != "ok"]
    return 1 if failed else 0


def _train_split(data: Interactions, test_fraction: float, split_seed: int):
    from alsresearch.split import random_holdout

    if test_fraction == 0:
        return data, None
    return random_holdout(data, test_fraction, seed=split_seed)


def _cmd_train(args) -> int:
    from alsresearch.als import ALSModel
    from alsresearch.export import load_params

    params = load_params(args.params)
    data = _data_from_args(args)
    train, _ = _train_split(data, args.test_fraction, args.split_seed)
    model = ALSModel(**params)
    t0 = time.perf_counter()
    model.fit(train)
    model.save(args.out)
    part = (
        "all data"
        if train is data
        else (
            f"the training part (test fraction {args.test_fraction}, split seed {args.split_seed})"
        )
    )
    print(
        f"trained {model!r} on {part}: {train.n_users} users x {train.n_items} items, "
        f"{train.nnz} cells, in {time.perf_counter() - t0:.1f} s; wrote {args.out}"
    )
    return 0


def _cmd_evaluate(args) -> int:
    from alsresearch.base import load_model
    from alsresearch.baselines import PopularityModel

    model = load_model(args.model)
    data = _data_from_args(args)
    if args.test_fraction == 0:
        raise ValueError("--test-fraction 0 leaves no test set to evaluate on")
    train, test = _train_split(data, args.test_fraction, args.split_seed)
    seen = train.matrix.copy()
    seen.data[:] = 1
    if not (
        np.array_equal(model.user_ids, train.user_ids)
        and np.array_equal(model.item_ids, train.item_ids)
        and (model.seen != seen).nnz == 0
    ):
        raise ValueError(
            f"{args.model} was not trained on the training part of this split (test fraction "
            f"{args.test_fraction}, split seed {args.split_seed}) of these events: evaluating it "
            "would score items it was trained on. Train it with `alsresearch train` and the "
            "same --events/--test-fraction/--split-seed."
        )
    popularity = PopularityModel().fit(train)
    table, _ = compare({model.model_type: model, "popularity": popularity}, train, test, k=args.k)
    n_users = int((np.diff(test.matrix.indptr) > 0).sum())
    print(f"{args.model} on the test part ({test.nnz} cells, {n_users} users):")
    print(table.T.to_string(float_format="{:.4f}".format))
    if args.out:
        path = write_results(
            args.out,
            params={
                "model": str(args.model),
                "events": str(args.events or "shipped default"),
                "test_fraction": args.test_fraction,
                "split_seed": args.split_seed,
                "k": args.k,
            },
            metrics=flat_metrics(table),
            data=data,
            seed=args.split_seed,
        )
        print(f"wrote {path}")
    return 0
