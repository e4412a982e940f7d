"""The served artefact: the files of one promoted model, their card, archive and journal.

For ``name="als_baseline"`` in a models directory (by default :func:`alsresearch.paths.models_dir`,
git-ignored in a checkout):

- ``als_baseline.npz``: the model (:meth:`~alsresearch.base.Recommender.save` format);
- ``als_baseline.popularity.npz``: the popularity model for unknown users, same format;
- ``als_baseline.json``: the model card (written by :func:`alsresearch.promote.promote`: what was
  measured, what is served, file checksums, provenance).

:func:`write_artefact` writes the three as one unit. Every file is staged in a temporary file in
the same directory and renamed over the old one (``os.replace``), so a reader sees the old file
or the new one, never half a file; the card is renamed last. The files being replaced are first
copied to ``archive/<UTC time>-<file name>``.

Before the first rename a journal ``.<name>.promotion.json`` records each file, its archive copy,
the new file's digest and its staged copy; it is removed after the last rename. A write that
fails with an exception puts the old files back itself. One killed between renames leaves the
journal: the service then refuses to start (naming it) and :func:`recover` (run by the next
promotion, or ``alsresearch promote --recover``) puts the previous set back, or, when the new set
is already whole, only removes the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alsresearch import paths
from alsresearch.base import Recommender
from alsresearch.files import atomic_write, file_digest, new_file_mode, write_json

__all__ = [
    "ARCHIVE_DIR",
    "CARD_VERSION",
    "ArtefactPaths",
    "archive_paths",
    "artefact_paths",
    "named_artefact",
    "read_card",
    "recover",
    "write_artefact",
]

#: the folder, inside the models directory, that keeps the files a promotion replaced
ARCHIVE_DIR = "archive"
#: the layout version of the model card (2: "data" with the source spec replaced "dataset";
#: "split" records a SplitSpec)
CARD_VERSION = 2

_JOURNAL_VERSION = 1


@dataclass(frozen=True)
class ArtefactPaths:
    """Where the files of one promoted model live."""

    model: Path
    popularity: Path
    card: Path

    def existing(self) -> list[Path]:
        return [p for p in (self.model, self.popularity, self.card) if p.exists()]

    @property
    def journal(self) -> Path:
        """Present only while (or after an interrupted) promotion renames the files."""
        return self.model.with_name(f".{self.model.name.removesuffix('.npz')}.promotion.json")


def artefact_paths(model_path: str | Path) -> ArtefactPaths:
    """The card and popularity files that belong beside the model file ``<dir>/<name>.npz``."""
    model_path = Path(model_path)
    stem = model_path.name.removesuffix(".npz")
    return ArtefactPaths(
        model=model_path,
        popularity=model_path.with_name(f"{stem}.popularity.npz"),
        card=model_path.with_name(f"{stem}.json"),
    )


def named_artefact(name: str, models_dir: str | Path | None = None) -> ArtefactPaths:
    """The files of the artefact ``name`` in ``models_dir`` (default
    :func:`alsresearch.paths.models_dir`); ValueError unless ``name`` is a plain file name."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise ValueError(
            f"name must be a plain file name without '/' or a leading '.', got {name!r}"
        )
    root = Path(models_dir) if models_dir is not None else paths.models_dir()
    return artefact_paths(root / f"{name}.npz")


def read_card(path: str | Path) -> dict[str, Any]:
    """A model card as a dict; ValueError naming the file when it is not a JSON object."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: model card is not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: model card is not UTF-8 text ({exc})") from exc
    if not isinstance(card, dict):
        raise ValueError(f"{path}: model card must be a JSON object, got {type(card).__name__}")
    return card


# ---------------------------------------------------------------------- the archive
def archive_paths(target: ArtefactPaths, stamp: str) -> dict[Path, Path]:
    """Where each existing file of ``target`` goes in ``archive/``: ``<stamp>-<file name>``."""
    archive = target.model.parent / ARCHIVE_DIR
    return {p: archive / f"{stamp}-{p.name}" for p in target.existing()}


def _copy_atomic(src: Path, dst: Path) -> None:
    """``src``'s bytes to ``dst`` through :func:`~alsresearch.files.atomic_write`, keeping
    ``src``'s permissions and times (an archive copy looks like the file it keeps)."""

    def copy(fh) -> None:
        with src.open("rb") as source:
            shutil.copyfileobj(source, fh)

    atomic_write(dst, copy)
    shutil.copystat(src, dst)


