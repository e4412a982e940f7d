"""Optuna sweeps: the validation protocol (never a test cell, whatever the split kind), trial 0,
pruning, resuming (and refusing to resume with other data, split or source), several workers on
one study, determinism, best.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

from alsresearch import paths  # noqa: E402
from alsresearch.als import ALSModel  # noqa: E402
from alsresearch.baselines import EASEModel, PopularityModel  # noqa: E402
from alsresearch.datasets import synthetic, synthetic_events  # noqa: E402
from alsresearch.errors import SpecMismatchError  # noqa: E402
from alsresearch.evaluate import evaluate  # noqa: E402
from alsresearch.source import DataSource  # noqa: E402
from alsresearch.split import SplitSpec, random_holdout, temporal_holdout  # noqa: E402
from alsresearch.tuning import (  # noqa: E402
    SearchSpace,
    TuneFailedError,
    load_study,
    tune,
    validation_data,
)
from alsresearch.tuning.study import _check_resume, _Objective, _study_record  # noqa: E402
from tests.tuning_helpers import SMALL, finished, open_study  # noqa: E402


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def data():
    return synthetic(300, 120, 6000, seed=3)


@pytest.fixture
def space():
    return SearchSpace.from_dict(SMALL, "small")


@pytest.fixture
def ease():
    """The shipped EASE space, validated on as many users as SMALL's."""
    spec = SearchSpace.load(paths.resource("search_space_ease.yaml")).to_dict()
    return SearchSpace.from_dict({**spec, "validation": SMALL["validation"]}, "ease")


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    """Typed, timestamped events on disk (user_id, item_id, event, timestamp)."""
    path = tmp_path_factory.mktemp("events") / "events.csv"
    synthetic_events(150, 60, 2000, seed=4).to_csv(path, index=False)
    return path


def typed_source(path, **changes) -> DataSource:
    return DataSource(path=path, event_col="event", timestamp_col="timestamp", **changes)


# ------------------------------------------------------------------ validation protocol
def test_validation_never_contains_test_cells(data, space):
    vd = validation_data(data, space, seed=5, split=SplitSpec(test_fraction=0.2, seed=42))
    train, test = random_holdout(data, 0.2, seed=42)
    # fit + validation is exactly the training part: no test cell is ever looked at
    assert vd.fit.matrix.multiply(test.matrix).nnz == 0
    assert vd.valid.matrix.multiply(test.matrix).nnz == 0
    assert vd.fit.matrix.multiply(vd.valid.matrix).nnz == 0
    assert vd.fit.nnz + vd.valid.nnz <= train.nnz
    assert (vd.valid.matrix - train.matrix.multiply(vd.valid.matrix > 0)).nnz == 0
    # the validation users are capped at max_users
    assert np.count_nonzero(np.diff(vd.valid.matrix.indptr)) == SMALL["validation"]["max_users"]


def test_no_test_split_tunes_on_all_data(data, space):
    uncapped = SearchSpace.from_dict(
        {**SMALL, "validation": {**SMALL["validation"], "max_users": 10_000}}, "uncapped"
    )
    vd = validation_data(data, uncapped, seed=5, split=SplitSpec(test_fraction=0))
    assert (vd.fit.matrix + vd.valid.matrix - data.matrix).nnz == 0


