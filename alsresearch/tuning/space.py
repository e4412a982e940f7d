"""The search space of a sweep, as data: :class:`SearchSpace` and its :class:`Param` entries.

A search space is a YAML file (the package ships ``resources/search_space.yaml`` for ALS and
``resources/search_space_ease.yaml`` for EASE; the checkout's ``experiments/`` holds the copies
users edit) naming the model it sweeps (``model:``, a type of
:data:`alsresearch.base.MODEL_TYPES`, ``als`` when left out) and holding its searched
hyperparameters, the defaults enqueued as trial 0, fixed arguments, the sampler's and pruner's
settings and the validation protocol. It is checked once, when read, against the named model's
constructor: every error names the file and the field.

Models with iterations (their ``fit`` takes a per-iteration ``callback``: ALS) are scored every
``validation.every`` iterations and pruned; the others (EASE, one closed-form fit) are fitted
once and scored once, so their space has no ``pruner``.

Conditional parameters. A param with ``when: {other: value}`` (or ``{other: [value, ...]}``,
several entries all holding) is sampled only in trials where ``other`` took one of those values,
so it is not a dead dimension (Optuna's define-by-run: ``trial.suggest_*`` is called only then,
and the trial's params leave it out). Params are sampled in the order of the file, so ``other``
must come before, and must be categorical (a condition names some of its choices). A param whose
``other`` is itself not sampled in a trial is not sampled either. Every param has a default, but
trial 0 uses only those whose conditions its defaults meet.

Data parameters (:data:`DATA_PARAMS`): ``half_life``, recency weighting of the events
(:meth:`alsresearch.data.Interactions.decayed`), is searched like the model's arguments but is
not one: a trial recomputes its training counts from the events the study keeps in memory (the
file is never reread). It is categorical, each choice a duration (``"30D"``) or null (no decay);
:func:`alsresearch.tuning.tune` drops it, with one warning, when the data have no timestamps or
the data source already fixes a half-life.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alsresearch import paths
from alsresearch.checks import check_bool, check_choice, check_float, check_int
from alsresearch.data import parse_half_life
from alsresearch.limits import MAX_ITERATIONS, MAX_TOP_N
from alsresearch.yamlfile import read_yaml

__all__ = [
    "DATA_PARAMS",
    "DEFAULT_MODEL",
    "PARAM_KINDS",
    "SWEEP_ARGUMENTS",
    "VALIDATION_DEFAULTS",
    "Param",
    "SearchSpace",
    "model_arguments",
]

PARAM_KINDS = ("float", "int", "categorical")
#: the model a space sweeps when it names none (every space before ``model:`` existed)
DEFAULT_MODEL = "als"
#: searched parameters that say how the data are weighted, not model arguments
DATA_PARAMS = ("half_life",)
#: model arguments the sweep sets itself, for the models that take them (the seed and the
#: threads per worker), never the search space
SWEEP_ARGUMENTS = ("random_state", "num_threads")
#: the validation settings a search space file may leave out (``fraction``: the share of each
#: user's *training* cells held out for validation; the test split is separate)
VALIDATION_DEFAULTS = {"fraction": 0.2, "max_users": 5000, "every": 3, "k": 10}
_SECTIONS = ("params", "defaults", "fixed", "sampler", "pruner", "validation")


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a float or int range (optionally log-scaled) or choices."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    when: tuple[tuple[str, tuple], ...] = ()
    """Conditions ``(other param, its values)``: sampled only when every one holds."""

    @classmethod
    def from_dict(cls, name: str, spec: Any, where: str) -> Param:
        where = f"{where}: params.{name}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} must be a mapping with a 'type', got {spec!r}")
        kind = check_choice(spec.get("type"), f"{where}.type", PARAM_KINDS)
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log"}
        unknown = sorted(set(spec) - allowed - {"when"})
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {unknown}; expected {sorted(allowed | {'when'})}"
            )
        when = _conditions(spec.get("when"), f"{where}.when")
        if name in DATA_PARAMS:
            _check_data_param(name, spec, kind, where)
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{where}.choices must be a non-empty list, got {choices!r}")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError(f"{where}.choices has duplicates: {choices}")
            return cls(name, kind, choices=tuple(choices), when=when)
        check = check_int if kind == "int" else check_float
        low, high = (check(spec.get(key), f"{where}.{key}") for key in ("low", "high"))
        log = check_bool(spec.get("log", False), f"{where}.log")
        if not low < high:
            raise ValueError(f"{where}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log-scaled range needs low > 0, got {low}")
        return cls(name, kind, low=low, high=high, log=log, when=when)

    def active(self, values: dict[str, Any]) -> bool:
        """Whether this param is sampled, given the values sampled before it (a param whose
        condition names a param that was not sampled is not sampled either)."""
        return all(name in values and values[name] in allowed for name, allowed in self.when)

    def suggest(self, trial) -> Any:
        """This parameter's value for an ``optuna.Trial``."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            spec = {"type": self.kind, "choices": list(self.choices)}
        else:
            spec = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.when:
            spec["when"] = {n: v[0] if len(v) == 1 else list(v) for n, v in self.when}
        return spec


