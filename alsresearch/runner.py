"""Experiment files and the runner that executes their notebooks with papermill.

An experiment file (YAML) lists notebooks and their parameters::

    name: demo
    summary: [als_ndcg@10, popularity_ndcg@10]   # metric columns of the printed table
    data:                                         # optional: one data source for every step
      path: events.csv                            # (DataSource fields; relative to the cwd)
      event_col: event
      event_weights: {view: 1, purchase: 5}
      timestamp_col: ts
    split: {kind: temporal, test_fraction: 0.2}   # optional: one test split for every step
    steps:
      - name: sweep                               # unique; names the output folder
        notebook: notebooks/03_sweep_alpha_factors.ipynb
        parameters: {N_TRIALS: 20}                # for every run of this step
        grid: {SEED: [0, 1]}                      # optional: one run per combination
        # or parameter_sets: [{...}, {...}]       # optional: one run per set
      - name: promote
        notebook: notebooks/04_promote_export.ipynb
        parameters: {SWEEP_DIR: "${sweep.output_dir}"}  # a previous step's output folder

The ``data:`` and ``split:`` blocks are checked once (:meth:`DataSource.from_dict
<alsresearch.source.DataSource.from_dict>`, :meth:`SplitSpec.from_dict
<alsresearch.split.SplitSpec.from_dict>`) and reach each notebook as the parameters its
``parameters`` cell defines (``EVENTS``, ``EVENT_COL``, ..., ``SPLIT``, ``TEST_FRACTION``, ...),
so every step reads the same data the same way; a step may not set those parameters itself.

Paths: a relative notebook path means a file under the current working directory, else one the
package ships (``notebooks/01_explore_data.ipynb`` is the packaged notebook), so the packaged
demo runs from any directory; an experiment given by a bare name that is not a file
(``alsresearch run demo``) is a packaged experiment. Notebooks run in the caller's working
directory, so relative paths in parameters and in ``data:`` mean what they mean on the command
line.

:func:`run_experiment` executes every run into ``<runs_dir>/<UTC time>-<name>/<NN>-<step>/``
(:func:`alsresearch.paths.runs_dir`; the executed notebook and its ``results.json``), prints
progress and a summary table, and saves the table as ``summary.csv``. Each notebook receives
``OUTPUT_DIR`` (its run folder) and writes ``results.json`` itself in its last cell
(:func:`alsresearch.records.write_results`); the runner adds the run's status, timing and
kernel. A failing notebook is reported with its failing cell and the other runs still run
(``fail_fast`` stops instead); runs that refer to a failed step are skipped. Ctrl-C (which
reaches the kernel too, in the same process group) stops the whole experiment: the interrupted
run keeps its executed notebook but no ``results.json``, and no summary is written.

The notebooks run in a kernel started from *this* interpreter (``sys.executable -m
ipykernel_launcher``), whatever kernels are registered, so they use the same environment and
code as the command that started them. papermill is an optional dependency (the ``notebooks``
extra), imported inside functions.
"""

from __future__ import annotations

import itertools
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

import pandas as pd

from alsresearch import files, paths, provenance
from alsresearch.records import RESULTS_FILE, read_results
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec
from alsresearch.yamlfile import read_yaml

__all__ = [
    "OUTPUT_PARAMETER",
    "PACKAGED_EXPERIMENTS",
    "SUMMARY_FILE",
    "Experiment",
    "Run",
    "experiment_path",
    "load_experiment",
    "run_experiment",
    "summary_table",
]

SUMMARY_FILE = "summary.csv"
OUTPUT_PARAMETER = "OUTPUT_DIR"
#: experiments the package ships, found by bare name (``alsresearch run demo``)
PACKAGED_EXPERIMENTS = ("demo",)
_EXPERIMENT_KEYS = ("name", "description", "summary", "data", "split", "steps")
_STEP_KEYS = ("name", "notebook", "parameters", "grid", "parameter_sets")
_REF = re.compile(r"\$\{([A-Za-z0-9_-]+)\.output_dir\}")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------------------- spec
@dataclass
class Run:
    """One notebook execution: a step with one parameter set.

    ``parameters`` are the step's own (with ``--set`` overrides); ``shared`` are those that
    come from the experiment's ``data:`` and ``split:`` blocks. The notebook receives both.
    """

    step: str
    label: str  # folder name: NN-step[-i]
    notebook: Path
    parameters: dict
    requires: tuple[str, ...] = ()
    shared: dict = field(default_factory=dict)
    status: str = "pending"  # ok | failed | skipped
    seconds: float | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    output_dir: Path | None = None


@dataclass
class Experiment:
    name: str
    path: Path
    runs: list[Run]
    summary: list[str]
    description: str = ""
    data: DataSource | None = None
    split: SplitSpec | None = None