def _archive(target: ArtefactPaths) -> dict[Path, Path]:
    """Copy the current files to archive/ (they stay in place until replaced): {file: copy}."""
    if not target.existing():
        return {}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plan = archive_paths(target, stamp)
    n = 1
    while any(dst.exists() for dst in plan.values()):  # two promotions in one second
        plan = archive_paths(target, f"{stamp}-{n}")
        n += 1
    next(iter(plan.values())).parent.mkdir(parents=True, exist_ok=True)
    try:
        for src, dst in plan.items():
            _copy_atomic(src, dst)
    except BaseException:
        for dst in plan.values():
            dst.unlink(missing_ok=True)
        raise
    return plan


def _put_back(previous: Mapping[Path, Path | None]) -> None:
    """Each file back to its archive copy, or removed where there was none before."""
    for final, copy in previous.items():
        if copy is not None:
            _copy_atomic(copy, final)
        else:
            final.unlink(missing_ok=True)


# ---------------------------------------------------------------------- writing
def _staging(final: Path) -> Path:
    """An empty temporary file beside ``final`` (same file system, so os.replace is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def write_artefact(
    target: ArtefactPaths, model: Recommender, fallback: Recommender, card: dict[str, Any]
) -> list[Path]:
    """Write ``model``, ``fallback`` and ``card`` as ``target``'s files, as one unit.

    Stages every file, records each file's sha256 in ``card["files"]`` (changed in place, so
    the caller holds the card as written), archives the current files, then renames the new
    ones into place under the journal (see the module docstring). Should anything fail, the
    files already replaced are put back from the archive copies (or removed when there was
    none), so the set stays consistent. Returns the archive copies made.
    """
    target.model.parent.mkdir(parents=True, exist_ok=True)
    staged: dict[Path, Path] = {}
    archived: dict[Path, Path] = {}
    replaced: list[Path] = []
    try:
        card["files"] = {}
        for obj, final in ((fallback, target.popularity), (model, target.model)):
            staged[final] = _staging(final)
            obj.save(staged[final])
            os.chmod(staged[final], new_file_mode())  # Recommender.save leaves mkstemp's 0600
            card["files"][final.name] = {"sha256": file_digest(staged[final])}
        staged[target.card] = _staging(target.card)
        write_json(staged[target.card], card, "model card")
        archived = _archive(target)
        finals = (target.popularity, target.model, target.card)
        journal = {
            "version": _JOURNAL_VERSION,
            "files": [
                [str(f), str(archived.get(f, "")), file_digest(staged[f]), str(staged[f])]
                for f in finals
            ],
        }
        write_json(target.journal, journal, "promotion journal")
        for final in finals:
            os.replace(staged[final], final)
            del staged[final]
            replaced.append(final)
        target.journal.unlink()
    except BaseException:
        _put_back({final: archived.get(final) for final in replaced})
        for copy in archived.values():
            copy.unlink(missing_ok=True)
        target.journal.unlink(missing_ok=True)
        raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return list(archived.values())


def recover(model_path: str | Path) -> list[Path]:
    """Undo a promotion of ``model_path``'s artefact that was killed between its renames.

    Reads the journal the promotion left (see the module docstring). When every new file is
    already in place (killed after the last rename) it only removes the journal and returns
    ``[]``; otherwise it puts every file back to its archive copy (or removes it where there
    was none before; the archive copies stay in ``archive/``), removes the journal and returns
    the files restored. Without a journal nothing was interrupted: returns ``[]``. A journal
    that cannot be read raises ValueError naming it.
    """
    target = artefact_paths(model_path)
    if not target.journal.exists():
        return []
    try:
        entries = json.loads(target.journal.read_text(encoding="utf-8"))["files"]
        previous = {Path(f): (Path(copy) if copy else None) for f, copy, _, _ in entries}
        done = all(Path(f).exists() and file_digest(Path(f)) == new for f, _, new, _ in entries)
        staged = [Path(tmp) for _, _, _, tmp in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{target.journal}: unreadable promotion journal ({exc})") from exc
    ours = {target.popularity, target.model, target.card}
    strays = [p for p in staged if p.parent != target.model.parent or p.suffix != ".tmp"]
    if set(previous) != ours or strays:
        raise ValueError(f"{target.journal}: names files that are not this artefact's")
    for tmp in staged:  # the renames it did not reach
        tmp.unlink(missing_ok=True)
    if done:
        target.journal.unlink()
        return []
    missing = [copy for copy in previous.values() if copy is not None and not copy.exists()]
    if missing:
        raise ValueError(f"{target.journal}: archive copy {missing[0]} is gone; cannot undo")
    _put_back(previous)
    target.journal.unlink()
    return list(previous)
