"""Promotion: the gate (paired bootstrap intervals against popularity and the current model,
--confidence, --min-lift, --force), the card and the model file it writes, the data-source and
split records it checks, the fold-in protocol, and ``alsresearch promote``.

Parameter sets, measured on the shipped MovieLens with the default split (random 20%, seed 42):
LOSER (1 factor, 1 iteration, alpha 40) scores NDCG@10 ~0.158 against popularity's ~0.186
(paired difference -0.028, 95% interval about [-0.037, -0.019]); MEDIOCRE ~0.244 and GOOD
~0.313 both beat popularity (GOOD by 0.127, interval about [0.113, 0.141]), and GOOD beats
MEDIOCRE by a wide margin, so the gate's decisions below do not hang on the last digit.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from alsresearch import load_model, paths
from alsresearch.als import ALSModel
from alsresearch.artefact import artefact_paths, read_card
from alsresearch.baselines import EASEModel, PopularityModel
from alsresearch.cli import main
from alsresearch.datasets import synthetic_events
from alsresearch.errors import SpecMismatchError
from alsresearch.evaluate import evaluate, paired_difference
from alsresearch.promote import load_model_params, load_params, promote
from alsresearch.seeds import DEFAULT_SEED
from alsresearch.source import DataSource
from alsresearch.split import SplitSpec, random_holdout, temporal_holdout, user_holdout
from tests.artefact_helpers import NAMES, kill_write, snapshot
from tests.layout import REPO_ROOT

LOSER = {"factors": 1, "iterations": 1}
MEDIOCRE = {"factors": 4, "iterations": 3, "alpha": 1.0}
GOOD = {"factors": 16, "iterations": 5, "alpha": 1.0}
SMALL = {"factors": 8, "iterations": 4, "alpha": 5.0}
WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 5.0}


def interval_in(reason: str, d) -> bool:
    """The reason states the interval ``d`` (difference and bounds, as printed)."""
    return f"{d.difference:.4f} [95% CI {d.low:.4f}, {d.high:.4f}]" in reason


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


@pytest.fixture(scope="module")
def typed_events(tmp_path_factory):
    """A small events file with event types and timestamps (view / click / purchase)."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    synthetic_events(300, 200, 6000, seed=3).to_csv(path, index=False)
    return path


def typed_source(path, **weights) -> DataSource:
    return DataSource(
        path=path,
        event_col="event",
        event_weights={**WEIGHTS, **weights},
        timestamp_col="timestamp",
    )


# ---------------------------------------------------------------------- the gate
def test_refuses_a_model_that_loses_to_popularity(tmp_path, movielens):
    result = promote(LOSER, movielens, models_dir=tmp_path)
    assert not result.promoted
    ours, popularity = result.metrics["ndcg@10"], result.baseline_metrics["ndcg@10"]
    assert ours < popularity
    assert "NDCG@10" in result.reason and "popularity" in result.reason
    d = result.differences["popularity"]
    # same users on both sides: the mean per-user difference is the difference of the means
    assert d.difference == pytest.approx(ours - popularity, abs=1e-12)
    assert d.low <= d.difference <= d.high < 0 and d.n_users == result.evaluations["als"].n_users
    assert interval_in(result.reason, d) and "below 0" in result.reason, result.reason
    assert set(result.differences) == {"popularity"}
    assert result.previous_metrics is None and result.model_path is None
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_refuses_a_model_that_loses_to_the_current_one(current, movielens):
    models, good = current
    before = snapshot(models)
    result = promote(MEDIOCRE, movielens, models_dir=models)
    assert not result.promoted
    ours, theirs = result.metrics["ndcg@10"], result.previous_metrics["ndcg@10"]
    assert result.baseline_metrics["ndcg@10"] < ours < theirs  # beats popularity, not GOOD
    assert "current model" in result.reason and "vs popularity" not in result.reason
    d = result.differences["current"]
    assert d.difference == pytest.approx(ours - theirs, abs=1e-12) and d.high < 0
    assert interval_in(result.reason, d), result.reason
    assert result.differences["popularity"].low > 0  # it does beat popularity
    # the current model was re-measured on the same split: GOOD's own figure
    assert theirs == pytest.approx(good.metrics["ndcg@10"], rel=1e-9)
    assert snapshot(models) == before and not (models / "archive").exists()


