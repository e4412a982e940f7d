"""The service refuses what it cannot do, at once, and stays responsive (issue 13, part 3).

Every case runs against a real ``alsresearch serve`` process on loopback. Request bodies over
the limit are sent through a raw socket, so a test knows how many bytes the server could have
read: a 413 that arrives while most of the declared body was never sent was refused unread.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.als import ALSModel
from alsresearch.data import Interactions
from alsresearch.limits import MAX_BATCH, MAX_BATCH_WORK, MAX_BODY_BYTES, MAX_N
from tests.serve_helpers import Server

pytestmark = pytest.mark.serve

TWENTY_ONE_MB = 21 * 1024 * 1024
#: the issue's bound on a single-user answer while the largest batches run
SINGLE_BOUND = 0.5


def raw_exchange(server, head: bytes, body_parts, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """Send ``head`` and then each of ``body_parts`` on one connection, stopping early if the
    server answers or closes; returns (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head_text, _, rest = received.partition(b"\r\n\r\n")
        lines = head_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, headers, rest


def assert_json_error(status: int, headers, body: bytes, expected: int, *words: str) -> dict:
    assert status == expected, body[:500]
    assert headers["content-type"].startswith("application/json")
    payload = json.loads(body)
    assert set(payload) == {"message", "detail"}
    for word in words:
        assert word in payload["message"], payload["message"]
    assert payload["detail"] and all({"loc", "msg", "type"} <= set(d) for d in payload["detail"])
    return payload


# ---------------------------------------------------------------------- 405
@pytest.mark.parametrize("path", ["/recommendations/batch", "/recommendations/history"])
def test_get_on_a_post_endpoint_is_405_not_a_user_lookup(client, path):
    response = client.get(path)
    payload = assert_json_error(
        response.status_code, response.headers, response.content, 405, "GET", path, "POST"
    )
    assert response.headers["allow"] == "POST"
    assert payload["detail"][0]["type"] == "method_not_allowed"


def test_get_batch_is_405_for_a_string_id_model_too(tmp_path):
    """Regression: for a string-id model GET /recommendations/batch matched {user_id}."""
    m = sp.random(30, 20, density=0.3, random_state=np.random.RandomState(3), format="csr")
    m.data = np.ceil(m.data * 3)
    data = Interactions(m, [f"u{i}" for i in range(29)] + ["batch"], [f"i{i}" for i in range(20)])
    path = tmp_path / "strings.npz"
    ALSModel(factors=4, iterations=2, random_state=1).fit(data).save(path)
    with Server(path) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        response = c.get("/recommendations/batch")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert c.get("/recommendations/history").status_code == 405
        assert c.get("/recommendations/u3").json()["source"] == "als"
        # the user called "batch" is still served, through the batch endpoint
        answer = c.post("/recommendations/batch", json={"user_ids": ["batch"]}).json()
        assert answer[0]["user_id"] == "batch" and answer[0]["source"] == "als"


# ---------------------------------------------------------------------- 413: body size
def test_21_mb_body_is_refused_by_its_content_length_unread(server):
    head = (
        "POST /recommendations/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {TWENTY_ONE_MB}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    # only the first 64 KiB of the 21 MB are ever sent: the answer cannot wait for the rest
    status, headers, body = raw_exchange(server, head, [b'{"user_ids": [' + b"1," * 32_000])
    assert time.monotonic() - started < 10
    payload = assert_json_error(
        status, headers, body, 413, str(MAX_BODY_BYTES), f"Content-Length {TWENTY_ONE_MB}"
    )
    assert payload["detail"][0]["type"] == "body_too_large"


def test_chunked_body_is_counted_and_refused_past_the_limit(server):
    head = (
        b"POST /recommendations/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"1," * 32_768  # 64 KiB a chunk
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # 20 chunks (1.25 MiB) go over the 1 MiB limit; the body is never terminated
    parts = [b'5\r\n{"a":\r\n'] + [chunk] * 20
    status, headers, body = raw_exchange(server, head, parts)
    assert_json_error(status, headers, body, 413, str(MAX_BODY_BYTES), "received")


def test_a_body_under_the_limit_is_served(client):
    users = list(range(1, 611)) * 16  # 9760 ids, about 40 KB of JSON
    assert len(json.dumps({"user_ids": users})) < MAX_BODY_BYTES
    response = client.post("/recommendations/batch", json={"user_ids": users, "n": 10})
    assert response.status_code == 200 and len(response.json()) == len(users)


def test_max_body_bytes_option(artefact):
    with Server(artefact.model_path, "--max-body-bytes", "1000") as server:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            small = c.post("/recommendations/batch", json={"user_ids": list(range(1, 200))})
            assert small.status_code == 200  # 795 bytes
            big = c.post("/recommendations/batch", json={"user_ids": list(range(1, 300))})
            assert_json_error(big.status_code, big.headers, big.content, 413, "1000 bytes")


# ---------------------------------------------------------------------- work limit
def test_work_limit_is_documented_and_over_it_is_a_422_naming_it(client):
    schema = client.get("/openapi.json").json()
    batch_doc = schema["components"]["schemas"]["BatchRequest"]["description"]
    assert str(MAX_BATCH_WORK) in batch_doc
    assert MAX_BATCH_WORK == 100_000 and MAX_BATCH * 10 == MAX_BATCH_WORK
    cases = [
        (MAX_BATCH_WORK // MAX_N + 1, MAX_N),  # 101 x 1000
        (MAX_BATCH, MAX_BATCH_WORK // MAX_BATCH + 1),  # 10,000 x 11
    ]
    for users, n in cases:
        started = time.monotonic()
        response = client.post(
            "/recommendations/batch", json={"user_ids": list(range(users)), "n": n}
        )
        assert time.monotonic() - started < 5
        payload = assert_json_error(
            response.status_code,
            response.headers,
            response.content,
            422,
            str(MAX_BATCH_WORK),
            f"{users} x {n} = {users * n}",
        )
        assert payload["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize(("users", "n"), [(MAX_BATCH_WORK // MAX_N, MAX_N), (MAX_BATCH, 10)])
def test_largest_accepted_batches_are_served(client, users, n):
    ids = np.resize(np.arange(1, 611), users).tolist()
    answers = client.post("/recommendations/batch", json={"user_ids": ids, "n": n}).json()
    assert [a["user_id"] for a in answers] == ids
    assert {len(a["recommendations"]) for a in answers} == {n}


# ---------------------------------------------------------------------- other errors are JSON
@pytest.mark.parametrize(
    ("method", "path", "status", "word"),
    [
        ("GET", "/nowhere", 404, "no such endpoint"),
        ("PUT", "/health", 405, "GET"),
        ("DELETE", "/recommendations/batch", 405, "POST"),
        ("POST", "/recommendations/5", 405, "GET"),
    ],
)
def test_every_error_is_json_naming_the_problem(client, method, path, status, word):
    response = client.request(method, path)
    assert_json_error(response.status_code, response.headers, response.content, status, word)
    assert path in response.json()["message"]


# ---------------------------------------------------------------------- responsiveness
def test_singles_answer_while_the_largest_batches_run(server):
    """Three (or more) of the largest accepted batches back to back from one client; 50
    single-user requests from a second client meanwhile, each answered within 0.5 s."""
    batch = {"user_ids": np.resize(np.arange(1, 611), MAX_BATCH).tolist(), "n": 10}
    assert len(batch["user_ids"]) * batch["n"] == MAX_BATCH_WORK
    started = threading.Event()
    singles_done = threading.Event()
    batch_spans: list[tuple[float, float]] = []
    failures: list[str] = []

    def batches() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            while len(batch_spans) < 3 or not singles_done.is_set():
                t0 = time.monotonic()
                started.set()
                response = c.post("/recommendations/batch", json=batch)
                batch_spans.append((t0, time.monotonic()))
                if response.status_code != 200 or len(response.json()) != MAX_BATCH:
                    failures.append(f"batch: {response.status_code}")
                    break

    thread = threading.Thread(target=batches)
    thread.start()
    latencies, spans = [], []
    try:
        assert started.wait(60)
        time.sleep(0.05)  # the first batch is in the server
        with httpx.Client(base_url=server.url, timeout=60) as c:
            c.get("/recommendations/1")  # connect outside the measurement
            for user in range(1, 51):
                t0 = time.monotonic()
                response = c.get(f"/recommendations/{user}", params={"n": 10})
                t1 = time.monotonic()
                assert response.status_code == 200 and response.json()["user_id"] == user
                latencies.append(t1 - t0)
                spans.append((t0, t1))
    finally:
        singles_done.set()
        thread.join(timeout=300)
    assert not failures and len(batch_spans) >= 3
    # every single was asked while a batch was running (the test measured under load)
    first, last = batch_spans[0][0], batch_spans[-1][1]
    assert all(first < t0 and t1 < last for t0, t1 in spans)
    print(
        f"\nsingles during {len(batch_spans)} batches of {MAX_BATCH} x 10: "
        f"max {max(latencies) * 1000:.1f} ms, p50 {statistics.median(latencies) * 1000:.1f} ms; "
        f"batches {[round(b - a, 3) for a, b in batch_spans]} s"
    )
    assert max(latencies) < SINGLE_BOUND, latencies
