"""Issue 13, bounded work and honest exit codes: every user-supplied size is refused before any
work starts, naming the parameter, its value and the allowed range; a command with no result
exits 1 with one line. The command line runs as a subprocess (the real entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from alsresearch import limits
from alsresearch.als import ALSModel
from alsresearch.base import validate_n
from alsresearch.tuning import SearchSpace
from tests.tuning_helpers import SMALL, write_space


def cli(*args: str, home, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALSRESEARCH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "alsresearch", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    """The single stderr line of a failed command (exit 1, no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"alsresearch {command}: error: ")
    return lines[0]


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def params(tmp_path):
    def write(**values) -> str:
        path = tmp_path / "params.json"
        path.write_text(json.dumps({"params": values}))
        return str(path)

    return write


@pytest.fixture
def one_cell_users(tmp_path):
    """Every user has one event: a per-user test split holds nothing out."""
    path = tmp_path / "one.csv"
    pd.DataFrame({"user_id": range(300), "item_id": [u % 20 for u in range(300)]}).to_csv(
        path, index=False
    )
    return path


# ------------------------------------------------------------------ the limits themselves
def test_the_limits_are_those_the_issue_names():
    assert limits.MAX_N == 1000
    assert limits.MAX_BATCH == 10_000
    assert limits.MAX_ITERATIONS == 10_000
    assert limits.MAX_FACTORS == 1024
    assert limits.MAX_TRIALS == 10_000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("iterations", 10**9, r"iterations must be an integer in \[1, 10000\], got 1000000000"),
        ("factors", 1025, r"factors must be an integer in \[1, 1024\], got 1025"),
        ("cg_steps", 2000, r"cg_steps must be an integer in \[1, 1024\], got 2000"),
    ],
)
def test_model_sizes_above_their_limit_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        ALSModel(**{field: value})
    ALSModel(**{field: {"iterations": 10_000, "factors": 1024, "cg_steps": 1024}[field]})


def test_library_list_length_is_bounded():
    assert validate_n(limits.MAX_TOP_N) == limits.MAX_TOP_N
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 100000\], got 100001"):
        validate_n(limits.MAX_TOP_N + 1)


def test_memory_check_names_factors_and_both_sizes_in_gib():
    need = limits.factor_memory_bytes(10**6, 10**6, 1024, 4)
    assert need == 1024 * 4 * 3 * 10**6 + 8 * 1024 * 1024 * 4
    limits.check_factor_memory(10**6, 10**6, 1024, 4, available=need)  # exactly enough
    with pytest.raises(ValueError) as info:
        limits.check_factor_memory(10**6, 10**6, 1024, 4, available=2**30)
    assert str(info.value).startswith("factors=1024 needs 11.48 GiB")
    assert "only 1.00 GiB of memory is available" in str(info.value)


def test_fit_refuses_a_model_larger_than_memory_before_allocating(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    model = ALSModel(factors=16, iterations=2)
    with pytest.raises(ValueError, match=r"factors=16 needs 0\.00 GiB .* only 0\.00 GiB"):
        model.fit(X)
    assert not hasattr(model, "user_factors")


def test_available_memory_agrees_with_the_kernel(monkeypatch):
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        pytest.skip("no /proc/meminfo to compare with (not Linux)")
    line = next(ln for ln in meminfo.read_text().splitlines() if ln.startswith("MemAvailable:"))
    kernel = int(line.split()[1]) * 1024
    assert abs(limits.available_memory() - kernel) < max(0.1 * kernel, 256 * 2**20)
    monkeypatch.setattr(limits, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match="GiB"):
        limits.check_factor_memory(10**9, 10**9, 1024, 8)


def test_search_space_range_above_a_limit_is_refused_when_read(tmp_path):
    spec = {
        **SMALL,
        "params": {**SMALL["params"], "factors": {"type": "categorical", "choices": [8, 4096]}},
    }
    with pytest.raises(
        ValueError, match=r"params\.factors: factors must be an integer in \[1, 1024\], got 4096"
    ):
        SearchSpace.load(write_space(tmp_path / "space.yaml", spec))


# ------------------------------------------------------------------ refused by the CLI at once
def test_train_refuses_huge_iterations_before_reading_data(tmp_path, params, home):
    # the events file does not exist: the parameters are refused before the data are read
    start = time.perf_counter()
    proc = cli(
        "train",
        "--events",
        tmp_path / "missing.csv",
        "--params",
        params(factors=8, iterations=1_000_000_000),
        "--out",
        tmp_path / "m.npz",
        home=home,
    )
    line = one_line_error(proc, "train")
    assert "iterations must be an integer in [1, 10000], got 1000000000" in line
    assert "params.json" in line
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "m.npz").exists()


