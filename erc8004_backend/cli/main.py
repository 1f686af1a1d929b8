"""The `erc8004` command line: its commands, and `main`, the entry point.

Each command's module is imported only when that command runs (all of them for the overall
help): `erc8004 indexer` does not pay for the imports of the API, the worker's channels or
the MCP SDK before it starts indexing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeGuard

import typer
from rich.console import Console

from erc8004_backend.cli.loading import loading
from erc8004_backend.errors import Erc8004Error

if TYPE_CHECKING:
    import psycopg

# name -> (module, attribute): a command function, or a Typer app of subcommands.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("erc8004_backend.cli.db", "db_app"),
    "indexer": ("erc8004_backend.cli.indexer", "indexer"),
    "chains": ("erc8004_backend.cli.chains", "chains"),
    "processor": ("erc8004_backend.cli.triggers", "processor"),
    "triggers": ("erc8004_backend.cli.triggers", "triggers_app"),
    "devnet": ("erc8004_backend.cli.devnet", "devnet_app"),
    "worker": ("erc8004_backend.cli.actions", "worker"),
    "jobs": ("erc8004_backend.cli.actions", "jobs_app"),
    "api": ("erc8004_backend.cli.api", "api"),
    "mcp": ("erc8004_backend.cli.mcp", "mcp"),
    "run": ("erc8004_backend.cli.run", "run"),
    "webhook-sink": ("erc8004_backend.cli.webhook_sink", "webhook_sink"),
    "demo": ("erc8004_backend.cli.demo", "demo"),
}
HELP = "ERC-8004 backend: index the registries, evaluate triggers, deliver actions."


def build_app(names: Iterable[str] = COMMANDS) -> typer.Typer:
    """The command line with the named commands (their modules imported now)."""
    app = typer.Typer(
        name="erc8004",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    # A group even with one command: `erc8004 indexer` keeps its name as the first word.
    @app.callback()
    def _group() -> None:
        pass

    for name in names:
        module, attribute = COMMANDS[name]
        command = getattr(importlib.import_module(module), attribute)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)
    return app


def app_for(arguments: list[str]) -> typer.Typer:
    """The command line for these arguments: only their command, if they name one."""
    first = arguments[0] if arguments else None
    return build_app([first] if first in COMMANDS else COMMANDS)


def main() -> None:
    stderr = Console(stderr=True)
    try:
        # What the imports make lives as long as the process: frozen after, out of the
        # collector's sight, a full collection no longer walks those objects (tens of
        # milliseconds each time). Long-running parts freeze again once started
        # (cli/signals.py).
        with loading():
            app = app_for(sys.argv[1:])
        app()
    except Erc8004Error as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)
    except Exception as error:
        if not is_database_error(error):
            raise
        # Anything the database says that no command anticipated: still one line.
        detail = (error.diag.message_primary or str(error)).strip().splitlines()[0]
        stderr.print(f"[bold red]database error:[/] {detail}", highlight=False, soft_wrap=True)
        sys.exit(1)


def is_database_error(error: Exception) -> TypeGuard[psycopg.Error]:
    """Whether psycopg raised it. Looked up, not imported: the commands that use a database
    have imported psycopg, and the others (and every command's help) need not."""
    driver = sys.modules.get("psycopg")
    return driver is not None and isinstance(error, driver.Error)