def test_temporal_split_keeps_every_test_cell_out_of_fit_and_validation(events_file, tmp_path):
    data = typed_source(events_file).load()
    uncapped = SearchSpace.from_dict(
        {**SMALL, "validation": {**SMALL["validation"], "max_users": 10_000}}, "uncapped"
    )
    split = SplitSpec(kind="temporal", test_fraction=0.25)
    train, test = temporal_holdout(data, test_fraction=0.25)
    vd = validation_data(data, uncapped, seed=3, split=split)
    # fit and validation are disjoint and together exactly the temporal training part
    assert vd.fit.matrix.multiply(vd.valid.matrix).nnz == 0
    assert (vd.fit.matrix + vd.valid.matrix - train.matrix).nnz == 0
    assert vd.fit.matrix.multiply(test.matrix).nnz == 0
    assert vd.valid.matrix.multiply(test.matrix).nnz == 0
    # a random split of the same share would have put some of these test cells in the fit
    # part, so the checks above tell the kinds apart
    other = validation_data(data, uncapped, seed=3, split=SplitSpec(test_fraction=0.25))
    assert other.fit.matrix.multiply(test.matrix).nnz > 0

    # tune fits its trials on that same fit part
    result = tune(
        data, split=split, n_trials=2, seed=3, space=uncapped, out_dir=tmp_path, quiet=True
    )
    best = json.loads(result.best_json.read_text())
    assert best["data"]["fit_fingerprint"] == vd.fit.fingerprint()
    assert best["split"] == {
        **split.to_dict(),  # whatever fields a split spec records
        "validation_fraction": 0.2,
        "validation_seed": 3,
    }
    assert best["split"]["kind"] == "temporal" and best["split"]["test_fraction"] == 0.25
    pop = evaluate(PopularityModel().fit(vd.fit), vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert best["validation"]["popularity_ndcg@10"] == pytest.approx(pop)


def test_pruned_trial_stops_fitting_at_the_report(data, space):
    """The fit callback reports the validation metric and stops the fit when told to prune."""
    vd = validation_data(data, space, seed=0)
    reports = []

    class Trial:  # stands in for optuna.Trial: prunes after the second report
        number = 0
        study = type("S", (), {"get_trials": staticmethod(lambda deepcopy=False: [])})()

        def suggest_float(self, name, low, high, log=False):
            return 1.0

        def suggest_int(self, name, low, high, log=False):
            return 6

        def suggest_categorical(self, name, choices):
            return choices[-1]

        def report(self, value, step):
            reports.append((step, value))

        def should_prune(self):
            return len(reports) == 2

        def set_user_attr(self, key, value):
            pass

    with pytest.raises(optuna.TrialPruned):
        _Objective(space, vd, seed=0, n_trials=5)(Trial())
    assert [s for s, _ in reports] == [1, 2]  # iterations 3..6 never ran
    # the reported value is the validation NDCG of the model after that iteration
    model = ALSModel(
        factors=8, iterations=2, alpha=1.0, regularization=1.0, scaling="log", random_state=0
    )
    model.fit(vd.fit)
    expected = evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert reports[-1][1] == pytest.approx(expected, rel=1e-6)


class FixedTrial:
    """Stands in for optuna.Trial: the given values, every report recorded, never pruned."""

    number = 0
    study = type("S", (), {"get_trials": staticmethod(lambda deepcopy=False: [])})()

    def __init__(self, **values):
        self.values, self.reports, self.attrs = values, [], {}

    def suggest_float(self, name, *range_or_choices, log=False):
        return self.values[name]

    suggest_int = suggest_categorical = suggest_float

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return False

    def set_user_attr(self, key, value):
        self.attrs[key] = value


def test_the_last_iteration_is_scored_when_it_falls_between_two_reports(data):
    """iterations = 5 with a score every 3: reports after iterations 3 and 5, the trial's value
    being the model's after its last iteration."""
    spec = {**SMALL, "validation": {**SMALL["validation"], "every": 3}}
    space = SearchSpace.from_dict(spec, "every3")
    vd = validation_data(data, space, seed=0)
    values = {"alpha": 1.0, "regularization": 1.0, "factors": 8, "iterations": 5}
    trial = FixedTrial(**values, scaling="log")
    value = _Objective(space, vd, seed=0, n_trials=5)(trial)
    assert [step for step, _ in trial.reports] == [3, 5]
    model = ALSModel(**values, scaling="log", random_state=0).fit(vd.fit)
    expected = evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert value == trial.reports[-1][1] == pytest.approx(expected, rel=1e-6)


def test_an_ease_trial_is_one_fit_scored_once(data, ease):
    """No per-iteration report (EASE has no iterations), no seed or threads passed: the value
    is the validation NDCG of EASE fitted on the fit part."""
    vd = validation_data(data, ease, seed=0)
    trial = FixedTrial(regularization=35.0)
    value = _Objective(ease, vd, seed=0, n_trials=5, num_threads=2)(trial)
    assert trial.reports == [] and trial.attrs["seconds"] >= 0
    model = EASEModel(regularization=35.0).fit(vd.fit)
    assert value == pytest.approx(
        evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"], rel=1e-6
    )


# ------------------------------------------------------------------ studies
def test_sweep_records_defaults_popularity_and_best(data, space, tmp_path):
    out = tmp_path / "out"
    result = tune(data, n_trials=6, seed=1, out_dir=out, space=space, quiet=True)
    url = f"sqlite:///{paths.experiments_dir() / (result.study_name + '.db')}"
    assert result.storage == url  # default storage: experiments/<study>.db under the home
    study = open_study(url, result.study_name)
    trials = finished(study)
    assert len(trials) == 6
    first = study.trials[0]
    assert first.params == SMALL["defaults"] and first.user_attrs["role"] == "defaults"

    best = json.loads((out / "best.json").read_text())
    csv = pd.read_csv(out / "trials.csv")
    complete = csv[csv["state"] == "COMPLETE"]
    assert best["validation"]["ndcg@10"] == pytest.approx(complete["value"].max())
    # ALSModel arguments, the seed of the initial factors included (as in every trial)
    assert best["params"] == {"solver": "cg", **study.best_trial.params, "random_state": 1}
    assert best["study"] == result.study_name and best["seed"] == 1
    assert best["data"]["fingerprint"] == data.fingerprint()
    assert best["data"]["source"] is None  # Interactions built by the caller
    assert best["environment"]["git"].keys() == {"commit", "dirty"}
    # popularity on the same validation split, computed here independently
    vd = validation_data(data, space, seed=1)
    pop = evaluate(PopularityModel().fit(vd.fit), vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert best["validation"]["popularity_ndcg@10"] == pytest.approx(pop)
    assert best["validation"]["defaults_ndcg@10"] == pytest.approx(first.value)
    assert best["validation"]["beats_popularity"] == (best["validation"]["ndcg@10"] > pop)
    # a trial's value is the validation NDCG of ALS fitted on the fit part with its params
    t = study.trials[0]
    model = ALSModel(**best["params"] | t.params).fit(vd.fit)
    assert t.value == pytest.approx(
        evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"], rel=1e-6
    )


def test_best_json_records_the_data_source_and_split(events_file, space, tmp_path):
    source = typed_source(events_file, event_weights="view=1,click=2,purchase=5")
    data = source.load()
    split = SplitSpec(kind="leave_last", seed=7)
    result = tune(
        data, split=split, source=source, n_trials=2, out_dir=tmp_path, space=space, quiet=True
    )
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["data"] == {
        "source": {
            "path": str(events_file.resolve()),
            "format": "events",
            "user_col": "user_id",
            "item_col": "item_id",
            "weight_col": None,
            "event_col": "event",
            "event_weights": {"view": 1.0, "click": 2.0, "purchase": 5.0},
            "timestamp_col": "timestamp",
            "errors": "raise",
        },
        "fingerprint": data.fingerprint(),
        "n_users": 150,
        "n_items": data.n_items,
        "nnz": data.nnz,
        "fit_fingerprint": validation_data(data, space, seed=0, split=split).fit.fingerprint(),
    }
    assert best["split"] == {**split.to_dict(), "validation_fraction": 0.2, "validation_seed": 0}
    assert best["split"]["kind"] == "leave_last" and best["split"]["seed"] == 7
    assert best["split"]["test_fraction"] == SplitSpec().test_fraction
    # the study holds the same records, for resuming
    attrs = open_study(result.storage, result.study_name).user_attrs
    assert attrs["data"] == best["data"] and attrs["split"] == best["split"]


def test_resume_adds_trials_and_enqueues_the_defaults_once(data, space):
    first = tune(data, n_trials=4, seed=2, space=space, quiet=True)
    url = first.storage
    before = {t.number: (t.params, t.value) for t in finished(open_study(url, first.study_name))}
    tune(data, n_trials=7, seed=2, space=space, quiet=True)
    study = open_study(url, first.study_name)
    trials = finished(study)
    assert len(trials) == 7
    assert sum(t.user_attrs.get("role") == "defaults" for t in study.trials) == 1
    for t in trials:  # nothing finished before was changed
        if t.number in before:
            assert (t.params, t.value) == before[t.number]
    # asking for fewer than are done changes nothing
    tune(data, n_trials=5, seed=2, space=space, quiet=True)
    assert len(finished(open_study(url, first.study_name))) == 7


def test_resume_refuses_other_data(data, space):
    tune(data, n_trials=2, seed=0, space=space, study_name="shared", quiet=True)
    other = synthetic(200, 100, 3000, seed=9)
    with pytest.raises(SpecMismatchError, match="was created with data"):
        tune(other, n_trials=2, seed=0, space=space, study_name="shared", quiet=True)
    with pytest.raises(SpecMismatchError, match="was created with seed 0, not 1"):
        tune(data, n_trials=2, seed=1, space=space, study_name="shared", quiet=True)


def test_resume_refuses_another_split_or_source_naming_the_field(events_file, space):
    source = typed_source(events_file)
    data = source.load()
    temporal = SplitSpec(kind="temporal")
    result = tune(
        data, split=temporal, source=source, n_trials=2, study_name="s", space=space, quiet=True
    )

    def resume(split=temporal, source=source):
        tune(data, split=split, source=source, n_trials=3, study_name="s", space=space, quiet=True)

    with pytest.raises(SpecMismatchError, match=r"split: kind 'temporal' there, 'random' here"):
        resume(split=SplitSpec())
    with pytest.raises(SpecMismatchError, match=r"test_fraction 0.2 there, 0.3 here"):
        resume(split=SplitSpec(kind="temporal", test_fraction=0.3))
    # every type weighted 1 reads the same counts (the fingerprints agree), but it is another
    # spec: the source check names the field
    same_counts = typed_source(events_file, event_weights="view=1,click=1,purchase=1")
    assert same_counts.load().fingerprint() == data.fingerprint()
    with pytest.raises(SpecMismatchError, match=r"event_weights None there, \{'view': 1.0"):
        resume(source=same_counts)
    # nothing was run by the refused calls; the right spec resumes
    assert len(finished(open_study(result.storage, "s"))) == 2
    resume()
    assert len(finished(open_study(result.storage, "s"))) == 3


def test_study_from_before_split_kinds_resumes_as_a_random_split(data, space):
    """Studies made before SplitSpec recorded ``test_fraction`` and ``split_seed`` only."""
    result = tune(data, n_trials=2, seed=0, space=space, study_name="old", quiet=True)
    study = open_study(result.storage, "old")
    default = SplitSpec()
    study.set_user_attr(
        "split",
        {
            "test_fraction": default.test_fraction,
            "split_seed": default.seed,
            "validation_fraction": 0.2,
            "validation_seed": 0,
        },
    )
    with pytest.raises(SpecMismatchError, match=f"seed {default.seed} there, 7 here"):
        tune(data, split=SplitSpec(seed=7), n_trials=3, study_name="old", space=space, quiet=True)
    tune(data, n_trials=3, seed=0, space=space, study_name="old", quiet=True)
    assert len(finished(open_study(result.storage, "old"))) == 3


def test_same_seed_same_sweep(data, space, tmp_path):
    """Deterministic: one worker, one seed -> the same trials, parameters and values."""
    runs = []
    for i in range(2):
        r = tune(data, n_trials=6, seed=4, space=space, storage=tmp_path / f"s{i}.db", quiet=True)
        runs.append(
            [(t.state.name, t.params, t.value) for t in open_study(r.storage, r.study_name).trials]
        )
    assert runs[0] == runs[1]  # exact: same seed, same data, same arithmetic


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("n_trials", 0, "n_trials must be an integer in [1, 10000], got 0"),
        ("workers", 1.5, "workers must be an integer in [1, 256], got 1.5"),
        ("heartbeat", True, "heartbeat (seconds) must be an integer in [1, 3600], got True"),
        ("seed", -1, "seed must be an integer >= 0, got -1"),
        ("max_failures", -1, "max_failures must be an integer >= 0, got -1"),
        ("n_trials", 10_001, "n_trials must be an integer in [1, 10000], got 10001"),
        ("workers", 257, "workers must be an integer in [1, 256], got 257"),
    ],
)
def test_bad_arguments_are_refused_naming_them(data, space, argument, value, message):
    with pytest.raises(ValueError) as err:
        tune(data, space=space, quiet=True, **{argument: value})
    assert message in str(err.value)
    assert not paths.experiments_dir().exists()  # refused before any study was made


