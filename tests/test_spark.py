"""The Spark backend (alsresearch.spark) on a real local Spark (``local[2]``, one session for
the whole test session): the fit against our ALSModel on the same objective, the model file
through load and the HTTP service, ``evaluate_spark`` against ``evaluate``, events read by Spark
with their ids kept exactly, and every bad input.

Skipped, with the reason, where pyspark (the ``spark`` extra) or Java 17+ is missing. The
parity settings (16 factors, 15 iterations, alpha 1, regularization 0.5, 2 blocks a side) keep
the Spark fit under ~10 s on 2 cores and sit where both engines' seed-to-seed spread is small
(measured on this split): our exact solver's NDCG@10 over 5 seeds spans 0.6% (relative) and its
final loss 0.03%; Spark's NDCG@10 over seeds 0-4 lies 0.2% below to 1.2% above ours (seed 0)
and its loss (our objective) within 0.02%. So the 2% and 1% bounds tell a different model
from a different random start; a mapping error (regularization not count-scaled, say) moves
the loss by far more, and the gradient test below catches it directly.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import httpx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch.als import ALSModel, objective
from alsresearch.base import load_model
from alsresearch.data import Interactions
from alsresearch.evaluate import evaluate
from alsresearch.split import random_holdout
from tests.layout import REPO_ROOT

pytestmark = pytest.mark.spark

PARAMS = {"factors": 16, "iterations": 15, "alpha": 1.0, "regularization": 0.5, "random_state": 0}
BLOCKS = {"user_blocks": 2, "item_blocks": 2}


def _java_problem() -> str | None:
    from alsresearch.spark import SparkSetupError, check_java

    try:
        check_java()
    except SparkSetupError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def spark():
    """One local[2] session for every Spark test, stopped (temp dir removed) at the end."""
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("pyspark is not installed: pip install 'alsresearch[spark]'")
    problem = _java_problem()
    if problem:
        pytest.skip(problem)
    from alsresearch import spark as backend

    session = backend.get_session("local[2]", conf={"spark.ui.enabled": "false"})
    yield session
    backend.stop_session()


@pytest.fixture(scope="module")
def split(movielens):
    return random_holdout(movielens, 0.2, seed=0)


@pytest.fixture(scope="module")
def spark_model(spark, split):
    from alsresearch.spark import SparkALSModel

    train, _ = split
    return SparkALSModel(**PARAMS, **BLOCKS).fit(train)


@pytest.fixture(scope="module")
def als_model(split):
    """ALSModel on the same objective, from implicit's uniform start: from its default normal
    start it reaches the same loss (138,235 against 138,260 here) but another optimum, whose
    NDCG@10 is 3-4% lower on this setting (0.252-0.255 over seeds 0-4, against 0.260-0.265
    from the uniform start and Spark's 0.265): equal objectives, not equal rankings."""
    train, _ = split
    return ALSModel(
        **PARAMS, regularization_scaling="count", solver="cholesky", initialization="uniform"
    ).fit(train)


def _run(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
    )


# ---------------------------------------------------------------------- the same model
def test_spark_fit_matches_als_on_the_same_objective(spark_model, als_model, split):
    train, test = split
    assert spark_model.user_factors.shape == (train.n_users, PARAMS["factors"])
    assert spark_model.item_factors.shape == (train.n_items, PARAMS["factors"])
    # our exact objective, count-scaled, on Spark's factors against ALSModel's final loss
    spark_loss = objective(
        train, spark_model.user_factors, spark_model.item_factors,
        PARAMS["alpha"], PARAMS["regularization"], "raw", "count",
    )  # fmt: skip
    ours = als_model.loss_history[-1]
    assert abs(spark_loss - ours) <= 0.01 * ours, (spark_loss, ours)
    assert spark_model.loss_history == pytest.approx([spark_loss], rel=1e-9)
    ndcg_spark = evaluate(spark_model, train, test, k=10, metrics=["ndcg"]).metrics["ndcg@10"]
    ndcg_ours = evaluate(als_model, train, test, k=10, metrics=["ndcg"]).metrics["ndcg@10"]
    assert abs(ndcg_spark - ndcg_ours) <= 0.02 * ndcg_ours, (ndcg_spark, ndcg_ours)


def _gradient(R: np.ndarray, X: np.ndarray, Y: np.ndarray, lam_rows: np.ndarray) -> np.ndarray:
    """d/dX of sum c (p - x.y)^2 + sum_u lam_u |x_u|^2, dense float64 (halved)."""
    C = 1.0 + PARAMS["alpha"] * R
    P = (R > 0).astype(np.float64)
    return (C * (X @ Y.T - P)) @ Y + lam_rows[:, None] * X


def test_spark_solves_the_normal_equations_of_the_count_scaled_objective(spark_model, split):
    """A float64 reference of the parameter mapping: Spark's last half-sweep solves the users
    with the items fixed, so the gradient of our count-scaled objective in the user factors
    vanishes at Spark's solution (to float32 rounding), while the unscaled objective's does
    not: the mapping of alpha, regParam and the ALS-WR scaling is ours."""
    train, _ = split
    R = train.matrix.toarray()
    X = spark_model.user_factors.astype(np.float64)
    Y = spark_model.item_factors.astype(np.float64)
    n_u = np.maximum(np.diff(train.matrix.indptr), 1)
    scale = np.linalg.norm(((1.0 + PARAMS["alpha"] * R) * (R > 0)) @ Y)
    lam = PARAMS["regularization"]
    count = np.linalg.norm(_gradient(R, X, Y, lam * n_u)) / scale
    unscaled = np.linalg.norm(_gradient(R, X, Y, np.full(len(X), lam))) / scale
    assert count < 1e-4, count
    assert unscaled > 100 * count, (unscaled, count)


def test_model_file_records_spark_and_loads_without_pyspark(spark_model, tmp_path):
    path = spark_model.save(tmp_path / "spark.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["model_type"]) == "spark_als"
        info = json.loads(str(npz["state_spark"]))
    assert info["trained_by"] == "spark"
    assert info["master"] == "local[2]"
    assert info["spark_version"].startswith("4.")
    assert info["als_params"]["rank"] == PARAMS["factors"]
    assert info["als_params"]["regParam"] == PARAMS["regularization"]
    assert info["als_params"]["implicitPrefs"] is True
    loaded = load_model(path)
    assert loaded.spark_info == info
    np.testing.assert_array_equal(loaded.user_factors, spark_model.user_factors)
    user = spark_model.user_ids[7]
    expected = spark_model.recommend(user, n=5)
    # a fresh interpreter where importing pyspark fails: load, recommend, fold in
    done = _run(
        f"""
        import sys
        sys.modules["pyspark"] = None  # any import of pyspark now raises ImportError
        from alsresearch.base import load_model
        m = load_model({str(path)!r})
        items, _ = m.recommend({int(user)}, n=5)
        history, _ = m.recommend_for_history(list(m.item_ids[:3]), n=5)
        import json
        print(json.dumps([type(m).__name__, m.spark_info["trained_by"], items.tolist(),
                          len(history), "pyspark" in sys.modules and sys.modules["pyspark"] is not None]))
        """
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["SparkALSModel", "spark", expected[0].tolist(), 5, False]


@pytest.mark.serve
def test_saved_spark_model_is_served_over_http(spark_model, tmp_path):
    from tests.serve_helpers import Server

    path = spark_model.save(tmp_path / "spark_served.npz")
    user = int(spark_model.user_ids[3])
    row = spark_model.user_index([user])[0]
    # the reference: every unseen item's score from the factors, in float64
    scores = spark_model.item_factors.astype(np.float64) @ spark_model.user_factors[row].astype(
        np.float64
    )
    scores[spark_model.seen[row].indices] = -np.inf
    best = np.sort(scores)[::-1][:10]
    with Server(path) as server:
        answer = httpx.get(f"{server.url}/recommendations/{user}", params={"n": 10}).json()
        health = httpx.get(f"{server.url}/health").json()
    assert health["model_type"] == "spark_als"
    assert answer["source"] == "spark_als"
    got = answer["recommendations"]
    np.testing.assert_allclose([r["score"] for r in got], best, rtol=1e-4, atol=1e-5)
    seen = set(spark_model.item_ids[spark_model.seen[row].indices].tolist())
    assert not {r["item_id"] for r in got} & seen


# ---------------------------------------------------------------------- evaluation in Spark
def test_evaluate_spark_agrees_with_evaluate(spark, spark_model, split):
    from alsresearch.spark import evaluate_spark

    train, test = split
    reference = evaluate(spark_model, train, test, k=10)
    # train and test as Spark DataFrames of external ids (what Spark-scale data looks like)
    frames = [spark.createDataFrame(part.to_frame()) for part in (train, test)]
    result = evaluate_spark(spark_model, *frames, k=10)
    assert result.n_users == reference.n_users
    assert set(result.metrics) == set(reference.metrics) - {"popularity_rank@10"}
    for name, value in result.metrics.items():
        assert value == pytest.approx(reference.metrics[name], abs=1e-9), name
    per_user = result.per_user.select("user_id", "ndcg").toPandas().set_index("user_id")
    expected = reference.per_user.set_index("user_id")["ndcg@10"]
    np.testing.assert_allclose(per_user.loc[expected.index, "ndcg"], expected, atol=1e-9)


# ---------------------------------------------------------------------- events read by Spark
def _typed_events() -> pd.DataFrame:
    """Events with text ids that look numeric but are not canonical ints ("007" and "7" are
    two users), repeated cells, event types with weights and a zero-weight cell."""
    rows = [
        ("007", "item/a", "view", 1.0),
        ("7", "item/a", "click", 1.0),
        ("7", "item/b", "view", 2.0),
        ("007", "item/b", "purchase", 1.0),
        ("u-x", "item/c", "view", 1.0),
        ("u-x", "item/a", "view", 1.0),
        ("u-x", "item/a", "view", 3.0),
        ("Ünï", "item/b", "click", 1.0),
        ("Ünï", "item/d", "view", 0.0),  # a zero cell: no interaction, as in from_events
        ("10", "item/c", "purchase", 1.0),
        ("10", "item/d", "view", 1.0),
    ]
    return pd.DataFrame(rows, columns=["user", "item", "event", "weight"])


def test_fit_from_a_parquet_path_keeps_string_ids_exactly(spark, tmp_path):
    from alsresearch.spark import SparkALSModel

    events = _typed_events()
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    options = dict(
        user_col="user", item_col="item", weight_col="weight", event_col="event",
        event_weights={"view": 1.0, "click": 2.0, "purchase": 5.0},
    )  # fmt: skip
    reference = Interactions.from_events(path, **options)
    model = SparkALSModel(factors=2, iterations=2, alpha=1.0, regularization=0.1, random_state=0)
    model.fit(path, **options)
    assert model.user_ids.dtype.kind == "U" and model.item_ids.dtype.kind == "U"
    np.testing.assert_array_equal(model.user_ids, reference.user_ids)
    np.testing.assert_array_equal(model.item_ids, reference.item_ids)
    ones = reference.matrix.copy()
    ones.data[:] = 1.0
    assert (model.seen != ones).nnz == 0
    # the loss Spark-side equals our objective on the counts from_events builds
    expected = objective(
        reference, model.user_factors, model.item_factors, 1.0, 0.1, "raw", "count"
    )
    assert model.loss_history[0] == pytest.approx(expected, rel=1e-6)
    assert (
        model.recommend("007", n=2)[0].tolist()
        == [
            i
            for i in reference.item_ids[np.argsort(-(model.item_factors @ model.user_factors[0]))]
            if i not in ("item/a", "item/b")
        ][:2]
    )


def test_fit_from_csv_text_ids_follows_the_text_rule(spark, tmp_path):
    """CSV ids are text: canonical integers become int64 ids, as Interactions.from_events
    reads them; the log scaling reaches Spark as log1p counts."""
    from alsresearch.spark import SparkALSModel

    path = tmp_path / "events.csv"
    pd.DataFrame({"u": [3, 10, 10, -5, 3], "i": [100, 7, 100, 7, 7], "w": [1, 2, 3, 4, 5]}).to_csv(
        path, index=False
    )
    reference = Interactions.from_events(path, user_col="u", item_col="i", weight_col="w")
    model = SparkALSModel(factors=2, iterations=2, alpha=2.0, regularization=0.1, scaling="log")
    model.fit(path, user_col="u", item_col="i", weight_col="w")
    assert model.user_ids.dtype == np.int64
    np.testing.assert_array_equal(model.user_ids, reference.user_ids)
    np.testing.assert_array_equal(model.item_ids, reference.item_ids)
    expected = objective(
        reference, model.user_factors, model.item_factors, 2.0, 0.1, "log", "count"
    )
    assert model.loss_history[0] == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------- bad inputs
def _model():
    from alsresearch.spark import SparkALSModel

    return SparkALSModel(factors=2, iterations=1, random_state=0)


def test_negative_counts_are_an_error_naming_the_column(spark):
    frame = spark.createDataFrame(
        pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 1, 2], "weight": [1.0, -2.0, -1.0]})
    )
    with pytest.raises(ValueError, match=r"2 bad row\(s\) of 3.*negative value in 'weight'"):
        _model().fit(frame, weight_col="weight")


