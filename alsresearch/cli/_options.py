"""Options shared by several commands, and their translation into library values.

- :func:`add_data_options` / :func:`data_source`: where the interactions come from
  (:class:`~alsresearch.source.DataSource`): ``--events``, ``--format``, the column options,
  ``--event-weights view=1,click=2,purchase=5``, ``--timestamp-col``, ``--data-errors``;
- :func:`add_split_options` / :func:`split_spec`: the test split
  (:class:`~alsresearch.split.SplitSpec`): ``--split``, ``--test-fraction``, ``--split-seed``,
  and, for the commands that evaluate held-out users by fold-in, ``--protocol`` and
  ``--holdout-users``;
- :func:`add_seed_option` / :func:`model_seed`: ``--seed`` (the model seed; default
  :data:`alsresearch.seeds.DEFAULT_SEED`, ``none``: unseeded);
- :func:`add_backend_options` / :func:`backend_session`: ``--backend local|spark`` with
  ``--spark-master``, ``--spark-conf key=value`` and ``--verbose``.

Options left unset keep the library's defaults (defined once, in the library). An option given
on the command line that has no effect in the given combination (``--user-col`` without
``--events``, ``--holdout-users`` without ``--protocol fold_in``, ``--spark-master`` without
``--backend spark``, ...) is an error naming it: :func:`check_options` applies the rules of
:data:`RULES` (and a command's own) to the options the user gave (:func:`given_options`), before
any work is done.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from alsresearch.seeds import DEFAULT_SEED, UNSET
from alsresearch.source import FORMATS, DataSource
from alsresearch.split import PROTOCOLS, SPLIT_KINDS, SplitSpec

__all__ = [
    "BACKENDS",
    "RULES",
    "HelpFormatter",
    "Rule",
    "add_backend_options",
    "add_data_options",
    "add_seed_option",
    "add_split_options",
    "backend_session",
    "check_options",
    "data_source",
    "given_options",
    "model_seed",
    "parse_seed",
    "split_spec",
]

#: the engines that fit and score: ours, or Spark MLlib (:mod:`alsresearch.spark`)
BACKENDS = ("local", "spark")

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
#: option dest -> its flag, where the flag is not the dest with dashes (the flags a command
#: actually has are read from its parser: :func:`given_dests`)
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


def parse_seed(text: str) -> int | str:
    """``--seed``: a seed >= 0, or ``none`` (unseeded)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0 or 'none', got {text!r}")
    return value


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    """``--seed``: the model seed of a command that fits a model from a parameter file."""
    parser.add_argument(
        "--seed",
        type=parse_seed,
        metavar="SEED|none",
        help="seed of the model's initial factors; 'none': unseeded, as the record then says "
        f"(default: the random_state of --params, else {DEFAULT_SEED}, the one default seed "
        "of every command and notebook)",
    )


def add_init_option(parser: argparse.ArgumentParser) -> None:
    """``--init``: the model file a fit warm-starts from (``train``, ``promote``)."""
    parser.add_argument(
        "--init",
        type=Path,
        metavar="MODEL_FILE",
        help="warm start: an ALS model file (e.g. models/als_baseline.npz) whose factors the "
        "users and items it shares with the data start from; same factors and dtype "
        "(default: none, random initial factors)",
    )


def model_seed(args: argparse.Namespace):
    """The ``--seed`` given: an int, None for ``none`` (unseeded), or
    :data:`~alsresearch.seeds.UNSET` when not given (see
    :func:`alsresearch.seeds.resolve_seed`)."""
    value = getattr(args, "seed", None)
    if value is None:
        return UNSET
    return None if value == "none" else value