@pytest.mark.slow
def test_two_workers_reach_the_exact_count(data, space, tmp_path):
    result = tune(
        data, n_trials=8, seed=0, space=space, storage=tmp_path / "two.db", workers=2, quiet=True
    )
    study = open_study(result.storage, result.study_name)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len(finished(study)) == 8
    # both workers took part (their pids are not recorded; their sampler streams differ, so
    # the only check is the count) and nothing failed apart from surplus starts
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state.name == "FAIL")


def test_failing_trials_stop_the_sweep_with_the_reason(data, space, monkeypatch):
    def broken_fit(self, *args, **kwargs):
        raise FloatingPointError("the per-row systems are not positive definite")

    monkeypatch.setattr(ALSModel, "fit", broken_fit)
    with pytest.raises(
        TuneFailedError,
        match=r"3 failed trials \(more than 2\) and 0 finished.*not positive definite",
    ):
        tune(data, n_trials=4, seed=0, space=space, max_failures=2, quiet=True)


def test_a_space_that_breaks_a_limit_is_refused_when_read():
    with pytest.raises(ValueError, match=r"broken: defaults and fixed: cg_steps must be"):
        SearchSpace.from_dict({**SMALL, "fixed": {"cg_steps": 0}}, "broken")
    too_long = {**SMALL["params"], "iterations": {"type": "int", "low": 5, "high": 10**9}}
    spec = {**SMALL, "params": too_long, "defaults": {**SMALL["defaults"], "iterations": 5}}
    with pytest.raises(
        ValueError,
        match=r"params\.iterations: iterations must be an integer in \[1, 10000\], "
        r"got 1000000000",
    ):
        SearchSpace.from_dict(spec, "long")


