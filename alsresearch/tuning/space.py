"""The search space of a sweep, as data: :class:`SearchSpace` and its :class:`Param` entries.

A search space is a YAML file (the package ships ``resources/search_space.yaml``; the
checkout's ``experiments/search_space.yaml`` is the copy users edit) holding the searched
ALS hyperparameters, the defaults enqueued as trial 0, fixed arguments, the sampler's and
pruner's settings and the validation protocol. It is checked once, when read: every error names
the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alsresearch import paths
from alsresearch.checks import check_bool, check_choice, check_float, check_int
from alsresearch.limits import MAX_ITERATIONS, MAX_TOP_N
from alsresearch.yamlfile import read_yaml

__all__ = ["PARAM_KINDS", "VALIDATION_DEFAULTS", "Param", "SearchSpace"]

PARAM_KINDS = ("float", "int", "categorical")
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

    @classmethod
    def from_dict(cls, name: str, spec: Any, where: str) -> Param:
        where = f"{where}: params.{name}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} must be a mapping with a 'type', got {spec!r}")
        kind = check_choice(spec.get("type"), f"{where}.type", PARAM_KINDS)
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(allowed)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{where}.choices must be a non-empty list, got {choices!r}")
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError(f"{where}.choices has duplicates: {choices}")
            return cls(name, kind, choices=tuple(choices))
        check = check_int if kind == "int" else check_float
        low, high = (check(spec.get(key), f"{where}.{key}") for key in ("low", "high"))
        log = check_bool(spec.get("log", False), f"{where}.log")
        if not low < high:
            raise ValueError(f"{where}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log-scaled range needs low > 0, got {low}")
        return cls(name, kind, low=low, high=high, log=log)

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
            return {"type": self.kind, "choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class SearchSpace:
    """The searched hyperparameters, the enqueued defaults and the sweep's settings.

    YAML layout (every section but ``params`` and ``defaults`` optional)::

        params:       # name -> {type: float|int, low, high, log} or {type: categorical, choices}
        defaults:     # one value per param: trial 0 of every study
        fixed:        # passed to ALSModel unchanged in every trial (e.g. solver: cg)
        sampler:      # optuna.samplers.TPESampler keyword arguments (seed is set by tune)
        pruner:       # optuna.pruners.MedianPruner keyword arguments
        validation:   # fraction (of each user's training cells), max_users, every, k

    Param names are :class:`~alsresearch.als.ALSModel` keyword arguments.
    """

    params: tuple[Param, ...]
    defaults: dict
    fixed: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, spec: Any, source: str = "<dict>") -> SearchSpace:
        """Check a parsed search space (``source`` names it in errors)."""
        if not isinstance(spec, dict):
            raise ValueError(
                f"{source}: a search space must be a mapping, got {type(spec).__name__}"
            )
        unknown = sorted(set(spec) - set(_SECTIONS))
        if unknown:
            raise ValueError(
                f"{source}: unknown section(s) {unknown}; expected {sorted(_SECTIONS)}"
            )
        raw_params = spec.get("params")
        if not isinstance(raw_params, dict) or not raw_params:
            raise ValueError(f"{source}: 'params' must map at least one name to its range")
        params = tuple(Param.from_dict(n, s, source) for n, s in raw_params.items())
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
        _check_model_arguments(params, defaults, sections["fixed"], source)
        return cls(
            params=params,
            defaults=defaults,
            fixed=sections["fixed"],
            sampler=sections["sampler"],
            pruner=sections["pruner"],
            validation=_validation(sections["validation"], source),
            source=source,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> SearchSpace:
        """Read a search space YAML file (the package's default when ``path`` is None)."""
        path = Path(path) if path is not None else paths.resource("search_space.yaml")
        return cls.from_dict(read_yaml(path, "search space file"), source=str(path))

    @property
    def metric(self) -> str:
        return f"ndcg@{self.validation['k']}"

    def suggest(self, trial) -> dict[str, Any]:
        """ALSModel keyword arguments for one trial: the sampled params plus the fixed ones."""
        return {**self.fixed, **{p.name: p.suggest(trial) for p in self.params}}

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": {p.name: p.to_dict() for p in self.params},
            "defaults": self.defaults,
            "fixed": self.fixed,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "validation": self.validation,
        }


def _check_model_arguments(params: tuple[Param, ...], defaults: dict, fixed: dict, source: str):
    """Every trial's arguments are valid for ALSModel, within :mod:`alsresearch.limits`: the
    defaults with the fixed arguments, and each end of every range (and every choice), so a
    range above a limit (``iterations`` up to 10**9, say) is refused when the file is read,
    not in the middle of a sweep."""
    from alsresearch.als import ALSConfig  # numba: not on the import path of --help

    base = {**fixed, **defaults}
    try:
        ALSConfig(**base)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: defaults and fixed: {exc}") from exc
    for p in params:
        for value in p.choices if p.kind == "categorical" else (p.low, p.high):
            try:
                ALSConfig(**{**base, p.name: value})
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
