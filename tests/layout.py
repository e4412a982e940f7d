"""Where the checkout's files are, for tests that read the repository itself (not the package's
runtime paths, which follow the working directory: see alsresearch.paths)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
EXPERIMENTS = REPO_ROOT / "experiments"
