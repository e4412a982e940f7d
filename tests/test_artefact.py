"""The served artefact: its paths, atomic multi-file writes, the archive, the journal and
:func:`~alsresearch.artefact.recover`. Small synthetic models; the gate is tested in
tests/test_promote.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from alsresearch import artefact, load_model
from alsresearch.artefact import (
    ARCHIVE_DIR,
    artefact_paths,
    named_artefact,
    read_card,
    recover,
)
from alsresearch.cli import main
from alsresearch.errors import ModelFileError
from alsresearch.serve import RecommendationService
from tests.artefact_helpers import NAMES, kill_write, snapshot, write_small


@pytest.fixture
def current(tmp_path) -> Path:
    """tmp_path/models holding a small artefact (seed 1)."""
    models = tmp_path / "models"
    write_small(models, seed=1)
    return models


# ---------------------------------------------------------------------- paths and cards
def test_artefact_paths_sit_beside_the_model():
    files = artefact_paths("/m/als_baseline.npz")
    assert str(files.card) == "/m/als_baseline.json"
    assert str(files.popularity) == "/m/als_baseline.popularity.npz"
    assert str(files.journal) == "/m/.als_baseline.promotion.json"


def test_named_artefacts_live_in_the_models_dir(tmp_path, monkeypatch):
    assert named_artefact("x", tmp_path).model == tmp_path / "x.npz"
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path))
    assert named_artefact("x").card == tmp_path / "models" / "x.json"
    for bad in ["../elsewhere", "", ".hidden", "a\\b"]:
        with pytest.raises(ValueError, match="name must be a plain file name"):
            named_artefact(bad, tmp_path)


def test_read_card_names_the_file_when_it_is_not_a_json_object(tmp_path):
    card = tmp_path / "c.json"
    card.write_text('{"name": "x"}')
    assert read_card(card) == {"name": "x"}
    card.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"c\.json: model card must be a JSON object, got list"):
        read_card(card)
    card.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"c\.json: model card is not UTF-8"):
        read_card(card)


# ---------------------------------------------------------------------- writing
def test_the_card_records_the_checksums_of_the_files_beside_it(current):
    assert sorted(snapshot(current)) == NAMES
    card = read_card(current / "als_baseline.json")
    assert card["name"] == "als_baseline" and card["seed"] == 1
    assert sorted(card["files"]) == ["als_baseline.npz", "als_baseline.popularity.npz"]
    for name, entry in card["files"].items():
        assert entry["sha256"] == hashlib.sha256((current / name).read_bytes()).hexdigest()
    model = load_model(current / "als_baseline.npz")
    assert model.model_type == "als" and model.get_config()["random_state"] == 1


def test_files_are_readable_like_any_new_file(current):
    umask = os.umask(0)
    os.umask(umask)
    for path in current.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_write_archives_the_previous_files_byte_for_byte(current):
    before = snapshot(current)
    write_small(current, seed=2)
    archived = sorted((current / ARCHIVE_DIR).iterdir())
    assert {p.name.split("-", 1)[1]: p.read_bytes() for p in archived} == before
    stamps = {p.name.split("-", 1)[0] for p in archived}
    assert len(stamps) == 1 and re.fullmatch(r"\d{8}T\d{6}Z", stamps.pop())
    assert read_card(current / "als_baseline.json")["seed"] == 2
    # two writes within one second keep both archives apart
    write_small(current, seed=3)
    assert len(list((current / ARCHIVE_DIR).iterdir())) == 6


@pytest.mark.parametrize(
    "failing", ["als_baseline.json", "als_baseline.npz", "archive/als_baseline.json"]
)
def test_a_failed_write_leaves_the_previous_artefact_whole(current, monkeypatch, failing):
    """A rename failing at the card (the last file), at the model (the second), or while
    archiving: every file is put back as it was, no archive entry or temp file is left."""
    before = snapshot(current)
    real_replace = os.replace
    folder, _, name = failing.rpartition("/")

    def replace(src, dst):
        dst = Path(dst)
        if dst.parent == current / folder and dst.name.endswith(name):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(artefact.os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        write_small(current, seed=2)
    monkeypatch.undo()
    assert snapshot(current) == before  # the model and popularity files were put back
    assert not list((current / "archive").glob("*"))
    assert not [p.name for p in current.iterdir() if p.name.startswith(".")]  # no temp files


# ---------------------------------------------------------------------- the journal
@pytest.mark.parametrize("renamed", [1, 2, 3])
def test_a_promotion_killed_between_renames_is_refused_then_undone(current, renamed):
    """Killed after the popularity file (1), the model (2) or the card (3, before the journal
    went): the service refuses to start and names the journal; ``promote --recover`` puts the
    previous set back (1, 2) or, the new set being whole, only drops the journal (3)."""
    before = snapshot(current)
    kill_write(current, renamed)
    files = artefact_paths(current / "als_baseline.npz")
    assert files.journal.exists()
    with pytest.raises(ModelFileError, match=r"promotion\.json.*interrupted.*--recover"):
        RecommendationService.load(files.model)

    assert main(["promote", "--recover", "--models-dir", str(current)]) == 0
    assert not files.journal.exists()
    after = {k: v for k, v in snapshot(current).items() if not k.startswith(".")}
    if renamed < 3:
        assert after == before  # byte for byte the previous artefact
    else:
        assert after != before and set(after) == set(before)  # the new one, whole
        assert read_card(files.card)["seed"] == 99
    RecommendationService.load(files.model)  # starts: checksums match the card
    assert not [p.name for p in current.iterdir() if p.name.startswith(".")]


def test_recover_without_a_journal_does_nothing_and_a_bad_journal_is_named(current, tmp_path):
    files = artefact_paths(current / "als_baseline.npz")
    assert recover(files.model) == []
    files.journal.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable promotion journal"):
        recover(files.model)
    elsewhere = [[str(tmp_path / "x"), "", "0", str(current / ".a.tmp")]] * 3
    files.journal.write_text(json.dumps({"version": 1, "files": elsewhere}))
    with pytest.raises(ValueError, match="not this artefact's"):
        recover(files.model)
    assert (current / "als_baseline.npz").exists()


def test_recover_refuses_when_an_archive_copy_is_gone(current):
    kill_write(current, 2)
    files = artefact_paths(current / "als_baseline.npz")
    journal = json.loads(files.journal.read_text())
    Path(journal["files"][0][1]).unlink()  # the popularity file's archive copy
    with pytest.raises(ValueError, match=r"archive copy .* is gone; cannot undo"):
        recover(files.model)
    assert files.journal.exists()  # nothing half-undone: the journal stays for a person


def test_recover_puts_back_a_first_promotion_by_removing_its_files(tmp_path):
    """With nothing before it, an interrupted first write is undone by removing what it put
    in place: the directory is as empty of artefact files as it was."""
    models = tmp_path / "models"
    models.mkdir()
    kill_write(models, 2)
    restored = recover(models / "als_baseline.npz")
    assert sorted(p.name for p in restored) == NAMES
    assert list(models.iterdir()) == []
