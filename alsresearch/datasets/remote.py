"""Public data sets on the network: the registry, verified downloads, a local cache.

:data:`REGISTRY` names each data set's official archive, the file inside it that its reader
needs, and the checksum its publisher gives. :func:`download` fetches, verifies and caches it
under :func:`default_cache_dir`; :func:`load` reads it with its reader. Data sets whose host
needs a login (RetailRocket, on Kaggle) are listed with where to get them and how to read
them, but :func:`download` refuses them with those instructions instead of fetching.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from alsresearch import paths
from alsresearch.data import Interactions
from alsresearch.datasets.readers import (
    read_lastfm,
    read_lastfm_360k,
    read_movielens,
    read_retailrocket,
)
from alsresearch.errors import ChecksumError
from alsresearch.files import atomic_write, file_digest

__all__ = ["REGISTRY", "RemoteDataset", "default_cache_dir", "download", "load"]


@dataclass(frozen=True)
class RemoteDataset:
    """A public data set: where its official archive lives and how to check and read it."""

    name: str
    url: str
    """The official archive (zip or tar.gz); for a data set fetched by hand, the page that
    offers it."""
    member: str
    """Path inside the archive of the file the reader needs."""
    reader: Callable[[Path], Interactions]
    md5: str | None = None
    """The archive's checksum as its publisher gives it (None: none published)."""
    member_md5: str | None = None
    """The member's checksum, for publishers that give file checksums instead."""
    checksum_source: str = ""
    """Where the checksums come from (or why there are none)."""
    manual: str = ""
    """Set when the host needs a login: why, and how to get and read the file by hand.
    :func:`download` refuses such a data set with this text instead of fetching it."""

    @property
    def archive_name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_SIDECAR = "GroupLens' published {}.md5 sidecar"

#: name -> RemoteDataset. Checksums are the publishers' own values, never ones we computed.
REGISTRY: dict[str, RemoteDataset] = {
    spec.name: spec
    for spec in [
        RemoteDataset(
            "ml-100k",
            _GROUPLENS + "ml-100k.zip",
            "ml-100k/u.data",
            read_movielens,
            md5="0e33842e24a9c977be4e0107933c0723",
            checksum_source=_SIDECAR.format("ml-100k.zip"),
        ),
        RemoteDataset(
            "ml-1m",
            _GROUPLENS + "ml-1m.zip",
            "ml-1m/ratings.dat",
            read_movielens,
            md5="c4d9eecfca2ab87c1945afe126590906",
            checksum_source=_SIDECAR.format("ml-1m.zip"),
        ),
        RemoteDataset(
            "ml-10m",
            _GROUPLENS + "ml-10m.zip",
            "ml-10M100K/ratings.dat",
            read_movielens,
            md5="ce571fd55effeba0271552578f2648bd",
            checksum_source=_SIDECAR.format("ml-10m.zip"),
        ),
        RemoteDataset(
            "ml-20m",
            _GROUPLENS + "ml-20m.zip",
            "ml-20m/ratings.csv",
            read_movielens,
            md5="cd245b17a1ae2cc31bb14903e1204af3",
            checksum_source=_SIDECAR.format("ml-20m.zip"),
        ),
        RemoteDataset(
            "ml-25m",
            _GROUPLENS + "ml-25m.zip",
            "ml-25m/ratings.csv",
            read_movielens,
            md5="6b51fb2759a8657d3bfcbfc42b592ada",
            checksum_source=_SIDECAR.format("ml-25m.zip"),
        ),
        RemoteDataset(
            "ml-32m",
            _GROUPLENS + "ml-32m.zip",
            "ml-32m/ratings.csv",
            read_movielens,
            md5="d472be332d4daa821edc399621853b57",
            checksum_source=_SIDECAR.format("ml-32m.zip"),
        ),
        RemoteDataset(
            "ml-latest-small",
            _GROUPLENS + "ml-latest-small.zip",
            "ml-latest-small/ratings.csv",
            read_movielens,
            member_md5="325a6f09399d1c45671f187505e1a100",
            checksum_source=(
                "no published archive checksum found (GroupLens regenerates the 'latest' "
                "archives); member md5 of the 2018-09-26 release as recorded in "
                "data/ml-latest-small/PROVENANCE.txt, which ships the same file"
            ),
        ),
        RemoteDataset(
            "lastfm-2k",
            "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
            "user_artists.dat",
            read_lastfm,
            checksum_source="no published checksum found for the HetRec 2011 archive",
        ),
        RemoteDataset(
            "lastfm-360k",
            "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz",
            "lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv",
            read_lastfm_360k,
            member_md5="be672526eb7c69495c27ad27803148f1",
            checksum_source="file MD5 published in the data set's README (version 1.2, 2010)",
        ),
        RemoteDataset(
            "retailrocket",
            "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset",
            "events.csv",
            read_retailrocket,
            checksum_source="none: fetched by hand from Kaggle, so nothing is verified here",
            manual=(
                "its host, Kaggle, needs a login, so it is not downloaded automatically. Sign "
                "in, download the archive and unzip it, then read its events.csv with "
                "--events path/events.csv --format retailrocket (in Python: "
                "DataSource(path='path/events.csv', format='retailrocket').load())"
            ),
        ),
    ]
}


