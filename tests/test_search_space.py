"""The search space file: the shipped default, and errors that name the file and the field."""

from __future__ import annotations

import inspect

import pytest

from alsresearch.als import ALSModel
from alsresearch.tuning import SearchSpace
from tests.tuning_helpers import SMALL, write_space


def test_shipped_space_is_wide_and_trial_0_is_the_seed_defaults():
    space = SearchSpace.load()
    p = {x.name: x for x in space.params}
    assert p["alpha"].log and p["alpha"].low <= 0.1 and p["alpha"].high >= 1000
    assert p["regularization"].log and p["regularization"].low <= 1e-3
    assert p["regularization"].high >= 1e3
    assert set(p["factors"].choices) == {8, 16, 32, 64, 128, 256}
    assert set(p["scaling"].choices) == {"raw", "log"}
    assert p["iterations"].kind == "int"
    # the defaults are ALSModel's own (read from its signature, not from the file)
    signature = inspect.signature(ALSModel).parameters
    for name, value in space.defaults.items():
        assert signature[name].default == value, name
    assert space.metric == "ndcg@10"


def test_space_round_trips_through_its_dict(tmp_path):
    space = SearchSpace.from_dict(SMALL, "small")
    again = SearchSpace.load(write_space(tmp_path / "space.yaml", space.to_dict()))
    assert again.to_dict() == space.to_dict()
    assert again.params == space.params and again.source == str(tmp_path / "space.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"params": {"alpha": {"type": "float", "low": 0, "high": 10, "log": True}}},
            "log-scaled range needs low > 0",
        ),
        (
            {"params": {"alpha": {"type": "float", "low": 5, "high": 1}}},
            "low (5.0) must be below high (1.0)",
        ),
        (
            {"params": {"alpha": {"type": "float", "low": "1", "high": 2}}},
            "params.alpha.low must be a finite number, got '1'",
        ),
        (
            {"params": {"iterations": {"type": "int", "low": 2, "high": 6.5}}},
            "params.iterations.high must be an integer, got 6.5",
        ),
        (
            {"params": {"alpha": {"type": "float", "low": 1, "high": 2, "log": "yes"}}},
            "params.alpha.log must be true or false",
        ),
        ({"params": {"alpha": {"type": "gaussian"}}}, "params.alpha.type must be one of"),
        (
            {"params": {"alpha": {"type": "float", "low": 1, "high": 2, "step": 1}}},
            "unknown key(s) ['step']",
        ),
        (
            {"params": {"factors": {"type": "categorical", "choices": []}}},
            "params.factors.choices must be a non-empty list",
        ),
        ({"defaults": {"alpha": 40.0}}, "'defaults' must give exactly the searched params"),
        (
            {"defaults": {**SMALL["defaults"], "factors": 64}},
            "defaults.factors = 64 is outside params.factors",
        ),
        ({"fixed": {"alpha": 1.0}}, "['alpha'] are both searched and fixed"),
        (
            {"validation": {"fraction": 1.5}},
            "validation.fraction must be a finite number in (0, 1)",
        ),
        (
            {"validation": {"every": True}},
            "validation.every must be an integer in [1, 10000], got True",
        ),
        ({"validation": {"folds": 3}}, "unknown validation key(s) ['folds']"),
        ({"searcher": {}}, "unknown section(s) ['searcher']"),
    ],
)
def test_bad_space_is_refused_naming_the_field(change, message):
    spec = {**SMALL, **change}
    if "params" in change and "defaults" not in change:
        spec["params"] = {**SMALL["params"], **change["params"]}
    with pytest.raises(ValueError) as err:
        SearchSpace.from_dict(spec, "bad.yaml")
    assert message in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_missing_space_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"search space file not found: .*nowhere\.yaml"):
        SearchSpace.load(tmp_path / "nowhere.yaml")


def test_bad_yaml_is_named(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("params: {alpha: [1, 2\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML"):
        SearchSpace.load(path)