def experiment_path(experiment: str | Path) -> Path:
    """The experiment file: ``experiment`` itself when it is a file, else, for a bare name
    such as ``demo``, the packaged experiment of that name."""
    path = Path(experiment)
    if path.is_file():
        return path
    if len(path.parts) == 1 and path.stem in PACKAGED_EXPERIMENTS:
        return paths.resource(f"{path.stem}.yaml")
    raise FileNotFoundError(
        f"experiment file not found: {path} (packaged experiments, run by name: "
        f"{', '.join(PACKAGED_EXPERIMENTS)})"
    )


def _notebook_path(value: Any, where: str) -> Path:
    """A notebook by absolute path, by path under the working directory, or by its path among
    the package's resources (``notebooks/01_explore_data.ipynb``)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.notebook must be a path to a .ipynb file, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
        if not path.is_file() and ".." not in Path(value).parts:
            try:
                return paths.resource(*Path(value).parts)
            except FileNotFoundError:
                pass
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}.notebook: {path} does not exist (a relative path names a file under the "
            "working directory or a notebook the package ships, e.g. "
            "notebooks/01_explore_data.ipynb)"
        )
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


def _notebook_parameters(notebook: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


@dataclass(frozen=True)
class _Block:
    """An experiment's ``data:`` or ``split:`` block, as the notebook parameters it sets."""

    key: str
    parameters: dict[str, Any]
    defaults: dict[str, Any]

    def for_notebook(self, known: set[str], notebook: Path, where: str) -> dict[str, Any]:
        """The parameters ``notebook`` defines. A notebook that takes some of them must take
        every one that differs from its default: leaving one out would read the data (or
        split it) another way than the block says."""
        given = {k: v for k, v in self.parameters.items() if k in known}
        lost = [k for k, v in self.parameters.items() if k not in known and v != self.defaults[k]]
        if given and lost:
            raise ValueError(
                f"{where}: {notebook.name}'s parameters cell lacks {lost}, which the "
                f"experiment's {self.key}: block sets"
            )
        return given

    def check_not_set(self, params: dict, where: str) -> None:
        clash = sorted(set(params) & set(self.defaults))
        if clash:
            raise ValueError(
                f"{where}: parameter(s) {clash} come from the experiment's {self.key}: block; "
                f"set them there, not in a step"
            )


def _blocks(spec: dict, path: Path) -> tuple[DataSource | None, SplitSpec | None, list[_Block]]:
    source = split = None
    blocks = []
    try:
        if spec.get("data") is not None:
            source = DataSource.from_dict(spec["data"], "data")
            if source.path is not None and not Path(source.path).expanduser().exists():
                raise FileNotFoundError(f"data: path {source.path} does not exist")
            blocks.append(
                _Block(
                    "data", source.to_notebook_parameters(), DataSource().to_notebook_parameters()
                )
            )
        if spec.get("split") is not None:
            split = SplitSpec.from_dict(spec["split"], "split")
            blocks.append(
                _Block(
                    "split", split.to_notebook_parameters(), SplitSpec().to_notebook_parameters()
                )
            )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: {exc}") from exc
    return source, split, blocks


def _check_references(
    sets: list[dict], runs_per_step: dict[str, int], where: str
) -> tuple[str, ...]:
    """The earlier steps whose output folders the parameters refer to (each must be an earlier
    step with one run)."""
    requires: set[str] = set()
    for params in sets:
        for key, value in params.items():
            for ref in _REF.findall(value) if isinstance(value, str) else []:
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
    return tuple(sorted(requires))


