"""What the tuning tests share: a search space small enough that trials take milliseconds, and
ways to read a study back from its storage."""

from __future__ import annotations

import json
from pathlib import Path

#: a small space so that trials take milliseconds on small data
SMALL = {
    "params": {
        "alpha": {"type": "float", "low": 0.1, "high": 100.0, "log": True},
        "regularization": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
        "factors": {"type": "categorical", "choices": [4, 8]},
        "iterations": {"type": "int", "low": 2, "high": 6},
        "scaling": {"type": "categorical", "choices": ["raw", "log"]},
    },
    "defaults": {
        "alpha": 40.0,
        "regularization": 0.01,
        "factors": 8,
        "iterations": 4,
        "scaling": "raw",
    },
    "fixed": {"solver": "cg"},
    "sampler": {"n_startup_trials": 3, "multivariate": True, "constant_liar": True},
    "pruner": {"n_startup_trials": 2, "n_warmup_steps": 1},
    "validation": {"fraction": 0.2, "max_users": 150, "every": 1, "k": 10},
}


def write_space(path: Path, spec: dict = SMALL) -> Path:
    """A search space file (JSON is YAML)."""
    path.write_text(json.dumps(spec))
    return path


def open_study(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def finished(study) -> list:
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
