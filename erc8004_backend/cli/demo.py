"""`erc8004 demo`: the whole system on a local devnet, watched live."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import TYPE_CHECKING, Annotated

import psycopg
import typer
from rich.console import Console
from rich.live import Live

from erc8004_backend.cli.api import Host, notes
from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.run import run_all
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import Settings, get_settings
from erc8004_backend.database.connection import connect, with_database
from erc8004_backend.database.migrations import Migrator, load_source
from erc8004_backend.demo.view import STYLES, DemoView, Entry

if TYPE_CHECKING:
    from erc8004_backend.demo.runner import DemoOptions

_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def demo(
    database_url: DatabaseUrl = None,
    database_name: Annotated[
        str,
        typer.Option(
            "--database-name",
            metavar="NAME",
            help="The demo's own database on that server, dropped and created afresh at every"
            " start (your other databases are left alone).",
        ),
    ] = "erc8004_demo",
    host: Host = None,
    port: Annotated[
        int,
        typer.Option(
            metavar="PORT", help="Port of the REST API (0: any free port).", min=0, max=65535
        ),
    ] = 8000,
    rate: Annotated[
        float,
        typer.Option(
            metavar="RATE", help="Background devnet events per second (0: the scene only).", min=0
        ),
    ] = 2.0,
    seconds: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Stop after this many seconds (default: at Ctrl-C).", min=1
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="SEED", help="Seed of the devnet's activity generator.")
    ] = 0,
    log_level: Annotated[
        str,
        typer.Option(
            metavar="LEVEL",
            help="Least level of the backend's log lines shown above the view (debug, info,"
            " warning, error).",
        ),
    ] = "error",
) -> None:
    """A devnet with live activity, the whole backend, local Telegram / webhook / MCP targets,
    the seven example triggers and a reputation threshold: events arriving, agents' reputation
    moving, triggers firing and deliveries landing, live."""
    # Imported here, not at the top: every erc8004 command starts faster without them.
    from erc8004_backend.api.server import listen, listening_url
    from erc8004_backend.demo.runner import DEMO_USER, DemoOptions

    configure_logging(log_level)
    if not _DATABASE_NAME.match(database_name):
        raise typer.BadParameter(
            "use lowercase letters, digits and underscores (at most 63)",
            param_hint="--database-name",
        )
    settings = get_settings()
    console = Console()
    api_host = host or settings.api_host
    # The port first: taken, it is one line, and the demo's database is left as it was.
    with listen(api_host, port) as api_socket, database(database_url) as server_url:
        url = with_database(server_url, database_name)
        _recreate(server_url, database_name)
        with connect(url) as connection:
            Migrator(connection, load_source(settings.migrations_dir)).run()
        notes.print(f"[dim]demo database {database_name} created and migrated[/]", soft_wrap=True)
        options = DemoOptions(api_host=api_host, rate=rate, seconds=seconds, seed=seed)
        # Also in the view's header; here too for a log, where the view is not drawn.
        notes.print(f"dashboard on {listening_url(api_host, api_socket)}/ (sign in as"
                    f" {DEMO_USER['username']}, password {DEMO_USER['password']})",
                    soft_wrap=True)  # fmt: skip
        if console.is_terminal:
            view = DemoView(header=[])
            with Live(view.render(), console=console, refresh_per_second=4,
                      get_renderable=view.render, screen=False):  # fmt: skip
                _run(settings, url, api_socket, options, view)
        else:
            view = DemoView(header=[], on_entry=lambda entry: _print(console, entry))
            _run(settings, url, api_socket, options, view)
        console.print(view.summary())


def _run(
    settings: Settings, url: str, api_socket: socket.socket, options: DemoOptions, view: DemoView
) -> None:
    from erc8004_backend.demo.runner import run_demo

    async def work(stop: asyncio.Event) -> None:
        await run_demo(settings, url, api_socket, options, view, run_all, stop)

    asyncio.run(run_until_signalled(work, "demo", grace=10))


def _print(console: Console, entry: Entry) -> None:
    console.print(entry.line(), style=STYLES.get(entry.kind, ""), highlight=False, soft_wrap=True)


def _recreate(server_url: str, name: str) -> None:
    with connect(server_url) as connection:
        connection.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            psycopg.sql.Identifier(name)))  # fmt: skip
        connection.execute(
            psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
        )