# ------------------------------------------------------------------ EASE sweeps
def test_ease_sweep_scores_every_trial_by_ease_on_validation(data, ease, tmp_path):
    result = tune(data, n_trials=4, seed=1, out_dir=tmp_path, space=ease, quiet=True)
    assert result.study_name.startswith("ease-") and result.model == "ease"
    study = open_study(result.storage, result.study_name)
    trials = finished(study)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4  # nothing pruned, nothing failed
    assert study.trials[0].params == {"regularization": 200.0}  # trial 0: the defaults
    vd = validation_data(data, ease, seed=1)
    for t in trials:  # each value recomputed here: EASE with the trial's lambda, on the fit part
        model = EASEModel(**t.params).fit(vd.fit)
        expected = evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
        assert t.value == pytest.approx(expected, rel=1e-6)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["model"] == "ease" and best["search_space"]["model"] == "ease"
    assert best["params"].keys() == {"regularization"}  # EASE takes no seed
    assert 1.0 <= best["params"]["regularization"] <= 10_000.0
    assert best["validation"]["ndcg@10"] == pytest.approx(max(t.value for t in trials))
    pop = evaluate(PopularityModel().fit(vd.fit), vd.fit, vd.valid, k=10).metrics["ndcg@10"]
    assert best["validation"]["popularity_ndcg@10"] == pytest.approx(pop)


