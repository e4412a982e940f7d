"""Experiment files and the papermill runner (alsresearch.runner)."""

from __future__ import annotations

import json
import shutil
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from alsresearch import paths, records, runner
from alsresearch.cli import main
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec
from tests.layout import EXPERIMENTS
from tests.typed_events import (
    COLUMNS,
    EVENT_WEIGHTS,
    TEST_FRACTION,
    as_interactions,
    expected_cells,
    write_typed_events,
)

pytest.importorskip("papermill")

PACKAGED = paths.resource("notebooks")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def make_notebook(path, parameters: str, body: str):
    """A notebook with a tagged parameters cell, a body, and write_results at the end."""
    book = new_notebook(
        cells=[
            new_code_cell("from alsresearch import records"),
            new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            new_code_cell(body),
        ]
    )
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(book, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    produce = make_notebook(
        tmp_path / "produce.ipynb",
        'X = 1\nLABEL = "a"\nOUTPUT_DIR = "."',
        "import sys\n"
        "from pathlib import Path\n"
        "Path(OUTPUT_DIR, 'value.txt').write_text(str(X * 10))\n"
        "records.write_results(OUTPUT_DIR, params=records.upper_case_parameters(globals()),\n"
        "    metrics={'x_squared': X * X}, extra={'python': sys.executable})",
    )
    consume = make_notebook(
        tmp_path / "consume.ipynb",
        'SOURCE = ""\nOUTPUT_DIR = "."',
        "from pathlib import Path\n"
        "value = int(Path(SOURCE, 'value.txt').read_text())\n"
        "records.write_results(OUTPUT_DIR, params={'SOURCE': SOURCE}, metrics={'read': value})",
    )
    fail = make_notebook(
        tmp_path / "fail.ipynb",
        'OUTPUT_DIR = "."',
        "ok = 1\n",
    )
    book = nbformat.read(fail, as_version=4)
    book.cells.append(new_code_cell("raise ZeroDivisionError('planted failure')"))
    nbformat.write(book, fail)
    # reads only the events file and its user and item columns
    plain = make_notebook(
        tmp_path / "plain.ipynb",
        'EVENTS = ""\nUSER_COL = "user_id"\nITEM_COL = "item_id"\nOUTPUT_DIR = "."',
        "records.write_results(OUTPUT_DIR, params={}, metrics={})",
    )
    return {"produce": produce, "consume": consume, "fail": fail, "plain": plain}


def write_yaml(path, spec):
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


# ------------------------------------------------------------------ experiment files
def test_grid_and_parameter_sets_expand(tmp_path, notebooks):
    spec = {
        "name": "grid",
        "steps": [
            {
                "name": "g",
                "notebook": str(notebooks["produce"]),
                "parameters": {"LABEL": "b"},
                "grid": {"X": [1, 2, 3]},
            },
            {
                "name": "s",
                "notebook": str(notebooks["produce"]),
                "parameter_sets": [{"X": 5}, {"X": 6, "LABEL": "c"}],
            },
        ],
    }
    exp = runner.load_experiment(write_yaml(tmp_path / "e.yaml", spec))
    assert [r.label for r in exp.runs] == ["01-g-1", "01-g-2", "01-g-3", "02-s-1", "02-s-2"]
    assert [r.parameters for r in exp.runs] == [
        {"LABEL": "b", "X": 1},
        {"LABEL": "b", "X": 2},
        {"LABEL": "b", "X": 3},
        {"X": 5},
        {"X": 6, "LABEL": "c"},
    ]
    assert exp.data is None and exp.split is None and all(r.shared == {} for r in exp.runs)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [{"notebook": "PRODUCE", "parameters": {"Y": 1}}],
            "parameter(s) ['Y'] are not in produce.ipynb",
        ),
        (
            [{"notebook": "PRODUCE", "parameters": {"OUTPUT_DIR": "x"}}],
            "OUTPUT_DIR is set by the runner",
        ),
        (
            [
                {"notebook": "CONSUME", "parameters": {"SOURCE": "${later.output_dir}"}},
                {"name": "later", "notebook": "PRODUCE"},
            ],
            "refers to step 'later', which is not an earlier step",
        ),
        (
            [
                {"name": "p", "notebook": "PRODUCE", "grid": {"X": [1, 2]}},
                {"notebook": "CONSUME", "parameters": {"SOURCE": "${p.output_dir}"}},
            ],
            "which has 2 runs",
        ),
        (
            [{"name": "a", "notebook": "PRODUCE"}, {"name": "a", "notebook": "PRODUCE"}],
            "step name 'a' is used twice",
        ),
        ([{"notebook": "PRODUCE", "grid": {"X": []}}], "grid.X must be a non-empty list"),
        (
            [{"notebook": "PRODUCE", "grid": {"X": [1]}, "parameter_sets": [{}]}],
            "either 'grid' or 'parameter_sets'",
        ),
        ([{"notebook": "PRODUCE", "params": {}}], "unknown key(s) ['params']"),
        ([{"notebook": "missing.ipynb"}], "missing.ipynb does not exist"),
    ],
)
def test_bad_experiment_files_name_the_problem(tmp_path, notebooks, steps, message):
    for step in steps:
        step["notebook"] = str(notebooks.get(step["notebook"].lower(), tmp_path / step["notebook"]))
    path = write_yaml(tmp_path / "bad.yaml", {"name": "bad", "steps": steps})
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        runner.load_experiment(path)
    assert message in str(err.value)


