"""Run ``alsresearch serve`` as a real process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 240.0  # seconds: a first start compiles numba kernels (slow on a loaded machine)
#: the parameters of the MovieLens model the service tests promote and serve (conftest.artefact)
SERVED_PARAMS = {"factors": 16, "iterations": 5, "alpha": 1.0}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(model: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "alsresearch",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        *extra,
    ]


class Server:
    """``with Server(model) as server: httpx.get(server.url + "/health")``.

    Starts the service (in ``cwd``, default the checkout, with ``env``, default this process's
    environment), waits until /health answers, and stops it (SIGTERM, then SIGKILL) on exit. If
    the process dies during start-up, RuntimeError carries its stderr. A thread reads stderr as
    it comes (so a chatty server never blocks on a full pipe): ``stderr()`` is the text so far.
    """

    def __init__(
        self, model: Path, *extra: str, env: dict | None = None, cwd: Path | None = None
    ) -> None:
        self.model = Path(model)
        self.extra = extra
        self.env = os.environ if env is None else env
        self.cwd = REPO if cwd is None else cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    def stderr(self) -> str:
        return "".join(self._lines)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.append(line)

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            serve_command(self.model, self.port, *self.extra),
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=15)
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.stderr()}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {START_TIMEOUT} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        if self._reader is not None:
            self._reader.join(timeout=15)
        if self.process.stderr:
            self.process.stderr.close()

    def __exit__(self, *exc) -> None:
        self.stop()


def failed_start(model: Path, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    """Run the service on a model that should stop start-up; returns the finished process."""
    return subprocess.run(
        serve_command(model, free_port()),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def promote_command(models_dir: Path, params: dict, *extra: str) -> subprocess.CompletedProcess:
    """``alsresearch promote`` as a subprocess on the shipped MovieLens data (exit status
    checked by the caller)."""
    params_file = Path(models_dir).parent / f"params-{abs(hash(json.dumps(params)))}.json"
    params_file.write_text(json.dumps({"params": params}))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "alsresearch",
            "promote",
            "--params",
            str(params_file),
            "--models-dir",
            str(models_dir),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
