"""The promotion gate and the model artefact the service loads.

:func:`promote` takes a set of ALS parameters (from tuning) and the full data set, and decides
whether they become the served model:

1. split the data with a seeded :func:`~alsresearch.split.random_holdout` (20% of each user's
   cells to test by default, ``split_seed=42``);
2. fit ALS with the parameters on the train part and evaluate it on the test part
   (:func:`~alsresearch.evaluate.evaluate`, NDCG@k with k = 10 by default);
3. fit and evaluate, on the *same* split, the two models it must beat: item popularity, and the
   parameters of the currently promoted model (read from its model card);
4. refuse when the candidate's NDCG@k is below either (the refusal names the figure that lost
   and by how much), unless ``force=True``;
5. otherwise refit ALS with the same parameters **on all the data** (what is served: the model
   has seen every interaction, so nothing it knows is withheld from users) together with the
   popularity fallback, and write the artefact.

Why the current model is *refitted* rather than its file re-scored: the served model was trained
on all the data, test cells included, so scoring its file on a test split would measure recall
of its own training data. Refitting its recorded parameters on the candidate's train split is
the like-for-like comparison, and stays valid when the data changed since it was promoted (the
result then says the fingerprints differ). Promotion is deterministic: parameters without a
``random_state`` get ``random_state = split_seed``, recorded in the card.

The artefact, in :func:`alsresearch.paths.models_dir` (git-ignored), for ``name="als_baseline"``:

- ``als_baseline.npz``: the ALS model (:meth:`~alsresearch.base.Recommender.save` format);
- ``als_baseline.popularity.npz``: the popularity model for unknown users, same format;
- ``als_baseline.json``: the model card: parameters, metrics with the split that measured them,
  popularity and previous-model metrics, the dataset fingerprint, what the served model was
  trained on, file checksums, :func:`~alsresearch.provenance.environment_record` (git commit and
  dirty flag, library versions, threads) and the creation time.

Every file is written to a temporary file in the same directory and renamed over the old one
(``os.replace``), so a reader sees the old file or the new one, never half a file; the card is
written last. The files being replaced are first kept under ``archive/<UTC time>-<name>.*``.

The three renames are one unit: before the first, a journal ``.<name>.promotion.json`` records
each file and its archive copy, and it is removed after the last. A promotion that failed with
an exception puts the old files back itself; one killed between renames leaves the journal, and
then the service refuses to start (naming it) and :func:`recover` (run by the next
:func:`promote`, or ``alsresearch promote --recover``) puts the previous set back.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alsresearch import paths
from alsresearch.data import Interactions, coerce_interactions
from alsresearch.files import atomic_write, file_digest, new_file_mode
from alsresearch.provenance import environment_record, utc_now

__all__ = [
    "ARCHIVE_DIR",
    "PromotionResult",
    "archive_paths",
    "artefact_paths",
    "load_params",
    "promote",
    "read_card",
    "recover",
]

ARCHIVE_DIR = "archive"
CARD_VERSION = 1


@dataclass(frozen=True)
class ArtefactPaths:
    """Where the files of one promoted model live."""

    model: Path
    popularity: Path
    card: Path

    def existing(self) -> list[Path]:
        return [p for p in (self.model, self.popularity, self.card) if p.exists()]

    @property
    def journal(self) -> Path:
        """Present only while (or after an interrupted) promotion renames the files."""
        return self.model.with_name(f".{self.model.name.removesuffix('.npz')}.promotion.json")


def artefact_paths(model_path: str | Path) -> ArtefactPaths:
    """The card and popularity files that belong beside the model file ``<dir>/<name>.npz``."""
    model_path = Path(model_path)
    stem = model_path.name.removesuffix(".npz")
    return ArtefactPaths(
        model=model_path,
        popularity=model_path.with_name(f"{stem}.popularity.npz"),
        card=model_path.with_name(f"{stem}.json"),
    )


def _named_paths(name: str, models_dir: str | Path | None) -> ArtefactPaths:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(
            f"name must be a plain file name without '/' or a leading '.', got {name!r}"
        )
    root = Path(models_dir) if models_dir is not None else paths.models_dir()
    return artefact_paths(root / f"{name}.npz")


def read_card(path: str | Path) -> dict[str, Any]:
    """A model card as a dict; ValueError naming the file when it is not a JSON object."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: model card is not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: model card is not UTF-8 text ({exc})") from exc
    if not isinstance(card, dict):
        raise ValueError(f"{path}: model card must be a JSON object, got {type(card).__name__}")
    return card


@dataclass
class PromotionResult:
    """What :func:`promote` decided, with every figure behind the decision.

    ``metrics``, ``baseline_metrics`` (popularity) and ``previous_metrics`` (the currently
    promoted parameters, None when nothing was promoted) were all measured on the same split.
    ``model_path`` / ``card_path`` are None when nothing was written.
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
    """The gate's full :class:`~alsresearch.evaluate.EvaluationResult` per model ("als",
    "popularity"): per-user figures and the breakdown by history length, on the gate's split."""


# ---------------------------------------------------------------------- parameters
def load_params(params: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """ALS parameters from a dict, a ``{"params": {...}}`` record (tuning's best.json layout),
    or a JSON file holding either. Unknown names raise ValueError listing the valid ones."""
    from alsresearch.als import ALSModel

    source = "params"
    if isinstance(params, str | Path):
        source = str(params)
        path = Path(params)
        if not path.is_file():
            raise FileNotFoundError(f"parameter file not found: {path}")
        try:
            params = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: expected a JSON object of ALS parameters, got {params!r}")
    if "params" in params and isinstance(params["params"], Mapping):
        params = params["params"]
    valid = [p for p in inspect.signature(ALSModel).parameters if p != "self"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{source}: unknown ALS parameter(s) {unknown}; valid names: {valid}")
    return dict(params)


# ---------------------------------------------------------------------- the gate
def _fit_and_evaluate(model, train: Interactions, test: Interactions, k: int):
    """(card metrics, the full EvaluationResult) of ``model`` fitted on ``train``."""
    from alsresearch.evaluate import evaluate

    model.fit(train)
    result = evaluate(model, train, test, k=k)
    # NaN (a metric with nothing to average) becomes null: the card is strict JSON
    metrics = {
        name: float(value) if math.isfinite(value) else None
        for name, value in result.metrics.items()
    }
    return metrics, result


def _model_from_card(card: dict[str, Any], card_path: Path):
    """An unfitted model with the parameters the card records."""
    from alsresearch.base import MODEL_TYPES, model_class

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


def _loss(figure: str, what: str, mine: float, theirs: float) -> str:
    gap = theirs - mine
    rel = f", {100 * gap / theirs:.1f}% lower" if theirs > 0 else ""
    return f"{figure} {mine:.4f} loses to {what} {theirs:.4f} by {gap:.4f}{rel}"


def promote(
    params: Mapping[str, Any] | str | Path,
    data,
    *,
    name: str = "als_baseline",
    models_dir: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 42,
    force: bool = False,
    k: int = 10,
) -> PromotionResult:
    """Fit ALS with ``params``, gate it against popularity and the current model, write it.

    ``params``: ALS config fields (a dict, ``{"params": {...}}``, or a JSON file of either).
    ``data``: the full :class:`~alsresearch.data.Interactions` (or scipy sparse counts).
    Returns a :class:`PromotionResult`; ``promoted`` is False (nothing written) when the
    candidate's NDCG@k is below popularity's or the current model's on the same split and
    ``force`` is False. See the module docstring for what is written where.
    """
    from alsresearch.als import ALSModel
    from alsresearch.baselines import PopularityModel
    from alsresearch.split import random_holdout

    config = load_params(params)
    if config.get("random_state") is None:
        config["random_state"] = int(split_seed)
    ALSModel(**config)  # validate before any work: ValueError names the bad field
    data = coerce_interactions(data)
    target = _named_paths(name, models_dir)
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
        dataset = previous.get("dataset")
        old = dataset.get("fingerprint") if isinstance(dataset, dict) else None
        if old != fingerprint:
            notes.append(
                f"the current model was promoted on different data (dataset fingerprint "
                f"{str(old)[:12]}, now {fingerprint[:12]}); its parameters were refitted on "
                "this split, so the comparison is like for like"
            )
    started = time.perf_counter()
    train, test = random_holdout(data, test_fraction=test_fraction, seed=split_seed)
    candidate = ALSModel(**config)
    metrics, candidate_result = _fit_and_evaluate(candidate, train, test, k)
    config = candidate.get_config()  # complete, normalised (e.g. dtype as a name)
    baseline, baseline_result = _fit_and_evaluate(PopularityModel(), train, test, k)
    evaluations = {"als": candidate_result, "popularity": baseline_result}

    previous_metrics = None
    if previous is not None:
        if previous.get("model_type") == candidate.model_type and previous.get("params") == config:
            previous_metrics = dict(metrics)  # same parameters, same split: same figures
        else:
            previous_metrics, _ = _fit_and_evaluate(
                _model_from_card(previous, target.card), train, test, k
            )

    losses = []
    if metrics[figure] < baseline[figure]:
        losses.append(_loss(label, "popularity", metrics[figure], baseline[figure]))
    if previous_metrics is not None and metrics[figure] < previous_metrics[figure]:
        losses.append(
            _loss(label, f"the current model {name!r}", metrics[figure], previous_metrics[figure])
        )
    split = {
        "kind": "random_holdout",
        "test_fraction": float(test_fraction),
        "seed": int(split_seed),
        "fingerprint": fingerprint,
        "train_cells": train.nnz,
        "test_cells": test.nnz,
    }
    if losses and not force:
        reason = "not promoted: " + "; ".join(losses + notes)
        return PromotionResult(
            False, reason, metrics, baseline, previous_metrics, evaluations=evaluations
        )
    if losses:
        reason = "promoted by force although " + "; ".join(losses + notes)
    else:
        beaten = [f"popularity {baseline[figure]:.4f}"]
        if previous_metrics is not None:
            beaten.append(f"the current model {previous_metrics[figure]:.4f}")
        reason = f"promoted: {label} {metrics[figure]:.4f} >= " + " and ".join(beaten)
        reason = "; ".join([reason, *notes])

    served = ALSModel(**config).fit(data)
    fallback = PopularityModel().fit(data)
    card = {
        "card_version": CARD_VERSION,
        "name": name,
        "model_type": served.model_type,
        "params": config,
        "served_model": {
            "trained_on": "all data",
            "note": "the metrics were measured by the same parameters fitted on the train "
            "split; the served model is refitted on all the data",
            "n_users": data.n_users,
            "n_items": data.n_items,
            "cells": data.nnz,
        },
        "split": split,
        "k": int(k),
        "metrics": metrics,
        "popularity_metrics": baseline,
        "previous_metrics": previous_metrics,
        "gate": {"passed": not losses, "forced": bool(force and losses), "reason": reason},
        "dataset": {
            "fingerprint": fingerprint,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "cells": data.nnz,
        },
        "fallback": {"model_type": fallback.model_type, "file": target.popularity.name},
        "files": {},
        "seconds": round(time.perf_counter() - started, 3),
        "environment": environment_record(),
        "created": utc_now(),
    }
    archived = _write_artefact(target, served, fallback, card)
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
    )


# ---------------------------------------------------------------------- writing
def _staging(final: Path) -> Path:
    """An empty temporary file beside ``final`` (same file system, so os.replace is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _copy_atomic(src: Path, dst: Path) -> None:
    """``src``'s bytes to ``dst`` through :func:`~alsresearch.files.atomic_write`, keeping
    ``src``'s permissions and times (an archive copy looks like the file it keeps)."""

    def copy(fh) -> None:
        with src.open("rb") as source:
            shutil.copyfileobj(source, fh)

    atomic_write(dst, copy)
    shutil.copystat(src, dst)


def archive_paths(target: ArtefactPaths, stamp: str) -> dict[Path, Path]:
    """Where each existing file of ``target`` goes in ``archive/``: ``<stamp>-<file name>``."""
    archive = target.model.parent / ARCHIVE_DIR
    return {p: archive / f"{stamp}-{p.name}" for p in target.existing()}


def _archive(target: ArtefactPaths) -> dict[Path, Path]:
    """Copy the current files to archive/ (they stay in place until replaced): {file: copy}."""
    if not target.existing():
        return {}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plan = archive_paths(target, stamp)
    n = 1
    while any(dst.exists() for dst in plan.values()):  # two promotions in one second
        plan = archive_paths(target, f"{stamp}-{n}")
        n += 1
    next(iter(plan.values())).parent.mkdir(parents=True, exist_ok=True)
    try:
        for src, dst in plan.items():
            _copy_atomic(src, dst)
    except BaseException:
        for dst in plan.values():
            dst.unlink(missing_ok=True)
        raise
    return plan


def _write_artefact(target: ArtefactPaths, model, fallback, card: dict[str, Any]) -> list[Path]:
    """Stage every file, archive the current ones, then rename the new ones into place.

    The card goes last. Should a rename fail, the files already replaced are put back from the
    archive copies (or removed when there was none), so the set stays consistent.
    """
    target.model.parent.mkdir(parents=True, exist_ok=True)
    staged: dict[Path, Path] = {}
    archived: dict[Path, Path] = {}
    replaced: list[Path] = []
    try:
        for obj, final in ((fallback, target.popularity), (model, target.model)):
            staged[final] = _staging(final)
            obj.save(staged[final])
            card["files"][final.name] = {"sha256": file_digest(staged[final])}
        staged[target.card] = _staging(target.card)
        staged[target.card].write_text(
            json.dumps(card, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        for tmp in staged.values():  # Recommender.save leaves mkstemp's 0600
            os.chmod(tmp, new_file_mode())
        archived = _archive(target)
        finals = (target.popularity, target.model, target.card)
        journal = {
            "version": 1,
            "files": [
                [str(f), str(archived.get(f, "")), file_digest(staged[f]), str(staged[f])]
                for f in finals
            ],
        }
        atomic_write(target.journal, lambda fh: fh.write(json.dumps(journal).encode()))
        for final in finals:
            os.replace(staged[final], final)
            del staged[final]
            replaced.append(final)
        target.journal.unlink()
    except BaseException:
        _put_back({final: archived.get(final) for final in replaced})
        for copy in archived.values():
            copy.unlink(missing_ok=True)
        target.journal.unlink(missing_ok=True)
        raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return list(archived.values())


def _put_back(previous: Mapping[Path, Path | None]) -> None:
    """Each file back to its archive copy, or removed where there was none before."""
    for final, copy in previous.items():
        if copy is not None:
            _copy_atomic(copy, final)
        else:
            final.unlink(missing_ok=True)


def recover(model_path: str | Path) -> list[Path]:
    """Undo a promotion of ``model_path``'s artefact that was killed between its renames.

    Reads the journal the promotion left (see the module docstring). When every new file is
    already in place (killed after the last rename) it only removes the journal and returns
    ``[]``; otherwise it puts every file back to its archive copy (or removes it where there
    was none before; the archive copies stay in ``archive/``), removes the journal and returns
    the files restored. Without a journal nothing was interrupted: returns ``[]``. A journal
    that cannot be read raises ValueError naming it.
    """
    target = artefact_paths(model_path)
    if not target.journal.exists():
        return []
    try:
        entries = json.loads(target.journal.read_text(encoding="utf-8"))["files"]
        previous = {Path(f): (Path(copy) if copy else None) for f, copy, _, _ in entries}
        done = all(Path(f).exists() and file_digest(Path(f)) == new for f, _, new, _ in entries)
        staged = [Path(tmp) for _, _, _, tmp in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{target.journal}: unreadable promotion journal ({exc})") from exc
    ours = {target.popularity, target.model, target.card}
    strays = [p for p in staged if p.parent != target.model.parent or p.suffix != ".tmp"]
    if set(previous) != ours or strays:
        raise ValueError(f"{target.journal}: names files that are not this artefact's")
    for tmp in staged:  # the renames it did not reach
        tmp.unlink(missing_ok=True)
    if done:
        target.journal.unlink()
        return []
    missing = [copy for copy in previous.values() if copy is not None and not copy.exists()]
    if missing:
        raise ValueError(f"{target.journal}: archive copy {missing[0]} is gone; cannot undo")
    _put_back(previous)
    target.journal.unlink()
    return list(previous)


# ---------------------------------------------------------------------- command line
def add_command(subparsers) -> None:
    from alsresearch.experiments import add_data_arguments, add_split_arguments

    p = subparsers.add_parser(
        "promote",
        help="fit ALS with tuned parameters, gate it against popularity and the current "
        "model on a held-out split, and write models/<name>.npz + model card",
        description=(
            "Fit ALS with the given parameters on the train part of a seeded random holdout, "
            "evaluate NDCG@k on the test part, and refuse (exit 1) when it loses to popularity "
            "or to the currently promoted model on the same split, unless --force. A promoted "
            "model is refitted on all the data and written with its model card and popularity "
            "fallback; the previous files move to models/archive/."
        ),
    )
    add_data_arguments(p)  # --events and its columns, as for tune/train/evaluate
    p.add_argument(
        "--default",
        action="store_true",
        help="the shipped MovieLens ml-latest-small (also what no --events means)",
    )
    p.add_argument(
        "--params",
        type=Path,
        help='JSON file: ALS parameters, or tuning\'s best.json ({"params": {...}}); required '
        "unless --recover",
    )
    p.add_argument(
        "--recover",
        action="store_true",
        help="only undo a promotion that was killed between its renames (put the previous "
        "files back from models/archive/) and exit",
    )
    p.add_argument("--name", default="als_baseline", help="artefact name (default als_baseline)")
    p.add_argument("--models-dir", type=Path, default=None, help="default: models/ in the repo")
    add_split_arguments(p)
    p.add_argument("-k", type=int, default=10, help="cut-off of the gating NDCG (default 10)")
    p.add_argument(
        "--force", action="store_true", help="promote even when the candidate loses the gate"
    )
    p.set_defaults(func=_promote_command)


def _promote_command(args) -> int:
    from alsresearch.experiments import load_data

    if args.recover:
        restored = recover(_named_paths(args.name, args.models_dir).model)
        print(f"restored {', '.join(map(str, restored))}" if restored else "nothing to recover")
        return 0
    if args.params is None:
        raise ValueError("--params is required (unless --recover)")
    if args.default and args.events:
        raise ValueError("give --events FILE or --default, not both")
    data = load_data(args.events, args.user_col, args.item_col, args.weight_col)
    result = promote(
        args.params,
        data,
        name=args.name,
        models_dir=args.models_dir,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        force=args.force,
        k=args.k,
    )
    figure = f"ndcg@{args.k}"
    print(f"candidate   {figure} = {result.metrics[figure]:.4f}")
    print(f"popularity  {figure} = {result.baseline_metrics[figure]:.4f}")
    if result.previous_metrics is not None:
        print(f"current     {figure} = {result.previous_metrics[figure]:.4f}")
    if not result.promoted:
        print(f"alsresearch promote: {result.reason}", file=sys.stderr)
        return 1
    print(result.reason)
    print(f"wrote {result.model_path}, {result.popularity_path}, {result.card_path}")
    for path in result.archived:
        print(f"archived {path}")
    return 0
