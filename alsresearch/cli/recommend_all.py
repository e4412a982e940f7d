"""``alsresearch recommend-all``: every user's top-n of a model file, precomputed into a Parquet
dataset in chunks (resumable; see :mod:`alsresearch.precompute`)."""

from __future__ import annotations

from pathlib import Path

from alsresearch.cli._options import HelpFormatter
from alsresearch.precompute import DEFAULT_CHUNK_USERS


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "recommend-all",
        help="precompute every user's top-n into a Parquet dataset (resumable)",
        description=(
            "Rank every user of a model file and write (user_id, rank, item_id, score) rows, "
            "ids exactly as in training, into a Parquet dataset folder: one part per chunk of "
            "users, each written atomically, so memory stays one chunk whatever the number of "
            "users and an interrupted run continues from the last complete part when run again "
            "with the same model, --n and --chunk-users. Read it with "
            "pandas.read_parquet(FOLDER)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="model file (.npz)")
    p.add_argument("--out", type=Path, required=True, help="output folder (a Parquet dataset)")
    p.add_argument("--n", type=int, default=100, help="recommendations per user")
    p.add_argument(
        "--chunk-users", type=int, default=DEFAULT_CHUNK_USERS, help="users per Parquet part"
    )
    p.add_argument(
        "--include-seen",
        action="store_true",
        help="also rank the items each user already has (default: excluded, as the service does)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_recommend_all)


def _recommend_all(args) -> int:
    from alsresearch.precompute import recommend_all

    result = recommend_all(
        args.model,
        args.out,
        n=args.n,
        chunk_users=args.chunk_users,
        exclude_seen=not args.include_seen,
        progress=not args.quiet,
    )
    resumed = f" ({result.resumed} parts kept from an earlier run)" if result.resumed else ""
    print(
        f"wrote {result.n_rows:,} recommendations for {result.n_users:,} users to {result.out} "
        f"in {result.chunks} parts{resumed}, {result.seconds:.1f} s"
    )
    return 0
