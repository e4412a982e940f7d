"""Every command's help shows every option's default (one formatter for all commands)."""

from __future__ import annotations

import argparse

import pytest

from alsresearch.cli import COMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_says_its_default(command):
    parser = _subparsers()[command]
    formatter = parser._get_formatter()
    missing = [
        action.option_strings[-1]
        for action in parser._actions
        if action.option_strings
        and action.nargs != 0  # flags: off unless given
        and not action.required
        and "default" not in (formatter._expand_help(action) if action.help else "").lower()
    ]
    assert not missing, f"alsresearch {command} --help: no default shown for {missing}"
    assert "default" in parser.format_help()  # the text the user reads
