"""The screen's code paths (alsresearch._simd): which ones a compile target runs (against what
the CPUs' manuals say they have), how one is chosen or forced (ALSRESEARCH_SCREEN), and that
every path gives results bit-identical to the portable path's, since the arithmetic is exact
integer arithmetic; the data reach the extremes of the codes, where AVX2's int16 sums would
saturate first. Paths the compile target cannot run are skipped with the reason."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch import _quantized, _simd
from alsresearch._quantized import TILE_USERS, quantize, screen_bounds, topk_quantized

ROOT = Path(__file__).resolve().parents[1]
X86 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 paths and CPU names"
)
FAST_PATHS = [
    pytest.param(
        path,
        marks=pytest.mark.skipif(
            path not in _simd.supported_paths(),
            reason=f"numba's target CPU cannot run the {path} path",
        ),
    )
    for path in _simd.PATHS
    if path != "portable"
]


@pytest.fixture
def extremes(rng):
    """Items and users whose codes reach the ends of their ranges: items with every factor of
    one magnitude (codes +-127, so u = q + 128 is 255 or 1: nibbles 15 and 15, or 0 and 1),
    users likewise (codes +-127) and of one sign throughout (every product in a sum of one
    sign), beside Gaussian ones, an all-zero user and a factor count not a multiple of 8."""
    k = 44
    signs = rng.choice([-1.0, 1.0], size=(600, k))
    signs[:100] = 1.0
    signs[100:200] = -1.0
    Y = np.vstack([signs * rng.lognormal(0.0, 1.0, size=(600, 1)), rng.standard_normal((900, k))])
    X = rng.standard_normal((2 * TILE_USERS + 9, k))
    X[0], X[1], X[2] = 1.0, -1.0, 0.0
    X[3:20] = rng.choice([-2.0, 2.0], size=(17, k))
    return X.astype(np.float32), Y.astype(np.float32)


@pytest.mark.parametrize("path", FAST_PATHS)
def test_path_is_bit_identical_to_portable(extremes, rng, path):
    X, Y = extremes
    index = quantize(Y)
    seen = sp.random(len(X), len(Y), density=0.05, random_state=rng, format="csr")
    rows = np.arange(len(X))
    for k, mask in ((10, seen), (200, None)):
        got = topk_quantized(index, X, rows, k, mask, path=path)
        want = topk_quantized(index, X, rows, k, mask, path="portable")
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    for u in range(20):  # the estimates carry every integer dot product
        got, want = screen_bounds(index, X[u], path=path), screen_bounds(index, X[u], "portable")
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"user {u}, {key}")


def test_extreme_codes_give_the_largest_dot_products(extremes):
    # the fixture does reach the ends: user 0 (all +1) against an item of all +s has the
    # largest estimate any user of its norm can have, ||x|| ||y||, within the slack
    X, Y = extremes
    b = screen_bounds(quantize(Y), X[0], path="portable")
    exact = X[0].astype(np.float64) @ Y[:100].astype(np.float64).T
    np.testing.assert_allclose(
        exact, np.linalg.norm(X[0]) * np.linalg.norm(Y[:100], axis=1), rtol=1e-5
    )
    assert np.all(np.abs(b["fine"][:100] - exact) <= b["fine_slack"][:100])


@X86
@pytest.mark.parametrize(
    ("cpu", "features", "paths"),
    [
        ("haswell", "", ("avx2", "portable")),
        ("x86-64-v3", "", ("avx2", "portable")),
        ("skylake-avx512", "", ("avx2", "portable")),  # AVX-512 without VNNI
        ("alderlake", "", ("avx2", "portable")),  # AVX-VNNI (256-bit) but no AVX-512
        ("icelake-server", "", ("vnni", "avx2", "portable")),
        ("znver4", "", ("vnni", "avx2", "portable")),
        ("icelake-server", "-avx512vnni", ("avx2", "portable")),  # features override the name
        ("haswell", "+avx512f,+avx512vnni", ("vnni", "avx2", "portable")),
        ("generic", "", ("portable",)),
        ("sandybridge", "", ("portable",)),  # AVX, but no 256-bit integer operations
    ],
)
def test_paths_for_known_cpus(cpu, features, paths):
    assert _simd.paths_for(cpu, features) == paths


@pytest.fixture
def fresh_choice(monkeypatch):
    """screen_path() read again under the test's environment, and again afterwards."""
    monkeypatch.delenv(_simd.ENV, raising=False)
    monkeypatch.delenv("ALSRESEARCH_NO_VNNI", raising=False)
    _simd.screen_path.cache_clear()
    yield monkeypatch
    _simd.screen_path.cache_clear()


