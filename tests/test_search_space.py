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


# ------------------------------------------------------------------ conditional params
SCALED = {
    **SMALL,
    "params": {
        **SMALL["params"],
        "regularization_scaling": {
            "type": "categorical",
            "choices": ["none", "count", "frequency"],
        },
        "regularization_exponent": {
            "type": "float",
            "low": 0.0,
            "high": 2.0,
            "when": {"regularization_scaling": "frequency"},
        },
    },
    "defaults": {
        **SMALL["defaults"],
        "regularization_scaling": "none",
        "regularization_exponent": 1.0,
    },
}


def _study(space: SearchSpace, n_trials: int, seed: int = 0):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.enqueue_trial(space.trial_zero())
    sampled = []

    def objective(trial):
        model, data = space.sample(trial)
        sampled.append((model, data))
        return 0.0

    study.optimize(objective, n_trials=n_trials)
    return study, sampled


def test_conditional_param_is_sampled_only_when_its_condition_holds():
    space = SearchSpace.from_dict(SCALED, "scaled")
    study, sampled = _study(space, 40)
    modes = [t.params["regularization_scaling"] for t in study.trials]
    assert {"none", "count", "frequency"} <= set(modes)
    for trial, (model, _) in zip(study.trials, sampled, strict=True):
        on = trial.params["regularization_scaling"] == "frequency"
        # Optuna saw the param only in those trials: no dead dimension
        assert ("regularization_exponent" in trial.params) == on
        assert ("regularization_exponent" in trial.distributions) == on
        assert ("regularization_exponent" in model) == on
        if on:
            assert 0.0 <= model["regularization_exponent"] <= 2.0
        assert model["solver"] == "cg"  # the fixed arguments come along
    # trial 0 is the defaults, where the exponent's condition does not hold
    assert study.trials[0].params == {**SMALL["defaults"], "regularization_scaling": "none"}


def test_trial_zero_keeps_a_conditional_default_whose_condition_holds():
    spec = {**SCALED, "defaults": {**SCALED["defaults"], "regularization_scaling": "frequency"}}
    space = SearchSpace.from_dict(spec, "scaled")
    assert space.trial_zero()["regularization_exponent"] == 1.0
    study, _ = _study(space, 1)
    assert study.trials[0].params["regularization_exponent"] == 1.0


def test_condition_with_several_values_and_a_chain():
    spec = {
        **SCALED,
        "params": {
            **SCALED["params"],
            "regularization_exponent": {
                "type": "float",
                "low": 0.0,
                "high": 2.0,
                "when": {"regularization_scaling": ["count", "frequency"]},
            },
        },
    }
    space = SearchSpace.from_dict(spec, "several")
    study, _ = _study(space, 30, seed=1)
    for t in study.trials:
        on = t.params["regularization_scaling"] in ("count", "frequency")
        assert ("regularization_exponent" in t.params) == on
    # round trip through the dict keeps the condition
    again = SearchSpace.from_dict(space.to_dict(), "again")
    assert again.params == space.params
    assert again.to_dict()["params"]["regularization_exponent"]["when"] == {
        "regularization_scaling": ["count", "frequency"]
    }


def _with_condition(when, name="regularization_exponent", order=None):
    params = dict(SCALED["params"])
    params[name] = {**params[name], "when": when}
    if order:
        params = {k: params[k] for k in order}
    return {**SCALED, "params": params}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            _with_condition({"regularization_mode": "frequency"}),
            "params.regularization_exponent.when names 'regularization_mode', which is not a "
            "searched param",
        ),
        (
            _with_condition({"regularization_scaling": "often"}),
            "params.regularization_exponent.when: ['often'] not among "
            "params.regularization_scaling.choices ['none', 'count', 'frequency']",
        ),
        (
            _with_condition({"alpha": 1.0}),
            "params.regularization_exponent.when: 'alpha' is float; a condition needs a "
            "categorical param",
        ),
        (
            _with_condition(
                {"regularization_scaling": "frequency"},
                order=[
                    "alpha",
                    "regularization",
                    "factors",
                    "iterations",
                    "scaling",
                    "regularization_exponent",
                    "regularization_scaling",
                ],
            ),
            "'regularization_scaling' must come before 'regularization_exponent' in params",
        ),
        (
            _with_condition({"regularization_scaling": "frequency"}, name="regularization_scaling"),
            "'regularization_scaling' must come before 'regularization_scaling'",
        ),
        (_with_condition("frequency"), "params.regularization_exponent.when must map"),
        (_with_condition({"regularization_scaling": []}), "an empty list of values never holds"),
    ],
)
def test_bad_condition_is_refused_naming_the_field(spec, message):
    with pytest.raises(ValueError) as err:
        SearchSpace.from_dict(spec, "bad.yaml")
    assert message in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_contradictory_chained_conditions_are_refused():
    spec = _with_condition({"regularization_scaling": "frequency"})
    spec["params"]["scaling"] = {
        "type": "categorical",
        "choices": ["raw", "log"],
        "when": {"factors": 4},
    }
    spec["params"]["regularization_scaling"]["when"] = {"scaling": "log"}
    spec["params"]["regularization_exponent"]["when"] = {
        "regularization_scaling": "frequency",
        "scaling": "raw",
    }
    with pytest.raises(ValueError, match=r"params\.regularization_exponent is never sampled"):
        SearchSpace.from_dict(spec, "bad.yaml")


