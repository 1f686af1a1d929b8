"""`erc8004 api`: the REST API under uvicorn."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from erc8004_backend.cli.db import DatabaseUrl, database
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import get_settings

notes = Console(stderr=True)

Host = Annotated[
    str | None, typer.Option(help="Listen address (default: ERC8004_API_HOST, else 127.0.0.1).")
]
Port = Annotated[
    int | None,
    typer.Option(help="Listen port (default: ERC8004_API_PORT, else 8000).", min=0, max=65535),
]


def api(database_url: DatabaseUrl = None, host: Host = None, port: Port = None) -> None:
    """Serve the REST API (/api/v1; interactive docs at /api/v1/docs)."""
    # Imported here, not at the top: every erc8004 command starts faster without them.
    from erc8004_backend.api.app import create_app
    from erc8004_backend.api.server import serve_api

    configure_logging()
    settings = get_settings()
    host, port = host or settings.api_host, settings.api_port if port is None else port
    with database(database_url) as url:
        app = create_app(settings.model_copy(update={"database_url": url}))
        notes.print(f"API on http://{host}:{port}/api/v1 (docs: /api/v1/docs)", soft_wrap=True)

        async def serve(stop: asyncio.Event) -> None:
            await serve_api(app, host, port, stop)

        asyncio.run(run_until_signalled(serve, "api", grace=15))
