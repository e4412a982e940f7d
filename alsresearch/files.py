"""Writing and checking files: one atomic write and one digest for the whole package."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "file_digest", "new_file_mode"]


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