def test_overrides_apply_where_the_parameter_exists(tmp_path, notebooks):
    spec = {
        "steps": [{"notebook": str(notebooks["produce"])}, {"notebook": str(notebooks["fail"])}]
    }
    path = write_yaml(tmp_path / "o.yaml", spec)
    exp = runner.load_experiment(path, overrides={"X": 4})
    assert [r.parameters for r in exp.runs] == [{"X": 4}, {}]
    with pytest.raises(ValueError, match=r"no notebook of .* has parameter\(s\) \['NOPE'\]"):
        runner.load_experiment(path, overrides={"NOPE": 1})


# ------------------------------------------------------------------ data: and split: blocks
def blocks_spec(events, **extra):
    return {
        "name": "typed",
        "data": {"path": str(events), **COLUMNS, "event_weights": EVENT_WEIGHTS},
        "split": {"kind": "temporal", "test_fraction": TEST_FRACTION},
        **extra,
    }


def test_data_and_split_blocks_reach_the_notebooks_that_take_them(tmp_path, notebooks):
    events = tmp_path / "typed.csv"
    write_typed_events(events)
    steps = [
        {"name": "explore", "notebook": str(PACKAGED / "01_explore_data.ipynb")},
        {"name": "train", "notebook": str(PACKAGED / "02_train_evaluate.ipynb")},
        {"name": "other", "notebook": str(notebooks["produce"])},
    ]
    exp = runner.load_experiment(write_yaml(tmp_path / "b.yaml", blocks_spec(events, steps=steps)))
    source = DataSource(path=str(events), **COLUMNS, event_weights=EVENT_WEIGHTS)
    split = SplitSpec(kind="temporal", test_fraction=TEST_FRACTION)
    assert exp.data == source and exp.split == split
    explore, train, other = exp.runs
    # 01 takes the data parameters only; 02 takes both; a notebook that reads no data, neither
    assert explore.shared == source.to_notebook_parameters()
    assert train.shared == {**source.to_notebook_parameters(), **split.to_notebook_parameters()}
    assert train.shared["EVENT_WEIGHTS"] == "view=1,click=2,purchase=5"
    assert train.shared["EVENTS"] == str(events.resolve())
    assert train.shared["SPLIT"] == "temporal" and train.parameters == {}
    assert other.shared == {}
    # --set still overrides a parameter the blocks give
    exp = runner.load_experiment(
        write_yaml(tmp_path / "b.yaml", blocks_spec(events, steps=steps[1:2])),
        overrides={"SPLIT": "leave_last"},
    )
    assert exp.runs[0].parameters == {"SPLIT": "leave_last"}
    assert (
        "SPLIT" not in exp.runs[0].shared and exp.runs[0].shared["TEST_FRACTION"] == TEST_FRACTION
    )