def test_force_promotes_a_loser_and_archives_the_previous_files(current, movielens):
    models, _ = current
    before = snapshot(models)
    result = promote(MEDIOCRE, movielens, models_dir=models, force=True)
    assert result.promoted and "force" in result.reason and "current model" in result.reason
    card = json.loads(result.card_path.read_text())
    gate = card["gate"]
    assert (gate["passed"], gate["forced"], gate["reason"]) == (False, True, result.reason)
    # both intervals are recorded, the losing one too
    assert gate["differences"] == {k: d.to_dict() for k, d in result.differences.items()}
    assert gate["differences"]["current"]["high"] < 0 < gate["differences"]["popularity"]["low"]
    assert card["params"]["factors"] == MEDIOCRE["factors"]
    archived = {p.name.split("-", 1)[1]: p.read_bytes() for p in result.archived}
    assert archived == before  # byte for byte the files that were replaced
    assert sorted(p.name for p in (models / "archive").iterdir()) == sorted(
        p.name for p in result.archived
    )
    stamps = {p.name.split("-", 1)[0] for p in result.archived}
    assert len(stamps) == 1 and re.fullmatch(r"\d{8}T\d{6}Z", stamps.pop())


def test_the_current_parameters_again_are_refused(current, movielens):
    """A model against itself: a difference of exactly 0, an interval [0, 0] that covers 0,
    p = 1, and a gate that refuses (nothing to gain by replacing it)."""
    models, good = current
    before = snapshot(models)
    result = promote(GOOD, movielens, models_dir=models)
    assert not result.promoted
    assert result.previous_metrics == result.metrics == good.metrics
    d = result.differences["current"]
    assert (d.difference, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert d.n_users == result.evaluations["als"].n_users
    assert "current model" in result.reason and "does not exclude 0" in result.reason
    assert "vs popularity" not in result.reason  # that comparison passed
    assert snapshot(models) == before


def test_changed_data_is_said_and_still_compared_on_one_split(current, movielens):
    models, _ = current
    keep = np.random.default_rng(5).random(movielens.nnz) < 0.9
    changed = movielens.select_cells(keep)
    result = promote(MEDIOCRE, changed, models_dir=models)
    assert not result.promoted
    assert "different data" in result.reason and "current model" in result.reason
    # GOOD's parameters were refitted on the changed data's split, not read from the old card
    train, test = random_holdout(changed, 0.2, 42)
    refit = ALSModel(**{**GOOD, "random_state": DEFAULT_SEED}).fit(train)
    expected = evaluate(refit, train, test, k=10).metrics["ndcg@10"]
    assert result.previous_metrics["ndcg@10"] == pytest.approx(expected, rel=1e-9)


def test_unreadable_current_card_blocks_unless_forced(current, movielens):
    models, _ = current
    (models / "als_baseline.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"als_baseline\.json.*not valid JSON"):
        promote(MEDIOCRE, movielens, models_dir=models)
    result = promote(MEDIOCRE, movielens, models_dir=models, force=True)
    assert result.promoted and "unreadable" in result.reason


def test_the_next_promotion_undoes_an_interrupted_one_first(current, movielens):
    models, good = current
    kill_write(models, 2)
    result = promote(GOOD, movielens, models_dir=models)  # GOOD again: refused, see above
    assert not result.promoted and "interrupted promotion was undone" in result.reason
    # compared with GOOD's card put back, not with the half-written one
    assert result.previous_metrics == good.metrics
    assert not artefact_paths(models / "als_baseline.npz").journal.exists()


# ---------------------------------------------------------------------- the artefact
def test_card_records_what_was_measured_and_what_is_served(promoted_good, movielens):
    root, result = promoted_good
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == NAMES
    card = json.loads((root / "als_baseline.json").read_text())
    assert card == result.card
    assert card["name"] == "als_baseline" and card["model_type"] == "als"
    # the one default seed, not the split's (42)
    assert card["params"] == ALSModel(**GOOD, random_state=DEFAULT_SEED).config.to_dict()
    assert card["seed"] == {"random_state": DEFAULT_SEED, "unseeded": False}
    assert card["init"] is None
    assert load_model(root / "als_baseline.npz").training["random_state"] == DEFAULT_SEED
    assert card["split"]["kind"] == "random"
    assert card["split"]["test_fraction"] == 0.2 and card["split"]["seed"] == 42
    assert card["split"]["fingerprint"] == card["data"]["fingerprint"]
    assert card["data"]["fingerprint"] == movielens.fingerprint()
    assert card["data"]["source"] is None  # promoted from an Interactions without a source
    assert (card["data"]["n_users"], card["data"]["nnz"]) == (movielens.n_users, movielens.nnz)
    assert card["metrics"]["ndcg@10"] > card["popularity_metrics"]["ndcg@10"]
    assert card["served_model"]["trained_on"] == "all data"
    # the metrics are those of the recorded parameters fitted on the recorded split
    train, test = random_holdout(movielens, 0.2, 42)
    assert (card["split"]["train_cells"], card["split"]["test_cells"]) == (train.nnz, test.nnz)
    measured = evaluate(ALSModel(**card["params"]).fit(train), train, test, k=10)
    assert card["metrics"]["ndcg@10"] == pytest.approx(measured.metrics["ndcg@10"], rel=1e-9)
    # the gate's own evaluation (per user, by history length) is that same measurement
    pd.testing.assert_frame_equal(
        result.evaluations["als"].by_history(), measured.by_history(), rtol=1e-9
    )
    # the gate's interval against popularity, recorded in full, from the same per-user figures
    popular = evaluate(PopularityModel().fit(train), train, test, k=10)
    gate = card["gate"]
    assert (gate["metric"], gate["confidence"], gate["min_lift"]) == ("ndcg@10", 0.95, 0.0)
    assert gate["differences"]["current"] is None  # nothing was promoted before
    recorded = gate["differences"]["popularity"]
    assert set(recorded) >= {"difference", "low", "high", "p_value", "n_users", "n_boot", "seed"}
    expected = paired_difference(measured, popular, "ndcg@10", 0.95, 2000, 0).to_dict()
    assert recorded.pop("metric") == expected.pop("metric") == "ndcg@10"
    assert recorded == pytest.approx(expected, rel=1e-9)
    assert 0 < recorded["low"] < recorded["difference"] < recorded["high"]
    assert recorded["n_users"] == measured.n_users == 610
    # provenance: the commit of the code that ran (HEAD then, so HEAD or one of its ancestors
    # now: other work may be committed while the tests run)
    commit = card["environment"]["git"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=REPO_ROOT)
    assert ancestor.returncode == 0, f"{commit} is not in this checkout's history"
    assert card["environment"]["packages"]["numpy"] == np.__version__
    created = datetime.fromisoformat(card["created"])
    assert timedelta(0) <= datetime.now(UTC) - created < timedelta(hours=1)


def test_served_model_is_refitted_on_all_the_data(promoted_good, movielens):
    root, _ = promoted_good
    model = load_model(root / "als_baseline.npz")
    np.testing.assert_array_equal(model.user_ids, movielens.user_ids)
    np.testing.assert_array_equal(model.item_ids, movielens.item_ids)
    assert (model.seen != (movielens.matrix > 0)).nnz == 0  # every interaction, test part too
    seed = {"random_state": DEFAULT_SEED, "unseeded": False}
    assert model.training == {"data": None, "split": SplitSpec().to_dict(), "part": "all", **seed}
    fallback = load_model(root / "als_baseline.popularity.npz")
    assert fallback.training == {"data": None, "split": SplitSpec().to_dict(), "part": "all"}
    users_per_item = np.asarray((movielens.matrix > 0).sum(axis=0)).ravel()
    np.testing.assert_array_equal(fallback.popularity, users_per_item)


def test_a_temporal_split_of_typed_events_is_recorded(tmp_path, typed_events):
    source = typed_source(typed_events)
    data = source.load()
    split = SplitSpec(kind="temporal", test_fraction=0.25)
    result = promote(SMALL, data, source=source, split=split, models_dir=tmp_path, force=True)
    assert result.promoted
    card = read_card(result.card_path)
    assert card["split"]["kind"] == "temporal" and card["split"]["test_fraction"] == 0.25
    assert card["data"]["source"] == source.to_dict()
    assert card["data"]["source"]["event_weights"] == WEIGHTS
    # the gate measured on each user's latest quarter of cells
    train, test = temporal_holdout(data, test_fraction=0.25)
    assert (card["split"]["train_cells"], card["split"]["test_cells"]) == (train.nnz, test.nnz)
    assert card["split"]["fingerprint"] == data.fingerprint()
    expected = {"data": source.to_dict(), "split": split.to_dict(), "part": "all"}
    seed = {"random_state": DEFAULT_SEED, "unseeded": False}
    assert card["served_model"]["training"] == {**expected, **seed}
    assert load_model(result.model_path).training == {**expected, **seed}
    assert load_model(result.popularity_path).training == expected


def test_data_read_another_way_is_refused_unless_forced(tmp_path, typed_events):
    first = typed_source(typed_events)
    promote(SMALL, first.load(), source=first, models_dir=tmp_path, force=True)
    before = snapshot(tmp_path)
    heavier = typed_source(typed_events, purchase=20.0)
    data = heavier.load()
    with pytest.raises(SpecMismatchError, match=r"event_weights.*purchase.*5\.0.*20\.0"):
        promote(SMALL, data, source=heavier, models_dir=tmp_path)
    assert snapshot(tmp_path) == before  # refused before anything was written
    result = promote(SMALL, data, source=heavier, models_dir=tmp_path, force=True)
    assert result.promoted and "event_weights" in result.reason
    assert read_card(result.card_path)["data"]["source"]["event_weights"]["purchase"] == 20.0


def test_another_split_is_refused_naming_what_differs(current, movielens):
    models, _ = current
    before = snapshot(models)
    with pytest.raises(SpecMismatchError, match=r"different split: seed 42 there, 7 here"):
        promote(GOOD, movielens, split=SplitSpec(seed=7), models_dir=models)
    assert snapshot(models) == before


def test_a_card_from_before_the_records_is_compared_as_before(current, movielens):
    """A version-1 card ("dataset" block, split kind "random_holdout", no source) neither
    refuses another split nor hides its fingerprint."""
    models, good = current
    card_path = models / "als_baseline.json"
    card = read_card(card_path)
    data = card.pop("data")
    card["dataset"] = {  # version 1 named the cell count "cells"
        "fingerprint": data["fingerprint"],
        "n_users": data["n_users"],
        "n_items": data["n_items"],
        "cells": data["nnz"],
    }
    card["split"]["kind"] = "random_holdout"
    card["card_version"] = 1
    card_path.write_text(json.dumps(card))
    params = {**GOOD, "random_state": DEFAULT_SEED}  # the card's, though the split seed is 7
    result = promote(params, movielens, split=SplitSpec(seed=7), models_dir=models)
    assert not result.promoted  # the same parameters: no gain over the current model
    assert "does not exclude 0" in result.reason
    assert "different data" not in result.reason  # the fingerprint was read from "dataset"
    assert "split" not in result.reason
    assert result.previous_metrics == result.metrics  # same parameters, same (new) split
    assert result.metrics != good.metrics  # measured on the new split


def test_a_split_without_a_test_part_is_refused(tmp_path, movielens):
    with pytest.raises(ValueError, match=r"needs a test split.*test_fraction must be > 0"):
        promote(GOOD, movielens, split=SplitSpec(test_fraction=0.0), models_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_min_lift_and_confidence_move_the_bar(tmp_path, movielens):
    """GOOD beats popularity by ~0.127 with a 95% interval of about [0.113, 0.141]: a
    required lift of 0.2 refuses it; a 99.9% interval is wider than the 95% one."""
    strict = promote(GOOD, movielens, models_dir=tmp_path / "a", min_lift=0.2)
    assert not strict.promoted
    assert "does not lie above the required lift 0.2" in strict.reason, strict.reason
    assert not (tmp_path / "a").exists()  # nothing written
    sure = promote(GOOD, movielens, models_dir=tmp_path / "b", confidence=0.999)
    assert sure.promoted, sure.reason
    wide, usual = sure.differences["popularity"], strict.differences["popularity"]
    assert wide.difference == usual.difference  # the same figures, another quantile
    assert wide.low < usual.low < usual.high < wide.high
    assert "99.9% CI" in sure.reason and sure.card["gate"]["confidence"] == 0.999


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confidence": 0.0}, r"confidence must be a finite number in \(0.0, 1.0\), got 0.0"),
        ({"confidence": 1.0}, r"confidence must be a finite number in \(0.0, 1.0\), got 1.0"),
        ({"confidence": float("nan")}, r"confidence must be a finite number"),
        ({"confidence": True}, r"confidence must be a finite number"),
        ({"min_lift": -0.01}, r"min_lift must be a finite number >= 0.0, got -0.01"),
        ({"min_lift": float("inf")}, r"min_lift must be a finite number"),
    ],
)
def test_bad_gate_settings_fail_before_any_work(tmp_path, movielens, kwargs, match):
    with pytest.raises(ValueError, match=match):
        promote(GOOD, movielens, models_dir=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- fold-in protocol
def test_the_fold_in_protocol_gates_on_users_never_trained(tmp_path, movielens):
    split = SplitSpec(protocol="fold_in", holdout_users=0.2)
    result = promote(GOOD, movielens, split=split, models_dir=tmp_path)
    assert result.promoted, result.reason
    card = read_card(result.card_path)
    assert card["split"] == {
        **split.to_dict(),
        **{k: card["split"][k] for k in ("fingerprint", "train_cells", "test_cells")},
        "fold_in_cells": card["split"]["fold_in_cells"],
        "test_users": card["split"]["test_users"],
    }
    # the same three parts as user_holdout: 20% of the users, each 80/20 fold-in/test
    train, fold_in, test = user_holdout(movielens, 0.2, fold_in_fraction=0.8, seed=42)
    assert (card["split"]["train_cells"], card["split"]["fold_in_cells"]) == (
        train.nnz,
        fold_in.nnz,
    )
    assert card["split"]["test_cells"] == test.nnz and card["split"]["test_users"] == 122
    refit = ALSModel(**card["params"]).fit(train)
    measured = evaluate(refit, train, test, protocol="fold_in", fold_in=fold_in)
    assert result.metrics == pytest.approx(measured.metrics, rel=1e-9)
    assert {"recall@20", "recall@50", "ndcg@100"} <= set(card["metrics"])
    assert card["gate"]["differences"]["popularity"]["n_users"] == 122
    # a standard split is another split than the card's
    with pytest.raises(SpecMismatchError, match=r"protocol 'fold_in' there, 'standard' here"):
        promote(GOOD, movielens, models_dir=tmp_path)


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


def test_parameters_name_their_model_and_files_without_one_are_als(tmp_path):
    assert load_model_params(GOOD) == ("als", GOOD)
    assert load_model_params({"params": GOOD, "value": 0.3}) == ("als", GOOD)
    ease = {"regularization": 500.0}
    assert load_model_params({"model": "ease", "params": ease}) == ("ease", ease)
    assert load_model_params({"model": "ease", **ease}) == ("ease", ease)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"model": "ease", "params": ease, "seed": 0}))
    assert load_model_params(best) == ("ease", ease)
    # the ALS-only reader refuses another model's arguments rather than build ALS from them
    with pytest.raises(ValueError, match=r"best\.json: the parameters are for model 'ease'"):
        load_params(best)
    with pytest.raises(ValueError, match=r"model must be one of \['als', .*got 'EASE'"):
        load_model_params({"model": "EASE", "params": ease})
    with pytest.raises(ValueError, match=r"unknown EASE parameter\(s\) \['random_state'\]"):
        load_model_params({"model": "ease", "params": {**ease, "random_state": 0}})


