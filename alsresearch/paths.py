"""Where things live. Every path the package reads or writes comes from here.

Two kinds of paths, kept apart:

- **What the package ships** (read-only, inside the installed package, read through
  ``importlib.resources``): the shipped MovieLens data, the default search space, the demo
  experiment and its notebooks. :func:`resource` finds them.
- **What a run writes** (the user's): study databases, run folders, promoted models. They go
  under :func:`home`: ``$ALSRESEARCH_HOME`` when set, else the current working directory, never
  inside the installed package. In a checkout, run from the repository root, that is the
  checkout itself, so ``experiments/runs/`` and ``models/`` are where the README says.

The download cache follows the XDG convention (:func:`cache_dir`).
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

__all__ = [
    "cache_dir",
    "checkout_root",
    "experiments_dir",
    "home",
    "models_dir",
    "resource",
    "runs_dir",
    "shared_datasets_dir",
    "use_user_numba_cache",
]


def home() -> Path:
    """Where runs, studies and models are written: ``$ALSRESEARCH_HOME``, else the current
    working directory."""
    env = os.environ.get("ALSRESEARCH_HOME")
    return Path(env).expanduser().resolve() if env else Path.cwd()


def experiments_dir() -> Path:
    """Experiment files the user edits, and (by default) Optuna study databases."""
    return home() / "experiments"


def runs_dir() -> Path:
    """Run outputs: executed notebooks, results.json, sweeps (git-ignored in a checkout)."""
    return experiments_dir() / "runs"


def models_dir() -> Path:
    """Promoted model artefacts (git-ignored in a checkout)."""
    return home() / "models"


def resource(*parts: str) -> Path:
    """A file the package ships, e.g. ``resource("search_space.yaml")``,
    ``resource("ml-latest-small", "ratings.csv")``, ``resource("notebooks")``.

    Raises FileNotFoundError naming the resource when the installed package lacks it.
    """
    path = Path(str(resources.files("alsresearch").joinpath("resources", *parts)))
    if not path.exists():
        raise FileNotFoundError(
            f"packaged resource {'/'.join(parts)} is missing from {path.parent}: the package "
            "was installed without its data files"
        )
    return path


def checkout_root() -> Path | None:
    """The git checkout holding the package's code (an editable install), else None."""
    root = PACKAGE_DIR.parent
    return root if (root / ".git").exists() and (root / "pyproject.toml").is_file() else None


def shared_datasets_dir() -> Path | None:
    """``../shared/datasets`` beside the checkout, if this machine has it (developers only)."""
    root = checkout_root()
    candidate = root.parent / "shared" / "datasets" if root else None
    return candidate if candidate is not None and candidate.is_dir() else None


def use_user_numba_cache() -> None:
    """Point numba's cache of compiled kernels at ``cache_dir()/numba`` for an installed package.

    numba caches beside the source, in ``__pycache__``; for an installed package that is inside
    site-packages, which belongs to the installation, not to the run. In a checkout the default
    stays (beside the source, where developers expect it). ``NUMBA_CACHE_DIR`` set by the user
    always wins. Called by ``alsresearch/__init__.py`` before any kernel is defined.
    """
    if os.environ.get("NUMBA_CACHE_DIR") or checkout_root() is not None:
        return
    target = str(cache_dir() / "numba")
    os.environ["NUMBA_CACHE_DIR"] = target
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before us: its config was already read
        numba.config.CACHE_DIR = target


def cache_dir() -> Path:
    """Where downloads are cached: ``$ALSRESEARCH_CACHE``, else ``$XDG_CACHE_HOME/alsresearch``,
    else ``~/.cache/alsresearch``."""
    if os.environ.get("ALSRESEARCH_CACHE"):
        return Path(os.environ["ALSRESEARCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "alsresearch"