def _conditions(spec: Any, where: str) -> tuple[tuple[str, tuple], ...]:
    """A ``when`` mapping as ``((param, values), ...)`` (its own checks; the ones that need the
    other params are :func:`_check_conditions`)."""
    if spec is None:
        return ()
    if not isinstance(spec, dict) or not spec:
        raise ValueError(
            f"{where} must map a categorical param to the value (or list of values) that "
            f"turns this one on, e.g. {{regularization_scaling: frequency}}; got {spec!r}"
        )
    out = []
    for name, value in spec.items():
        values = tuple(value) if isinstance(value, list) else (value,)
        if not values:
            raise ValueError(f"{where}.{name}: an empty list of values never holds")
        out.append((str(name), values))
    return tuple(out)


def _check_data_param(name: str, spec: dict, kind: str, where: str) -> None:
    """A data param is categorical, each choice one it understands (half_life: a duration or
    null)."""
    if kind != "categorical":
        raise ValueError(
            f"{where}: {name} must be categorical, its choices durations or null (no decay), "
            "e.g. {type: categorical, choices: [null, 7D, 30D, 365D]}"
        )
    seen = {}
    for choice in spec.get("choices") or []:
        try:
            seconds = parse_half_life(choice)
        except ValueError as exc:
            raise ValueError(f"{where}.choices: {exc}") from None
        if seconds in seen:
            raise ValueError(
                f"{where}.choices: {seen[seconds]!r} and {choice!r} are the same duration"
            )
        seen[seconds] = choice


