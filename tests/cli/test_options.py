"""The command line is consistent: each short flag means one thing in every command,
and every option says what it is for. (No server: the parser is read.)"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from backstate.cli._app import build_parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _options() -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                yield path, action


def test_each_short_flag_means_one_thing_everywhere() -> None:
    meanings: dict[str, set[str]] = {}
    for _, action in _options():
        long = next((o for o in action.option_strings if o.startswith("--")), action.dest)
        for short in (o for o in action.option_strings if len(o) == 2):
            meanings.setdefault(short, set()).add(long)
    assert {s: m for s, m in meanings.items() if len(m) > 1} == {}
    assert meanings["-m"] == {"--machine"} and meanings["-i"] == {"--instance"}
    assert meanings["-c"] == {"--context"} and meanings["-v"] == {"--version"}


def test_the_commands_most_used_have_help_on_every_option() -> None:
    missing = sorted(
        f"{' '.join(path)} {action.option_strings[0]}"
        for path, action in _options()
        if path
        and path[0] in ("instances", "machines", "machine-versions", "migrations", "check")
        and not action.help
    )
    assert missing == []
