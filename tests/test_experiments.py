"""The experiment runner (papermill), results.json records, and `alsresearch train/evaluate`."""

from __future__ import annotations

import json
import sys

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from alsresearch import experiments, paths
from tests.layout import EXPERIMENTS
from alsresearch.cli import main
from alsresearch.datasets import synthetic

pytest.importorskip("papermill")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def make_notebook(path, parameters: str, body: str):
    """A notebook with a tagged parameters cell, a body, and write_results at the end."""
    book = new_notebook(
        cells=[
            new_code_cell("from alsresearch import experiments"),
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
        "experiments.write_results(OUTPUT_DIR, params=experiments.upper_case_parameters(globals()),\n"
        "    metrics={'x_squared': X * X}, extra={'python': sys.executable})",
    )
    consume = make_notebook(
        tmp_path / "consume.ipynb",
        'SOURCE = ""\nOUTPUT_DIR = "."',
        "from pathlib import Path\n"
        "value = int(Path(SOURCE, 'value.txt').read_text())\n"
        "experiments.write_results(OUTPUT_DIR, params={'SOURCE': SOURCE}, metrics={'read': value})",
    )
    fail = make_notebook(
        tmp_path / "fail.ipynb",
        'OUTPUT_DIR = "."',
        "ok = 1\n",
    )
    book = nbformat.read(fail, as_version=4)
    book.cells.append(new_code_cell("raise ZeroDivisionError('planted failure')"))
    nbformat.write(book, fail)
    return {"produce": produce, "consume": consume, "fail": fail}


def write_yaml(path, spec):
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


# ------------------------------------------------------------------ records
def test_write_results_records_parameters_metrics_data_and_environment(
    tmp_path, small_interactions
):
    path = experiments.write_results(
        tmp_path / "run",
        params={"ALPHA": 1.0},
        metrics={"ndcg@10": np.float32(0.25), "missing": float("nan")},
        data=small_interactions,
        seed=7,
        durations={"fit": 1.5},
    )
    record = json.loads(path.read_text())
    assert record["parameters"] == {"ALPHA": 1.0}
    assert record["metrics"] == {"ndcg@10": 0.25, "missing": None}
    assert record["data"]["fingerprint"] == small_interactions.fingerprint()
    assert record["data"]["nnz"] == small_interactions.nnz
    assert record["seed"] == 7 and record["durations"] == {"fit": 1.5}
    env = record["environment"]
    assert set(env["git"]) == {"commit", "dirty"} and "numpy" in env["packages"]
    assert "threads" in env


def test_write_results_refuses_non_numeric_metrics(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\['name'\] must be a number"):
        experiments.write_results(tmp_path, params={}, metrics={"name": "als"})


def test_upper_case_parameters_keeps_only_upper_case_literals():
    namespace = {"ALPHA": 1.5, "NAME": "x", "FLAG": True, "data": 3, "X_2": None, "CLS": dict}
    assert experiments.upper_case_parameters(namespace) == {
        "ALPHA": 1.5,
        "NAME": "x",
        "FLAG": True,
        "X_2": None,
    }


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
    exp = experiments.load_experiment(write_yaml(tmp_path / "e.yaml", spec))
    assert [r.label for r in exp.runs] == ["01-g-1", "01-g-2", "01-g-3", "02-s-1", "02-s-2"]
    assert [r.parameters for r in exp.runs] == [
        {"LABEL": "b", "X": 1},
        {"LABEL": "b", "X": 2},
        {"LABEL": "b", "X": 3},
        {"X": 5},
        {"X": 6, "LABEL": "c"},
    ]


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
        experiments.load_experiment(path)
    assert message in str(err.value)


def test_overrides_apply_where_the_parameter_exists(tmp_path, notebooks):
    spec = {
        "steps": [{"notebook": str(notebooks["produce"])}, {"notebook": str(notebooks["fail"])}]
    }
    path = write_yaml(tmp_path / "o.yaml", spec)
    exp = experiments.load_experiment(path, overrides={"X": 4})
    assert [r.parameters for r in exp.runs] == [{"X": 4}, {}]
    with pytest.raises(ValueError, match=r"no notebook of .* has parameter\(s\) \['NOPE'\]"):
        experiments.load_experiment(path, overrides={"NOPE": 1})


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
    out, runs = experiments.run_experiment(write_yaml(tmp_path / "chain.yaml", spec))
    assert out.parent == home / "experiments" / "runs" and out.name.endswith("-chain")
    assert [r.status for r in runs] == ["ok", "failed", "ok"]
    produce = json.loads((out / "01-produce" / "results.json").read_text())
    assert produce["metrics"] == {"x_squared": 9}
    assert produce["parameters"]["X"] == 3 and produce["parameters"]["OUTPUT_DIR"] == str(
        out / "01-produce"
    )
    # the kernel ran this interpreter, with no kernelspec registered for it
    assert produce["python"] == sys.executable == produce["run"]["kernel"]
    assert produce["run"]["status"] == "ok" and produce["run"]["seconds"] > 0
    assert (out / "01-produce" / "produce.ipynb").is_file()
    # the failure names the cell and the error, and is recorded
    broken = json.loads((out / "02-broken" / "results.json").read_text())
    # cells of the executed notebook: import, parameters, injected parameters, body, raise
    assert runs[1].error.startswith("executed cell 4 (In [5]) [raise ZeroDivisionError")
    assert runs[1].error.endswith("ZeroDivisionError: planted failure")
    assert broken["run"]["status"] == "failed" and broken["error"] == runs[1].error
    # the chained step read the first step's output folder
    consume = json.loads((out / "03-consume" / "results.json").read_text())
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
    _, runs = experiments.run_experiment(path, fail_fast=True)
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
    _, runs = experiments.run_experiment(write_yaml(tmp_path / "dep.yaml", spec))
    assert [r.status for r in runs] == ["failed", "skipped"]
    assert "needs step(s) ['broken']" in runs[1].error
    # the command exits 1 when a run failed
    assert main(["run", str(tmp_path / "ff.yaml"), "--fail-fast"]) == 1


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
    _, runs = experiments.run_experiment(write_yaml(tmp_path / "k.yaml", spec))
    assert runs[0].status == "ok", runs[0].error


# ------------------------------------------------------------------ train / evaluate
@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.csv"
    synthetic(400, 150, 8000, seed=2).to_frame().rename(columns={"count": "plays"}).to_csv(
        path, index=False
    )
    return path


def test_train_then_evaluate_against_popularity(tmp_path, events, capsys):
    params = tmp_path / "best.json"
    params.write_text(
        json.dumps(
            {
                "params": {
                    "factors": 8,
                    "iterations": 5,
                    "alpha": 2.0,
                    "regularization": 0.1,
                    "random_state": 0,
                }
            }
        )
    )
    model = tmp_path / "model.npz"
    data_args = ["--events", str(events), "--weight-col", "plays"]
    assert main(["train", *data_args, "--params", str(params), "--out", str(model)]) == 0
    assert model.is_file()
    out = tmp_path / "eval"
    assert main(["evaluate", *data_args, "--model", str(model), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "popularity" in printed and "ndcg@10" in printed
    record = json.loads((out / "results.json").read_text())

    # the same figures, computed here from the library pieces
    from alsresearch.als import ALSModel
    from alsresearch.baselines import PopularityModel
    from alsresearch.data import Interactions
    from alsresearch.evaluate import evaluate
    from alsresearch.split import random_holdout

    data = Interactions.from_events(events, weight_col="plays")
    train, test = random_holdout(data, 0.2, seed=42)
    als = ALSModel(factors=8, iterations=5, alpha=2.0, regularization=0.1, random_state=0).fit(
        train
    )
    pop = PopularityModel().fit(train)
    assert record["metrics"]["als_ndcg@10"] == pytest.approx(
        evaluate(als, train, test).metrics["ndcg@10"]
    )
    assert record["metrics"]["popularity_ndcg@10"] == pytest.approx(
        evaluate(pop, train, test).metrics["ndcg@10"]
    )
    assert record["data"]["fingerprint"] == data.fingerprint()


def test_evaluate_refuses_a_model_trained_on_the_test_cells(tmp_path, events, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"factors": 4, "iterations": 2}))
    model = tmp_path / "all.npz"
    data_args = ["--events", str(events), "--weight-col", "plays"]
    assert (
        main(
            [
                "train",
                *data_args,
                "--params",
                str(params),
                "--out",
                str(model),
                "--test-fraction",
                "0",
            ]
        )
        == 0
    )
    assert main(["evaluate", *data_args, "--model", str(model)]) == 1
    assert "was not trained on the training part of this split" in capsys.readouterr().err
    # another split seed than the one it was trained with is refused too
    trained = tmp_path / "seed1.npz"
    assert (
        main(
            [
                "train",
                *data_args,
                "--params",
                str(params),
                "--out",
                str(trained),
                "--split-seed",
                "1",
            ]
        )
        == 0
    )
    assert main(["evaluate", *data_args, "--model", str(trained), "--split-seed", "2"]) == 1


def test_train_names_a_bad_parameter(tmp_path, events, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"factor": 4}))
    code = main(
        [
            "train",
            "--events",
            str(events),
            "--params",
            str(params),
            "--out",
            str(tmp_path / "m.npz"),
        ]
    )
    assert code == 1
    assert "unknown ALS parameter(s) ['factor']" in capsys.readouterr().err


def test_help_of_every_command_works_without_optional_imports(capsys):
    for command in ("run", "train", "evaluate", "tune"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "usage: alsresearch " + command in capsys.readouterr().out


@pytest.mark.parametrize(
    "path", sorted((EXPERIMENTS).glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_experiment_files_are_valid(path):
    if path.name == "search_space.yaml":
        from alsresearch.tuning import SearchSpace

        SearchSpace.load(path)
    else:
        assert experiments.load_experiment(path).runs


@pytest.mark.notebooks
def test_relative_paths_in_parameters_are_the_callers(tmp_path, notebooks, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "value.txt").write_text("42")
    spec = {"steps": [{"notebook": str(notebooks["consume"]), "parameters": {"SOURCE": "given"}}]}
    _, runs = experiments.run_experiment(write_yaml(tmp_path / "rel.yaml", spec))
    assert runs[0].status == "ok", runs[0].error
    assert runs[0].metrics == {"read": 42}
