"""Options shared by several commands, and their translation into library values.

- :func:`add_data_options` / :func:`data_source`: where the interactions come from
  (:class:`~alsresearch.source.DataSource`): ``--events``, ``--format``, the column options,
  ``--event-weights view=1,click=2,purchase=5``, ``--timestamp-col``, ``--data-errors``;
- :func:`add_split_options` / :func:`split_spec`: the test split
  (:class:`~alsresearch.split.SplitSpec`): ``--split``, ``--test-fraction``, ``--split-seed``,
  and, for the commands that evaluate held-out users by fold-in, ``--protocol`` and
  ``--holdout-users``.

Options left unset keep the library's defaults (defined once, in the library); an option that
has no effect in the given combination is an error naming it (the library's checks).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alsresearch.source import FORMATS, DataSource
from alsresearch.split import PROTOCOLS, SPLIT_KINDS, SplitSpec

__all__ = [
    "HelpFormatter",
    "add_data_options",
    "add_split_options",
    "data_source",
    "given_options",
    "split_spec",
]

_SPLIT_DEFAULTS = SplitSpec()

_DATA_OPTIONS = {
    # option dest -> DataSource field
    "events": "path",
    "data_format": "format",
    "user_col": "user_col",
    "item_col": "item_col",
    "weight_col": "weight_col",
    "event_col": "event_col",
    "event_weights": "event_weights",
    "timestamp_col": "timestamp_col",
    "data_errors": "errors",
    "half_life": "half_life",
    "as_of": "as_of",
}


_SPLIT_OPTIONS = {
    "split": "kind",
    "test_fraction": "test_fraction",
    "split_seed": "seed",
    "protocol": "protocol",
    "holdout_users": "holdout_users",
}
#: option dest -> its flag, where the flag is not the dest with dashes
_FLAGS = {"data_format": "--format"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when there is one worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data-source options (every command that reads interactions)."""
    group = parser.add_argument_group(
        "data", "where the interactions come from (default: the shipped MovieLens ml-latest-small)"
    )
    group.add_argument(
        "--events",
        type=Path,
        help="events file (CSV, TSV or Parquet), one row per event (default: the shipped "
        "MovieLens ml-latest-small)",
    )
    group.add_argument(
        "--format",
        dest="data_format",
        choices=FORMATS,
        help="layout of --events: a generic events file (default, read with the column "
        "options) or a public data set's own layout",
    )
    group.add_argument("--user-col", help="user id column of --events (default user_id)")
    group.add_argument("--item-col", help="item id column of --events (default item_id)")
    group.add_argument(
        "--weight-col", help="numeric weight column of --events (default: every event counts 1)"
    )
    group.add_argument(
        "--event-col",
        help="event type column of --events (view, click, ...; default: none, one type)",
    )
    group.add_argument(
        "--event-weights",
        metavar="TYPE=W,...",
        help="weight of each event type, e.g. view=1,click=2,purchase=5 (needs --event-col, "
        "or --format retailrocket; default: every type counts 1)",
    )
    group.add_argument(
        "--timestamp-col",
        help="timestamp column of --events (Unix seconds or date text); needed by --split "
        "temporal and --half-life (default: none)",
    )
    group.add_argument(
        "--data-errors",
        choices=("raise", "drop"),
        help="bad rows: stop with an error naming them (default) or drop them with a warning",
    )
    group.add_argument(
        "--half-life",
        metavar="DURATION",
        help="recency weighting: each event weighs 0.5 ** (age / DURATION), e.g. 30D, '14 days', "
        "12h, or seconds (needs timestamps; default: no decay)",
    )
    group.add_argument(
        "--as-of",
        metavar="TIME",
        help="the time event ages are counted from (ISO 8601 or Unix seconds; no event may be "
        "later; default: the latest event of the training data)",
    )


def data_source(args: argparse.Namespace) -> DataSource:
    """The :class:`DataSource` the data options describe (unset options keep the defaults)."""
    given = {
        field: getattr(args, dest)
        for dest, field in _DATA_OPTIONS.items()
        if getattr(args, dest, None) is not None
    }
    return DataSource(**given)


def _users(text: str) -> float | int:
    """``--holdout-users``: an integer is a number of users, anything else a share."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a share of users in (0, 1) or a number of users, got {text!r}"
        ) from None


def add_split_options(parser: argparse.ArgumentParser, fold_in: bool = False) -> None:
    """The test-split options: the same values give the same split in every command.
    ``fold_in=True`` adds ``--protocol`` and ``--holdout-users`` (commands that can evaluate
    held-out users through fold-in)."""
    group = parser.add_argument_group("split", "the held-out test split")
    group.add_argument(
        "--split",
        choices=sorted(SPLIT_KINDS),
        help="random: a seeded share of each user's cells; temporal: each user's latest share "
        f"(needs --timestamp-col or timestamped data); leave_last: one cell per user "
        f"(default {_SPLIT_DEFAULTS.kind})",
    )
    group.add_argument(
        "--test-fraction",
        type=float,
        help="share of each user's cells held out as test (0: no test split; default "
        f"{_SPLIT_DEFAULTS.test_fraction})",
    )
    group.add_argument(
        "--split-seed", type=int, help=f"seed of the test split (default {_SPLIT_DEFAULTS.seed})"
    )
    if not fold_in:
        return
    group.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="standard: every user trains and part of each user's cells is test; fold_in: "
        "--holdout-users users never train, --test-fraction of each one's cells is test and "
        "they are ranked from the rest, folded in without retraining (strong "
        f"generalization; --split random only; default {_SPLIT_DEFAULTS.protocol})",
    )
    group.add_argument(
        "--holdout-users",
        type=_users,
        metavar="SHARE_OR_N",
        help="with --protocol fold_in: the users held out of training, a share in (0, 1) of "
        "the users with two or more cells, or a number of users (default "
        f"{_SPLIT_DEFAULTS.holdout_users})",
    )


def split_spec(args: argparse.Namespace) -> SplitSpec:
    """The :class:`SplitSpec` the split options describe (unset options keep the defaults)."""
    return SplitSpec(
        **{
            field: getattr(args, dest)
            for dest, field in _SPLIT_OPTIONS.items()
            if getattr(args, dest, None) is not None
        }
    )


def given_options(args: argparse.Namespace) -> list[str]:
    """The data and split options given on the command line (unset ones are None), by flag,
    for commands where some combination makes them meaningless."""
    return [
        _FLAGS.get(dest, "--" + dest.replace("_", "-"))
        for dest in (*_DATA_OPTIONS, *_SPLIT_OPTIONS)
        if getattr(args, dest, None) is not None
    ]
