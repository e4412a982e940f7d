"""Where things live. Every path in the project comes from here, computed from ``__file__``.

The repository root can be moved elsewhere with the ``ALSRESEARCH_HOME`` environment variable
(used by tests that must not touch the working tree).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def home() -> Path:
    """The project root: ``$ALSRESEARCH_HOME`` if set, else the repository checkout."""
    env = os.environ.get("ALSRESEARCH_HOME")
    return Path(env).resolve() if env else REPO_ROOT


def data_dir() -> Path:
    """Shipped raw data (immutable, in git)."""
    return REPO_ROOT / "data"


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def experiments_dir() -> Path:
    """Experiment parameter files (in git) and, under ``runs/``, run outputs (ignored)."""
    return home() / "experiments"


def runs_dir() -> Path:
    return experiments_dir() / "runs"


def models_dir() -> Path:
    """Promoted model artefacts (git-ignored)."""
    return home() / "models"


def shared_datasets_dir() -> Path | None:
    """``../shared/datasets`` beside the checkout, if this machine has it (developers only)."""
    candidate = REPO_ROOT.parent / "shared" / "datasets"
    return candidate if candidate.is_dir() else None


def cache_dir() -> Path:
    """Where downloads are cached: ``$ALSRESEARCH_CACHE``, else ``$XDG_CACHE_HOME/alsresearch``,
    else ``~/.cache/alsresearch``."""
    if os.environ.get("ALSRESEARCH_CACHE"):
        return Path(os.environ["ALSRESEARCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "alsresearch"