def test_unknown_event_types_are_an_error(spark):
    frame = spark.createDataFrame(
        pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "kind": ["view", "like"]})
    )
    with pytest.raises(ValueError, match="unknown event type in 'kind'"):
        _model().fit(frame, event_col="kind", event_weights={"view": 1.0})


def test_empty_data_is_an_error(spark):
    empty = spark.createDataFrame([], "user_id long, item_id long")
    with pytest.raises(ValueError, match="no events"):
        _model().fit(empty)
    zeros = spark.createDataFrame(pd.DataFrame({"user_id": [1], "item_id": [2], "w": [0.0]}))
    with pytest.raises(ValueError, match="sum to 0"):
        _model().fit(zeros, weight_col="w")
    with pytest.raises(ValueError, match="no stored cell"):
        _model().fit(Interactions(sp.csr_matrix((3, 4))))


def test_missing_column_is_an_error_listing_the_columns(spark, tmp_path):
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user": ["a"], "item": ["b"]}).to_parquet(path)
    with pytest.raises(
        ValueError, match=r"missing column\(s\) user_col='user_id'.*\['user', 'item'\]"
    ):
        _model().fit(path, item_col="item")
    with pytest.raises(FileNotFoundError, match="events file not found"):
        _model().fit(tmp_path / "absent.parquet")


