"""Downloads over loopback HTTP: checksums verified, a verified cache never fetched twice, a
corrupted one replaced, clear errors; the registry; ``alsresearch download``."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import tarfile
import threading
import zipfile

import pytest

from alsresearch import datasets
from alsresearch.cli import main
from alsresearch.errors import ChecksumError

# ml-100k's u.data layout: user 1 rates items 10 (5 stars) and 20 (2 stars), user 2 item 10
# (4 stars)
U_DATA = "1\t10\t5\t978300760\n1\t20\t2\t978302109\n2\t10\t4\t978301968\n"


class _Server:
    """Files served from memory on 127.0.0.1 (a free port), counting requests per path."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buffer.getvalue()


def _tar_gz_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ML100K_ZIP = _zip_bytes({"ml-100k/u.data": U_DATA, "ml-100k/README": "fixture"})


@pytest.fixture
def server():
    s = _Server({"/ml-100k.zip": ML100K_ZIP})
    yield s
    s.close()


def _fixture_spec(server, **kwargs) -> datasets.RemoteDataset:
    fields = {
        "name": "fixture-100k",
        "url": server.url + "/ml-100k.zip",
        "member": "ml-100k/u.data",
        "reader": datasets.read_movielens,
        "md5": hashlib.md5(ML100K_ZIP).hexdigest(),
    }
    return datasets.RemoteDataset(**{**fields, **kwargs})


def test_download_verifies_caches_and_never_downloads_twice(server, tmp_path):
    spec = _fixture_spec(server)
    path = datasets.download(spec, tmp_path)
    assert path == tmp_path / "fixture-100k" / "ml-100k" / "u.data"
    assert path.read_text() == U_DATA
    assert server.hits == {"/ml-100k.zip": 1}
    X = datasets.load(spec, tmp_path)
    assert X.nnz == U_DATA.count("\n")
    assert server.hits == {"/ml-100k.zip": 1}  # the verified cached copy was used
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "fixture-100k").rglob("*")) == [
        "ml-100k",
        "ml-100k.zip",
        "u.data",
    ]


def test_load_passes_reader_options(server, tmp_path):
    X = datasets.load(_fixture_spec(server), tmp_path, min_rating=4.0)
    assert sorted(zip(X.to_frame()["user_id"], X.to_frame()["item_id"], strict=True)) == [
        (1, 10),
        (2, 10),
    ]


def test_download_command(server, tmp_path, monkeypatch, capsys):
    argv = ["download", "ml-100k", "--cache-dir", str(tmp_path), "--base-url", server.url]
    # the fixture archive is not GroupLens' ml-100k: a clear error and exit code 1
    assert main(argv) == 1
    assert "published md5" in capsys.readouterr().err
    monkeypatch.setitem(datasets.REGISTRY, "ml-100k", _fixture_spec(server, name="ml-100k"))
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "ml-100k" / "ml-100k" / "u.data")


def test_download_command_without_a_name_lists_the_registry(tmp_path, capsys):
    assert main(["download", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out.splitlines()[0]
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines() if "://" in line}
    assert listed == {name: spec.url for name, spec in datasets.REGISTRY.items()}


def test_download_rejects_an_archive_that_fails_the_published_checksum(server, tmp_path):
    # the registry's ml-100k entry carries GroupLens' published md5; our fixture is not it
    with pytest.raises(ChecksumError, match="0e33842e24a9c977be4e0107933c0723"):
        datasets.download("ml-100k", tmp_path, base_url=server.url)
    assert list(tmp_path.rglob("*.zip")) == [] and list(tmp_path.rglob("*.part")) == []
    assert not (tmp_path / "ml-100k" / "ml-100k" / "u.data").exists()


def test_download_replaces_a_corrupted_cached_copy(server, tmp_path):
    spec = _fixture_spec(server)
    datasets.download(spec, tmp_path)
    (tmp_path / "fixture-100k" / "ml-100k.zip").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="downloading it again"):
        path = datasets.download(spec, tmp_path)
    assert path.read_text() == U_DATA
    assert server.hits == {"/ml-100k.zip": 2}


def test_download_checks_a_published_member_checksum_in_a_tar_gz(tmp_path):
    plays = "u1\tmbid-1\tsome band\t10\nu2\t\tother band\t3\n"
    member = "lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv"
    s = _Server({"/lastfm-dataset-360K.tar.gz": _tar_gz_bytes({member: plays})})
    try:
        # the registry's lastfm-360k entry checks the file MD5 its README publishes
        with pytest.raises(ChecksumError, match="be672526eb7c69495c27ad27803148f1"):
            datasets.download("lastfm-360k", tmp_path, base_url=s.url)
        assert list((tmp_path / "lastfm-360k").rglob("*.*")) == []
        spec = datasets.RemoteDataset(
            "fixture-360k",
            s.url + "/lastfm-dataset-360K.tar.gz",
            member,
            datasets.read_lastfm_360k,
            member_md5=hashlib.md5(plays.encode()).hexdigest(),
        )
        X = datasets.load(spec, tmp_path)
        assert X.matrix.toarray().tolist() == [[0.0, 10.0], [3.0, 0.0]]
    finally:
        s.close()


def test_download_without_a_published_checksum_warns(server, tmp_path):
    spec = _fixture_spec(server, md5=None, checksum_source="no published checksum found")
    with pytest.warns(UserWarning, match="could not be verified"):
        datasets.download(spec, tmp_path)


def test_download_errors_are_clear(server, tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'ml-7m'.*ml-100k"):
        datasets.download("ml-7m", tmp_path)
    with pytest.raises(OSError, match="404"):
        datasets.download(_fixture_spec(server, url=server.url + "/gone.zip"), tmp_path)
    with pytest.raises(ValueError, match=r"no member 'ml-100k/ratings\.dat'"):
        datasets.download(_fixture_spec(server, member="ml-100k/ratings.dat"), tmp_path)
    assert list(tmp_path.rglob("*.part")) == []


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ALSRESEARCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_cache_dir() == tmp_path / "xdg" / "alsresearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_cache_dir() == tmp_path / "home" / ".cache" / "alsresearch"
    monkeypatch.setenv("ALSRESEARCH_CACHE", str(tmp_path / "mine"))
    assert datasets.default_cache_dir() == tmp_path / "mine"


def test_registry_entries_are_complete():
    for name, spec in datasets.REGISTRY.items():
        assert spec.name == name and spec.url.startswith("http") and spec.member
        assert spec.checksum_source, f"{name}: say where the checksum comes from, or why none"
        for value in (spec.md5, spec.member_md5):
            assert value is None or re.fullmatch(r"[0-9a-f]{32}", value)