def test_bad_parameters_and_names_fail_before_any_work(tmp_path, movielens):
    with pytest.raises(ValueError, match=r"factors must be an integer in \[1, 1024\], got 0"):
        promote({"factors": 0}, movielens, models_dir=tmp_path)
    with pytest.raises(ValueError, match="name must be a plain file name"):
        promote(GOOD, movielens, models_dir=tmp_path, name="../elsewhere")
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 100000\], got 0"):
        promote(GOOD, movielens, models_dir=tmp_path, k=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- command line
def test_promote_command(tmp_path, capsys):
    ratings = paths.resource("ml-latest-small", "ratings.csv")
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
    # no --events: the shipped data, read another way than the current card says
    assert main(["promote", "--params", str(loser), *models]) == 1
    assert "data read another way" in capsys.readouterr().err
    assert main(["promote", "--params", str(loser), *models, "--force"]) == 0
    assert "by force" in capsys.readouterr().out


def test_promote_command_with_typed_events_and_a_temporal_split(tmp_path, typed_events, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(SMALL))
    argv = [
        "promote",
        *("--events", str(typed_events), "--event-col", "event"),
        *("--event-weights", "view=1,click=2,purchase=5", "--timestamp-col", "timestamp"),
        *("--split", "temporal", "--test-fraction", "0.25"),
        *("--params", str(params), "--models-dir", str(tmp_path / "models"), "--force"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    card = read_card(tmp_path / "models" / "als_baseline.json")
    assert card["data"]["source"] == typed_source(typed_events).to_dict()
    assert card["split"] == {**card["split"], "kind": "temporal", "test_fraction": 0.25}


def test_promote_command_with_the_fold_in_protocol_and_gate_options(tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(GOOD))
    models = ["--models-dir", str(tmp_path / "models")]
    fold_in = ["--protocol", "fold_in", "--holdout-users", "100"]
    argv = ["promote", "--params", str(params), *models, *fold_in, "--confidence", "0.9"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "vs popularity" in out and "90% CI" in out
    card = read_card(tmp_path / "models" / "als_baseline.json")
    assert card["split"]["protocol"] == "fold_in" and card["split"]["holdout_users"] == 100
    assert card["split"]["test_users"] == 100 and card["gate"]["confidence"] == 0.9
    # the same parameters again: refused, and the interval is said
    assert main(["promote", "--params", str(params), *models, *fold_in]) == 1
    err = capsys.readouterr().err
    assert "not promoted" in err and "0.0000 [95% CI 0.0000, 0.0000] does not exclude 0" in err
    for bad, named in (
        (["--confidence", "1.5"], "--confidence"),
        (["--min-lift", "-1"], "--min-lift"),
        (["--protocol", "fold_in", "--holdout-users", "1.5"], "holdout_users"),
        (["--holdout-users", "10"], "--holdout-users has no effect without --protocol fold_in"),
        (["--protocol", "fold_in", "--split", "temporal"], "split kind must be 'random'"),
    ):
        assert main(["promote", "--params", str(params), *models, *bad]) == 1
        assert named in capsys.readouterr().err


@pytest.mark.parametrize(
    "stray, named",
    [
        (["--params", "x.json"], "--params"),
        (["--events", "e.csv"], "--events"),
        (["--split", "temporal"], "--split"),
        (["--force"], "--force"),
        (["--split", "random"], "--split"),  # given, though it is the default value
        (["-k", "10"], "-k"),
        (["--confidence", "0.9"], "--confidence"),
        (["--min-lift", "0"], "--min-lift"),
        (["--protocol", "fold_in"], "--protocol"),
        (["--holdout-users", "10"], "--holdout-users"),
    ],
)
def test_recover_takes_no_promotion_options(tmp_path, capsys, stray, named):
    argv = ["promote", "--recover", "--models-dir", str(tmp_path), *stray]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--recover" in err and named in err
    assert list(tmp_path.iterdir()) == []


def test_promote_command_needs_params(tmp_path, capsys):
    assert main(["promote", "--models-dir", str(tmp_path)]) == 1
    assert "--params is required" in capsys.readouterr().err


# ---------------------------------------------------------------------- EASE
@pytest.fixture(scope="module")
def popular(movielens):
    """MovieLens restricted to the 1,297 movies 20 or more users rated (the catalogue keeps
    every id): an EASE fit takes a fraction of a second instead of ~10 s or more."""
    m = movielens.matrix
    keep = np.bincount(m.indices, minlength=m.shape[1]) >= 20
    return movielens.select_cells(keep[m.indices])


def test_ease_from_a_best_json_is_gated_and_promoted(tmp_path, popular):
    ease = {"regularization": 500.0}
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"model": "ease", "params": ease, "seed": 0}))
    result = promote(best, popular, models_dir=tmp_path / "models")
    assert result.promoted, result.reason
    card = read_card(result.card_path)
    assert card["model_type"] == "ease" and card["params"] == ease  # no seed: EASE takes none
    assert set(result.evaluations) == {"ease", "popularity"}
    # the gate's figures, recomputed here on the same split
    parts = SplitSpec().parts(popular)
    reference = EASEModel(**ease).fit(parts.train)
    measured = evaluate(reference, parts.train, parts.test)
    assert card["metrics"]["ndcg@10"] == pytest.approx(measured.metrics["ndcg@10"], rel=1e-9)
    pop = evaluate(PopularityModel().fit(parts.train), parts.train, parts.test)
    d = paired_difference(measured, pop, "ndcg@10")  # the gate's defaults: 95%, seeded
    gate = result.differences["popularity"]
    assert (gate.difference, gate.low) == pytest.approx((d.difference, d.low)) and d.low > 0
    # the served model: EASE with those parameters refitted on all the data
    served = load_model(result.model_path)
    assert isinstance(served, EASEModel) and served.regularization == 500.0
    everything = EASEModel(**ease).fit(popular)
    for user in popular.user_ids[:20]:
        np.testing.assert_array_equal(served.recommend(user)[0], everything.recommend(user)[0])

    # a later ALS candidate is gated against the current EASE, refitted on its split
    again = promote(GOOD, popular, models_dir=tmp_path / "models", force=True)
    assert again.previous_metrics["ndcg@10"] == pytest.approx(measured.metrics["ndcg@10"])
    assert read_card(again.card_path)["model_type"] == "als"
    assert read_card(again.card_path)["params"]["random_state"] == DEFAULT_SEED


def test_popularity_cannot_be_the_candidate(tmp_path, popular):
    with pytest.raises(ValueError, match="the candidate cannot be the popularity model"):
        promote({"model": "popularity", "params": {}}, popular, models_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
