"""``alsresearch download [NAME]``: fetch, verify and cache a public data set
(:func:`alsresearch.datasets.download`), or with no name list them with where each comes from."""

from __future__ import annotations

import sys
import textwrap

from alsresearch import datasets
from alsresearch.cli._options import HelpFormatter, check_options


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download a public data set (MovieLens, Last.fm) into the cache, or list them "
        "(with RetailRocket, fetched by hand)",
        description=datasets.download.__doc__.split("\n\n")[0]
        + " Without a name, list the data sets and where each comes from.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "name",
        nargs="?",
        choices=sorted(datasets.REGISTRY),
        help="data set to fetch (none: list them)",
    )
    parser.add_argument(
        "--cache-dir",
        help="cache directory (default: $ALSRESEARCH_CACHE, else $XDG_CACHE_HOME/alsresearch, "
        "else ~/.cache/alsresearch)",
    )
    parser.add_argument(
        "--base-url", help="mirror to fetch the archive from (default: the publisher's site)"
    )
    parser.set_defaults(func=_download, cache_dir=None)


def _download(args) -> int:
    check_options(
        args,
        {
            "base_url": (
                lambda a: (
                    None
                    if a.name is not None
                    else "has no effect without a data set NAME (nothing is fetched)"
                ),
            )
        },
    )
    if args.name is None:
        _list(args.cache_dir or datasets.default_cache_dir())
        return 0
    try:
        path = datasets.download(args.name, args.cache_dir, base_url=args.base_url)
    except (OSError, ValueError) as exc:
        print(f"alsresearch download: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _list(cache_dir) -> None:
    print(f"alsresearch download NAME fetches one of these into {cache_dir}:")
    manual = []
    for spec in datasets.REGISTRY.values():
        if spec.manual:
            manual.append(spec)
        else:
            print(f"  {spec.name:<16} {spec.url}")
    if manual:
        print("Fetched by hand:")
    for spec in manual:
        print(f"  {spec.name:<16} {spec.url}")
        print(
            textwrap.fill(
                spec.manual, width=96, initial_indent=" " * 19, subsequent_indent=" " * 19
            )
        )
