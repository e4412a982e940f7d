"""The REST service: a promoted model, loaded once at start-up, answering over HTTP.

``alsresearch serve --model models/als_baseline.npz`` (FastAPI + uvicorn, loopback by default)
loads the model file, its card (``als_baseline.json``) and its popularity fallback
(``als_baseline.popularity.npz``), all written by :func:`alsresearch.export.promote`, and
answers:

- ``GET /recommendations/{user_id}?n=10``: ``{"user_id": 42, "recommendations": [{"item_id":
  1337, "score": 0.94}, ...], "model": "als_baseline", "source": "als"}``. Unknown users get the
  most popular items with ``"source": "popularity"``. Items the user has in the training data
  are never recommended.
- ``POST /recommendations/batch`` ``{"user_ids": [...], "n": 10}``: a list of the same objects in
  request order (duplicates allowed), all known users ranked in one vectorised call.
- ``POST /recommendations/history`` ``{"item_ids": [...], "n": 10}``: fold-in recommendations
  for an anonymous session (:meth:`~alsresearch.base.Recommender.recommend_for_history`); the
  given items are never recommended back. Item ids the model does not know are *ignored* and
  listed in ``"unknown_item_ids"`` (a session may contain items newer than the model); with no
  known item left the answer is the popularity list (``"source": "popularity"``).
- ``GET /health``, ``GET /model`` (the model card), ``/docs`` and ``/openapi.json``.

Ids keep the type they had in training: a model trained on integer ids takes and returns JSON
integers (a path ``user_id`` that is not an integer is a 422), one trained on string ids takes
and returns strings. Bad input (``n`` outside 1..1000, an empty batch or one of more than 10,000
ids, malformed JSON, ids of the wrong type, unknown fields) is a 422 whose ``message`` says what
was wrong.

Requests are answered one at a time on the event loop (``async`` endpoints, no thread hop), and
``alsresearch serve`` runs the BLAS and numba kernels on one thread by default (``--threads``): a
request is a small amount of work, and on a busy machine multi-threaded kernels spend their time
waiting for descheduled threads (measured in benchmarks/bench_serve.py). For more throughput on
an idle many-core machine raise ``--threads``, or run several servers behind a proxy.

A model file that is missing, unreadable or inconsistent with its card stops start-up with one
line on stderr naming the path and the problem (exit status 1).
"""

import json
import re
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import numpy as np

from alsresearch.base import Recommender, load_model
from alsresearch.checks import check_int
from alsresearch.data import Interactions
from alsresearch.errors import ModelFileError
from alsresearch.limits import MAX_BATCH, MAX_N

__all__ = ["MAX_BATCH", "MAX_N", "RecommendationService", "create_app", "run"]

DEFAULT_N = 10
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SHOW = 5
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


