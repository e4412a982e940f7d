"""Schemathesis generates requests from the live service's /openapi.json and checks every
answer (issue 13, part 3): no 5xx, every 4xx a JSON object whose ``message`` names the
problem, and schemathesis's own checks (status codes and bodies as documented, invalid input
rejected, valid input accepted).

Its Python API drives the cases (the pytest plugin's lazy loader fails on pytest 9), against a
real uvicorn process on loopback; hypothesis is seeded, so a run is repeatable.
"""

from __future__ import annotations

import json

import httpx
import pytest

from alsresearch.promote import promote
from tests.serve_helpers import Server

pytestmark = pytest.mark.serve

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

MAX_EXAMPLES = 25
PARAMS = {"factors": 8, "iterations": 3, "alpha": 1.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, movielens):
    result = promote(PARAMS, movielens, models_dir=tmp_path_factory.mktemp("models"))
    with Server(result.model_path) as running:
        yield running


def check_error_body(response) -> None:
    """A 4xx is JSON naming the problem: ``{"message": "...", "detail": [...]}``."""
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), response.text
    payload = json.loads(response.content)
    assert isinstance(payload.get("message"), str) and payload["message"].strip(), payload
    assert isinstance(payload.get("detail"), list) and payload["detail"], payload


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_get_no_server_error_and_named_client_errors(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {
        "/recommendations/{user_id}",
        "/recommendations/batch",
        "/recommendations/history",
        "/health",
        "/model",
    }
    seen: dict[str, set[int]] = {}
    nothing_to_break = set()
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
        try:
            exercise(server.url, operation.label, strategy, seen)
        except hypothesis.errors.Unsatisfiable:
            nothing_to_break.add(operation.path)  # no parameter or body to make invalid
    assert nothing_to_break == (set() if mode == "positive" else {"/health", "/model"})
    # the run did test both sides: valid input answered, invalid input refused
    codes = set().union(*seen.values())
    assert 200 in codes if mode == "positive" else 422 in codes, seen


def exercise(url: str, label: str, strategy, seen: dict[str, set[int]]) -> None:
    """Send up to MAX_EXAMPLES generated cases of one operation and check each answer."""

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def one(case) -> None:
        response = case.call(base_url=url, timeout=60)
        seen.setdefault(label, set()).add(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        if response.status_code >= 400:
            check_error_body(response)
        case.validate_response(response)

    one()


def test_the_schema_says_what_a_score_means_for_each_source(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=60).json()["components"]["schemas"]
    score = schema["Recommendation"]["properties"]["score"]["description"]
    for source in ("als", "ease", "popularity"):
        assert f"{source}, " in score
    assert "share of training users" in score
    assert "popularity" in schema["UserRecommendations"]["properties"]["source"]["description"]
