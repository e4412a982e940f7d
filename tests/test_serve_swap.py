"""A promoted model reaches a running service with no failed request (issue 13, part 4).

The end-to-end cases run ``alsresearch serve --watch`` as a real uvicorn process and
``alsresearch promote`` as a subprocess while client threads keep asking; the model a response
came from is told by its ``model_version`` (the first 12 hex digits of the model file's sha256,
computed here from the file itself). The watcher's decisions on half-written sets are checked
in process, step by step, on the same app.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

from alsresearch.als import ALSModel
from alsresearch.artefact import artefact_paths
from alsresearch.data import Interactions
from alsresearch.promote import promote
from alsresearch.serve import create_app
from tests.serve_helpers import Server, promote_command

pytestmark = pytest.mark.serve

FIRST = {"factors": 8, "iterations": 3, "alpha": 1.0}
SECOND = {"factors": 12, "iterations": 3, "alpha": 2.0}
INTERVAL = "0.3"
SWAP_TIMEOUT = 120.0


def version(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def replace_atomically(target: Path, data: bytes) -> None:
    """What a careless deploy does: a complete new file renamed over the old one."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def wait_for(predicate, timeout: float = SWAP_TIMEOUT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ClientLoop:
    """Two threads asking until stopped: GET singles and POST batches (known and unknown
    users), recording every status code and which model versions each answer names."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.batch_versions: list[set[tuple[str, str]]] = []
        self.single_versions: list[str] = []
        self.threads = [
            threading.Thread(target=self._singles),
            threading.Thread(target=self._batches),
        ]

    def __enter__(self) -> ClientLoop:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def _singles(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            user = 0
            while not self.stop.is_set():
                user = user % 650 + 1  # 611..650 are unknown: the popularity path
                try:
                    r = c.get(f"/recommendations/{user}", params={"n": 5})
                except httpx.HTTPError as exc:
                    self.errors.append(f"single: {exc!r}")
                    continue
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    self.single_versions.append(r.json()["model_version"])

    def _batches(self) -> None:
        rng = np.random.default_rng(5)
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.stop.is_set():
                users = rng.integers(1, 700, size=200).tolist()
                try:
                    r = c.post("/recommendations/batch", json={"user_ids": users, "n": 5})
                except httpx.HTTPError as exc:
                    self.errors.append(f"batch: {exc!r}")
                    continue
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    answers = r.json()
                    assert [a["user_id"] for a in answers] == users
                    self.batch_versions.append({(a["model"], a["model_version"]) for a in answers})


def live_version(url: str) -> str:
    return httpx.get(f"{url}/model", timeout=30).json()["live"]["model_version"]


def test_promotions_reach_the_running_service_without_a_failed_request(tmp_path):
    models = tmp_path / "models"
    first = promote_command(models, FIRST)
    assert first.returncode == 0, first.stderr
    files = artefact_paths(models / "als_baseline.npz")
    v1 = version(files.model)
    with Server(files.model, "--watch", "--watch-interval", INTERVAL) as server:
        assert live_version(server.url) == v1
        with ClientLoop(server.url) as loop:
            wait_for(lambda: len(loop.batch_versions) >= 3, what="first batches")
            # a good promotion: a new model, swapped in while the clients ask
            second = promote_command(models, SECOND, "--force")
            assert second.returncode == 0, second.stderr
            v2 = version(files.model)
            assert v2 != v1
            wait_for(lambda: live_version(server.url) == v2, what="the new model to go live")
            card = httpx.get(f"{server.url}/model").json()
            assert card["params"]["factors"] == SECOND["factors"]
            assert card["live"]["model_sha256"].startswith(v2)
            n_before = len(loop.batch_versions)
            wait_for(lambda: len(loop.batch_versions) >= n_before + 3, what="batches after")

            # a bad promotion: a truncated model file renamed into place, the card unchanged
            good_bytes = files.model.read_bytes()
            replace_atomically(files.model, good_bytes[: len(good_bytes) // 3])
            wait_for(lambda: "refused" in server.stderr(), what="the refusal (stale card)")
            # ... and with a card whose sha256 matches the truncated file (a consistent but
            # corrupt set): refused when loading
            card_on_disk = json.loads(files.card.read_text())
            card_on_disk["files"][files.model.name]["sha256"] = hashlib.sha256(
                files.model.read_bytes()
            ).hexdigest()
            replace_atomically(files.card, json.dumps(card_on_disk).encode())
            wait_for(lambda: server.stderr().count("refused") >= 2, what="the refusal (corrupt)")
            n_before = len(loop.batch_versions)
            wait_for(lambda: len(loop.batch_versions) >= n_before + 3, what="batches after")
            assert live_version(server.url) == v2
    assert not loop.errors, loop.errors[:5]
    assert loop.statuses and set(loop.statuses) == {200}
    # every batch came wholly from one model; both models answered, the first one first
    assert all(len(seen) == 1 for seen in loop.batch_versions)
    order = [next(iter(seen))[1] for seen in loop.batch_versions]
    assert {name for seen in loop.batch_versions for name, _ in seen} == {"als_baseline"}
    assert set(order) == {v1, v2} and set(loop.single_versions) == {v1, v2}
    switch = order.index(v2)
    assert set(order[:switch]) == {v1} and set(order[switch:]) == {v2}
    refusals = [line for line in server.stderr().splitlines() if "refused" in line]
    assert len(refusals) == 2, server.stderr()
    assert all(str(files.model) in line and v2 in line for line in refusals)
    assert "does not match its model card" in refusals[0]
    assert "unreadable model file" in refusals[1]


def test_sighup_loads_a_new_model_without_watch(tmp_path, movielens):
    first = promote(FIRST, movielens, models_dir=tmp_path)
    v1 = version(first.model_path)
    with Server(first.model_path) as server:
        second = promote(SECOND, movielens, models_dir=tmp_path, force=True)
        v2 = version(second.model_path)
        time.sleep(1.0)
        assert live_version(server.url) == v1  # no --watch: nothing looks without a signal
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: live_version(server.url) == v2, what="SIGHUP to load the new model")
        body = httpx.get(f"{server.url}/recommendations/42").json()
        assert body["model_version"] == v2
        assert server.process.poll() is None  # SIGHUP did not end the process


def string_id_model(path: Path) -> None:
    m = sp.random(30, 20, density=0.3, random_state=np.random.RandomState(2), format="csr")
    m.data = np.ceil(m.data * 3)
    data = Interactions(m, [f"u{i}" for i in range(30)], [f"i{i}" for i in range(20)])
    ALSModel(factors=4, iterations=2, random_state=1).fit(data).save(path)


def test_a_model_with_other_id_types_is_refused(tmp_path, movielens):
    path = tmp_path / "plain.npz"  # no card: the watcher goes by the file alone
    ALSModel(**FIRST).fit(movielens).save(path)
    v1 = version(path)
    with Server(path, "--watch", "--watch-interval", INTERVAL) as server:
        staged = tmp_path / "staged.npz"
        string_id_model(staged)
        os.replace(staged, path)
        wait_for(lambda: "refused" in server.stderr(), what="the refusal")
        assert live_version(server.url) == v1
        assert httpx.get(f"{server.url}/recommendations/1").json()["model_version"] == v1
    line = next(ln for ln in server.stderr().splitlines() if "refused" in ln)
    assert "incompatible" in line and "string" in line and str(path) in line


# ---------------------------------------------------------------------- the watcher, step by step
@pytest.fixture
def promoted_twice(tmp_path, movielens):
    """Two promotions of one artefact: the live set in ``live/``, the next one's files kept
    aside in ``next/``."""
    live = promote(FIRST, movielens, models_dir=tmp_path / "live")
    nxt = promote(SECOND, movielens, models_dir=tmp_path / "next")
    return artefact_paths(live.model_path), artefact_paths(nxt.model_path)


def test_watcher_waits_while_a_promotion_renames_and_takes_the_whole_set(promoted_twice):
    live, nxt = promoted_twice
    app = create_app(live.model)
    watcher, holder = app.state.watcher, app.state.live
    v1 = holder.service.version
    assert watcher.check() == "unchanged"
    # promote renames popularity, model, card in that order under its journal
    live.journal.write_text("{}")
    shutil.copyfile(nxt.popularity, live.popularity)
    assert watcher.check() == "waiting"
    shutil.copyfile(nxt.model, live.model)
    assert watcher.check() == "waiting"
    assert holder.service.version == v1
    shutil.copyfile(nxt.card, live.card)
    live.journal.unlink()
    assert watcher.check() == "swapped"
    assert holder.service.version == version(nxt.model) != v1
    assert holder.service.card["params"]["factors"] == SECOND["factors"]
    assert watcher.check() == "unchanged"


def test_watcher_gives_a_mismatched_set_one_more_look_then_refuses(promoted_twice):
    live, nxt = promoted_twice
    app = create_app(live.model)
    watcher, holder = app.state.watcher, app.state.live
    v1 = holder.service.version
    shutil.copyfile(nxt.model, live.model)  # copied without its card (yet)
    assert watcher.check() == "waiting"
    assert watcher.check() == "refused"  # still so at the next look: refused, logged once
    assert watcher.check() == "unchanged"
    assert holder.service.version == v1
    shutil.copyfile(nxt.popularity, live.popularity)
    shutil.copyfile(nxt.card, live.card)  # the set is whole again
    assert watcher.check() == "swapped"
    assert holder.service.version == version(nxt.model)