class RecommendationService:
    """The service logic without the web framework: the model, its fallback and its card.

    ``for_users`` and ``for_history`` return the JSON-ready dicts the endpoints send.
    """

    def __init__(
        self, model: Recommender, fallback: Recommender, card: dict[str, Any], name: str
    ) -> None:
        self.model = model
        self.fallback = fallback
        self.card = card
        self.name = name
        if not np.array_equal(fallback.item_ids, model.item_ids):
            raise ModelFileError(
                f"{name}: the popularity fallback has other item ids than the model"
            )
        # popularity scores are the same for every user: rank once, slice per request
        n = min(MAX_N, fallback.n_items)
        idx, val = fallback.topk_rows(np.zeros(1, dtype=np.int64), n, exclude_seen=False)
        keep = idx[0] >= 0
        self._popular_recs = _recommendations(fallback.item_ids[idx[0][keep]], val[0][keep])

    @classmethod
    def load(cls, model_path: str | FilePath) -> "RecommendationService":
        """Load ``model_path`` and, beside it, its card and popularity fallback.

        Without a card the service describes the model from the file; without a popularity
        file it counts popularity from the model's own training data (the same
        :class:`~alsresearch.baselines.PopularityModel`). A card whose recorded checksums do
        not match the files raises ModelFileError (a half-copied or mixed-up artefact).
        """
        from alsresearch.artefact import artefact_paths, read_card
        from alsresearch.baselines import PopularityModel
        from alsresearch.files import file_digest

        files = artefact_paths(model_path)
        if files.journal.exists():
            raise ModelFileError(
                f"{files.journal}: a promotion of {files.model.name} was interrupted between "
                "its renames; `alsresearch promote --recover` puts the previous files back"
            )
        model = load_model(files.model)
        name = files.model.name.removesuffix(".npz")
        card: dict[str, Any] = {}
        if files.card.exists():
            try:
                card = read_card(files.card)
                json.dumps(card, allow_nan=False)  # what /model will send must be strict JSON
            except (OSError, ValueError) as exc:
                raise ModelFileError(f"{files.card}: unreadable model card ({exc})") from exc
            name = str(card.get("name", name))
            recorded = card.get("files")
            for path in (files.model, files.popularity):
                entry = recorded.get(path.name) if isinstance(recorded, dict) else None
                if (
                    isinstance(entry, dict)
                    and path.exists()
                    and entry.get("sha256") != file_digest(path)
                ):
                    raise ModelFileError(
                        f"{path}: does not match its model card {files.card.name} (sha256 "
                        "differs): a mixed-up or half-copied artefact; promote again"
                    )
        else:
            card = {
                "name": name,
                "model_type": model.model_type,
                "params": model.get_config(),
                "note": f"no model card beside {files.model.name}",
            }
        if files.popularity.exists():
            fallback = load_model(files.popularity)
        else:
            seen = Interactions(model.seen, model.user_ids, model.item_ids)
            fallback = PopularityModel().fit(seen)
        return cls(model, fallback, card, name)

    # ------------------------------------------------------------------ answers
    def _popular(self, n: int) -> list[dict[str, Any]]:
        return self._popular_recs[:n]

    def _answer(self, user, recommendations: list[dict[str, Any]], source: str) -> dict[str, Any]:
        return {
            "user_id": user,
            "recommendations": recommendations,
            "model": self.name,
            "source": source,
        }

    def for_users(self, users: list, n: int = DEFAULT_N) -> list[dict[str, Any]]:
        """Recommendations for each of ``users`` (external ids, in order, duplicates allowed).

        Known users are ranked together in one :meth:`~alsresearch.base.Recommender.topk_rows`
        call, seen items excluded; unknown users get the popularity list.
        """
        rows = np.atleast_1d(self.model.user_index(users, missing="ignore"))
        known = np.flatnonzero(rows >= 0)
        out: list[dict[str, Any] | None] = [None] * len(users)
        if known.size:
            idx, val = self.model.topk_rows(rows[known], n)
            item_ids = self.model.item_ids
            for pos, i, v in zip(known.tolist(), idx, val, strict=True):
                keep = i >= 0
                recs = _recommendations(item_ids[i[keep]], v[keep])
                out[pos] = self._answer(users[pos], recs, "als")
        if known.size < len(users):
            popular = self._popular(n)
            for pos in np.flatnonzero(rows < 0).tolist():
                out[pos] = self._answer(users[pos], popular, "popularity")
        return out  # type: ignore[return-value]

    def for_history(self, items: list, n: int = DEFAULT_N) -> dict[str, Any]:
        """Fold-in recommendations for an anonymous user who has ``items``; unknown ids are
        ignored and listed; with no known item, the popularity list."""
        idx = np.atleast_1d(self.model.item_index(items, missing="ignore"))
        unknown = list(
            dict.fromkeys(it for it, i in zip(items, idx.tolist(), strict=True) if i < 0)
        )
        known = [it for it, i in zip(items, idx.tolist(), strict=True) if i >= 0]
        if not known:
            recs, source = self._popular(n), "popularity"
        else:
            try:
                ids, scores = self.model.recommend_for_history(known, n=n)
                source = "als"
            except FloatingPointError:  # a fold-in system too ill-conditioned to solve
                ids, scores = self.fallback.recommend_for_history(known, n=n)
                source = "popularity"
            recs = _recommendations(ids, scores)
        return {
            "recommendations": recs,
            "model": self.name,
            "source": source,
            "unknown_item_ids": unknown,
        }

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.name,
            "model_type": self.model.model_type,
            "users": self.model.n_users,
            "items": self.model.n_items,
        }


