"""Small helpers shared by the benchmark scripts: medians, peak memory, isolated runs.

Peak memory of numba / BLAS code is not visible to ``tracemalloc`` (it sees Python allocations
only), so :func:`peak_rss_mib` reads the kernel's high-water mark of the resident set size, and
:func:`run_isolated` runs one measurement in a fresh interpreter so each peak belongs to one run.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["median", "peak_rss_mib", "report_and_exit", "run_isolated"]

_RESULT_TAG = "BENCH-RESULT "


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def peak_rss_mib() -> float:
    """High-water resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_and_exit(result: dict) -> None:
    """In a worker: print the result for :func:`run_isolated` and exit."""
    print(_RESULT_TAG + json.dumps(result), flush=True)
    sys.exit(0)


def run_isolated(script: str, args: Sequence[str], timeout: float | None = None) -> dict:
    """Run ``python script *args`` in a fresh process and return the dict it reported with
    :func:`report_and_exit`; raises RuntimeError with the worker's stderr if it failed."""
    proc = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=timeout
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG) :])
    raise RuntimeError(
        f"benchmark worker {script} {' '.join(args)} failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )
