"""The one default model seed of every command and notebook, and how a run's seed is resolved.

:data:`DEFAULT_SEED` is the seed of a model's random initial factors (ALS's ``random_state``)
wherever a command or a notebook fits a model and nobody chose one: ``alsresearch train`` and
``promote`` (when ``--params`` has no ``random_state`` and no ``--seed`` is given), ``alsresearch
tune`` (``--seed``: its sampler, validation split and every trial's model), and the ``SEED``
parameter of the notebooks. It is recorded in every output (the model file's ``training`` record,
the model card, results.json, best.json). A run is unseeded only when asked: ``--seed none`` on
the command line, ``SEED = None`` in a notebook, or ``"random_state": null`` in a parameter file;
the records then say ``"random_state": null`` and ``"unseeded": true``.

The library keeps its own defaults: ``ALSModel()`` (``random_state=None``) draws a fresh seed,
because a library call without a seed is the caller's choice. The test split has its own seed,
:data:`alsresearch.split.DEFAULT_SPLIT_SEED` (``--split-seed``, ``SPLIT_SEED``): which cells are
held out is a property of the experiment, not of one model, and it stays fixed when the model's
seed varies.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_SEED", "UNSET", "resolve_seed", "seed_record", "takes_seed"]

#: the model seed of every command and notebook when none is given
DEFAULT_SEED = 0


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "no seed was given" (None means "unseeded, as asked")
UNSET: Any = _Unset()


def takes_seed(model_type: str) -> bool:
    """Whether the model registered as ``model_type`` takes a ``random_state``."""
    from alsresearch.base import model_class

    return "random_state" in inspect.signature(model_class(model_type)).parameters


def resolve_seed(
    model_type: str, params: Mapping[str, Any], seed: Any = UNSET, *, what: str = "--seed"
) -> dict[str, Any]:
    """``params`` with the model seed decided, for a model that takes one: ``seed`` when given
    (None: unseeded), else the ``random_state`` the parameters hold (null: unseeded), else
    :data:`DEFAULT_SEED`. A model without a seed (EASE) gets its parameters unchanged, and a
    given ``seed`` is a ValueError naming ``what`` (it would have no effect)."""
    params = dict(params)
    if not takes_seed(model_type):
        if seed is not UNSET:
            raise ValueError(f"{what} has no effect: model {model_type!r} takes no seed")
        return params
    if seed is not UNSET:
        params["random_state"] = seed
    elif "random_state" not in params:
        params["random_state"] = DEFAULT_SEED
    return params


def seed_record(random_state: int | None) -> dict[str, Any]:
    """How a record states a model's seed: ``{"random_state": ..., "unseeded": ...}``."""
    return {"random_state": random_state, "unseeded": random_state is None}