def test_conditional_range_is_checked_with_its_condition_on():
    # a negative exponent is refused by ALSConfig: the range end is checked with scaling set to
    # frequency, where it would be used
    spec = _with_condition({"regularization_scaling": "frequency"})
    spec["params"]["regularization_exponent"] = {
        **spec["params"]["regularization_exponent"],
        "low": -1.0,
    }
    with pytest.raises(
        ValueError, match=r"params\.regularization_exponent: regularization_exponent"
    ):
        SearchSpace.from_dict(spec, "bad.yaml")


# ------------------------------------------------------------------ data params
def test_half_life_is_a_data_param_not_a_model_argument():
    spec = {
        **SMALL,
        "params": {
            **SMALL["params"],
            "half_life": {"type": "categorical", "choices": [None, "7D", "30D"]},
        },
        "defaults": {**SMALL["defaults"], "half_life": None},
    }
    space = SearchSpace.from_dict(spec, "decay")
    assert space.data_params == ("half_life",)
    assert "half_life" not in space.defaults and space.data_defaults == {"half_life": None}
    assert space.trial_zero()["half_life"] is None
    assert space.to_dict()["defaults"] == spec["defaults"]
    study, sampled = _study(space, 10)
    for trial, (model, data) in zip(study.trials, sampled, strict=True):
        assert "half_life" not in model and data == {"half_life": trial.params["half_life"]}
    smaller = space.without("half_life")
    assert smaller.data_params == () and "half_life" not in smaller.to_dict()["defaults"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "float", "low": 1, "high": 30}, "half_life must be categorical"),
        ({"type": "categorical", "choices": ["7D", "soon"]}, "half_life must be a duration > 0"),
        (
            {"type": "categorical", "choices": ["30D", "30 days"]},
            "'30D' and '30 days' are the same duration",
        ),
    ],
)
def test_bad_half_life_param_is_refused(entry, message):
    spec = {
        **SMALL,
        "params": {**SMALL["params"], "half_life": entry},
        "defaults": {**SMALL["defaults"], "half_life": "7D"},
    }
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_dict(spec, "bad.yaml")


def test_half_life_cannot_be_fixed_in_the_space():
    with pytest.raises(ValueError, match=r"fixed: \['half_life'\] weigh the data"):
        SearchSpace.from_dict({**SMALL, "fixed": {"half_life": "7D"}}, "bad.yaml")


def test_without_refuses_a_param_others_depend_on():
    space = SearchSpace.from_dict(SCALED, "scaled")
    with pytest.raises(ValueError, match=r"\['regularization_exponent'\] are sampled only on"):
        space.without("regularization_scaling")


def test_the_repository_search_space_loads_with_its_conditional_and_data_params():
    from tests.layout import REPO_ROOT

    space = SearchSpace.load(REPO_ROOT / "experiments" / "search_space.yaml")
    p = {x.name: x for x in space.params}
    assert p["regularization_scaling"].choices == ("none", "count", "frequency")
    assert p["regularization_exponent"].when == (("regularization_scaling", ("frequency",)),)
    assert None in p["half_life"].choices and space.data_params == ("half_life",)
    zero = space.trial_zero()
    assert zero["regularization_scaling"] == "none" and "regularization_exponent" not in zero
    assert zero["half_life"] is None
    assert space.defaults["regularization_exponent"] == 1.0
    assert space.sampler.get("group") is True  # TPE models the conditional groups
    # the defaults are ALSModel's own
    signature = inspect.signature(ALSModel).parameters
    for name, value in space.defaults.items():
        assert signature[name].default == value, name