def test_relative_paths_in_the_data_block_are_the_callers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_typed_events(tmp_path / "typed.csv")
    steps = [{"notebook": "notebooks/01_explore_data.ipynb"}]
    spec = {"data": {"path": "typed.csv", **COLUMNS}, "steps": steps}
    exp = runner.load_experiment(write_yaml(tmp_path / "rel.yaml", spec))
    assert exp.runs[0].shared["EVENTS"] == str(tmp_path / "typed.csv")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"path": "EVENTS", "colour": "red"}}, "data: unknown key(s) ['colour']"),
        (
            {"data": {"path": "EVENTS", "event_weights": {"view": 1}}},
            "event weights need an event column",
        ),
        ({"data": {"path": "nowhere.csv"}}, "data: path nowhere.csv does not exist"),
        ({"split": {"kind": "sideways"}}, "split kind"),
        ({"split": {"fraction": 0.1}}, "split: unknown key(s) ['fraction']"),
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        (
            {"steps": [{"notebook": "TRAIN", "parameters": {"EVENT_COL": "kind"}}]},
            "parameter(s) ['EVENT_COL'] come from the experiment's data: block",
        ),
        (
            {"steps": [{"notebook": "TRAIN", "grid": {"SPLIT_SEED": [1, 2]}}]},
            "parameter(s) ['SPLIT_SEED'] come from the experiment's split: block",
        ),
        (
            {"steps": [{"notebook": "PLAIN"}]},
            "plain.ipynb's parameters cell lacks ['EVENT_COL', 'EVENT_WEIGHTS', 'TIMESTAMP_COL']",
        ),
    ],
)
def test_bad_data_and_split_blocks_name_the_problem(tmp_path, notebooks, change, message):
    events = tmp_path / "typed.csv"
    write_typed_events(events)
    spec = {**blocks_spec(events), "steps": [{"notebook": "TRAIN"}], **change}
    if isinstance(spec["data"].get("path"), str) and spec["data"]["path"] == "EVENTS":
        spec["data"]["path"] = str(events)
    named = {"TRAIN": str(PACKAGED / "02_train_evaluate.ipynb"), "PLAIN": str(notebooks["plain"])}
    for step in spec["steps"]:
        step["notebook"] = named[step["notebook"]]
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        runner.load_experiment(write_yaml(tmp_path / "bad.yaml", spec))
    assert message in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_without_blocks_a_step_may_set_data_parameters(tmp_path):
    events = tmp_path / "typed.csv"
    write_typed_events(events)
    step = {"notebook": str(PACKAGED / "02_train_evaluate.ipynb")}
    step["parameters"] = {"EVENTS": str(events), "EVENT_COL": "event", "SPLIT": "temporal"}
    exp = runner.load_experiment(write_yaml(tmp_path / "s.yaml", {"steps": [step]}))
    assert exp.runs[0].parameters == step["parameters"] and exp.runs[0].shared == {}


# ------------------------------------------------------------------ where files are found
def test_relative_notebook_paths_are_the_callers_else_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"steps": [{"notebook": "notebooks/01_explore_data.ipynb"}]}
    path = write_yaml(tmp_path / "n.yaml", spec)
    assert runner.load_experiment(path).runs[0].notebook == PACKAGED / "01_explore_data.ipynb"
    (tmp_path / "notebooks").mkdir()
    shutil.copyfile(
        PACKAGED / "01_explore_data.ipynb", tmp_path / "notebooks" / "01_explore_data.ipynb"
    )
    found = runner.load_experiment(path).runs[0].notebook
    assert found == tmp_path / "notebooks" / "01_explore_data.ipynb"


