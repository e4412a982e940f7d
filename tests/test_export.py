"""Promotion: the gate (popularity, the current model, --force), the artefact and its card,
atomic writes and the archive.

Parameter sets, measured on the shipped MovieLens with the default split (20%, seed 42):
LOSER (1 factor, 1 iteration, alpha 40) scores NDCG@10 ~0.158 against popularity's ~0.186;
MEDIOCRE ~0.244 and GOOD ~0.313 both beat popularity, and GOOD beats MEDIOCRE by a wide margin,
so the gate's decisions below do not hang on the last digit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alsresearch import export, load_model, paths
from alsresearch.als import ALSModel
from alsresearch.cli import main
from alsresearch.evaluate import evaluate
from alsresearch.export import artefact_paths, load_params, promote
from alsresearch.split import random_holdout
from tests.layout import REPO_ROOT

LOSER = {"factors": 1, "iterations": 1}
MEDIOCRE = {"factors": 4, "iterations": 3, "alpha": 1.0}
GOOD = {"factors": 16, "iterations": 5, "alpha": 1.0}
NAMES = ["als_baseline.json", "als_baseline.npz", "als_baseline.popularity.npz"]


def snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def gap_in(reason: str, better: float, worse: float) -> bool:
    return f"by {better - worse:.4f}" in reason


@pytest.fixture(scope="module")
def promoted_good(tmp_path_factory, movielens):
    """A models/ directory holding GOOD, promoted once for the module; copy before changing."""
    root = tmp_path_factory.mktemp("good")
    result = promote(GOOD, movielens, models_dir=root)
    assert result.promoted, result.reason
    return root, result


@pytest.fixture
def current(tmp_path, promoted_good):
    """A fresh copy of the GOOD artefact in tmp_path/models."""
    root, result = promoted_good
    shutil.copytree(root, tmp_path / "models")
    return tmp_path / "models", result


# ---------------------------------------------------------------------- the gate
def test_refuses_a_model_that_loses_to_popularity(tmp_path, movielens):
    result = promote(LOSER, movielens, models_dir=tmp_path)
    assert not result.promoted
    ours, popularity = result.metrics["ndcg@10"], result.baseline_metrics["ndcg@10"]
    assert ours < popularity
    assert "NDCG@10" in result.reason and "popularity" in result.reason
    assert gap_in(result.reason, popularity, ours), result.reason
    assert result.previous_metrics is None and result.model_path is None
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_refuses_a_model_that_loses_to_the_current_one(current, movielens):
    models, good = current
    before = snapshot(models)
    result = promote(MEDIOCRE, movielens, models_dir=models)
    assert not result.promoted
    ours, theirs = result.metrics["ndcg@10"], result.previous_metrics["ndcg@10"]
    assert result.baseline_metrics["ndcg@10"] < ours < theirs  # beats popularity, not GOOD
    assert "current model" in result.reason and "popularity" not in result.reason
    assert gap_in(result.reason, theirs, ours), result.reason
    # the current model was re-measured on the same split: GOOD's own figure
    assert theirs == pytest.approx(good.metrics["ndcg@10"], rel=1e-9)
    assert snapshot(models) == before and not (models / "archive").exists()


def test_force_promotes_a_loser_and_archives_the_previous_files(current, movielens):
    models, _ = current
    before = snapshot(models)
    result = promote(MEDIOCRE, movielens, models_dir=models, force=True)
    assert result.promoted and "force" in result.reason and "current model" in result.reason
    card = json.loads(result.card_path.read_text())
    assert card["gate"] == {"passed": False, "forced": True, "reason": result.reason}
    assert card["params"]["factors"] == MEDIOCRE["factors"]
    archived = {p.name.split("-", 1)[1]: p.read_bytes() for p in result.archived}
    assert archived == before  # byte for byte the files that were replaced
    assert sorted(p.name for p in (models / "archive").iterdir()) == sorted(
        p.name for p in result.archived
    )
    stamps = {p.name.split("-", 1)[0] for p in result.archived}
    assert len(stamps) == 1 and re.fullmatch(r"\d{8}T\d{6}Z", stamps.pop())


def test_equal_parameters_are_no_loss(current, movielens):
    models, good = current
    result = promote(GOOD, movielens, models_dir=models)
    assert result.promoted, result.reason
    assert result.previous_metrics == result.metrics == good.metrics


def test_changed_data_is_said_and_still_compared_on_one_split(current, movielens):
    models, _ = current
    keep = np.random.default_rng(5).random(movielens.nnz) < 0.9
    changed = movielens.select_cells(keep)
    result = promote(MEDIOCRE, changed, models_dir=models)
    assert not result.promoted
    assert "different data" in result.reason and "current model" in result.reason
    # GOOD's parameters were refitted on the changed data's split, not read from the old card
    train, test = random_holdout(changed, 0.2, 42)
    refit = ALSModel(**{**GOOD, "random_state": 42}).fit(train)
    expected = evaluate(refit, train, test, k=10).metrics["ndcg@10"]
    assert result.previous_metrics["ndcg@10"] == pytest.approx(expected, rel=1e-9)


def test_unreadable_current_card_blocks_unless_forced(current, movielens):
    models, _ = current
    (models / "als_baseline.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"als_baseline\.json.*not valid JSON"):
        promote(MEDIOCRE, movielens, models_dir=models)
    result = promote(MEDIOCRE, movielens, models_dir=models, force=True)
    assert result.promoted and "unreadable" in result.reason


# ---------------------------------------------------------------------- the artefact
def test_card_records_what_was_measured_and_what_is_served(promoted_good, movielens):
    root, result = promoted_good
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == NAMES
    card = json.loads((root / "als_baseline.json").read_text())
    assert card == result.card
    assert card["name"] == "als_baseline" and card["model_type"] == "als"
    assert card["params"] == ALSModel(**GOOD, random_state=42).config.to_dict()
    assert card["split"]["kind"] == "random_holdout"
    assert card["split"]["test_fraction"] == 0.2 and card["split"]["seed"] == 42
    assert card["split"]["fingerprint"] == card["dataset"]["fingerprint"]
    assert card["dataset"]["fingerprint"] == movielens.fingerprint()
    assert card["metrics"]["ndcg@10"] > card["popularity_metrics"]["ndcg@10"]
    assert card["served_model"]["trained_on"] == "all data"
    # the metrics are those of the recorded parameters fitted on the recorded split
    train, test = random_holdout(movielens, 0.2, 42)
    measured = evaluate(ALSModel(**card["params"]).fit(train), train, test, k=10)
    assert card["metrics"]["ndcg@10"] == pytest.approx(measured.metrics["ndcg@10"], rel=1e-9)
    # the gate's own evaluation (per user, by history length) is that same measurement
    pd.testing.assert_frame_equal(
        result.evaluations["als"].by_history(), measured.by_history(), rtol=1e-9
    )
    # provenance: the commit of the code that ran (HEAD then, so HEAD or one of its ancestors
    # now: other work may be committed while the tests run)
    commit = card["environment"]["git"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    ancestor = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=REPO_ROOT
    )
    assert ancestor.returncode == 0, f"{commit} is not in this checkout's history"
    assert card["environment"]["packages"]["numpy"] == np.__version__
    created = datetime.fromisoformat(card["created"])
    assert timedelta(0) <= datetime.now(UTC) - created < timedelta(hours=1)
    for name, entry in card["files"].items():
        assert entry["sha256"] == hashlib.sha256((root / name).read_bytes()).hexdigest()


def test_served_model_is_refitted_on_all_the_data(promoted_good, movielens):
    root, _ = promoted_good
    model = load_model(root / "als_baseline.npz")
    np.testing.assert_array_equal(model.user_ids, movielens.user_ids)
    np.testing.assert_array_equal(model.item_ids, movielens.item_ids)
    assert (model.seen != (movielens.matrix > 0)).nnz == 0  # every interaction, test part too
    fallback = load_model(root / "als_baseline.popularity.npz")
    users_per_item = np.asarray((movielens.matrix > 0).sum(axis=0)).ravel()
    np.testing.assert_array_equal(fallback.popularity, users_per_item)


def test_files_are_readable_like_any_new_file(promoted_good):
    root, _ = promoted_good
    umask = os.umask(0)
    os.umask(umask)
    for path in root.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.parametrize(
    "failing", ["als_baseline.json", "als_baseline.npz", "archive/als_baseline.json"]
)
def test_a_failed_write_leaves_the_previous_artefact_whole(
    current, movielens, monkeypatch, failing
):
    """A rename failing at the card (the last file), at the model (the second), or while
    archiving: every file is put back as it was, no archive entry or temp file is left."""
    models, _ = current
    before = snapshot(models)
    real_replace = os.replace
    folder, _, name = failing.rpartition("/")

    def replace(src, dst):
        dst = Path(dst)
        if dst.parent == models / folder and dst.name.endswith(name):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        promote(MEDIOCRE, movielens, models_dir=models, force=True)
    monkeypatch.undo()
    assert snapshot(models) == before  # the model and popularity files were put back
    assert not list((models / "archive").glob("*"))
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")]  # no temp files


# A promotion killed (os._exit, no exception handler runs) after its n-th artefact rename.
KILLED_PROMOTION = """
import os, sys
from pathlib import Path
from alsresearch import export
from alsresearch.datasets import load_default

