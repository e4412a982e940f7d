"""The error types of the package: a leaf module every other module may import.

Each error says what was wrong with which input; callers catch these by type, and the command
line turns them into one ``alsresearch <command>: error: ...`` line and exit code 1.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "MissingExtraError",
    "ModelFileError",
    "NoResultError",
    "NotFittedError",
    "SetupError",
    "SpecMismatchError",
    "UnknownIdError",
]


class UnknownIdError(KeyError):
    """A user or item id the model (or data set) does not know."""

    def __init__(self, message: str, kind: str = "", ids: list | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.ids = ids or []

    def __str__(self) -> str:
        return self.message


class ModelFileError(ValueError):
    """A model file that is missing, truncated, foreign or of another format version."""


class NoResultError(RuntimeError):
    """Work that produced no result: no test user left to evaluate, every tuning trial failed.
    The command line reports it like a bad input: one line, exit code 1."""


class NotFittedError(RuntimeError):
    """The model was used before ``fit`` (or ``load``)."""


class ChecksumError(ValueError):
    """A downloaded (or cached) file does not match its published checksum."""


class SpecMismatchError(ValueError):
    """Data read, or split, with another spec than the one a model or study was made with.

    The message lists every field that differs, with both values.
    """


class SetupError(RuntimeError):
    """An engine this command needs cannot run here: an optional extra not installed, Java
    missing or too old, a Spark master or a database that cannot be reached. The command line
    reports it in one line and exits 1."""


class MissingExtraError(SetupError, ImportError):
    """An optional dependency (a ``pip install 'alsresearch[extra]'``) is not installed."""
