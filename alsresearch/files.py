"""Writing and checking files: one atomic write, one JSON record writer and one digest for the
whole package."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["atomic_write", "file_digest", "new_file_mode", "to_jsonable", "write_json"]


def new_file_mode() -> int:
    """Permissions of a new file under the current umask (mkstemp alone would leave 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(target: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``target``, then rename it into place.

    Readers see the old file or the complete new one, never a partial write; on any error the
    temporary file is removed. The file gets ordinary permissions under the umask (mkstemp
    alone would leave 0600).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``"sha256"`` for model cards, ``"md5"`` where a publisher
    gives md5 checksums)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def to_jsonable(value: Any, where: str = "value") -> Any:
    """``value`` as strict JSON data: numpy scalars and arrays to Python numbers and lists,
    paths to text, tuples to lists, NaN and infinities to ``None``.

    Anything else that JSON cannot hold raises TypeError naming where in the record it sits
    (``where`` is the record's name; nested keys are appended), so a record never silently
    stores a ``repr``.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable ({value!r})")


def write_json(target: str | Path, record: Any, name: str = "record") -> Path:
    """Write ``record`` (through :func:`to_jsonable`) as indented UTF-8 JSON, atomically."""
    text = json.dumps(to_jsonable(record, name), indent=2, allow_nan=False) + "\n"
    return atomic_write(target, lambda fh: fh.write(text.encode("utf-8")))