models, after = Path(sys.argv[1]), int(sys.argv[2])
real_replace, done = os.replace, []

def replace(src, dst):
    real_replace(src, dst)
    if Path(dst).parent == models and not Path(dst).name.startswith("."):
        done.append(dst)
        if len(done) == after:
            os._exit(9)

export.os.replace = replace
export.promote({"factors": 4, "iterations": 3, "alpha": 1.0}, load_default(), models_dir=models,
               force=True)
"""


@pytest.mark.parametrize("renamed", [1, 2, 3])
def test_a_promotion_killed_between_renames_is_refused_then_undone(current, renamed):
    """Killed after the popularity file (1), the model (2) or the card (3, before the journal
    went): the service refuses to start and names the journal; ``promote --recover`` puts the
    previous set back (1, 2) or, the new set being whole, only drops the journal (3)."""
    from alsresearch.errors import ModelFileError
    from alsresearch.serve import RecommendationService

    models, _ = current
    before = snapshot(models)
    run = subprocess.run(
        [sys.executable, "-c", KILLED_PROMOTION, str(models), str(renamed)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 9, run.stderr
    files = artefact_paths(models / "als_baseline.npz")
    assert files.journal.exists()
    with pytest.raises(ModelFileError, match=r"promotion\.json.*interrupted.*--recover"):
        RecommendationService.load(files.model)

    assert main(["promote", "--recover", "--models-dir", str(models)]) == 0
    assert not files.journal.exists()
    after = {k: v for k, v in snapshot(models).items() if not k.startswith(".")}
    if renamed < 3:
        assert after == before  # byte for byte the previous artefact
    else:
        assert after != before and set(after) == set(before)  # the new one, whole
    RecommendationService.load(files.model)  # starts: checksums match the card
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")]


def test_the_next_promotion_undoes_an_interrupted_one_first(current, movielens):
    models, _ = current
    run = subprocess.run(
        [sys.executable, "-c", KILLED_PROMOTION, str(models), "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 9, run.stderr
    result = promote(GOOD, movielens, models_dir=models)
    assert result.promoted and "interrupted promotion was undone" in result.reason
    assert not artefact_paths(models / "als_baseline.npz").journal.exists()


def test_recover_without_a_journal_does_nothing_and_a_bad_journal_is_named(current, tmp_path):
    models, _ = current
    files = artefact_paths(models / "als_baseline.npz")
    assert export.recover(files.model) == []
    files.journal.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable promotion journal"):
        export.recover(files.model)
    elsewhere = [[str(tmp_path / "x"), "", "0", str(models / ".a.tmp")]] * 3
    files.journal.write_text(json.dumps({"version": 1, "files": elsewhere}))
    with pytest.raises(ValueError, match="not this artefact's"):
        export.recover(files.model)
    assert (models / "als_baseline.npz").exists()


# ---------------------------------------------------------------------- parameters
def test_parameters_come_bare_or_in_the_tuning_layout(tmp_path):
    assert load_params(GOOD) == GOOD
    assert load_params({"params": GOOD, "value": 0.3}) == GOOD
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"params": GOOD, "value": 0.31, "trial": 7}))
    assert load_params(best) == GOOD
    with pytest.raises(ValueError, match=r"unknown ALS parameter\(s\) \['factorz'\]"):
        load_params({"factorz": 8})
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load_params(tmp_path / "nope.json")


def test_bad_parameters_and_names_fail_before_any_work(tmp_path, movielens):
    with pytest.raises(ValueError, match="factors must be >= 1"):
        promote({"factors": 0}, movielens, models_dir=tmp_path)
    with pytest.raises(ValueError, match="name must be a plain file name"):
        promote(GOOD, movielens, models_dir=tmp_path, name="../elsewhere")
    assert list(tmp_path.iterdir()) == []


def test_artefact_paths_sit_beside_the_model():
    files = artefact_paths("/m/als_baseline.npz")
    assert str(files.card) == "/m/als_baseline.json"
    assert str(files.popularity) == "/m/als_baseline.popularity.npz"


# ---------------------------------------------------------------------- command line
def test_promote_command(tmp_path, capsys):
    ratings = paths.resource("ml-latest-small", "ratings.csv")
    if not ratings.is_file():
        pytest.skip(f"shipped data missing at {ratings}")
    good, loser = tmp_path / "good.json", tmp_path / "loser.json"
    good.write_text(json.dumps({"params": GOOD}))
    loser.write_text(json.dumps(LOSER))
    source = ["--events", str(ratings), "--user-col", "userId", "--item-col", "movieId"]
    models = ["--models-dir", str(tmp_path / "models")]
    assert main(["promote", *source, "--params", str(good), *models]) == 0
    out = capsys.readouterr().out
    assert "promoted: NDCG@10" in out and "als_baseline.npz" in out
    assert main(["promote", *source, "--params", str(loser), *models]) == 1
    err = capsys.readouterr().err
    assert "not promoted" in err and "NDCG@10" in err and "popularity" in err
    assert main(["promote", "--default", "--params", str(loser), *models, "--force"]) == 0
    assert "by force" in capsys.readouterr().out