def test_ease_sweep_under_the_fold_in_protocol(data, ease, tmp_path):
    split = SplitSpec(protocol="fold_in", holdout_users=40)
    result = tune(data, split=split, n_trials=2, seed=0, out_dir=tmp_path, space=ease, quiet=True)
    vd = validation_data(data, ease, seed=0, split=split)
    assert vd.fold_in is not None
    model = EASEModel(**result.best_params).fit(vd.fit)  # held-out users ranked by fold-in
    metrics = evaluate(model, vd.fit, vd.valid, k=10, protocol="fold_in", fold_in=vd.fold_in)
    assert result.best_value == pytest.approx(metrics.metrics["ndcg@10"], rel=1e-6)


def test_ease_sweep_of_half_life_weighs_the_data_it_fits(events_file, ease):
    """The decayed counts reach any model; EASE binarises them, so every half-life scores as
    the undecayed fit part does."""
    spec = ease.to_dict()
    spec["params"]["half_life"] = {"type": "categorical", "choices": [None, "7D", "365D"]}
    spec["defaults"]["half_life"] = "7D"
    space = SearchSpace.from_dict(spec, "ease-decay")
    data = typed_source(events_file).load()
    result = tune(data, n_trials=3, seed=0, space=space, quiet=True)
    vd = validation_data(data, space, seed=0)
    for t in finished(open_study(result.storage, result.study_name)):
        fit = vd.fit.decayed(t.params["half_life"], as_of=vd.fit.as_of)
        assert t.params["half_life"] is None or fit.matrix.data.max() < vd.fit.matrix.data.max()
        model = EASEModel(regularization=t.params["regularization"]).fit(vd.fit)
        expected = evaluate(model, vd.fit, vd.valid, k=10).metrics["ndcg@10"]
        assert t.value == pytest.approx(expected, rel=1e-6)


def test_an_als_study_is_never_resumed_with_an_ease_space(data, space, ease):
    tune(data, n_trials=2, seed=0, space=space, study_name="shared", quiet=True)
    with pytest.raises(SpecMismatchError, match="was created with model 'als', not 'ease'"):
        tune(data, n_trials=3, seed=0, space=ease, study_name="shared", quiet=True)
    # by default the two sweeps of the same data and seed are two studies
    als = tune(data, n_trials=2, seed=0, space=space, quiet=True)
    both = tune(data, n_trials=2, seed=0, space=ease, quiet=True)
    assert als.study_name.startswith("als-")
    assert both.study_name == "ease-" + als.study_name.removeprefix("als-")


def test_a_study_recorded_before_model_types_resumes_as_als(data, space, ease):
    vd = validation_data(data, space, seed=0)
    record = _study_record(data, vd, None, SplitSpec(), space, 0, "sqlite://")
    old = {k: v for k, v in record.items() if k != "model"}
    old["search_space"] = {k: v for k, v in record["search_space"].items() if k != "model"}
    _check_resume(old, record, None, SplitSpec(), "old")  # the same ALS sweep: resumed
    eased = _study_record(data, validation_data(data, ease, seed=0), None, SplitSpec(), ease, 0, "")
    with pytest.raises(SpecMismatchError, match="old was created with model 'als', not 'ease'"):
        _check_resume(old, eased, None, SplitSpec(), "old")


