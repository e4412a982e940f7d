"""The promotion gate: decide whether a model with a set of parameters becomes the served model.

:func:`promote` takes a model type and its parameters (from tuning: best.json names the model,
``"model": "ease"`` say; parameters that name none are ALS's) and the full data set:

1. split the data with the test split ``split`` (a :class:`~alsresearch.split.SplitSpec`:
   random, temporal or leave-last; by default a seeded random 20% of each user's cells; with
   ``protocol="fold_in"``, whole users held out and ranked from a fold-in history);
2. fit the model with the parameters on the train part and evaluate it on the test part
   (:func:`~alsresearch.evaluate.evaluate`, NDCG@k with k = 10 by default);
3. fit and evaluate, on the *same* split, the two models it must beat: item popularity, and the
   parameters of the currently promoted model (read from its model card);
4. against each, take the paired bootstrap interval of the per-user NDCG@k difference
   (:func:`~alsresearch.evaluate.paired_difference`, at ``confidence``, 95% by default), and
   refuse unless its lower bound is above ``min_lift`` (0 by default: the candidate must be
   better beyond the noise of which users happen to be in the test split, not merely have the
   higher point estimate). The refusal states each interval that failed; ``force=True``
   promotes anyway and says so;
5. otherwise refit the model with the same parameters **on all the data** (what is served: the model
   has seen every interaction, so nothing it knows is withheld from users) together with the
   popularity fallback, and write the artefact (:mod:`alsresearch.artefact`).

A candidate with the current model's own parameters ties it exactly (difference 0, interval
[0, 0]) and is refused: nothing would be gained by replacing it.

Why the current model is *refitted* rather than its file re-scored: the served model was trained
on all the data, test cells included, so scoring its file on a test split would measure recall
of its own training data. Refitting its recorded parameters on the candidate's train split is
the like-for-like comparison, and stays valid when the data changed since it was promoted (the
result then says the fingerprints differ). It is not like for like when the data were *read*
another way (other event weights, say) or split another way: the two would answer different
questions. So when the current card records a data source (:class:`~alsresearch.source.DataSource`)
or a split that differs from this promotion's, :func:`promote` raises
:class:`~alsresearch.errors.SpecMismatchError` naming each field, unless ``force=True`` (the
reason then says what differed). Cards written before these records existed are compared by
their parameters and fingerprint only.

Promotion is deterministic: for a model that takes a seed (ALS), parameters without a
``random_state`` get the one default seed of every command, :data:`alsresearch.seeds.DEFAULT_SEED`
(not the split's seed: the split and the model draw from separate seeds), recorded in the card
(``"seed"``); ``"random_state": null`` in the parameters asks for an unseeded fit, which the card
states (``"unseeded": true``). EASE has no randomness.

Warm start (``init``, ``alsresearch promote --init``): the served model, refitted on all the
data, starts from the factors of a fitted ALS model file (:meth:`alsresearch.als.ALSModel.fit`
``init``; users and items matched by external id). The gate's fit does not: a model promoted
earlier was fitted on all the data, this split's test cells included, so a candidate started
from it would have seen them, and the gate would flatter it. The gate measures the parameters
from the usual random start; the card's ``"init"`` records the file (path, sha256, model type)
and the rows the served fit matched.

The model card (``<name>.json``) records the model type (``"model_type"``), the parameters, the
metrics with the split that measured them (``"split"``: the split spec, the data fingerprint and the
cell counts of each part), the popularity and previous-model metrics, the data (``"data"``: the
source spec, or None when the caller gave none, the fingerprint and the size), what the served model
was trained on, the gate's decision, file checksums,
:func:`~alsresearch.provenance.environment_record` (git commit and dirty flag, library versions,
threads) and the creation time. The served model file's ``training`` record says the same:
``{"data": source, "split": split, "part": "all"}``.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alsresearch.artefact import CARD_VERSION, named_artefact, read_card, recover, write_artefact
from alsresearch.base import MODEL_TYPES, Recommender, load_model, model_class
from alsresearch.baselines import PopularityModel
from alsresearch.checks import check_bool, check_choice, check_float, check_int
from alsresearch.data import coerce_interactions
from alsresearch.errors import SpecMismatchError
from alsresearch.evaluate import (
    DEFAULT_BOOT_SEED,
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOT,
    EvaluationResult,
    PairedDifference,
    evaluate,
    paired_difference,
    require_test_users,
)
from alsresearch.files import to_jsonable
from alsresearch.limits import MAX_TOP_N
from alsresearch.provenance import environment_record, utc_now
from alsresearch.records import data_record, init_record, training_record
from alsresearch.seeds import resolve_seed, seed_record
from alsresearch.source import DataSource
from alsresearch.split import SPLIT_KINDS, SplitParts, SplitSpec
from alsresearch.tuning.space import DEFAULT_MODEL

__all__ = ["PromotionResult", "load_init", "load_model_params", "load_params", "promote"]


#: the cut-off of the gating NDCG unless the caller says otherwise
DEFAULT_K = 10
#: the margin the lower bound of the NDCG@k difference must exceed unless the caller says
DEFAULT_MIN_LIFT = 0.0


@dataclass
class PromotionResult:
    """What :func:`promote` decided, with every figure behind the decision.

    ``metrics``, ``baseline_metrics`` (popularity) and ``previous_metrics`` (the currently
    promoted parameters, None when nothing was promoted) were all measured on the same split.
    ``model_path`` / ``card_path`` are None when nothing was written. ``differences`` holds
    the paired NDCG@k difference of the candidate against ``"popularity"`` and, when there is
    a current model, ``"current"``, each with its bootstrap interval.
    """

    promoted: bool
    reason: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    previous_metrics: dict[str, float] | None
    model_path: Path | None = None
    card_path: Path | None = None
    popularity_path: Path | None = None
    archived: list[Path] = field(default_factory=list)
    card: dict[str, Any] | None = None
    evaluations: dict[str, Any] = field(default_factory=dict)
    """The gate's full :class:`~alsresearch.evaluate.EvaluationResult` per model (the
    candidate's type, e.g. "als" or "ease", and "popularity"): per-user figures and the
    breakdown by history length, on the gate's split."""
    differences: dict[str, PairedDifference] = field(default_factory=dict)


