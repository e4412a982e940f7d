"""No option is silently ignored: every option given on the command line that has no effect in
the given combination is an error naming it (exit 1, one line, before any work), whatever its
value (``--user-col user_id`` is the default column, and still has no effect without
``--events``); the combinations where the same options mean something pass the same check."""

from __future__ import annotations

import json

import pytest

from alsresearch.cli import build_parser, main
from alsresearch.cli import train as train_command
from alsresearch.cli._options import check_options, given_dests


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSRESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    return tmp_path / "home"


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"factors": 4, "iterations": 2}))
    return path


TRAIN = ["train", "--params", "{params}", "--out", "{tmp}/m.npz"]
PROMOTE = ["promote", "--params", "{params}", "--models-dir", "{tmp}/models"]
EVALUATE = ["evaluate", "--model", "{tmp}/m.npz"]

# (argv, the flag the error must name)
NO_EFFECT = [
    # the example: a column option without --events, given with the default's value
    ([*PROMOTE, "--user-col", "user_id"], "--user-col"),
    ([*TRAIN, "--item-col", "movieId"], "--item-col"),
    ([*EVALUATE, "--weight-col", "plays"], "--weight-col"),
    ([*TRAIN, "--event-col", "event"], "--event-col"),
    ([*TRAIN, "--timestamp-col", "ts"], "--timestamp-col"),
    ([*TRAIN, "--format", "movielens"], "--format"),
    # a format with a fixed layout takes no column option
    ([*TRAIN, "--events", "{tmp}/r.csv", "--format", "movielens", "--user-col", "u"], "--user-col"),
    ([*TRAIN, "--events", "{tmp}/e.csv", "--event-weights", "view=1,buy=5"], "--event-weights"),
    ([*TRAIN, "--event-weights", "view=1"], "--event-weights"),
    ([*TRAIN, "--data-errors", "raise"], "--data-errors"),
    (
        [*TRAIN, "--events", "{tmp}/r", "--format", "lastfm", "--data-errors", "drop"],
        "--data-errors",
    ),
    ([*TRAIN, "--events", "{tmp}/e.csv", "--half-life", "30D"], "--half-life"),
    ([*TRAIN, "--events", "{tmp}/r", "--format", "lastfm", "--as-of", "2020-01-01"], "--as-of"),
    # split options
    ([*TRAIN, "--holdout-users", "0.2"], "--holdout-users"),
    ([*PROMOTE, "--holdout-users", "10"], "--holdout-users"),
    (["tune", "--holdout-users", "10"], "--holdout-users"),
    ([*TRAIN, "--split", "temporal", "--split-seed", "42"], "--split-seed"),
    ([*TRAIN, "--test-fraction", "0", "--split-seed", "3"], "--split-seed"),
    ([*TRAIN, "--test-fraction", "0", "--split", "random"], "--split"),
    ([*TRAIN, "--test-fraction", "0", "--protocol", "standard"], "--protocol"),
    ([*TRAIN, "--split", "leave_last", "--test-fraction", "0.3"], "--test-fraction"),
    # Spark options without --backend spark
    ([*TRAIN, "--spark-master", "local[2]"], "--spark-master"),
    ([*TRAIN, "--backend", "local", "--spark-conf", "spark.ui.enabled=false"], "--spark-conf"),
    ([*TRAIN, "--verbose"], "--verbose"),
    ([*EVALUATE, "--spark-master", "local[2]"], "--spark-master"),
    (["tune", "--spark-conf", "a=b"], "--spark-conf"),
    # a warm start Spark cannot take
    ([*TRAIN, "--backend", "spark", "--init", "{tmp}/m.npz"], "--init"),
    # --recover takes only --name and --models-dir
    (["promote", "--recover", "--seed", "3"], "--seed"),
    (["promote", "--recover", "--init", "{tmp}/m.npz"], "--init"),
    (["promote", "--recover", "--user-col", "u"], "--user-col"),
    # serve and download
    (["serve", "--watch-interval", "5"], "--watch-interval"),
    (["download", "--base-url", "http://127.0.0.1:9/"], "--base-url"),
]


def _argv(argv, tmp_path, params) -> list[str]:
    return [a.format(tmp=tmp_path, params=params) for a in argv]


@pytest.mark.parametrize(("argv", "flag"), NO_EFFECT, ids=[" ".join(a[1:]) for a, _ in NO_EFFECT])
def test_an_option_without_effect_is_an_error_naming_it(tmp_path, params, capsys, argv, flag):
    assert main(_argv(argv, tmp_path, params)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert f"error: {flag} " in err and "has no effect" in err, err
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "models").exists()


def test_every_option_without_effect_is_named_at_once(tmp_path, params, capsys):
    argv = [*TRAIN, "--user-col", "u", "--holdout-users", "5", "--verbose"]
    assert main(_argv(argv, tmp_path, params)) == 1
    err = capsys.readouterr().err
    assert all(flag in err for flag in ("--user-col", "--holdout-users", "--verbose")), err


# combinations where every given option has an effect: the check lets them through
MEANINGFUL = [
    ["--events", "e.csv", "--user-col", "user_id", "--item-col", "i", "--weight-col", "w"],
    ["--events", "e.csv", "--format", "events", "--event-col", "ev", "--event-weights", "v=1"],
    ["--events", "e.csv", "--format", "retailrocket", "--event-weights", "view=1"],
    ["--events", "e.csv", "--format", "retailrocket", "--data-errors", "drop"],
    ["--events", "e.csv", "--format", "lastfm-360k", "--data-errors", "drop"],
    ["--events", "e.csv", "--timestamp-col", "ts", "--half-life", "30D", "--as-of", "2020-01-01"],
    ["--events", "e.csv", "--format", "movielens", "--half-life", "30D"],
    ["--half-life", "30D"],  # the shipped MovieLens has timestamps
    ["--protocol", "fold_in", "--holdout-users", "10", "--split-seed", "3"],
    ["--split", "leave_last", "--split-seed", "3"],  # a seeded draw where there are no times
    ["--split", "temporal", "--test-fraction", "0.3"],
    ["--test-fraction", "0"],
    ["--backend", "spark", "--spark-master", "local[2]", "--spark-conf", "a=b", "--verbose"],
    ["--init", "m.npz", "--seed", "none"],
]


@pytest.mark.parametrize("options", MEANINGFUL, ids=[" ".join(o) for o in MEANINGFUL])
def test_options_with_an_effect_pass_the_check(options):
    argv = ["train", "--params", "p.json", "--out", "m.npz", *options]
    args = build_parser().parse_args(argv)
    args.given = given_dests(build_parser(), argv)
    assert set(args.given) >= {"params", "out"}
    check_options(args, train_command._RULES)  # raises on any option without effect


def test_given_options_are_named_by_their_flag_whatever_their_value():
    argv = ["promote", "--format", "events", "-k", "10", "--split", "random", "--force"]
    given = given_dests(build_parser(), argv)
    assert given == {"data_format": "--format", "k": "-k", "split": "--split", "force": "--force"}
    assert given_dests(build_parser(), ["serve"]) == {}
