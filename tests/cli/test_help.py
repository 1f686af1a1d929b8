"""Every command's help, walked through the command tree (commands added later included):
each option and argument says what it is, and what it takes reads as a word (BLOCK, URL,
FILE), not as a Python type (`<int range>`, `<list[str]>`)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from erc8004_backend.cli.main import build_app

WORD = re.compile(r"[A-Z][A-Z0-9_]*(\.\.\.)?")


def parameters() -> Iterator[tuple[str, TyperOption | TyperArgument, typer.Context]]:
    """(command path and parameter name, parameter, context) for every command and group."""
    root = typer.main.get_command(build_app())
    assert isinstance(root, TyperGroup)
    pending: list[tuple[str, TyperCommand | TyperGroup]] = [("erc8004", root)]
    while pending:
        path, command = pending.pop()
        context = typer.Context(command, info_name=path.rsplit(" ", 1)[-1])
        for parameter in command.get_params(context):
            assert isinstance(parameter, TyperOption | TyperArgument), (path, parameter)
            yield f"{path} {parameter.name}", parameter, context
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                assert isinstance(sub, TyperCommand | TyperGroup), (path, name)
                pending.append((f"{path} {name}", sub))


def test_the_walk_finds_every_command() -> None:
    names = {name for name, _, _ in parameters()}
    assert "erc8004 triggers test limit" in names
    assert "erc8004 devnet feedback score" in names
    assert "erc8004 db migrate add name" in names
    assert len(names) > 80


def test_every_option_and_argument_has_help() -> None:
    missing = [name for name, parameter, _ in parameters() if not (parameter.help or "").strip()]
    assert missing == []


def test_what_options_and_arguments_take_reads_as_a_word() -> None:
    unreadable = []
    for name, parameter, context in parameters():
        if isinstance(parameter, TyperArgument):
            # The help shows an argument by its metavar (else its Python name) and usage too.
            shown = parameter.metavar or parameter.name or ""
            if not WORD.fullmatch(shown):
                unreadable.append((name, shown))
        elif not parameter.is_flag:  # a flag takes nothing
            shown = parameter.display_type_rich(context) or ""
            if "<" in shown or "list[" in shown or not WORD.fullmatch(shown):
                unreadable.append((name, shown))
    assert unreadable == []
