"""Helpers shared by tests/test_artefact.py and tests/test_promote.py: small fitted models, a
snapshot of a models directory, and an artefact write killed between its renames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alsresearch.als import ALSModel
from alsresearch.artefact import named_artefact, write_artefact
from alsresearch.baselines import PopularityModel
from alsresearch.datasets import synthetic
from tests.layout import REPO_ROOT

NAME = "als_baseline"
NAMES = ["als_baseline.json", "als_baseline.npz", "als_baseline.popularity.npz"]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file directly in ``directory``, by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def write_small(models: Path, seed: int) -> dict:
    """Write a small ALS + popularity artefact (fitted on seeded synthetic data) with a
    minimal card; returns the card as written."""
    data = synthetic(60, 40, 600, seed=seed)
    card = {"name": NAME, "seed": seed}
    model = ALSModel(factors=4, iterations=2, random_state=seed).fit(data)
    write_artefact(named_artefact(NAME, models), model, PopularityModel().fit(data), card)
    return card


# An artefact write killed (os._exit: no exception handler runs) after its n-th rename.
KILLED_WRITE = """
import os, sys
from pathlib import Path
from tests.artefact_helpers import write_small

models, after = Path(sys.argv[1]), int(sys.argv[2])
real_replace, done = os.replace, []

def replace(src, dst):
    real_replace(src, dst)
    if Path(dst).parent == models and not Path(dst).name.startswith("."):
        done.append(dst)
        if len(done) == after:
            os._exit(9)

os.replace = replace
write_small(models, seed=99)
"""


def kill_write(models: Path, after: int) -> None:
    """Run :data:`KILLED_WRITE` on ``models``, killed after its ``after``-th rename."""
    run = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(models), str(after)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,  # where `tests` is importable
    )
    assert run.returncode == 9, run.stderr