def test_a_second_master_in_the_same_process_is_refused(spark):
    from alsresearch.spark import SparkSetupError, get_session

    assert get_session() is spark
    with pytest.raises(SparkSetupError, match="master 'local\\[2\\]' is running"):
        get_session("local[1]")


def test_unreachable_master_fails_fast():
    """A spark:// master where nothing listens: a clear error in seconds, not Spark's minutes
    of retries (in a fresh process, which has no session yet)."""
    done = _run(
        """
        import time
        from alsresearch.spark import SparkSetupError, get_session
        start = time.monotonic()
        try:
            get_session("spark://127.0.0.1:1", timeout=20)
        except SparkSetupError as exc:
            print(f"{time.monotonic() - start:.1f}", exc)
        """,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seconds, message = done.stdout.split(" ", 1)
    assert float(seconds) < 20
    assert "spark://127.0.0.1:1 is unreachable" in message


def test_a_call_that_hangs_times_out():
    """The wrapper around Spark's start and first job, on a call that never returns."""
    import threading

    from alsresearch.spark import SparkSetupError, _with_timeout

    never = threading.Event()
    with pytest.raises(SparkSetupError, match=r"did not finish within 0\.5 s"):
        _with_timeout(never.wait, 0.5, "a hanging start")
    never.set()
    assert _with_timeout(lambda: 42, 5, "a quick call") == 42
    with pytest.raises(KeyError):
        _with_timeout(lambda: {}["x"], 5, "a failing call")


def test_missing_java_is_a_clear_error(tmp_path):
    env = {"PATH": str(tmp_path), "JAVA_HOME": str(tmp_path / "no-jdk"), "HOME": str(tmp_path)}
    done = _run(
        """
        from alsresearch.spark import SparkSetupError, get_session
        try:
            get_session("local[1]")
        except SparkSetupError as exc:
            print(exc)
        """,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "Spark needs Java 17+, but none was found" in done.stdout
    assert "has no bin/java" in done.stdout


def test_old_java_is_a_clear_error(tmp_path):
    fake = tmp_path / "jdk8" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_292\"' >&2\n")
    (fake / "java").chmod(0o755)
    done = _run(
        """
        from alsresearch.spark import SparkSetupError, check_java
        try:
            check_java()
        except SparkSetupError as exc:
            print(exc)
        """,
        env={"PATH": "/usr/bin:/bin", "JAVA_HOME": str(tmp_path / "jdk8")},
    )
    assert done.returncode == 0, done.stderr
    assert "needs Java 17+, found Java 8" in done.stdout


def test_missing_pyspark_names_the_extra():
    done = _run(
        """
        import sys
        sys.modules["pyspark"] = None
        from alsresearch.spark import get_session
        try:
            get_session()
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'alsresearch[spark]'" in done.stdout


def test_conf_pairs_are_parsed_and_checked():
    from alsresearch.spark import parse_conf, resolve_master

    assert parse_conf(["spark.executor.memory=4g", "a.b = c=d"]) == {
        "spark.executor.memory": "4g",
        "a.b": "c=d",
    }
    assert parse_conf({"x": True, "y": 3}) == {"x": "true", "y": "3"}
    with pytest.raises(ValueError, match="key=value, got 'novalue'"):
        parse_conf(["novalue"])
    assert resolve_master("yarn") == "yarn"


def test_als_params_map_to_spark_and_refuse_other_scalings():
    from alsresearch.spark import SparkALSModel

    model = SparkALSModel.from_als_params(
        {"factors": 8, "regularization": 0.2, "solver": "cg", "num_threads": 2}, user_blocks=4
    )
    params = model.spark_params(seed=5)
    assert {k: params[k] for k in ("rank", "regParam", "numUserBlocks", "seed")} == {
        "rank": 8, "regParam": 0.2, "numUserBlocks": 4, "seed": 5,
    }  # fmt: skip
    assert params["implicitPrefs"] is True and params["nonnegative"] is False
    with pytest.raises(ValueError, match="regularization_scaling='count'"):
        SparkALSModel.from_als_params({"regularization_scaling": "none"})
    with pytest.raises(ValueError, match="intermediate_storage"):
        SparkALSModel(intermediate_storage="SOMEWHERE")
