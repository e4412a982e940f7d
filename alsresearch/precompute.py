"""Precomputed recommendations for every user of a model, written in chunks (``alsresearch
recommend-all``).

The output is a Parquet *dataset*: a folder of ``part-NNNNN.parquet`` files, one per chunk of
``chunk_users`` users in the model's user order, each with the columns ``user_id``, ``rank``
(1 = best), ``item_id`` and ``score`` (float32), ids exactly as in training (pandas and
pyarrow read the folder as one table: ``pd.read_parquet(folder)``). Each part is written to a
temporary file and renamed, so a part on disk is complete; ``_manifest.json`` says which model
file (sha256), ``n`` and chunk size the parts belong to, and ``_SUCCESS`` marks a finished run.
An interrupted run resumes: the same model, ``n`` and chunk size skip the parts already
written; anything else is refused rather than mixed.

Memory does not grow with the number of users: one chunk's top-n (``chunk_users x n``) and
its table are alive at a time, beside the model, which is loaded for ranking only
(:func:`~alsresearch.base.load_model` with ``ranking_only``: the file's arrays as they are, no
id lookup, no array of seen-item values), and the item-factor screen is built a batch of
items at a time (:func:`alsresearch._quantized.quantize`). ``benchmarks/bench_recommend_all.py``
measures the peak against the model file plus one chunk (the README has the figures).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alsresearch.base import Recommender, load_model, validate_n
from alsresearch.checks import check_int
from alsresearch.files import atomic_write, file_digest, write_json

__all__ = ["DEFAULT_CHUNK_USERS", "PrecomputeResult", "recommend_all"]

#: users per chunk (one Parquet part): 10,000 users x n = 100 is 1M rows, ~23 MiB of table
DEFAULT_CHUNK_USERS = 10_000
#: Parquet encoding of a part: dictionaries for the ids and ranks, none for the scores (nearly
#: all distinct: their dictionary would cost ~25 MiB while a part is written, and bytes on disk)
_ENCODING = {"use_dictionary": ["user_id", "rank", "item_id"]}
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class PrecomputeResult:
    out: Path
    n_users: int
    n_rows: int
    chunks: int
    resumed: int
    seconds: float


def _part(out: Path, index: int) -> Path:
    return out / f"part-{index:05d}.parquet"


def recommend_all(
    model_path: str | Path,
    out: str | Path,
    n: int = 100,
    chunk_users: int = DEFAULT_CHUNK_USERS,
    exclude_seen: bool = True,
    progress: bool = True,
) -> PrecomputeResult:
    """Write every user's top-``n`` of the model file ``model_path`` to the Parquet dataset
    folder ``out`` (see the module docstring); returns what was written."""
    model_path = Path(model_path)
    out = Path(out)
    n = validate_n(n)
    chunk_users = check_int(chunk_users, "chunk_users", low=1)
    start = time.perf_counter()
    manifest = {
        "model_file": str(model_path),
        "model_sha256": file_digest(model_path),
        "n": n,
        "chunk_users": chunk_users,
        "exclude_seen": bool(exclude_seen),
    }
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder (the output is a Parquet dataset)")
    out.mkdir(parents=True, exist_ok=True)
    recorded = out / MANIFEST
    if recorded.exists():
        previous = json.loads(recorded.read_text())
        differs = sorted(
            k for k in manifest if k != "model_file" and previous.get(k) != manifest[k]
        )
        if differs:
            raise ValueError(
                f"{out} holds parts of another run ({', '.join(differs)} differ: "
                f"{ {k: previous.get(k) for k in differs} } there); use another --out or remove it"
            )
    else:
        write_json(recorded, manifest, "manifest")
    (out / SUCCESS).unlink(missing_ok=True)

    model = load_model(model_path, ranking_only=True)
    n_users = model.n_users
    n = min(n, model.n_items)
    chunks = -(-n_users // chunk_users)
    resumed = rows = 0
    user_type = _arrow_type(model.user_ids)
    item_type = _arrow_type(model.item_ids)
    for c in range(chunks):
        part = _part(out, c)
        lo, hi = c * chunk_users, min(n_users, (c + 1) * chunk_users)
        if part.exists():
            resumed += 1
            rows += pq.ParquetFile(part).metadata.num_rows
            continue
        # the table is a temporary of this statement: one chunk's arrays are alive at a time
        rows += _write_part(
            part, _chunk_table(model, lo, hi, n, exclude_seen, user_type, item_type)
        )
        if progress:
            print(
                f"\rrecommend-all: {hi:,}/{n_users:,} users, chunk {c + 1}/{chunks}",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress and chunks:
        print(file=sys.stderr)
    (out / SUCCESS).write_text("")
    return PrecomputeResult(out, n_users, rows, chunks, resumed, time.perf_counter() - start)


def _write_part(part: Path, table: pa.Table) -> int:
    """Write ``table`` as the part ``part``; returns its number of rows."""
    atomic_write(part, lambda fh: pq.write_table(table, fh, **_ENCODING))
    return table.num_rows


def _chunk_table(
    model: Recommender,
    lo: int,
    hi: int,
    n: int,
    exclude_seen: bool,
    user_type: pa.DataType,
    item_type: pa.DataType,
) -> pa.Table:
    """The rows of users ``lo:hi``: the scores in the ranking's own array, and no masking
    copies when every user has ``n`` items (the -1 padding is at the end of a list); the
    index array is freed before the user and rank columns are made."""
    idx, val = model.topk_rows(np.arange(lo, hi), n, exclude_seen)
    per_user = np.count_nonzero(idx >= 0, axis=1)
    keep = slice(None) if per_user.min(initial=n) == n else (idx >= 0).ravel()
    items = pa.array(model.item_ids[idx.ravel()[keep]], item_type)
    del idx
    return pa.table(
        {
            "user_id": pa.array(np.repeat(model.user_ids[lo:hi], per_user), user_type),
            "rank": pa.array(np.tile(np.arange(1, n + 1, dtype=np.int32), hi - lo)[keep]),
            "item_id": items,
            "score": pa.array(val.ravel()[keep].astype(np.float32, copy=False)),
        }
    )


def _arrow_type(ids: np.ndarray) -> pa.DataType:
    return pa.int64() if ids.dtype.kind in "iu" else pa.string()
