"""``--backend spark`` from the command line on a real local Spark (the session of
tests/test_spark.py: ``local[2]``, one for the test session; skipped with the reason where
pyspark or Java 17+ is missing): ``train --backend spark`` writes an ordinary model file that
the local ``evaluate`` scores, ``evaluate --backend spark`` agrees with the local ``evaluate``
on the same model and split, and the setup errors reach the user as one line."""

from __future__ import annotations

import json

import pytest

from alsresearch import load_model
from alsresearch.cli import main
from alsresearch.evaluate import evaluate
from alsresearch.seeds import DEFAULT_SEED
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec
from tests.test_spark import spark  # noqa: F401 (the session fixture)

pytestmark = pytest.mark.spark

SMALL = {"factors": 8, "iterations": 5, "alpha": 1.0, "regularization": 0.5,
         "regularization_scaling": "count"}  # fmt: skip
SPARK = ["--backend", "spark", "--spark-master", "local[2]"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARK_MASTER", raising=False)


@pytest.fixture(scope="module")
def spark_model_file(spark, tmp_path_factory):  # noqa: F811
    """``alsresearch train --backend spark`` on the shipped MovieLens, default split."""
    root = tmp_path_factory.mktemp("spark-cli")
    params = root / "params.json"
    params.write_text(json.dumps(SMALL))
    path = root / "spark.npz"
    assert main(["train", "--params", str(params), "--out", str(path), *SPARK]) == 0
    return path


def test_train_backend_spark_writes_a_model_that_evaluate_scores(spark_model_file, tmp_path):
    model = load_model(spark_model_file)
    assert model.model_type == "spark_als"
    assert model.spark_info["trained_by"] == "spark" and model.spark_info["master"] == "local[2]"
    assert model.spark_info["als_params"]["seed"] == DEFAULT_SEED  # the one default seed
    assert model.training["random_state"] == DEFAULT_SEED
    parts = SplitSpec().parts(DataSource().load())
    assert model.user_factors.shape == (parts.train.n_users, SMALL["factors"])
    out = tmp_path / "local"
    assert main(["evaluate", "--model", str(spark_model_file), "--out", str(out)]) == 0
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    expected = evaluate(model, parts.train, parts.test, k=10).metrics
    assert metrics["spark_als_ndcg@10"] == pytest.approx(expected["ndcg@10"], rel=1e-12)
    # a trained model, not noise: it beats popularity on the held-out part
    assert metrics["spark_als_ndcg@10"] > metrics["popularity_ndcg@10"]


def test_evaluate_backend_spark_agrees_with_the_local_evaluate(spark_model_file, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "spark"
    assert main(["evaluate", "--model", str(spark_model_file), "--out", str(local)]) == 0
    argv = ["evaluate", "--model", str(spark_model_file), "--out", str(remote), *SPARK]
    assert main(argv) == 0
    ours = json.loads((local / "results.json").read_text())
    theirs = json.loads((remote / "results.json").read_text())
    assert theirs["parameters"]["backend"] == "spark"
    assert theirs["train"] == ours["train"] and theirs["split"] == ours["split"]
    for name in ("ndcg", "hit_rate", "precision", "recall", "map", "mrr", "coverage"):
        key = f"spark_als_{name}@10"
        assert abs(theirs["metrics"][key] - ours["metrics"][key]) <= 1e-9, key
    assert not any(k.endswith("_low") for k in theirs["metrics"])  # no bootstrap intervals


def test_evaluate_backend_spark_refuses_what_it_cannot_score(spark_model_file, tmp_path, capsys):
    argv = ["evaluate", "--model", str(spark_model_file), *SPARK]
    assert main([*argv, "--split-seed", "7"]) == 1  # another split than the model's
    assert "different split" in capsys.readouterr().err
    assert main([*argv, "--protocol", "fold_in"]) == 1
    assert "--protocol fold_in cannot be evaluated with --backend spark" in capsys.readouterr().err


def test_spark_options_without_backend_spark_are_an_error(tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps(SMALL))
    argv = ["train", "--params", str(params), "--out", str(tmp_path / "m.npz")]
    assert main([*argv, "--spark-master", "local[2]"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alsresearch train: error: --spark-master has no effect without "
                          "--backend spark")  # fmt: skip
    assert not (tmp_path / "m.npz").exists()


def test_setup_errors_are_one_line(spark, tmp_path, capsys):  # noqa: F811
    params = tmp_path / "p.json"
    params.write_text(json.dumps(SMALL))
    argv = ["train", "--params", str(params), "--out", str(tmp_path / "m.npz"), "--backend",
            "spark"]  # fmt: skip
    # the running session has master local[2]: another is refused (one Spark per process)
    assert main([*argv, "--spark-master", "local[1]"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a Spark session with master 'local[2]'" in err
    assert main([*argv, "--spark-conf", "nokey"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--spark-conf: Spark configuration must be key=value" in err
    # Spark fits the count-scaled objective only
    params.write_text(json.dumps({**SMALL, "regularization_scaling": "frequency"}))
    assert main(argv) == 1
    assert "cannot fit 'frequency'" in capsys.readouterr().err
    params.write_text(json.dumps({"model": "ease", "regularization": 10.0}))
    assert main(argv) == 1
    assert "--backend spark fits ALS only" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_tune_backend_spark_runs_its_trials_on_spark(spark, tmp_path, monkeypatch):  # noqa: F811
    """Each trial is a Spark fit: the factory's models are SparkALSModels, and the sweep ends
    with a best.json of the ALS space."""
    from alsresearch import spark as backend

    built = []
    original = backend.SparkALSModel.from_als_params

    def counted(params, **kw):
        built.append(params)
        return original(params, **kw)

    monkeypatch.setattr(backend.SparkALSModel, "from_als_params", staticmethod(counted))
    space = tmp_path / "spark_space.yaml"  # Spark's objective: count-scaled regularization
    space.write_text(
        "params:\n"
        "  regularization: {type: float, low: 0.1, high: 1.0, log: true}\n"
        "defaults: {regularization: 0.5}\n"
        "fixed: {factors: 8, iterations: 3, alpha: 1.0, regularization_scaling: count}\n"
        "validation: {fraction: 0.2, max_users: 200, every: 3, k: 10}\n"
    )
    argv = ["tune", "--trials", "2", "--out", str(tmp_path / "t"), *SPARK, "--quiet"]
    argv += ["--storage", str(tmp_path / "s.db"), "--space", str(space)]
    assert main(argv) == 0
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["model"] == "als" and len(built) >= 1


@pytest.mark.notebooks
def test_notebook_02_trains_on_spark_with_backend_spark(spark, tmp_path):  # noqa: F811
    """BACKEND = "spark": the notebook's model is a SparkALSModel (Spark's blocks in its
    recorded configuration), evaluated like any model, and it beats popularity."""
    papermill = pytest.importorskip("papermill")
    from tests.layout import NOTEBOOKS

    parameters = {"BACKEND": "spark", "REGULARIZATION_SCALING": "count", "N_BOOT": 100,
                  "FACTORS": 8, "ITERATIONS": 5, "ALPHA": 1.0, "REGULARIZATION": 0.5,
                  "OUTPUT_DIR": str(tmp_path)}  # fmt: skip
    papermill.execute_notebook(
        str(NOTEBOOKS / "02_train_evaluate.ipynb"),
        str(tmp_path / "02.ipynb"),
        parameters=parameters,
        progress_bar=False,
    )
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["backend"] == "spark" and record["model"]["user_blocks"] == 10
    assert record["seed"] == DEFAULT_SEED
    assert record["metrics"]["als_ndcg@10"] > record["metrics"]["popularity_ndcg@10"]
