"""`erc8004 api`: the REST API under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from erc8004_backend.api.app import create_app
from erc8004_backend.cli.db import DatabaseUrl, database
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import get_settings

notes = Console(stderr=True)


def api(
    database_url: DatabaseUrl = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: ERC8004_API_HOST, else 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Listen port (default: ERC8004_API_PORT, else 8000).", min=0, max=65535),
    ] = None,
) -> None:
    """Serve the REST API (/api/v1; interactive docs at /api/v1/docs)."""
    configure_logging()
    settings = get_settings()
    with database(database_url) as url:
        app = create_app(settings.model_copy(update={"database_url": url}))
        host = host or settings.api_host
        port = settings.api_port if port is None else port
        notes.print(f"API on http://{host}:{port}/api/v1 (docs: /api/v1/docs)", soft_wrap=True)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False,
            proxy_headers=False, timeout_graceful_shutdown=10,
        )  # fmt: skip
        asyncio.run(run_until_signalled(_Server(config).serve_until, "api", grace=15))


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by our signal handling like every other part."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # run_until_signalled owns SIGINT and SIGTERM

    async def serve_until(self, stop: asyncio.Event) -> None:
        serving = asyncio.create_task(self.serve())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        self.should_exit = True  # finish the requests in flight, then return
        stopping.cancel()
        await serving