# ---------------------------------------------------------------------- parameters
def load_model_params(params: Mapping[str, Any] | str | Path) -> tuple[str, dict[str, Any]]:
    """``(model type, its arguments)``, checked before any data is read, from

    - a dict of arguments: ALS's, unless it names its model (``{"model": "ease",
      "regularization": 500.0}``);
    - a ``{"model": ..., "params": {...}}`` record (tuning's best.json layout; without
      ``"model"``, as in every file written before sweeps named their model: ALS);
    - a JSON file holding either.

    The model type must be one of :data:`~alsresearch.base.MODEL_TYPES` (else ValueError
    listing them); unknown argument names raise ValueError listing the valid ones, and a value
    out of range (``iterations: 1000000000`` above :data:`~alsresearch.limits.MAX_ITERATIONS`,
    say) one naming it, its value and the allowed range (the model's constructor checks)."""
    where = "params"
    if isinstance(params, str | Path):
        where = str(params)
        path = Path(params)
        if not path.is_file():
            raise FileNotFoundError(f"parameter file not found: {path}")
        try:
            params = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: expected a JSON object of model parameters, got {params!r}")
    model_type = params.get("model", DEFAULT_MODEL)
    if "params" in params and isinstance(params["params"], Mapping):
        params = params["params"]
    else:
        params = {k: v for k, v in params.items() if k != "model"}
    model_type = check_choice(model_type, f"{where}: model", tuple(MODEL_TYPES))
    cls = model_class(model_type)
    valid = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"{where}: unknown {model_type.upper()} parameter(s) {unknown}; valid names: {valid}"
        )
    try:
        cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return model_type, dict(params)


