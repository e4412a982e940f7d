"""Small helpers shared by the benchmark scripts: medians, peak memory, isolated runs.

Peak memory of numba / BLAS code is not visible to ``tracemalloc`` (it sees Python allocations
only), so :func:`peak_rss_mib` reads the kernel's high-water mark of the resident set size, and
:func:`run_isolated` runs one measurement in a fresh interpreter so each peak belongs to one run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["median", "peak_rss_mib", "report_and_exit", "rss_mib", "run_isolated"]

_RESULT_TAG = "BENCH-RESULT "


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_mib() -> float:
    """High-water resident set size of this process so far, in MiB (Linux ``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries that across ``exec`` from the forking parent,
    so a worker started by a big parent would report the parent's size.
    """
    return _status_kib("VmHWM") / 1024


def rss_mib() -> float:
    """Current resident set size in MiB (Linux ``VmRSS``)."""
    return _status_kib("VmRSS") / 1024


def report_and_exit(result: dict) -> None:
    """In a worker: print the result for :func:`run_isolated` and exit."""
    print(_RESULT_TAG + json.dumps(result), flush=True)
    sys.exit(0)


def run_isolated(
    script: str,
    args: Sequence[str],
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> dict:
    """Run ``python script *args`` in a fresh process and return the dict it reported with
    :func:`report_and_exit`; raises RuntimeError with the worker's stderr if it failed.

    ``env`` (the whole environment) and ``cwd`` default to this process's."""
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG) :])
    raise RuntimeError(
        f"benchmark worker {script} {' '.join(args)} failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )
