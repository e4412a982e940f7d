"""One default seed for every command and notebook (recorded; unseeded only when asked), and
warm-started fits from the command line (``train --init``, ``promote --init``), each checked
against an independent run through the Python API."""

from __future__ import annotations

import ast
import json

import nbformat
import numpy as np
import pytest
import yaml

from alsresearch import load_model
from alsresearch.als import ALSModel
from alsresearch.artefact import read_card
from alsresearch.baselines import EASEModel
from alsresearch.cli import build_parser, main
from alsresearch.data import Interactions
from alsresearch.files import file_digest
from alsresearch.seeds import DEFAULT_SEED, resolve_seed
from alsresearch.split import SplitSpec
from tests.layout import NOTEBOOKS, REPO_ROOT

ALS = {"factors": 6, "iterations": 4, "alpha": 2.0, "regularization": 0.1}  # no random_state


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    from alsresearch.datasets import synthetic

    path = tmp_path_factory.mktemp("events") / "events.csv"
    synthetic(300, 120, 6000, seed=4).to_frame().rename(columns={"count": "plays"}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture(scope="module")
def data(events):
    return Interactions.from_events(events, weight_col="plays")


@pytest.fixture(scope="module")
def train(data):
    return SplitSpec().apply(data)[0]


def _params(tmp_path, name="params.json", **params) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(params))
    return str(path)


def _data_args(events) -> list[str]:
    return ["--events", str(events), "--weight-col", "plays"]


def _train(tmp_path, events, params, out="model.npz", *more) -> tuple[int, str]:
    path = tmp_path / out
    code = main(["train", *_data_args(events), "--params", params, "--out", str(path), *more])
    return code, path


# ---------------------------------------------------------------------- one default seed
def test_train_without_a_seed_fits_with_the_default_and_records_it(tmp_path, events, train):
    code, path = _train(tmp_path, events, _params(tmp_path, **ALS))
    assert code == 0
    model = load_model(path)
    assert model.config.random_state == DEFAULT_SEED
    assert model.training["random_state"] == DEFAULT_SEED
    assert model.training["unseeded"] is False
    reference = ALSModel(**ALS, random_state=DEFAULT_SEED).fit(train)
    np.testing.assert_allclose(model.user_factors, reference.user_factors, rtol=1e-5, atol=1e-6)


def test_train_and_promote_record_the_same_seed_for_the_same_file(tmp_path, events):
    params = _params(tmp_path, **ALS)
    code, path = _train(tmp_path, events, params)
    assert code == 0
    models = tmp_path / "models"
    argv = ["promote", *_data_args(events), "--params", params, "--models-dir", str(models)]
    assert main([*argv, "--force"]) == 0
    card = read_card(models / "als_baseline.json")
    assert card["params"]["random_state"] == load_model(path).config.random_state == DEFAULT_SEED
    assert card["seed"] == {"random_state": DEFAULT_SEED, "unseeded": False}
    assert load_model(models / "als_baseline.npz").training["random_state"] == DEFAULT_SEED


def test_seed_none_is_unseeded_and_says_so(tmp_path, events, capsys):
    params = _params(tmp_path, **ALS, random_state=7)
    code, path = _train(tmp_path, events, params, "a.npz", "--seed", "none")
    assert code == 0
    model = load_model(path)
    assert model.config.random_state is None
    assert (model.training["random_state"], model.training["unseeded"]) == (None, True)
    # two unseeded fits differ: nothing seeded them
    code, again = _train(tmp_path, events, params, "b.npz", "--seed", "none")
    assert not np.allclose(load_model(again).user_factors, model.user_factors)
    models = tmp_path / "models"
    argv = ["promote", *_data_args(events), "--params", params, "--models-dir", str(models)]
    assert main([*argv, "--seed", "none", "--force"]) == 0
    card = read_card(models / "als_baseline.json")
    assert card["params"]["random_state"] is None
    assert card["seed"] == {"random_state": None, "unseeded": True}


def test_a_null_random_state_in_the_file_is_unseeded(tmp_path, events):
    code, path = _train(tmp_path, events, _params(tmp_path, **ALS, random_state=None))
    assert code == 0 and load_model(path).training["unseeded"] is True


def test_seed_overrides_the_file(tmp_path, events, train):
    code, path = _train(tmp_path, events, _params(tmp_path, **ALS, random_state=0), "m.npz",
                        "--seed", "5")  # fmt: skip
    assert code == 0
    model = load_model(path)
    assert model.config.random_state == 5 and model.training["random_state"] == 5
    reference = ALSModel(**ALS, random_state=5).fit(train)
    np.testing.assert_allclose(model.item_factors, reference.item_factors, rtol=1e-5, atol=1e-6)


def test_seed_for_a_model_without_one_is_an_error(tmp_path, events, capsys):
    params = _params(tmp_path, model="ease", regularization=30.0)
    code, path = _train(tmp_path, events, params, "e.npz", "--seed", "3")
    assert code == 1
    assert "--seed has no effect: model 'ease' takes no seed" in capsys.readouterr().err
    assert not path.exists()
    assert resolve_seed("ease", {"regularization": 1.0}) == {"regularization": 1.0}


def test_every_command_and_notebook_defaults_to_the_one_seed():
    tune = next(a for a in build_parser()._actions if a.dest == "command").choices["tune"]
    assert tune.get_default("seed") == DEFAULT_SEED
    for name in ("02_train_evaluate", "03_sweep_alpha_factors", "04_promote_export",
                 "05_daily_retrain"):  # fmt: skip
        cell = next(
            c
            for c in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
            if "parameters" in c.metadata.get("tags", [])
        )
        seeds = [
            ast.literal_eval(node.value)
            for node in ast.parse(cell.source).body
            if node.targets[0].id == "SEED"
        ]
        assert seeds == [DEFAULT_SEED], name
    # no experiment file sets another model seed for a notebook
    for path in (REPO_ROOT / "experiments").glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        for step in (spec or {}).get("steps", []) if isinstance(spec, dict) else []:
            assert (step.get("parameters") or {}).get("SEED", DEFAULT_SEED) == DEFAULT_SEED


# ---------------------------------------------------------------------- warm start
@pytest.fixture
def previous(tmp_path, events):
    """A cold model file (15 iterations) to start from."""
    code, path = _train(tmp_path, events, _params(tmp_path, "cold.json", **{**ALS, "iterations": 15}),
                        "previous.npz")  # fmt: skip
    assert code == 0
    return path


def test_train_init_starts_from_the_model_file_and_records_it(tmp_path, events, train, previous):
    one = {**ALS, "iterations": 1}
    params = _params(tmp_path, "one.json", **one)
    code, path = _train(tmp_path, events, params, "warm.npz", "--init", str(previous))
    assert code == 0
    warm = load_model(path)
    # the independent run: the Python API with the same file and seed
    reference = ALSModel(**one, random_state=DEFAULT_SEED).fit(train, init=load_model(previous))
    np.testing.assert_allclose(warm.user_factors, reference.user_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(warm.item_factors, reference.item_factors, rtol=1e-5, atol=1e-6)
    record = warm.training["init"]
    assert record["path"] == str(previous)
    assert record["sha256"] == file_digest(previous)
    assert record["model_type"] == "als"
    assert (
        record["warm_start"]
        == reference.warm_start
        == {
            "users": train.n_users,
            "items": train.n_items,
        }
    )
    # one warm iteration is not one cold iteration: it starts from the converged factors
    code, cold_path = _train(tmp_path, events, params, "cold1.npz")
    cold = load_model(cold_path)
    assert "init" not in cold.training
    assert not np.allclose(cold.user_factors, warm.user_factors, atol=1e-3)
    assert reference.loss_history[-1] < ALSModel(**one, random_state=0).fit(train).loss_history[-1]


def test_promote_init_records_the_model_it_started_from(tmp_path, events, data, previous):
    models = tmp_path / "models"
    params = _params(tmp_path, **ALS)
    digest = file_digest(previous)
    argv = ["promote", *_data_args(events), "--params", params, "--models-dir", str(models)]
    assert main([*argv, "--init", str(previous), "--force"]) == 0
    card = read_card(models / "als_baseline.json")
    init = card["init"]
    assert (init["path"], init["sha256"], init["model_type"]) == (str(previous), digest, "als")
    assert init["warm_start"] == {"users": data.n_users, "items": data.n_items}
    assert "gate_warm_start" not in init  # the gate fits cold: init has seen its test cells
    assert card["metrics"] == promote_cold_metrics(tmp_path, events, params)
    served = load_model(models / "als_baseline.npz")
    assert served.training["init"] == init
    reference = ALSModel(**ALS, random_state=DEFAULT_SEED).fit(data, init=load_model(previous))
    np.testing.assert_allclose(served.user_factors, reference.user_factors, rtol=1e-5, atol=1e-6)


def promote_cold_metrics(tmp_path, events, params) -> dict:
    """The gate's figures of the same promotion without --init."""
    models = tmp_path / "models-cold"
    argv = ["promote", *_data_args(events), "--params", params, "--models-dir", str(models)]
    assert main([*argv, "--force"]) == 0
    return read_card(models / "als_baseline.json")["metrics"]


def test_init_errors_name_the_flag_and_the_file(tmp_path, events, train, previous, capsys):
    params = _params(tmp_path, **ALS)
    ease = EASEModel(regularization=30.0).fit(train).save(tmp_path / "ease.npz")
    cases = [
        (["--init", str(tmp_path / "missing.npz")], "missing.npz"),
        (["--init", str(ease)], "ease.npz: a 'ease' model file; a warm start needs an ALS"),
        (["--init", str(previous), "--params", _params(tmp_path, "f.json", factors=3)],
         "factors=6"),
    ]  # fmt: skip
    for more, message in cases:
        for command in (["train", "--out", str(tmp_path / "out.npz")],
                        ["promote", "--models-dir", str(tmp_path / "models")]):  # fmt: skip
            argv = [*command, *_data_args(events), "--params", params, *more]
            assert main(argv) == 1, argv
            err = capsys.readouterr().err
            assert "--init" in err and message in err, err
            assert err.count("\n") == 1
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "models").exists()
    # an EASE candidate cannot start from anything
    ease_params = _params(tmp_path, "e.json", model="ease", regularization=30.0)
    code, _ = _train(tmp_path, events, ease_params, "x.npz", "--init", str(previous))
    assert code == 1
    assert "--init has no effect: a EASEModel" in capsys.readouterr().err