def load_params(params: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """ALS arguments, read as :func:`load_model_params` reads them; parameters that name
    another model are refused (the caller would build an ALSModel from another model's
    arguments): read those with :func:`load_model_params`, which returns the type too."""
    model_type, args = load_model_params(params)
    if model_type != DEFAULT_MODEL:
        where = str(params) if isinstance(params, str | Path) else "params"
        raise ValueError(
            f"{where}: the parameters are for model {model_type!r}, not ALS; read them with "
            "alsresearch.promote.load_model_params, which returns the model type too"
        )
    return args


def load_init(path: str | Path, model: Recommender, what: str = "init") -> tuple[Any, dict]:
    """The fitted model a warm start of ``model`` (unfitted) begins from, read from the model
    file ``path``, and its :func:`~alsresearch.records.init_record` (sha256 of the file as
    read). Errors name ``what`` (e.g. ``"--init"``) and the file: a missing or unreadable file,
    a model that cannot warm-start (EASE, Spark), a file that is not an ALS model, factors or
    dtype that differ from ``model``'s."""
    if "init" not in inspect.signature(model.fit).parameters:
        raise ValueError(
            f"{what} has no effect: a {type(model).__name__} ({model.model_type!r}) fit cannot "
            "start from another model's factors (only ALSModel warm-starts)"
        )
    from alsresearch.als import ALSModel

    path = Path(path)
    try:
        previous = load_model(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{what}: {exc}") from exc
    except ValueError as exc:  # ModelFileError
        raise ValueError(f"{what}: {exc}") from exc
    record = init_record(path, previous.model_type)
    if not isinstance(previous, ALSModel):
        raise ValueError(
            f"{what} {path}: a {previous.model_type!r} model file; a warm start needs an ALS "
            "model file (its user and item factors)"
        )
    mine = (model.config.factors, model.config.dtype)
    theirs = (previous.config.factors, previous.config.dtype)
    if mine != theirs:  # fit(init=...) refuses it too; here before any data are read
        raise ValueError(
            f"{what} {path}: the model has factors={theirs[0]}, dtype={theirs[1]!r}; the "
            f"parameters give factors={mine[0]}, dtype={mine[1]!r}: a warm start needs both equal"
        )
    return previous, record


# ---------------------------------------------------------------------- the gate
def _fit_and_evaluate(
    model: Recommender, parts: SplitParts, k: int
) -> tuple[dict[str, float], EvaluationResult]:
    """(card metrics, the full EvaluationResult) of ``model`` fitted on the train part; a
    metric with nothing to average (NaN) is None, as the card stores it."""
    model.fit(parts.train)
    result = evaluate(
        model, parts.train, parts.test, k=k, protocol=parts.protocol, fold_in=parts.fold_in
    )
    return to_jsonable(dict(result.metrics), "metrics"), result


def _model_from_card(card: dict[str, Any], card_path: Path) -> Recommender:
    """An unfitted model with the parameters the card records."""
    model_type = card.get("model_type")
    params = card.get("params")
    if model_type not in MODEL_TYPES or not isinstance(params, dict):
        raise ValueError(
            f"{card_path}: the current model card lacks a known model_type and a params object"
        )
    try:
        return model_class(model_type)(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{card_path}: the current model's params are not usable: {exc}") from exc


def _recorded_fingerprint(card: dict[str, Any]) -> str | None:
    """The data fingerprint a card records ("data", or "dataset" in cards before version 2)."""
    for key in ("data", "dataset"):
        block = card.get(key)
        if isinstance(block, dict) and "fingerprint" in block:
            return block["fingerprint"]
    return None


def _spec_differences(
    card: dict[str, Any], source: DataSource | None, split: SplitSpec
) -> list[str]:
    """How the data source and split recorded in ``card`` differ from this promotion's, one
    message each; nothing for what the card does not record (cards before version 2), or for
    the data source when the caller gave none."""
    what = "the current model was promoted on"
    found = []
    data = card.get("data")
    if source is not None and isinstance(data, dict) and isinstance(data.get("source"), dict):
        try:
            source.check_same(data["source"], what)
        except SpecMismatchError as exc:
            found.append(str(exc))
    recorded = card.get("split")
    if isinstance(recorded, dict) and recorded.get("kind") in SPLIT_KINDS:
        try:
            split.check_same(recorded, what)
        except SpecMismatchError as exc:
            found.append(str(exc))
    return found


def _interval_text(label: str, what: str, d: PairedDifference) -> str:
    return (
        f"{label} difference vs {what} {d.difference:.4f} "
        f"[{100 * d.confidence:g}% CI {d.low:.4f}, {d.high:.4f}]"
    )


def _shortfall(label: str, what: str, d: PairedDifference, min_lift: float) -> str | None:
    """Why ``d`` fails the gate (its lower bound is not above ``min_lift``), or None."""
    if d.low > min_lift:
        return None
    text = _interval_text(label, what, d)
    if d.high < 0:
        return f"{text} lies below 0: the candidate is worse"
    if min_lift == 0:
        return f"{text} does not exclude 0"
    return f"{text} does not lie above the required lift {min_lift:g}"


def promote(
    params: Mapping[str, Any] | str | Path,
    data,
    *,
    source: DataSource | None = None,
    split: SplitSpec = SplitSpec(),  # noqa: B008 (frozen: one shared default is safe)
    name: str = "als_baseline",
    models_dir: str | Path | None = None,
    force: bool = False,
    k: int = DEFAULT_K,
    confidence: float = DEFAULT_CONFIDENCE,
    min_lift: float = DEFAULT_MIN_LIFT,
    n_boot: int = DEFAULT_N_BOOT,
    init: str | Path | None = None,
) -> PromotionResult:
    """Fit a model with ``params``, gate it against popularity and the current model, write it.

    ``params``: the model type and its arguments, in any form :func:`load_model_params` reads
    (a dict of ALS arguments, ``{"model": "ease", "params": {...}}`` as in tuning's best.json,
    or a JSON file of either); the candidate cannot be popularity, the model it must beat.
    ``data``: the full :class:`~alsresearch.data.Interactions` (or scipy sparse counts).
    ``source``: how ``data`` was read, recorded in the card and the model file and compared with
    the current card's (None: not known, neither recorded nor compared). ``split``: the gate's
    test split (either protocol); it must hold cells out (``test_fraction > 0``).
    ``confidence`` (in (0, 1)), ``min_lift`` (>= 0) and ``n_boot``: the gate passes a
    comparison when the lower bound of the ``confidence`` paired bootstrap interval of the
    candidate's per-user NDCG@k minus the other model's (``n_boot`` resamples, seed 0) is
    above ``min_lift``. ``init``: an ALS model file the candidate warm-starts from (see the
    module docstring; :func:`load_init` says what is refused).

    Returns a :class:`PromotionResult`; ``promoted`` is False (nothing written) when either
    comparison fails and ``force`` is False. Raises
    :class:`~alsresearch.errors.SpecMismatchError` when the current card records another data
    source or split, unless ``force``. See the module docstring for what is written where.
    """
    if not isinstance(split, SplitSpec):
        raise TypeError(f"split must be a SplitSpec, got {type(split).__name__}")
    if source is not None and not isinstance(source, DataSource):
        raise TypeError(f"source must be a DataSource or None, got {type(source).__name__}")
    if not split.holds_out:
        raise ValueError(
            "the promotion gate needs a test split to measure on: test_fraction must be > 0, "
            f"got {split.test_fraction}"
        )
    k = check_int(k, "k", low=1, high=MAX_TOP_N)
    force = check_bool(force, "force")
    confidence = check_float(
        confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True
    )
    min_lift = check_float(min_lift, "min_lift", low=0.0)
    n_boot = check_int(n_boot, "n_boot", low=1, high=10**7)
    model_type, config = load_model_params(params)  # before any work: errors name the field
    if model_type == PopularityModel.model_type:
        raise ValueError(
            "the candidate cannot be the popularity model: it is the baseline the gate compares "
            "with, and the fallback served beside every promoted model"
        )
    model_cls = model_class(model_type)
    config = resolve_seed(model_type, config)
    init_model, init_info = (None, None)
    if init is not None:
        init_model, init_info = load_init(init, model_cls(**config))
    data = coerce_interactions(data)
    target = named_artefact(name, models_dir)
    figure = f"ndcg@{k}"
    label = f"NDCG@{k}"
    fingerprint = data.fingerprint()

    previous = None
    notes: list[str] = []
    if recover(target.model):
        notes.append("an interrupted promotion was undone first (its journal was left)")
    if target.card.exists():
        try:
            previous = read_card(target.card)
        except ValueError as exc:
            if not force:
                raise ValueError(
                    f"{exc}; cannot compare with the current model (force=True replaces it)"
                ) from exc
            notes.append(f"the current model card is unreadable ({exc})")
    elif target.model.exists():
        notes.append(f"{target.model} exists without a model card; nothing to compare with")
    if previous is not None:
        differences = _spec_differences(previous, source, split)
        if differences and not force:
            raise SpecMismatchError(
                f"{target.card}: " + "; ".join(differences) + " (force=True replaces it)"
            )
        notes += differences
        old = _recorded_fingerprint(previous)
        if old != fingerprint:
            notes.append(
                f"the current model was promoted on different data (dataset fingerprint "
                f"{str(old)[:12]}, now {fingerprint[:12]}); its parameters were refitted on "
                "this split, so the comparison is like for like"
            )
    started = time.perf_counter()
    parts = split.parts(data)
    train, test = parts.train, parts.test
    require_test_users(test, f"the promotion gate's test split ({split})")
    candidate = model_cls(**config)
    metrics, candidate_result = _fit_and_evaluate(candidate, parts, k)  # cold: no test leak
    config = candidate.get_config()  # complete, normalised (e.g. dtype as a name)
    baseline, baseline_result = _fit_and_evaluate(PopularityModel(), parts, k)
    evaluations = {model_type: candidate_result, "popularity": baseline_result}

    previous_metrics = None
    previous_result = None
    if previous is not None:
        if previous.get("model_type") == candidate.model_type and previous.get("params") == config:
            # same parameters, same split: the same figures, user for user
            previous_metrics, previous_result = dict(metrics), candidate_result
        else:
            previous_metrics, previous_result = _fit_and_evaluate(
                _model_from_card(previous, target.card), parts, k
            )

    def difference(other: EvaluationResult) -> PairedDifference:
        return paired_difference(
            candidate_result, other, figure, confidence, n_boot, DEFAULT_BOOT_SEED
        )

    compared = {"popularity": ("popularity", difference(baseline_result))}
    if previous_result is not None:
        compared["current"] = (f"the current model {name!r}", difference(previous_result))
    shortfalls = [
        text
        for what, d in compared.values()
        if (text := _shortfall(label, what, d, min_lift)) is not None
    ]
    intervals = {key: d for key, (_, d) in compared.items()}
    if shortfalls and not force:
        reason = "not promoted: " + "; ".join(shortfalls + notes)
        return PromotionResult(
            False,
            reason,
            metrics,
            baseline,
            previous_metrics,
            evaluations=evaluations,
            differences=intervals,
        )
    if shortfalls:
        reason = "promoted by force although " + "; ".join(shortfalls + notes)
    else:
        above = "0" if min_lift == 0 else f"the required lift {min_lift:g}"
        beaten = " and ".join(_interval_text(label, what, d) for what, d in compared.values())
        reason = "; ".join([f"promoted: {beaten}: every interval is above {above}", *notes])

    served = model_cls(**config)
    if init_model is None:
        served.fit(data)
    else:
        served.fit(data, init=init_model)
    if init_info is not None:
        init_info = {
            **init_info,
            "warm_start": served.warm_start,
            "note": "the served fit started from this model; the gate's fit started cold (a "
            "model fitted on all the data has seen the gate's test cells)",
        }
    training = training_record(source, split, part="all", model=served, init=init_info)
    fallback = PopularityModel().fit(data)
    served.training = training
    fallback.training = training_record(source, split, part="all")
    data_entry = data_record(data, source)
    split_entry = {
        **split.to_dict(),
        "fingerprint": fingerprint,
        "train_cells": train.nnz,
        "test_cells": test.nnz,
    }
    if parts.fold_in is not None:
        split_entry["fold_in_cells"] = parts.fold_in.nnz
        split_entry["test_users"] = candidate_result.n_users
    card = {
        "card_version": CARD_VERSION,
        "name": name,
        "model_type": served.model_type,
        "params": config,
        **({"seed": seed_record(config["random_state"])} if "random_state" in config else {}),
        "init": init_info,
        "served_model": {
            "trained_on": "all data",
            "note": "the metrics were measured by the same parameters fitted on the train "
            "split; the served model is refitted on all the data",
            **{key: data_entry[key] for key in ("n_users", "n_items", "nnz")},
            "training": training,
        },
        "split": split_entry,
        "k": k,
        "metrics": metrics,
        "popularity_metrics": baseline,
        "previous_metrics": previous_metrics,
        "gate": {
            "passed": not shortfalls,
            "forced": bool(force and shortfalls),
            "reason": reason,
            "metric": figure,
            "confidence": confidence,
            "min_lift": min_lift,
            "differences": {
                "popularity": intervals["popularity"].to_dict(),
                "current": intervals["current"].to_dict() if "current" in intervals else None,
            },
        },
        "data": data_entry,
        "fallback": {"model_type": fallback.model_type, "file": target.popularity.name},
        "files": {},
        "seconds": round(time.perf_counter() - started, 3),
        "environment": environment_record(),
        "created": utc_now(),
    }
    archived = write_artefact(target, served, fallback, card)
    return PromotionResult(
        True,
        reason,
        metrics,
        baseline,
        previous_metrics,
        model_path=target.model,
        card_path=target.card,
        popularity_path=target.popularity,
        archived=archived,
        card=card,
        evaluations=evaluations,
        differences=intervals,
    )