def test_a_packaged_experiment_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = runner.load_experiment("demo")
    assert exp.path == paths.resource("demo.yaml") and exp.name == "demo"
    assert [r.notebook.parent for r in exp.runs] == [PACKAGED] * 4
    with pytest.raises(FileNotFoundError, match=r"experiment file not found: nosuch .*demo"):
        runner.load_experiment("nosuch")
    # a file of that name in the working directory comes first
    write_yaml(
        tmp_path / "demo",
        {"name": "mine", "steps": [{"notebook": str(PACKAGED / "01_explore_data.ipynb")}]},
    )
    assert runner.load_experiment("demo").name == "mine"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiment_files_are_valid(path):
    if path.name.startswith("search_space"):
        from alsresearch.tuning import SearchSpace

        SearchSpace.load(path)
    else:
        assert runner.load_experiment(path).runs


# ------------------------------------------------------------------ running
@pytest.mark.notebooks
def test_runner_chains_steps_reports_failures_and_goes_on(tmp_path, notebooks, home, capsys):
    spec = {
        "name": "chain",
        "summary": ["x_squared", "read"],
        "steps": [
            {"name": "produce", "notebook": str(notebooks["produce"]), "parameters": {"X": 3}},
            {"name": "broken", "notebook": str(notebooks["fail"])},
            {
                "name": "consume",
                "notebook": str(notebooks["consume"]),
                "parameters": {"SOURCE": "${produce.output_dir}"},
            },
        ],
    }
    out, runs = runner.run_experiment(write_yaml(tmp_path / "chain.yaml", spec))
    assert out.parent == home / "experiments" / "runs" and out.name.endswith("-chain")
    assert [r.status for r in runs] == ["ok", "failed", "ok"]
    produce = records.read_results(out / "01-produce")
    assert produce["metrics"] == {"x_squared": 9}
    assert produce["parameters"]["X"] == 3 and produce["parameters"]["OUTPUT_DIR"] == str(
        out / "01-produce"
    )
    # the kernel ran this interpreter, with no kernelspec registered for it
    assert produce["python"] == sys.executable == produce["run"]["kernel"]
    assert produce["run"]["status"] == "ok" and produce["run"]["seconds"] > 0
    assert (out / "01-produce" / "produce.ipynb").is_file()
    assert (out / "experiment.yaml").read_text() == (tmp_path / "chain.yaml").read_text()
    # the failure names the cell and the error, and is recorded
    broken = records.read_results(out / "02-broken")
    # cells of the executed notebook: import, parameters, injected parameters, body, raise
    assert runs[1].error.startswith("executed cell 4 (In [5]) [raise ZeroDivisionError")
    assert runs[1].error.endswith("ZeroDivisionError: planted failure")
    assert broken["run"]["status"] == "failed" and broken["error"] == runs[1].error
    # the chained step read the first step's output folder
    consume = records.read_results(out / "03-consume")
    assert consume["metrics"] == {"read": 30}
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "run,status,seconds,x_squared,read,error"
    assert len(summary) == 4
    printed = capsys.readouterr().out
    assert "[2/3] 02-broken: FAILED" in printed and "ZeroDivisionError" in printed


@pytest.mark.notebooks
def test_fail_fast_and_dependent_steps_are_skipped(tmp_path, notebooks):
    spec = {
        "steps": [
            {"name": "broken", "notebook": str(notebooks["fail"])},
            {"name": "produce", "notebook": str(notebooks["produce"])},
        ]
    }
    path = write_yaml(tmp_path / "ff.yaml", spec)
    _, runs = runner.run_experiment(path, fail_fast=True)
    assert [r.status for r in runs] == ["failed", "skipped"]

    spec = {
        "steps": [
            {"name": "broken", "notebook": str(notebooks["fail"])},
            {
                "name": "consume",
                "notebook": str(notebooks["consume"]),
                "parameters": {"SOURCE": "${broken.output_dir}"},
            },
        ]
    }
    _, runs = runner.run_experiment(write_yaml(tmp_path / "dep.yaml", spec))
    assert [r.status for r in runs] == ["failed", "skipped"]
    assert "needs step(s) ['broken']" in runs[1].error
    # the command exits 1 when a run failed
    assert main(["run", str(tmp_path / "ff.yaml"), "--fail-fast"]) == 1