def test_default_path_is_the_best_the_target_runs(fresh_choice):
    assert _simd.screen_path() == _simd.supported_paths()[0]
    fresh_choice.setattr(_simd, "supported_paths", lambda: ("vnni", "avx2", "portable"))
    _simd.screen_path.cache_clear()
    assert _simd.screen_path() == "vnni"
    fresh_choice.setenv("ALSRESEARCH_NO_VNNI", "1")  # the older switch
    _simd.screen_path.cache_clear()
    assert _simd.screen_path() == "avx2"


def test_environment_forces_a_path(fresh_choice):
    fresh_choice.setattr(_simd, "supported_paths", lambda: ("avx2", "portable"))
    for value, path in (("portable", "portable"), (" AVX2 ", "avx2")):
        fresh_choice.setenv(_simd.ENV, value)
        _simd.screen_path.cache_clear()
        assert _simd.screen_path() == path
    fresh_choice.setenv(_simd.ENV, "vnni")
    _simd.screen_path.cache_clear()
    with pytest.raises(RuntimeError, match=r"ALSRESEARCH_SCREEN=vnni, but numba compiles for CPU"):
        _simd.screen_path()
    fresh_choice.setenv(_simd.ENV, "avx512")
    _simd.screen_path.cache_clear()
    with pytest.raises(ValueError, match=r"ALSRESEARCH_SCREEN='avx512' is not a screen path"):
        _simd.screen_path()


def test_a_path_the_target_cannot_run_is_refused(extremes, monkeypatch):
    # compiling it would abort the process (LLVM cannot select the instruction)
    X, Y = extremes
    index = quantize(Y)
    monkeypatch.setattr(_quantized, "supported_paths", lambda: ("portable",))
    with pytest.raises(RuntimeError, match="'avx2' needs an instruction set"):
        topk_quantized(index, X, [0], 5, path="avx2")
    with pytest.raises(RuntimeError, match="'vnni' needs"):
        screen_bounds(index, X[0], path="vnni")
    with pytest.raises(ValueError, match="path must be one of"):
        topk_quantized(index, X, [0], 5, path="sse")


_WORKER = """
import json, re, sys
import numpy as np
from alsresearch import _quantized, _simd
X, Y = np.load(sys.argv[1]), np.load(sys.argv[2])
idx, val = _quantized.topk_quantized(_quantized.quantize(Y), X, np.arange(len(X)), 10)
asm = "".join(
    _quantized._screen_rows.inspect_asm(sig) for sig in _quantized._screen_rows.signatures
)
print(json.dumps({
    "paths": _simd.supported_paths(), "path": _simd.screen_path(), "idx": idx.tolist(),
    "val": val.tolist(), "zmm": len(re.findall(r"%zmm", asm)),
    "mask_registers": len(re.findall(r"%k[0-7]\\b", asm)),
    "vpmaddubsw": asm.count("vpmaddubsw"), "ymm": asm.count("%ymm"),
}))
"""


def run_worker(tmp_path, X, Y, **env) -> dict:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    full = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), **env}
    full.pop(_simd.ENV, None)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER), tmp_path / "x.npy", tmp_path / "y.npy"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


@X86
@pytest.mark.slow
def test_haswell_target_runs_avx2_without_avx512_instructions(extremes, tmp_path):
    # what bench_serve's avx2 worker does: numba compiles for an AVX2-only CPU, the default
    # path follows numba's target (not the host), no AVX-512 instruction or register is
    # emitted, and the answer is the portable path's here, bit for bit
    X, Y = extremes
    got = run_worker(tmp_path, X, Y, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    assert got["paths"] == ["avx2", "portable"]
    assert got["path"] == "avx2"
    assert got["zmm"] == 0 and got["mask_registers"] == 0
    assert got["vpmaddubsw"] > 0 and got["ymm"] > 0
    idx, val = topk_quantized(quantize(Y), X, np.arange(len(X)), 10, path="portable")
    np.testing.assert_array_equal(np.array(got["idx"]), idx)
    np.testing.assert_array_equal(np.array(got["val"], dtype=np.float32), val)


@X86
def test_cpu_name_alone_keeps_the_hosts_features(tmp_path):
    # numba (0.68) compiles with the host's feature string whatever NUMBA_CPU_NAME says, so
    # the name alone changes no path: the avx2 worker must set NUMBA_CPU_FEATURES too
    code = "from alsresearch import _simd; print(','.join(_simd.supported_paths()))"
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell"}
    env.pop("NUMBA_CPU_FEATURES", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    from numba.core.codegen import get_host_cpu_features

    assert out.stdout.split()[-1] == ",".join(_simd.paths_for("haswell", get_host_cpu_features()))
