"""A non-editable install works from any directory and writes nothing inside the package.

The package is built into a wheel from a copy of the working tree (tracked and new files, as a
release would see them), installed with ``--no-deps`` into a fresh virtual environment outside
the checkout, and run from another empty directory: ``alsresearch tune --trials 2`` on the
shipped data (so the data and the default search space must come from the wheel), ``train``
with the best.json it wrote, and ``serve`` answering a request. The fresh environment borrows
the test environment's dependencies through a ``.pth`` line, so no network is needed; the test
checks that ``alsresearch`` itself is imported from the wheel, not from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
from pathlib import Path

import pytest

from tests.layout import REPO_ROOT

pytestmark = pytest.mark.slow


def _tree_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _copy_working_tree(dst: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = REPO_ROOT / name
        if not (src.exists() or src.is_symlink()):
            continue  # deleted in the working tree, not yet committed
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs the git checkout to build the wheel from")
    tmp = tmp_path_factory.mktemp("install")
    src, wheels, env = tmp / "src", tmp / "wheels", tmp / "venv"
    _copy_working_tree(src)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(src),
        ],
        check=True,
    )
    (wheel,) = wheels.glob("alsresearch-*.whl")
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "work"
    work.mkdir()
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ALSRESEARCH_HOME", "NUMBA_CACHE_DIR", "PYTHONPATH")
    }
    environ |= {"XDG_CACHE_HOME": str(tmp / "cache"), "HOME": str(tmp / "home")}
    return {"env": env, "purelib": purelib, "work": work, "environ": environ}


def _run(installed, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(installed["env"] / "bin" / "alsresearch"), *args],
        cwd=installed["work"],
        env=installed["environ"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"alsresearch {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_the_package_is_imported_from_the_wheel(installed):
    out = subprocess.run(
        [
            str(installed["env"] / "bin" / "python"),
            "-c",
            "import alsresearch; print(alsresearch.__file__)",
        ],
        cwd=installed["work"],
        env=installed["environ"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out).is_relative_to(installed["purelib"])


def test_tune_train_and_serve_work_from_another_directory_and_write_only_there(installed):
    package = installed["purelib"] / "alsresearch"
    before = _tree_files(installed["env"])

    _run(installed, "tune", "--trials", "2", "--quiet", "--out", "sweep")
    best = json.loads((installed["work"] / "sweep" / "best.json").read_text())
    assert best["data"]["n_users"] == 610  # the shipped MovieLens, read from the wheel
    assert best["trials"]["COMPLETE"] + best["trials"].get("PRUNED", 0) == 2
    assert list((installed["work"] / "experiments").glob("*.db")), "study db under the cwd"

    _run(installed, "train", "--params", "sweep/best.json", "--out", "model.npz")
    assert (installed["work"] / "model.npz").is_file()

    port = _free_port()
    server = subprocess.Popen(
        [
            str(installed["env"] / "bin" / "alsresearch"),
            "serve",
            "--model",
            "model.npz",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=installed["work"],
        env=installed["environ"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/recommendations/1?n=5", timeout=60
                ) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        assert answer is not None, (
            server.stdout.read().decode() if server.poll() is not None else "no answer"
        )
        assert answer["user_id"] == 1 and answer["source"] == "als"
        assert len(answer["recommendations"]) == 5
    finally:
        server.terminate()
        server.wait(timeout=30)

    after = _tree_files(installed["env"])
    assert sorted(after - before) == [], "files written inside the installed environment"
    assert not list(package.rglob("*.nbi")), "numba cache inside the package"
