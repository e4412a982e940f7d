"""Data sets: the shipped default, readers for public formats, downloads, synthetic data.

- :mod:`~alsresearch.datasets.readers`: :func:`load_default` (the shipped MovieLens
  ml-latest-small, every rating one interaction) and the readers, each returning
  :class:`~alsresearch.data.Interactions`: :func:`read_movielens` (``u.data``,
  ``ratings.dat``, ``ratings.csv``), :func:`read_lastfm` (HetRec 2011 ``user_artists.dat``),
  :func:`read_lastfm_360k`, :func:`read_retailrocket` (RetailRocket's ``events.csv``, event
  types weighted by :data:`RETAILROCKET_EVENT_WEIGHTS`), :func:`read_events` (any CSV/Parquet
  events file). Malformed lines raise a ValueError naming the file and line.
- :mod:`~alsresearch.datasets.remote`: :func:`download` / :func:`load` fetch the official
  archives in :data:`REGISTRY`, verified against their publishers' checksums and cached under
  :func:`default_cache_dir`; data sets whose host needs a login are listed with where to get
  them.
- :mod:`~alsresearch.datasets.generator`: :func:`synthetic` / :func:`synthetic_events`, a
  seeded generator with planted topics, power-law item popularity and log-normal user
  activity, vectorised for benchmark-sized data.

Everything public is importable from here (``from alsresearch.datasets import load``).
"""

from __future__ import annotations

from alsresearch.datasets.generator import SyntheticParams, synthetic, synthetic_events
from alsresearch.datasets.readers import (
    RETAILROCKET_EVENT_WEIGHTS,
    load_default,
    read_events,
    read_lastfm,
    read_lastfm_360k,
    read_movielens,
    read_retailrocket,
)
from alsresearch.datasets.remote import (
    REGISTRY,
    RemoteDataset,
    default_cache_dir,
    download,
    load,
)

__all__ = [
    "REGISTRY",
    "RETAILROCKET_EVENT_WEIGHTS",
    "RemoteDataset",
    "SyntheticParams",
    "default_cache_dir",
    "download",
    "load",
    "load_default",
    "read_events",
    "read_lastfm",
    "read_lastfm_360k",
    "read_movielens",
    "read_retailrocket",
    "synthetic",
    "synthetic_events",
]
