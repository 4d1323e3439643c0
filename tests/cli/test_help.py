"""Every command of the CLI shows an example in its help, and every option says what it
is for: the test walks the whole parser, so a new command or option cannot skip them."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from backstate.cli._app import build_parser


def commands(
    parser: argparse.ArgumentParser, path: str = "backstate"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command that runs something (the leaves of the parser tree)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
    for group in groups:
        for name, child in group.choices.items():
            yield from commands(child, f"{path} {name}")


ALL = dict(commands(build_parser()))


def test_the_walk_finds_every_group() -> None:
    groups = {path.split()[1] for path in ALL}
    assert {"serve", "dev", "check", "machines", "indexes", "instances", "logs", "viz"} <= groups
    assert len(ALL) > 40


@pytest.mark.parametrize("path", sorted(ALL))
def test_the_help_shows_an_example(path: str) -> None:
    text = ALL[path].format_help()
    example = text.partition("\nexample")[2]
    assert example.startswith((": ", "s:")) and "backstate " in example, text


@pytest.mark.parametrize("path", sorted(ALL))
def test_every_option_has_help_text(path: str) -> None:
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in ALL[path]._actions
        if not isinstance(action, argparse._HelpAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert not missing, f"{path}: no help for {missing}"


def test_backstate_alone_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from backstate.cli import main

    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: backstate")
    assert all(f"    {group} " in out for group in ("serve", "dev", "instances", "machines"))