def test_train_refuses_too_many_factors(tmp_path, params, home):
    proc = cli(
        "train",
        "--events",
        tmp_path / "missing.csv",
        "--params",
        params(factors=5000),
        "--out",
        tmp_path / "m.npz",
        home=home,
    )
    assert "factors must be an integer in [1, 1024], got 5000" in one_line_error(proc, "train")


def test_promote_refuses_huge_iterations_before_reading_data(tmp_path, params, home):
    proc = cli(
        "promote",
        "--events",
        tmp_path / "missing.csv",
        "--params",
        params(iterations=10_001),
        "--models-dir",
        tmp_path / "models",
        home=home,
    )
    assert "iterations must be an integer in [1, 10000], got 10001" in one_line_error(
        proc, "promote"
    )
    assert not (tmp_path / "models").exists()


def test_tune_refuses_too_many_trials_before_reading_data(tmp_path, home):
    proc = cli("tune", "--events", tmp_path / "missing.csv", "--trials", "10001", home=home)
    line = one_line_error(proc, "tune")
    assert "--trials must be an integer in [1, 10000], got 10001" in line


def test_tune_refuses_a_space_above_a_limit_before_reading_data(tmp_path, home):
    too_long = {**SMALL["params"], "iterations": {"type": "int", "low": 2, "high": 10**9}}
    space = write_space(tmp_path / "space.yaml", {**SMALL, "params": too_long})
    proc = cli(
        "tune", "--events", tmp_path / "missing.csv", "--space", space, "--trials", 2, home=home
    )
    line = one_line_error(proc, "tune")
    assert "params.iterations: iterations must be an integer in [1, 10000], got 1000000000" in line


def test_evaluate_refuses_k_above_the_limit(tmp_path, home):
    proc = cli("evaluate", "--model", tmp_path / "missing.npz", "--k", "100001", home=home)
    assert "--k must be an integer in [1, 100000], got 100001" in one_line_error(proc, "evaluate")


# ------------------------------------------------------------------ no result: exit 1
def test_evaluate_with_no_test_user_left_exits_1(tmp_path, params, one_cell_users, home):
    model = tmp_path / "m.npz"
    trained = cli(
        "train",
        "--events",
        one_cell_users,
        "--params",
        params(factors=4, iterations=2, random_state=0),
        "--out",
        model,
        home=home,
    )
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "eval"
    proc = cli("evaluate", "--events", one_cell_users, "--model", model, "--out", out, home=home)
    assert "leaves no test user" in one_line_error(proc, "evaluate")
    assert not out.exists()


def test_promote_with_nothing_to_evaluate_exits_1(tmp_path, params, one_cell_users, home):
    models = tmp_path / "models"
    proc = cli(
        "promote",
        "--events",
        one_cell_users,
        "--params",
        params(factors=4, iterations=2),
        "--models-dir",
        models,
        home=home,
    )
    assert "leaves no test user" in one_line_error(proc, "promote")
    assert not models.exists() or not any(models.iterdir())


def test_tune_where_every_trial_fails_exits_1(tmp_path, home):
    # 5 items and 16 factors: Y^T Y has rank 5, and lambda ~ 1e-30 cannot make it positive
    # definite in float32, so every fit fails (a real FloatingPointError in every trial)
    events = tmp_path / "five.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"user_id": rng.integers(0, 200, 2000), "item_id": rng.integers(0, 5, 2000)}
    ).to_csv(events, index=False)
    space = tmp_path / "space.yaml"
    space.write_text(  # YAML reads 1e-30 as text: 1.0e-30
        "params: {regularization: {type: float, low: 1.0e-30, high: 2.0e-30}}\n"
        "defaults: {regularization: 1.0e-30}\n"
        "fixed: {factors: 16, iterations: 2}\n"
        "validation: {every: 1}\n"
    )
    out = tmp_path / "tune-out"
    proc = cli(
        "tune",
        "--events",
        events,
        "--space",
        space,
        "--trials",
        2,
        "--out",
        out,
        "--storage",
        tmp_path / "study.db",
        "--quiet",
        home=home,
    )
    line = one_line_error(proc, "tune")
    assert "3 failed trials (more than 2) and 0 finished" in line
    assert "FloatingPointError" in line
    assert "not numerically positive definite" in line or "Gram matrix Y^T Y is not finite" in line
    assert not (out / "best.json").exists()