@pytest.mark.notebooks
def test_a_notebook_that_writes_no_record_is_a_failure(tmp_path):
    silent = make_notebook(tmp_path / "silent.ipynb", 'OUTPUT_DIR = "."', "x = 1")
    _, runs = runner.run_experiment(
        write_yaml(tmp_path / "s.yaml", {"steps": [{"notebook": str(silent)}]})
    )
    assert runs[0].status == "failed"
    assert (
        runs[0].error
        == "the notebook wrote no results.json (its last cell must call write_results)"
    )
    assert records.read_results(runs[0].output_dir)["run"]["status"] == "failed"


@pytest.mark.notebooks
def test_a_foreign_user_python3_kernelspec_is_not_used(tmp_path, notebooks, monkeypatch):
    """A "python3" kernelspec that points elsewhere (here: a command that fails) is ignored."""
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {"argv": ["/bin/false", "{connection_file}"], "display_name": "x", "language": "python"}
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    spec = {"steps": [{"notebook": str(notebooks["produce"])}]}
    _, runs = runner.run_experiment(write_yaml(tmp_path / "k.yaml", spec))
    assert runs[0].status == "ok", runs[0].error


@pytest.mark.notebooks
def test_relative_paths_in_parameters_are_the_callers(tmp_path, notebooks, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "value.txt").write_text("42")
    spec = {"steps": [{"notebook": str(notebooks["consume"]), "parameters": {"SOURCE": "given"}}]}
    _, runs = runner.run_experiment(write_yaml(tmp_path / "rel.yaml", spec))
    assert runs[0].status == "ok", runs[0].error
    assert runs[0].metrics == {"read": 42}


@pytest.mark.notebooks
def test_typed_events_with_a_temporal_split_from_an_experiment_file(tmp_path, home, monkeypatch):
    """The issue's "done when", from an experiment file: a data: block with event types and
    weights and a split: block, shared by notebooks 01 and 02; the counts the records
    fingerprint are a pandas groupby of the weighted events of the file written here."""
    monkeypatch.chdir(tmp_path)
    frame = write_typed_events(tmp_path / "typed.csv")
    spec = {
        "name": "typed",
        "data": {"path": "typed.csv", **COLUMNS, "event_weights": EVENT_WEIGHTS},
        "split": {"kind": "temporal", "test_fraction": TEST_FRACTION},
        "steps": [
            {"name": "explore", "notebook": "notebooks/01_explore_data.ipynb"},
            {
                "name": "train",
                "notebook": "notebooks/02_train_evaluate.ipynb",
                "parameters": {"FACTORS": 4, "ITERATIONS": 3},
            },
        ],
    }
    _, runs = runner.run_experiment(write_yaml(tmp_path / "typed.yaml", spec))
    assert [r.status for r in runs] == ["ok", "ok"], [r.error for r in runs]
    cells = expected_cells(frame)
    expected_all = as_interactions(cells, cells)
    expected_train = as_interactions(cells[~cells["test"]], cells)
    source = DataSource(path=str(tmp_path / "typed.csv"), **COLUMNS, event_weights=EVENT_WEIGHTS)
    split = SplitSpec(kind="temporal", test_fraction=TEST_FRACTION)
    explore, train = (records.read_results(r.output_dir) for r in runs)
    for record in (explore, train):
        assert record["data"]["fingerprint"] == expected_all.fingerprint()
        assert record["data"]["source"] == source.to_dict()
    assert explore["metrics"]["nnz"] == len(cells)
    assert explore["metrics"]["max_count"] == cells["count"].max()
    assert explore["split"] is None and "SPLIT" not in explore["parameters"]
    assert train["split"] == split.to_dict()
    assert train["train"]["fingerprint"] == expected_train.fingerprint()
    assert train["train"]["nnz"] == int((~cells["test"]).sum())
    assert train["parameters"]["EVENT_WEIGHTS"] == "view=1,click=2,purchase=5"
    assert train["metrics"]["als_ndcg@10"] >= 0