#: where downloads are cached (defined with every other path in :mod:`alsresearch.paths`)
default_cache_dir = paths.cache_dir


def _check(path: Path, expected: str | None, what: str) -> None:
    if expected is not None and (got := file_digest(path, "md5")) != expected.lower():
        raise ChecksumError(f"{what}: md5 {got} does not match the published md5 {expected}")


def download(
    name: str | RemoteDataset,
    cache_dir: str | Path | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch a public data set's official archive, verify it, cache it; return the data file.

    ``name`` is a key of :data:`REGISTRY` (``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
    ``ml-25m``, ``ml-32m``, ``ml-latest-small``, ``lastfm-2k``, ``lastfm-360k``) or a
    :class:`RemoteDataset`. A data set fetched by hand (``retailrocket``: its host needs a
    login) raises a ValueError that says where to get it and how to read it. The archive goes
    to ``<cache_dir>/<name>/`` (default :func:`default_cache_dir`); the file the reader needs is
    extracted beside it. Both are written to a temporary file and renamed into place, so an
    interrupted download leaves nothing that looks complete. The publisher's checksum (of the archive, or of the extracted file where only
    that is published) is verified on download and again on every later call; a cached copy
    that verifies is never downloaded again, one that does not is replaced. Where no checksum
    is published, a warning says so. ``url`` replaces the archive's address, ``base_url`` only
    the part before the file name (mirrors, tests).
    """
    spec = _lookup_remote(name)
    if spec.manual:
        raise ValueError(f"{spec.name} must be fetched by hand from {spec.url}: {spec.manual}")
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / spec.name
    source = url or (
        base_url.rstrip("/") + "/" + spec.archive_name if base_url is not None else spec.url
    )
    archive = root / spec.archive_name
    member = root / spec.member
    if archive.is_file():
        try:
            _check(archive, spec.md5, f"cached {archive}")
        except ChecksumError as exc:
            warnings.warn(f"{exc}; downloading it again", UserWarning, stacklevel=2)
            archive.unlink()
            member.unlink(missing_ok=True)
    if not archive.is_file():
        _fetch(source, archive, spec, timeout)
        member.unlink(missing_ok=True)
    if not member.is_file():
        _extract(archive, spec.member, member)
    try:
        _check(member, spec.member_md5, f"{member} (from {spec.archive_name})")
    except ChecksumError:
        archive.unlink()
        member.unlink()
        raise
    return member


def load(
    name: str | RemoteDataset,
    cache_dir: str | Path | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    **read_kwargs,
) -> Interactions:
    """:func:`download` a registered data set and read it with its reader.

    ``read_kwargs`` go to the reader, e.g. ``load("ml-1m", min_rating=4.0)`` or
    ``load("lastfm-360k", item="mbid")``.
    """
    spec = _lookup_remote(name)
    return spec.reader(download(spec, cache_dir, url=url, base_url=base_url), **read_kwargs)


def _lookup_remote(name: str | RemoteDataset) -> RemoteDataset:
    if isinstance(name, RemoteDataset):
        return name
    if name not in REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _fetch(source: str, archive: Path, spec: RemoteDataset, timeout: float) -> None:
    digest = hashlib.md5(usedforsecurity=False)

    def write(f: BinaryIO) -> None:
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
        except OSError as exc:  # URLError, HTTPError, timeouts
            raise OSError(f"could not download {spec.name} from {source}: {exc}") from exc
        if spec.md5 is not None and digest.hexdigest() != spec.md5.lower():
            raise ChecksumError(
                f"{spec.name}: the archive downloaded from {source} has md5 {digest.hexdigest()}, "
                f"not the published md5 {spec.md5} ({spec.checksum_source}); nothing was cached"
            )

    atomic_write(archive, write)
    if spec.md5 is None and spec.member_md5 is None:
        warnings.warn(
            f"{spec.name}: {spec.checksum_source or 'no published checksum'}; the download "
            f"from {source} could not be verified (its md5 is {digest.hexdigest()})",
            UserWarning,
            stacklevel=3,
        )


def _extract(archive: Path, name: str, target: Path) -> None:
    """Extract one member of a zip or tar archive to ``target`` (atomically)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                try:
                    info = z.getinfo(name)
                except KeyError:
                    raise ValueError(f"{archive} has no member {name!r}") from None
                atomic_write(target, lambda f: shutil.copyfileobj(z.open(info), f))
            return
        with tarfile.open(archive) as t:
            try:
                fileobj = t.extractfile(name)
            except KeyError:
                fileobj = None
            if fileobj is None:
                raise ValueError(f"{archive} has no file member {name!r}")
            atomic_write(target, lambda f: shutil.copyfileobj(fileobj, f))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{archive}: not a readable zip or tar archive ({exc})") from exc
