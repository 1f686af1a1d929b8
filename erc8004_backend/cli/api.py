"""`erc8004 api`: the REST API under uvicorn."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated

import structlog
import typer
from rich.console import Console

from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import Settings, get_settings

notes = Console(stderr=True)
log = structlog.get_logger(__name__)

Host = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS", help="Listen address (default: ERC8004_API_HOST, else 127.0.0.1)."
    ),
]
Port = Annotated[
    int | None,
    typer.Option(
        metavar="PORT",
        help="Listen port (default: ERC8004_API_PORT, else 8000; 0: any free port).",
        min=0,
        max=65535,
    ),
]


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches this machine only ('localhost' or a loopback IP)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:  # a host name, or "" (every address)
        return False


def check_token_keys(settings: Settings, listening_on: str | None = None) -> None:
    """A warning while ERC8004_TOKEN_KEYS holds the public development key; exit 2 when the
    API would listen with it on an address other than loopback (ERC8004_ALLOW_DEV_KEY=true
    lets it)."""
    if not settings.uses_development_key:
        return
    if listening_on is not None and not is_loopback(listening_on) and not settings.allow_dev_key:
        notes.print(
            f"[bold red]error:[/] refusing to listen on {listening_on} with the public"
            " development key in ERC8004_TOKEN_KEYS: anyone can decrypt the MCP tokens and"
            " webhook secrets it protects. Set ERC8004_TOKEN_KEYS to a key of your own (see"
            " the README), listen on a loopback address, or set ERC8004_ALLOW_DEV_KEY=true",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    log.warning(
        "token_keys.development_key",
        hint="ERC8004_TOKEN_KEYS holds the public development key: set a key of your own"
        " (see the README) before storing real MCP tokens or webhook secrets",
    )


def api(database_url: DatabaseUrl = None, host: Host = None, port: Port = None) -> None:
    """Serve the REST API (/api/v1; interactive docs at /api/v1/docs)."""
    # Imported here, not at the top: every erc8004 command starts faster without them.
    from erc8004_backend.api.app import create_app
    from erc8004_backend.api.server import listen, listening_url, serve_on

    configure_logging()
    settings = get_settings()
    host, port = host or settings.api_host, settings.api_port if port is None else port
    check_token_keys(settings, listening_on=host)
    # Bound before anything starts: a port in use is one line at once, and "API on" comes
    # only once the port is ours.
    with listen(host, port) as listening, database(database_url) as url:
        app = create_app(settings.model_copy(update={"database_url": url}))
        root = listening_url(host, listening)
        notes.print(f"API on {root}/api/v1 (docs: /api/v1/docs); dashboard on {root}/",
                    soft_wrap=True)  # fmt: skip

        async def serve(stop: asyncio.Event) -> None:
            await serve_on(app, listening, stop, trusted_proxies=settings.trusted_proxies)

        asyncio.run(run_until_signalled(serve, "api", grace=15))
