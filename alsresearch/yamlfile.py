"""Reading the YAML files a user edits (experiment files, search spaces): one reader whose
errors name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_yaml"]


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of a YAML file; a missing file or bad YAML is an error naming it
    (``what`` says which kind of file, e.g. ``"search space file"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