# ---------------------------------------------------------------------- the web app
def _recommendations(items, scores) -> list[dict[str, Any]]:
    """``[{"item_id": ..., "score": ...}]`` with plain Python ids and float scores (JSON has no
    NaN: a NaN score, which finite factors never give, is written as 0)."""
    items = np.asarray(items).tolist()
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64)).tolist()
    return [{"item_id": i, "score": s} for i, s in zip(items, scores, strict=True)]


def _id_types(ids: np.ndarray, what: str):
    """(JSON body type, path type) for ids of the kind the model was trained with."""
    from annotated_types import Ge, Le
    from fastapi import Path
    from pydantic import BeforeValidator, Strict

    if ids.dtype.kind in "iu":
        desc = f"{what} id (an integer, as in the training data)"
        # a BeforeValidator goes last: it then runs first and the constraints stay in the schema
        body = Annotated[
            int, Strict(), Ge(INT64_MIN), Le(INT64_MAX), BeforeValidator(_integral_number)
        ]
        path = Annotated[
            int,
            Path(ge=INT64_MIN, le=INT64_MAX, description=desc),
            BeforeValidator(_integer_text),
        ]
    else:
        desc = f"{what} id (a string, as in the training data)"
        body = Annotated[str, Strict()]
        path = Annotated[str, Path(description=desc)]
    return body, path