def load_experiment(path: str | Path, overrides: dict | None = None) -> Experiment:
    """Read and check an experiment file (a path, or a packaged experiment's name: see
    :func:`experiment_path`): notebooks exist, parameters exist in each notebook's
    ``parameters`` cell, the ``data:`` and ``split:`` blocks are valid, references name earlier
    single-run steps. ``overrides`` (e.g. from ``--set``) replace the value of a parameter in
    every run whose notebook has it."""
    path = experiment_path(path)
    spec = read_yaml(path, "experiment file")
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping with 'steps', got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(_EXPERIMENT_KEYS))
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; expected {', '.join(_EXPERIMENT_KEYS)}"
        )
    name = spec.get("name") or path.stem
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{path}: name must use letters, digits, '-' or '_', got {name!r}")
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ValueError(f"{path}: 'steps' must be a non-empty list")
    summary = spec.get("summary") or []
    if not isinstance(summary, list) or not all(isinstance(s, str) for s in summary):
        raise ValueError(f"{path}: 'summary' must be a list of metric names")
    source, split, blocks = _blocks(spec, path)
    overrides = dict(overrides or {})
    used_overrides: set[str] = set()
    runs: list[Run] = []
    runs_per_step: dict[str, int] = {}
    for i, step in enumerate(steps):
        where = f"{path}: steps[{i}]"
        if not isinstance(step, dict):
            raise ValueError(f"{where} must be a mapping with 'notebook'")
        bad = sorted(set(step) - set(_STEP_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown key(s) {bad}; expected {', '.join(_STEP_KEYS)}")
        notebook = _notebook_path(step.get("notebook"), where)
        step_name = step.get("name") or notebook.stem
        if not isinstance(step_name, str) or not _NAME.match(step_name):
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
        shared: dict[str, Any] = {}
        for block in blocks:
            shared.update(block.for_notebook(known, notebook, where))
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
            for block in blocks:
                block.check_not_set(params, where)
            for key in overrides:
                if key in known:
                    params[key] = overrides[key]
                    used_overrides.add(key)
        requires = _check_references(sets, runs_per_step, where)
        runs_per_step[step_name] = len(sets)
        for j, params in enumerate(sets):
            label = f"{i + 1:02d}-{step_name}" + (f"-{j + 1}" if len(sets) > 1 else "")
            own = {k: v for k, v in shared.items() if k not in params}
            runs.append(Run(step_name, label, notebook, params, requires, own))
    unused = sorted(set(overrides) - used_overrides)
    if unused:
        raise ValueError(f"--set: no notebook of {path} has parameter(s) {unused}")
    return Experiment(name, path, runs, summary, spec.get("description") or "", source, split)


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


def _interrupted(out: Path) -> None:
    """An interrupted run leaves no ``results.json`` (one the notebook wrote lacks the run's
    status), so nothing reads it as a finished run; the executed notebook stays as the log."""
    (out / RESULTS_FILE).unlink(missing_ok=True)


def _execute(run: Run, parameters: dict) -> None:
    """Execute one run into ``run.output_dir`` and complete its ``results.json`` with the
    run's status, timing and kernel (or write one that records the failure)."""
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
    except KeyboardInterrupt:
        _interrupted(out)
        raise
    except Exception as exc:  # a failed run is reported; the others go on
        if getattr(exc, "ename", None) == "KeyboardInterrupt":  # Ctrl-C reached the kernel
            _interrupted(out)
            raise KeyboardInterrupt from exc
        run.status, run.error = "failed", _describe_error(exc)
        if isinstance(exc, FileNotFoundError):
            run.error = (
                f"the notebook wrote no {RESULTS_FILE} (its last cell must call write_results)"
            )
        record = {
            "parameters": parameters,
            "metrics": {},
            "error": run.error,
            "environment": provenance.environment_record(),
        }
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
    files.write_json(out / RESULTS_FILE, record, "results")


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


def _run_folder(root: Path, name: str) -> Path:
    """A new folder ``<UTC time>-<name>`` under ``root`` (suffixed when two start in the same
    second)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = root / f"{stamp}-{name}"
    n = 2
    while out.exists():
        out = root / f"{stamp}-{name}-{n}"
        n += 1
    out.mkdir(parents=True)
    return out


def run_experiment(
    experiment: Experiment | str | Path,
    *,
    fail_fast: bool = False,
    runs_dir: str | Path | None = None,
    overrides: dict | None = None,
    log=print,
) -> tuple[Path, list[Run]]:
    """Execute every run of an experiment (an :class:`Experiment`, a file, or a packaged
    experiment's name) into a new folder under ``runs_dir`` (default
    :func:`alsresearch.paths.runs_dir`); returns (that folder, the runs with their status)."""
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment, overrides)
    out = _run_folder(Path(runs_dir) if runs_dir else paths.runs_dir(), experiment.name)
    shutil.copyfile(experiment.path, out / "experiment.yaml")
    log(f"experiment {experiment.name}: {len(experiment.runs)} run(s) into {out}")
    if experiment.data is not None:
        log(f"data: {experiment.data.describe()}")
    if experiment.split is not None:
        log(f"split: {experiment.split}")
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
            _execute(run, {**run.shared, **params})
            if run.status == "ok":
                log(f"[{i}/{total}] {run.label}: ok in {run.seconds:.1f} s")
            else:
                log(f"[{i}/{total}] {run.label}: FAILED after {run.seconds:.1f} s at {run.error}")
                log(f"        executed notebook: {run.output_dir / run.notebook.name}")
        outputs.setdefault(run.step, run.output_dir)
        status[run.step] = "failed" if status.get(run.step) == "failed" else run.status
    table = summary_table(experiment.runs, experiment.summary)
    files.atomic_write(out / SUMMARY_FILE, lambda fh: table.to_csv(fh))
    shown = table.drop(columns="error").T.map(_cell)  # one column per run: many metrics fit
    log(f"\nsummary ({out / SUMMARY_FILE}):\n{shown.to_string()}")
    return out, experiment.runs
