"""What a run did and with which code, data and machine: the common part of every record.

``results.json`` (experiments), model cards (export) and benchmark output all embed
:func:`environment_record`, so every figure can be traced to a commit and a set of versions.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata

from alsresearch.paths import checkout_root

PACKAGES = (
    "alsresearch",
    "numpy",
    "scipy",
    "pandas",
    "numba",
    "threadpoolctl",
    "pyarrow",
    "optuna",
    "papermill",
    "fastapi",
    "uvicorn",
    "implicit",
)
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OPENBLAS_CORETYPE",
)


def utc_now() -> str:
    """Current time, ISO 8601 in UTC with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_state(repo=None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding the code
    (both None for an installed package, whose version :func:`package_versions` records)."""
    repo = repo or checkout_root()
    if repo is None:
        return {"commit": None, "dirty": None}

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def thread_settings() -> dict:
    """Thread counts that change speed (and, for BLAS reductions, the last bits of results)."""
    info: dict = {"cpu_count": os.cpu_count()}
    info["env"] = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}
    from alsresearch._jit import kernel_threads

    info["kernel_threads"] = kernel_threads()
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:  # pragma: no cover
        pass
    return info


def environment_record() -> dict:
    """Code (git), versions, Python and threads: merge into any run record."""
    return {
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "threads": thread_settings(),
    }