def add_backend_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--backend`` and the Spark session options (:func:`backend_session`); ``what`` says
    what Spark does in this command."""
    group = parser.add_argument_group(
        "backend", f"the engine: ours, or Spark MLlib ({what}; needs the spark extra and Java 17+)"
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: this package's engine; spark: Spark MLlib, see alsresearch.spark",
    )
    group.add_argument(
        "--spark-master",
        metavar="URL",
        help="Spark master, e.g. local[2], spark://host:7077, yarn (default: $SPARK_MASTER, "
        "else local[*]; with --backend spark only)",
    )
    group.add_argument(
        "--spark-conf",
        action="append",
        metavar="KEY=VALUE",
        help="Spark configuration, e.g. spark.driver.memory=8g; repeatable (default: none; "
        "with --backend spark only)",
    )
    group.add_argument(
        "--verbose",
        action="store_true",
        help="keep Spark's progress bar and INFO logs (with --backend spark only)",
    )


def backend_session(args: argparse.Namespace):
    """The Spark session ``--backend spark`` asks for (started here, before any data is read,
    so that missing Java, a missing extra or an unreachable master fail first), or None for
    the local engine."""
    if args.backend != "spark":
        return None
    from alsresearch.spark import get_session, parse_conf

    try:
        conf = parse_conf(args.spark_conf)
    except ValueError as exc:
        raise ValueError(f"--spark-conf: {exc}") from exc
    return get_session(master=args.spark_master, conf=conf, verbose=args.verbose)


# ---------------------------------------------------------------------- options without effect
def given_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, str]:
    """``{dest: flag}`` of the options given in ``argv``, in the order given (whatever their
    value: ``--split random`` is given though it is the default). ``parser`` is a fresh
    parser of the program, whose defaults this suppresses."""
    subparsers = [
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ]
    commands = {name: sub for a in subparsers for name, sub in a.choices.items()}
    for sub in (parser, *commands.values()):
        sub._defaults.clear()  # set_defaults values would count as given
        for action in sub._actions:
            if action.option_strings:
                action.default = argparse.SUPPRESS
    namespace, _ = parser.parse_known_args(argv)
    chosen = [parser]
    if getattr(namespace, "command", None) in commands:
        chosen.append(commands[namespace.command])
    flags = {
        action.dest: max(action.option_strings, key=len)
        for sub in chosen
        for action in sub._actions
        if action.option_strings
    }
    return {dest: flags[dest] for dest in vars(namespace) if dest in flags and dest != "help"}


def given_options(args: argparse.Namespace) -> dict[str, str]:
    """``{dest: flag}`` of the options given on the command line (``main`` records them in
    ``args.given``); without that record (a command function called directly), the options
    whose value is set (not None, not False)."""
    given = getattr(args, "given", None)
    if given is not None:
        return dict(given)
    return {
        dest: _FLAGS.get(dest, "--" + dest.replace("_", "-"))
        for dest, value in vars(args).items()
        if dest not in ("func", "command", "given") and value is not None and value is not False
    }


#: a rule: why the option it is attached to has no effect with these options, or None
Rule = Callable[[argparse.Namespace], "str | None"]


def _fixed_layout(args: argparse.Namespace) -> str | None:
    if getattr(args, "events", None) is None:
        return "has no effect without --events (the shipped MovieLens data has a fixed layout)"
    fmt = getattr(args, "data_format", None) or "events"
    if fmt != "events":
        return f"has no effect with --format {fmt} (its layout is fixed)"
    return None


def _event_weights(args: argparse.Namespace) -> str | None:
    fmt = getattr(args, "data_format", None) or "events"
    if getattr(args, "events", None) is not None and fmt == "retailrocket":
        return None
    reason = _fixed_layout(args)
    if reason is None and getattr(args, "event_col", None) is None:
        return "has no effect without --event-col (the column holding the event types)"
    return reason


def _data_errors(args: argparse.Namespace) -> str | None:
    fmt = getattr(args, "data_format", None) or "events"
    if getattr(args, "events", None) is None:
        return "has no effect without --events (the shipped MovieLens data has no bad rows)"
    if fmt in ("movielens", "lastfm"):
        return f"has no effect with --format {fmt} (its reader takes no policy for bad rows)"
    return None


def _decay(args: argparse.Namespace) -> str | None:
    fmt = getattr(args, "data_format", None) or "events"
    if fmt in ("lastfm", "lastfm-360k"):
        return f"has no effect with --format {fmt} (it has no timestamps)"
    if getattr(args, "events", None) is not None and fmt == "events":
        if getattr(args, "timestamp_col", None) is None:
            return "has no effect without --timestamp-col (event ages need timestamps)"
    return None


def _test_fraction(args: argparse.Namespace) -> float:
    fraction = getattr(args, "test_fraction", None)
    return SplitSpec().test_fraction if fraction is None else fraction


def _split_kind(args: argparse.Namespace) -> str:
    return getattr(args, "split", None) or SplitSpec().kind


def _nothing_held_out(args: argparse.Namespace) -> str | None:
    if _test_fraction(args) == 0:
        return "has no effect with --test-fraction 0 (nothing is held out)"
    return None


def _split_seed(args: argparse.Namespace) -> str | None:
    if _split_kind(args) == "temporal":
        return "has no effect with --split temporal (each user's latest cells are held out)"
    return _nothing_held_out(args)


def _fraction_rule(args: argparse.Namespace) -> str | None:
    if _split_kind(args) == "leave_last" and _test_fraction(args) != 0:
        return "has no effect with --split leave_last (one cell per user is held out)"
    return None


def _holdout_users(args: argparse.Namespace) -> str | None:
    if (getattr(args, "protocol", None) or SplitSpec().protocol) != "fold_in":
        return "has no effect without --protocol fold_in (the standard protocol holds out cells)"
    return _nothing_held_out(args)


def _spark_only(args: argparse.Namespace) -> str | None:
    if getattr(args, "backend", "local") != "spark":
        return "has no effect without --backend spark"
    return None


#: option dest -> the rules under which it has no effect (for every command that has it)
RULES: dict[str, tuple[Rule, ...]] = {
    "data_format": (lambda a: None if a.events is not None else "has no effect without --events",),
    **{dest: (_fixed_layout,) for dest in ("user_col", "item_col", "weight_col", "event_col")},
    "timestamp_col": (_fixed_layout,),
    "event_weights": (_event_weights,),
    "data_errors": (_data_errors,),
    "half_life": (_decay,),
    "as_of": (_decay,),
    "split": (_nothing_held_out,),
    "split_seed": (_split_seed,),
    "test_fraction": (_fraction_rule,),
    "protocol": (_nothing_held_out,),
    "holdout_users": (_holdout_users,),
    "spark_master": (_spark_only,),
    "spark_conf": (_spark_only,),
    "verbose": (_spark_only,),
}


def check_options(
    args: argparse.Namespace, rules: Mapping[str, Sequence[Rule]] | None = None
) -> None:
    """Refuse, in one ValueError naming every such flag, the options given on the command
    line that have no effect with the others: the command's own ``rules`` (dest -> rules),
    then the shared :data:`RULES`; the first rule that finds no effect names the reason."""
    table = {dest: tuple(found) for dest, found in RULES.items()}
    for dest, own in (rules or {}).items():
        table[dest] = (*own, *table.get(dest, ()))
    problems = []
    for dest, flag in given_options(args).items():
        for rule in table.get(dest, ()):
            reason = rule(args)
            if reason:
                problems.append(f"{flag} {reason}")
                break
    if problems:
        raise ValueError("; ".join(problems))