# ------------------------------------------------------------------ storage URLs
@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://al:pw@db:5432/s", "postgresql+psycopg://al:***@db:5432/s"),
        ("postgresql://al:p%40ss:w@[::1]/s", "postgresql://al:***@[::1]/s"),
        ("postgresql+psycopg://al@db/s", "postgresql+psycopg://al@db/s"),  # nothing to mask
        ("mysql://u:x@h/d?password=y&a=1", "mysql://u:***@h/d?password=***&a=1"),
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),  # a file path, no password
        ("journal:/srv/sweeps/s.log", "journal:/srv/sweeps/s.log"),
        ("error at postgresql://u:pw@h/d: refused", "error at postgresql://u:***@h/d: refused"),
    ],
)
def test_mask_url_hides_passwords(url, masked):
    from alsresearch.tuning import mask_url

    assert mask_url(url) == masked


def test_storage_url_reads_the_environment_and_journal_paths(monkeypatch, tmp_path, home):
    from alsresearch.tuning import storage_url

    monkeypatch.delenv("ALSRESEARCH_STORAGE", raising=False)
    assert storage_url(None, "s") == f"sqlite:///{(home / 'experiments' / 's.db').resolve()}"
    monkeypatch.setenv("ALSRESEARCH_STORAGE", "postgresql+psycopg://u:pw@h/d")
    assert storage_url(None, "s") == "postgresql+psycopg://u:pw@h/d"
    assert storage_url(tmp_path / "x.db", "s") == f"sqlite:///{(tmp_path / 'x.db').resolve()}"
    monkeypatch.chdir(tmp_path)
    assert storage_url("journal:sub/j.log", "s") == f"journal:{tmp_path.resolve()}/sub/j.log"
    assert (tmp_path / "sub").is_dir()


def test_a_journal_sweep_records_and_resumes(data, space, tmp_path):
    """journal:PATH: the same sweep as on SQLite, resumed from the log file."""
    journal = f"journal:{tmp_path / 'sweep.log'}"
    first = tune(data, n_trials=3, seed=2, space=space, storage=journal, quiet=True)
    assert first.storage == journal
    tune(data, n_trials=5, seed=2, space=space, storage=journal, quiet=True)
    study = load_study(journal, first.study_name)
    assert len(finished(study)) == 5
    assert sum(t.user_attrs.get("role") == "defaults" for t in study.trials) == 1
    sqlite = tune(data, n_trials=3, seed=2, space=space, storage=tmp_path / "s.db", quiet=True)
    on_sqlite = load_study(sqlite.storage, sqlite.study_name).trials
    assert [t.params for t in on_sqlite] == [t.params for t in study.trials[:3]]


def test_an_unreachable_database_stops_with_one_line_naming_it(data, space):
    pytest.importorskip("psycopg")
    import socket

    from alsresearch.tuning import StorageUnavailableError

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://al:topsecret@127.0.0.1:{port}/sweeps"
    with pytest.raises(StorageUnavailableError) as err:
        tune(data, n_trials=2, space=space, storage=url, storage_retry=1, quiet=True)
    message = str(err.value)
    assert message.startswith(
        f"storage postgresql+psycopg://al:***@127.0.0.1:{port}/sweeps unreachable for 1 s: "
        "OperationalError: "
    )
    assert "topsecret" not in message and "\n" not in message


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_that_never_beat_is_failed_and_run_again(data, space, tmp_path, kind):
    """A worker killed between creating its trial and its first heartbeat leaves a RUNNING
    trial with no beat at all: a live worker fails it once it has seen it beat-less for a
    grace period (by its own clock) and the sweep still reaches its count."""
    storage = tmp_path / "s.db" if kind == "sqlite" else f"journal:{tmp_path / 's.log'}"
    first = tune(data, n_trials=2, seed=0, space=space, storage=storage, heartbeat=1, quiet=True)
    orphan = load_study(storage, first.study_name).ask()  # never beats: its worker is "dead"
    tune(data, n_trials=4, seed=0, space=space, storage=storage, heartbeat=1, quiet=True)
    study = load_study(storage, first.study_name)
    assert study.trials[orphan.number].state.name == "FAIL"
    assert len(finished(study)) == 4
    assert [t.system_attrs.get("failed_trial") for t in study.trials].count(orphan.number) == 1
