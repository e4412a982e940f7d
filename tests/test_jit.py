"""alsresearch._jit: the thread loop every kernel runs on, and the compile notice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from alsresearch import _jit


def test_parallel_for_runs_every_unit_once_and_keeps_unit_order():
    calls = []
    lock = threading.Lock()

    def fn(lo, hi):
        with lock:
            calls.append((lo, hi))
        return hi - lo

    bounds = [0, 3, 3, 10, 11]
    assert _jit.parallel_for(fn, bounds, threads=3) == [3, 0, 7, 1]
    assert sorted(calls) == [(0, 3), (3, 3), (3, 10), (10, 11)]
    assert _jit.parallel_for(fn, [5], threads=2) == []  # no units


def test_parallel_for_uses_several_threads_and_the_calling_one():
    names = set()
    barrier = threading.Barrier(2, timeout=10)

    def fn(lo, hi):
        names.add(threading.current_thread().name)
        if lo < 2:
            barrier.wait()  # the first two units must run at the same time
        return lo

    _jit.parallel_for(fn, range(9), threads=2)
    assert threading.current_thread().name in names and len(names) == 2


def test_one_thread_runs_on_the_caller_alone():
    names = set()
    _jit.parallel_for(lambda lo, hi: names.add(threading.current_thread().name), range(5), 1)
    assert names == {threading.current_thread().name}


@pytest.mark.parametrize("failing_unit", [0, 5])
def test_an_exception_stops_the_other_threads_and_is_raised(failing_unit):
    ran = []

    def fn(lo, hi):
        if lo == failing_unit:
            raise ValueError(f"unit {lo}")
        time.sleep(0.01)
        ran.append(lo)

    with pytest.raises(ValueError, match=f"unit {failing_unit}"):
        _jit.parallel_for(fn, range(200), threads=2)
    assert len(ran) < 50  # the other thread stopped after its unit, not at the end
    assert not any(t.name == "alsresearch-kernel" for t in threading.enumerate())  # joined


def test_thread_limit_is_per_thread():
    before = _jit.kernel_threads()
    seen = {}

    def other():
        _jit.set_thread_limit(1)
        seen["other"] = _jit.kernel_threads()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["other"] == 1
    assert _jit.kernel_threads() == before  # the caller's setting is its own


def test_even_bounds_split_evenly():
    b = _jit.even_bounds(10, 3)
    assert b[0] == 0 and b[-1] == 10 and len(b) == 4
    assert np.diff(b).min() >= 3 and np.diff(b).max() <= 4
    assert _jit.even_bounds(2, 8) == [0, 1, 2]  # never an empty unit
    assert _jit.even_bounds(0, 4) == [0, 0]


def test_thread_bounds_give_each_thread_several_units():
    assert _jit.thread_bounds(100, 2) == _jit.even_bounds(100, 2 * _jit.UNITS_PER_THREAD)
    assert _jit.thread_bounds(1, 2) == [0, 1] and _jit.thread_bounds(0, 2) == [0, 0]


def test_chunk_bounds_cut_fixed_parts():
    assert _jit.chunk_bounds(10, 4) == [0, 4, 8, 10]
    assert _jit.chunk_bounds(8, 4) == [0, 4, 8]
    assert _jit.chunk_bounds(0, 4) == [0]


def test_cost_bounds_balance_cost_and_cover_every_part():
    # 10 parts: one costs 100, the others 1 each
    cost = np.concatenate([[0.0], np.cumsum([1, 1, 100, 1, 1, 1, 1, 1, 1, 1])])
    b = _jit.cost_bounds(cost, 4)
    assert b[0] == 0 and b[-1] == 10 and np.all(np.diff(b) >= 1)
    assert len(b) - 1 <= 4
    # the heavy part is alone or nearly so: no unit holds it with most of the rest
    unit_cost = np.diff(cost[b])
    assert unit_cost.max() <= 100 + 2
    # equal costs: equal units
    flat = np.arange(13, dtype=np.float64)
    assert np.diff(_jit.cost_bounds(flat, 4)).tolist() == [3, 3, 3, 3]
    assert _jit.cost_bounds(np.zeros(1), 4).tolist() == [0]


def _run(script, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )


_COMPILE_TWO = """
import alsresearch._jit as j
j.NOTICE_AFTER = {after}
from numba import njit

@njit(cache=True)
def f(x):
    return x + 1

@njit(cache=True)
def g(x):
    return x * 2.0

print(f(1), g(1.0))
"""


def test_a_slow_compile_says_so_once_and_a_cached_load_says_nothing(tmp_path):
    script = tmp_path / "kernels.py"  # numba caches functions defined in a file
    script.write_text(_COMPILE_TWO.format(after=0.0))
    cache = str(tmp_path / "cache")
    first = _run(script, cache)
    assert first.returncode == 0 and first.stdout.split() == ["2", "2.0"], first.stderr
    assert first.stderr.count("compiling the numba kernels, once per machine") == 1
    assert cache in first.stderr
    again = _run(script, cache)  # loaded from the cache: nothing compiles
    assert again.returncode == 0 and "compiling" not in again.stderr, again.stderr
    quick = tmp_path / "quick.py"  # compiles, but under the threshold: silent
    quick.write_text(_COMPILE_TWO.format(after=600.0))
    assert "compiling" not in _run(quick, str(tmp_path / "cache2")).stderr