@dataclass(frozen=True)
class SearchSpace:
    """The swept model, its searched hyperparameters, the enqueued defaults and the settings.

    YAML layout (every section but ``params`` and ``defaults`` optional)::

        model:        # a registered model type (alsresearch.base.MODEL_TYPES); default als
        params:       # name -> {type: float|int, low, high, log} or {type: categorical, choices}
                      #   optionally with when: {other param: value or [values]} (see above)
        defaults:     # one value per param: trial 0 of every study (where its conditions hold)
        fixed:        # passed to the model unchanged in every trial (e.g. solver: cg)
        sampler:      # optuna.samplers.TPESampler keyword arguments (seed is set by tune)
        pruner:       # optuna.pruners.MedianPruner keyword arguments (models with iterations)
        validation:   # fraction (of each user's training cells), max_users, every, k

    Param names are keyword arguments of the model's class (:class:`~alsresearch.als.ALSModel`
    for ``als``, :class:`~alsresearch.baselines.EASEModel` for ``ease``), or
    :data:`DATA_PARAMS`; :data:`SWEEP_ARGUMENTS` are set by the sweep. ``defaults`` holds the
    model arguments' defaults (trial 0's model, with ``fixed``) and ``data_defaults`` the data
    params'.
    """

    params: tuple[Param, ...]
    defaults: dict
    fixed: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    source: str = "<dict>"
    data_defaults: dict = field(default_factory=dict)
    model: str = DEFAULT_MODEL
    """The swept model's type (:data:`alsresearch.base.MODEL_TYPES`)."""

    @classmethod
    def from_dict(cls, spec: Any, source: str = "<dict>") -> SearchSpace:
        """Check a parsed search space (``source`` names it in errors)."""
        if not isinstance(spec, dict):
            raise ValueError(
                f"{source}: a search space must be a mapping, got {type(spec).__name__}"
            )
        unknown = sorted(set(spec) - {"model", *_SECTIONS})
        if unknown:
            raise ValueError(
                f"{source}: unknown section(s) {unknown}; expected {sorted(['model', *_SECTIONS])}"
            )
        model = _model_type(spec.get("model", DEFAULT_MODEL), source)
        raw_params = spec.get("params")
        if not isinstance(raw_params, dict) or not raw_params:
            raise ValueError(f"{source}: 'params' must map at least one name to its range")
        params = tuple(Param.from_dict(n, s, source) for n, s in raw_params.items())
        _check_conditions(params, source)
        sections = {}
        for name in _SECTIONS[1:]:
            value = spec.get(name) or {}
            if not isinstance(value, dict):
                raise ValueError(f"{source}: '{name}' must be a mapping, got {value!r}")
            sections[name] = dict(value)
        defaults = sections["defaults"]
        names = [p.name for p in params]
        if sorted(defaults) != sorted(names):
            raise ValueError(
                f"{source}: 'defaults' must give exactly the searched params {sorted(names)}, "
                f"got {sorted(defaults)}"
            )
        for p in params:
            if not p.contains(defaults[p.name]):
                raise ValueError(
                    f"{source}: defaults.{p.name} = {defaults[p.name]!r} is outside params.{p.name}"
                )
        clash = sorted(set(sections["fixed"]) & set(names))
        if clash:
            raise ValueError(f"{source}: {clash} are both searched and fixed")
        data_fixed = sorted(set(sections["fixed"]) & set(DATA_PARAMS))
        if data_fixed:
            raise ValueError(
                f"{source}: fixed: {data_fixed} weigh the data, not the model; give a fixed "
                "half-life with the data options (--half-life), or search it in params"
            )
        _check_model_arguments(model, params, defaults, sections["fixed"], source)
        if sections["pruner"] and not _has_iterations(model):
            raise ValueError(
                f"{source}: pruner: model {model!r} is fitted in one step (its fit reports no "
                "iterations), so a trial has nothing to prune; leave the pruner section out"
            )
        return cls(
            params=params,
            defaults={k: v for k, v in defaults.items() if k not in DATA_PARAMS},
            fixed=sections["fixed"],
            sampler=sections["sampler"],
            pruner=sections["pruner"],
            validation=_validation(sections["validation"], source),
            source=source,
            data_defaults={k: v for k, v in defaults.items() if k in DATA_PARAMS},
            model=model,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> SearchSpace:
        """Read a search space YAML file (the package's default when ``path`` is None)."""
        path = Path(path) if path is not None else paths.resource("search_space.yaml")
        return cls.from_dict(read_yaml(path, "search space file"), source=str(path))

    @property
    def metric(self) -> str:
        return f"ndcg@{self.validation['k']}"

    @property
    def iterative(self) -> bool:
        """Whether the model reports iterations while it fits (ALS): trials are then scored
        every ``validation.every`` iterations and pruned; otherwise fitted once, scored once."""
        return _has_iterations(self.model)

    @property
    def data_params(self) -> tuple[str, ...]:
        """The searched :data:`DATA_PARAMS`."""
        return tuple(p.name for p in self.params if p.name in DATA_PARAMS)

    def sample(self, trial) -> tuple[dict[str, Any], dict[str, Any]]:
        """One trial's ``(model keyword arguments, data params)``: the params sampled in
        file order, each only when its conditions hold, and the fixed arguments."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)
        model = {**self.fixed, **{k: v for k, v in values.items() if k not in DATA_PARAMS}}
        return model, {k: v for k, v in values.items() if k in DATA_PARAMS}

    def suggest(self, trial) -> dict[str, Any]:
        """Model keyword arguments for one trial (:meth:`sample` without the data params)."""
        return self.sample(trial)[0]

    def trial_zero(self) -> dict[str, Any]:
        """The defaults enqueued as trial 0: those whose conditions the defaults meet."""
        return _active(self.params, {**self.defaults, **self.data_defaults})

    def without(self, name: str) -> SearchSpace:
        """This space with param ``name`` no longer searched (a data param the data cannot
        use); refused when another param's condition names it."""
        names = [p.name for p in self.params]
        if name not in names:
            raise ValueError(f"{self.source}: {name!r} is not a searched param ({names})")
        users = [p.name for p in self.params if any(n == name for n, _ in p.when)]
        if users:
            raise ValueError(f"{self.source}: params {users} are sampled only on {name!r}")
        return replace(
            self,
            params=tuple(p for p in self.params if p.name != name),
            defaults={k: v for k, v in self.defaults.items() if k != name},
            data_defaults={k: v for k, v in self.data_defaults.items() if k != name},
        )

    def to_dict(self) -> dict[str, Any]:
        defaults = {**self.defaults, **self.data_defaults}
        return {
            "model": self.model,
            "params": {p.name: p.to_dict() for p in self.params},
            "defaults": {p.name: defaults[p.name] for p in self.params},
            "fixed": self.fixed,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "validation": self.validation,
        }


def _active(params: tuple[Param, ...], values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` a trial would sample: params in order, each whose conditions
    the values kept before it meet."""
    kept: dict[str, Any] = {}
    for p in params:
        if p.name in values and p.active(kept):
            kept[p.name] = values[p.name]
    return kept


def _check_conditions(params: tuple[Param, ...], source: str) -> None:
    """Each condition names a categorical param sampled before (earlier in the file), with
    values among its choices; a param whose conditions can never all hold is refused."""
    index = {p.name: i for i, p in enumerate(params)}
    by_name = {p.name: p for p in params}
    for i, p in enumerate(params):
        where = f"{source}: params.{p.name}.when"
        for name, values in p.when:
            if name not in index:
                raise ValueError(
                    f"{where} names {name!r}, which is not a searched param ({list(index)})"
                )
            if index[name] >= i:
                raise ValueError(
                    f"{where}: {name!r} must come before {p.name!r} in params (params are "
                    "sampled in the order of the file, so a condition is known when it is read)"
                )
            other = by_name[name]
            if other.kind != "categorical":
                raise ValueError(
                    f"{where}: {name!r} is {other.kind}; a condition needs a categorical param "
                    "(it names some of its choices)"
                )
            wrong = [v for v in values if v not in other.choices]
            if wrong:
                raise ValueError(
                    f"{where}: {wrong} not among params.{name}.choices {list(other.choices)}"
                )
        if _enabling(p, by_name) is None:
            raise ValueError(
                f"{source}: params.{p.name} is never sampled: its conditions (with those of "
                "the params they name) contradict each other"
            )


def _enabling(p: Param, by_name: dict[str, Param]) -> dict[str, Any] | None:
    """Values of the params ``p``'s conditions name (and theirs, up the chain) under which
    ``p`` is sampled; None when no value can meet them all."""
    allowed: dict[str, set] = {}
    todo = list(p.when)
    while todo:
        name, values = todo.pop()
        allowed[name] = allowed.get(name, set(map(repr, values))) & set(map(repr, values))
        todo.extend(by_name[name].when)
    if any(not v for v in allowed.values()):
        return None
    return {
        name: next(c for c in by_name[name].choices if repr(c) in reprs)
        for name, reprs in allowed.items()
    }


def model_arguments(model_type: str) -> tuple[str, ...]:
    """The keyword arguments the constructor of ``model_type``'s class takes, by name."""
    from alsresearch.base import model_class  # numba: not on the import path of --help

    parameters = inspect.signature(model_class(model_type)).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in kinds)


def _has_iterations(model_type: str) -> bool:
    """Whether ``model_type``'s ``fit`` takes a per-iteration ``callback``."""
    from alsresearch.base import model_class

    return "callback" in inspect.signature(model_class(model_type).fit).parameters


def _model_type(value: Any, source: str) -> str:
    from alsresearch.base import MODEL_TYPES

    return check_choice(value, f"{source}: model", tuple(MODEL_TYPES))


def _check_model_arguments(
    model: str, params: tuple[Param, ...], defaults: dict, fixed: dict, source: str
) -> None:
    """Every trial's arguments are valid for the constructor of ``model``'s class, within
    :mod:`alsresearch.limits`: each searched and fixed name is one of its arguments (and not
    one the sweep sets, :data:`SWEEP_ARGUMENTS`); the defaults with the fixed arguments, and
    each end of every range (and every choice), build a model, so a range above a limit
    (``iterations`` up to 10**9, say) is refused when the file is read, not in the middle of a
    sweep. A conditional param is checked with the values that turn it on; data params are not
    model arguments (their choices are checked when read)."""
    from alsresearch.base import model_class  # numba: not on the import path of --help

    cls = model_class(model)
    accepted = model_arguments(model)
    named = [(f"params.{p.name}", p.name) for p in params if p.name not in DATA_PARAMS]
    for where, name in [*named, *((f"fixed.{n}", n) for n in fixed)]:
        if name in SWEEP_ARGUMENTS:
            raise ValueError(
                f"{source}: {where}: {name} is set by the sweep (random_state: its seed, "
                "num_threads: from the workers), not by the search space"
            )
        if name not in accepted:
            choices = [a for a in accepted if a not in SWEEP_ARGUMENTS]
            raise ValueError(
                f"{source}: {where}: {name!r} is not an argument of {cls.__name__} "
                f"(model: {model}); its arguments are {choices}"
            )

    def model_args(values: dict[str, Any]) -> dict[str, Any]:
        active = _active(params, values)
        return {**fixed, **{k: v for k, v in active.items() if k not in DATA_PARAMS}}

    try:
        cls(**model_args(defaults))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: defaults and fixed: {exc}") from exc
    by_name = {p.name: p for p in params}
    for p in params:
        if p.name in DATA_PARAMS:
            continue
        enabling = _enabling(p, by_name) or {}
        for value in p.choices if p.kind == "categorical" else (p.low, p.high):
            try:
                cls(**model_args({**defaults, **enabling, p.name: value}))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: params.{p.name}: {exc}") from exc


def _validation(given: dict, source: str) -> dict[str, Any]:
    """The ``validation`` section with its defaults filled in, checked."""
    unknown = sorted(set(given) - set(VALIDATION_DEFAULTS))
    if unknown:
        raise ValueError(
            f"{source}: unknown validation key(s) {unknown}; expected {sorted(VALIDATION_DEFAULTS)}"
        )
    validation = {**VALIDATION_DEFAULTS, **given}
    validation["fraction"] = check_float(
        validation["fraction"],
        f"{source}: validation.fraction",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    highs = {"max_users": None, "every": MAX_ITERATIONS, "k": MAX_TOP_N}
    for key, high in highs.items():
        validation[key] = check_int(
            validation[key], f"{source}: validation.{key}", low=1, high=high
        )
    return validation