# ------------------------------------------------------------------ the model a space sweeps
EASE = {
    "model": "ease",
    "params": {"regularization": {"type": "float", "low": 1.0, "high": 10000.0, "log": True}},
    "defaults": {"regularization": 200.0},
}


def test_a_space_that_names_no_model_sweeps_als():
    assert SearchSpace.from_dict(SMALL, "small").model == "als"
    shipped = SearchSpace.load()
    assert shipped.model == "als" and shipped.iterative


def test_the_shipped_ease_space_searches_regularization_alone():
    from alsresearch import paths
    from alsresearch.baselines import EASEModel
    from tests.layout import REPO_ROOT

    edited = REPO_ROOT / "experiments" / "search_space_ease.yaml"
    space = SearchSpace.load(edited)
    assert space.model == "ease" and not space.iterative
    assert [(p.name, p.kind, p.low, p.high, p.log) for p in space.params] == [
        ("regularization", "float", 1.0, 10000.0, True)
    ]
    # trial 0 is EASEModel's own default (read from its signature, not from the file)
    default = inspect.signature(EASEModel).parameters["regularization"].default
    assert space.trial_zero() == {"regularization": default}
    assert space.fixed == {} and space.pruner == {} and space.data_params == ()
    # validated the same way as the ALS sweep, so the two sweeps' scores compare
    assert space.validation == SearchSpace.load().validation
    # the package ships the same file, so an installed package has it
    assert paths.resource("search_space_ease.yaml").read_text() == edited.read_text()


def test_the_model_round_trips_through_the_space_dict(tmp_path):
    space = SearchSpace.from_dict(EASE, "ease")
    assert space.to_dict()["model"] == "ease"
    again = SearchSpace.load(write_space(tmp_path / "ease.yaml", space.to_dict()))
    assert again.model == "ease" and again.to_dict() == space.to_dict()


def test_an_unknown_model_is_refused_naming_the_registered_types():
    from alsresearch.base import MODEL_TYPES

    for bad in ("xgboost", ["ease"], None):
        with pytest.raises(ValueError) as err:
            SearchSpace.from_dict({**EASE, "model": bad}, "bad.yaml")
        message = str(err.value)
        assert message.startswith("bad.yaml: model must be one of") and repr(bad) in message
        assert all(repr(name) in message for name in MODEL_TYPES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (  # an ALS argument in an EASE space
            {
                "params": {
                    **EASE["params"],
                    "factors": {"type": "categorical", "choices": [8, 16]},
                },
                "defaults": {**EASE["defaults"], "factors": 8},
            },
            "bad.yaml: params.factors: 'factors' is not an argument of EASEModel (model: ease); "
            "its arguments are ['regularization']",
        ),
        (
            {"fixed": {"solver": "cg"}},
            "bad.yaml: fixed.solver: 'solver' is not an argument of EASEModel",
        ),
        (  # EASE has no iterations: nothing to prune
            {"pruner": {"n_startup_trials": 5}},
            "bad.yaml: pruner: model 'ease' is fitted in one step",
        ),
        (  # the range is checked by EASEModel itself
            {
                "params": {"regularization": {"type": "float", "low": 0.0, "high": 10.0}},
                "defaults": {"regularization": 5.0},
            },
            "bad.yaml: params.regularization: regularization must be",
        ),
    ],
)
def test_an_ease_space_is_checked_against_ease_when_read(change, message):
    with pytest.raises(ValueError) as err:
        SearchSpace.from_dict({**EASE, **change}, "bad.yaml")
    assert message in str(err.value)


@pytest.mark.parametrize("name", ["random_state", "num_threads"])
def test_the_arguments_the_sweep_sets_are_refused_in_the_space(name):
    with pytest.raises(ValueError, match=rf"bad\.yaml: fixed\.{name}: {name} is set by the sweep"):
        SearchSpace.from_dict({**SMALL, "fixed": {name: 1}}, "bad.yaml")