def _integral_number(value):
    """JSON has one number type: 42.0 is the integer 42 (as JSON Schema says); 42.5, "42" and
    true stay what they are and fail the strict integer check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _integer_text(value):
    """Path ids of an integer-id model must be written as integers: '42' yes, '42.0' no."""
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise ValueError(f"this model's ids are integers; {value!r} is not one")
    return value


def _message(errors) -> str:
    """One readable sentence from pydantic errors: ``where: what`` for the first few."""
    parts = []
    for err in errors[:_SHOW]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    more = f" (and {len(errors) - _SHOW} more)" if len(errors) > _SHOW else ""
    return "; ".join(parts) + more


def create_app(model_path: str | FilePath, *, title: str = "alsresearch"):
    """The FastAPI app serving ``model_path`` (loaded now, once; ModelFileError /
    FileNotFoundError when it cannot be)."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, create_model
    from starlette.exceptions import HTTPException

    service = RecommendationService.load(model_path)
    UserId, UserPath = _id_types(service.model.user_ids, "user")
    ItemId, _ = _id_types(service.model.item_ids, "item")
    N = Annotated[
        int,
        Strict(),
        Field(ge=1, le=MAX_N, description="list length, 1..1000"),
        BeforeValidator(_integral_number),
    ]
    Source = Literal["als", "popularity"]
    forbid = ConfigDict(extra="forbid")

    Recommendation = create_model("Recommendation", item_id=(ItemId, ...), score=(float, ...))
    UserRecommendations = create_model(
        "UserRecommendations",
        user_id=(UserId, ...),
        recommendations=(list[Recommendation], ...),
        model=(str, ...),
        source=(Source, ...),
    )
    HistoryRecommendations = create_model(
        "HistoryRecommendations",
        recommendations=(list[Recommendation], ...),
        model=(str, ...),
        source=(Source, ...),
        unknown_item_ids=(list[ItemId], ...),
    )
    BatchRequest = create_model(
        "BatchRequest",
        __config__=forbid,
        user_ids=(
            Annotated[list[UserId], Field(min_length=1, max_length=MAX_BATCH)],
            Field(..., description=f"1..{MAX_BATCH} user ids; order kept, duplicates allowed"),
        ),
        n=(N, DEFAULT_N),
    )
    HistoryRequest = create_model(
        "HistoryRequest",
        __config__=forbid,
        item_ids=(
            Annotated[list[ItemId], Field(min_length=1, max_length=MAX_BATCH)],
            Field(..., description="the session's items (repeats count as more interactions)"),
        ),
        n=(N, DEFAULT_N),
    )

    class Health(BaseModel):
        status: str
        model: str
        model_type: str
        users: int
        items: int

    # warm up (numba kernels, BLAS) and prove the model answers before taking traffic
    service.for_users([service.model.user_ids[0].item()], DEFAULT_N)
    service.for_history([service.model.item_ids[0].item()], DEFAULT_N)

    app = FastAPI(
        title=title,
        version="1",
        summary=f"Recommendations from the promoted model {service.name!r}",
        description=__doc__,
    )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = [
            {k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in exc.errors()
        ]
        message = _message(errors)
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type.lower():
            message = f"the body must be JSON sent as Content-Type: application/json ({message})"
        return JSONResponse(status_code=422, content={"message": message, "detail": errors})

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        if exc.status_code == 400:  # FastAPI could not even read the body (e.g. not UTF-8)
            message = f"the body must be UTF-8 JSON: {exc.detail}"
            err = {"loc": ["body"], "msg": message, "type": "json_invalid"}
            return JSONResponse(status_code=422, content={"message": message, "detail": [err]})
        return await http_exception_handler(request, exc)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError):
        err = {"loc": [], "msg": str(exc), "type": "value_error"}
        return JSONResponse(status_code=422, content={"message": str(exc), "detail": [err]})

    @app.post("/recommendations/batch", response_model=list[UserRecommendations])
    async def recommend_batch(request: BatchRequest):
        """Top-``n`` items for each user, in request order (duplicates allowed)."""
        return JSONResponse(service.for_users(request.user_ids, request.n))

    @app.post("/recommendations/history", response_model=HistoryRecommendations)
    async def recommend_history(request: HistoryRequest):
        """Fold-in top-``n`` for an anonymous session; unknown item ids are ignored and listed."""
        return JSONResponse(service.for_history(request.item_ids, request.n))

    # registered after the POST routes so that /recommendations/batch and /history match those
    # first (a wrong method then gets 405 with the right Allow header)
    n_query = Query(ge=1, le=MAX_N, description="list length, 1..1000")

    @app.get("/recommendations/{user_id}", response_model=UserRecommendations)
    async def recommend(user_id: UserPath, n: Annotated[int, n_query] = DEFAULT_N):
        """Top-``n`` items for one user; unknown users get the popularity list."""
        return JSONResponse(service.for_users([user_id], n)[0])

    @app.get("/health", response_model=Health)
    async def health():
        return service.health()

    @app.get("/model", response_model=dict[str, Any])
    async def model_card():
        """The model card written at promotion (parameters, metrics, split, provenance)."""
        return JSONResponse(service.card)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _exact_integer_bounds(default_openapi())
        return app.openapi_schema

    app.openapi = openapi
    app.state.service = service
    return app


def _exact_integer_bounds(node):
    """FastAPI's OpenAPI models hold ``minimum``/``maximum`` as floats, which turns the int64 id
    bounds into 2**63 (one past the end); put the exact integers back."""
    exact = {float(INT64_MIN): INT64_MIN, float(INT64_MAX): INT64_MAX}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("minimum", "maximum") and isinstance(value, float) and value.is_integer():
                node[key] = exact.get(value, int(value))
            else:
                _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)
    return node


# ---------------------------------------------------------------------- running
def run(
    model_path: str | FilePath,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
    threads: int = 1,
) -> None:
    """Load the model once and serve it with uvicorn until stopped.

    ``threads`` caps BLAS and numba threads for scoring (1 by default: requests are small and
    answered one at a time, and on a busy machine multi-threaded kernels wait for their
    threads); 0 keeps the libraries' defaults (all cores). A model that cannot be loaded raises
    ModelFileError / FileNotFoundError / ValueError naming the file, before the port is bound.
    """
    import uvicorn

    threads = check_int(threads, "threads", low=0)
    if threads > 0:
        import numba
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")  # for the whole process
        # numba's setting is per thread: this one, where uvicorn runs the event loop
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    app = create_app(model_path)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
