"""``/docs`` works offline: a real headless browser (Debian's chromium) renders the Swagger UI of
the running service with every name outside loopback unresolvable, and its network log shows no
request that left loopback. Skipped, with the reason, where no chromium is installed
(``.ci/run`` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.serve

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.mark.skipif(BROWSER is None, reason=f"no headless browser: none of {BROWSERS} on PATH")
def test_docs_render_every_operation_with_no_request_leaving_loopback(server, client, tmp_path):
    netlog = tmp_path / "net.json"
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline but loopback
        f"--log-net-log={netlog}",
        "--virtual-time-budget=20000",  # let the page's scripts run and render
        "--dump-dom",
        f"{server.url}/docs",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    paths = client.get("/openapi.json").json()["paths"]
    # Swagger UI rendered an operation block for every path of the schema (not the blank page
    # it shows when its script cannot load)
    assert 'class="swagger-ui"' in dom
    for path in paths:
        assert f'data-path="{path}"' in dom, f"/docs did not render {path}"
    origin = server.url.rstrip("/")
    urls = _page_requests(netlog, origin)
    assert f"{origin}/openapi.json" in urls  # the log did record the page's own requests
    outside = sorted(u for u in urls if urlsplit(u).hostname not in LOOPBACK)
    assert not outside, f"/docs asked for {outside}"


def _page_requests(netlog: Path, origin: str) -> set[str]:
    """The URLs the docs page requested, from chromium's network log: requests started with the
    page as initiator, or in the page's network partition (the browser's own background calls,
    e.g. to its vendor, have neither and are not the page's)."""
    text = netlog.read_text()
    if not text.rstrip().endswith("}"):  # a log cut short at exit lacks its closing brackets
        text = text.rstrip().rstrip(",") + "]}"
    log = json.loads(text)
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    host = urlsplit(origin).hostname
    urls = set()
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] != start or "url" not in params:
            continue
        partition = params.get("network_isolation_key", "")
        if params.get("initiator") == origin or partition.startswith(f"http://{host} "):
            urls.add(params["url"])
    return urls
