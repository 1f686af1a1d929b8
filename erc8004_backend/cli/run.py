"""`erc8004 run`: the whole system in one process, for one machine."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from erc8004_backend.chain.config import ChainConfig, explorer_urls
from erc8004_backend.cli.api import Host, Port, check_token_keys, notes
from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.indexer import (
    ChainNames,
    ChainsFiles,
    ProgressLog,
    indexed_chains,
    known_chains,
)
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import Settings, get_settings
from erc8004_backend.database.connection import connect
from erc8004_backend.database.migrations import Migrator, load_source


def run(
    chain: ChainNames = None,
    chains_file: ChainsFiles = None,
    database_url: DatabaseUrl = None,
    host: Host = None,
    port: Port = None,
    migrations: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Migration files (default: ERC8004_MIGRATIONS_DIR)."),
    ] = None,
) -> None:
    """Everything in one process, after migrating: API, indexers, processor and a worker."""
    from erc8004_backend.api.server import listen, listening_url

    configure_logging()
    settings = get_settings()
    host, port = host or settings.api_host, settings.api_port if port is None else port
    known = known_chains(chains_file)
    chains = indexed_chains(known, chain)
    check_token_keys(settings, listening_on=host)
    # Bound before anything starts: a port in use is one line at once, and "API on" comes
    # only once the port is ours.
    with listen(host, port) as listening, database(database_url) as url:
        source = load_source(migrations or settings.migrations_dir)
        with connect(url) as connection:
            applied = Migrator(connection, source).run()
        notes.print(f"database ready ({len(applied)} migrations applied now)", soft_wrap=True)
        settings = settings.model_copy(update={"database_url": url})
        names = ", ".join(c.name for c in chains)
        root = listening_url(host, listening)
        notes.print(f"indexing {names}; API on {root}/api/v1; dashboard on {root}/",
                    soft_wrap=True)  # fmt: skip

        async def everything(stop: asyncio.Event) -> None:
            await run_all(settings, url, chains, listening, stop,
                          explorers=explorer_urls(known.values()))  # fmt: skip

        # Workers get their grace to finish deliveries; the rest stop at once.
        asyncio.run(run_until_signalled(everything, "run", grace=15))


async def run_all(
    settings: Settings,
    url: str,
    chains: list[ChainConfig],
    api_socket: socket.socket,
    stop: asyncio.Event,
    *,
    explorers: Mapping[int, str] | None = None,
) -> None:
    """The API (on `api_socket`, from `listen`), the indexers, the processor and a worker.
    Each part reconnects by itself after database failures; a part that fails for good stops
    them all. `explorers` (chain id -> block explorer, for links in messages): by default the
    shipped chains'."""
    # Imported here, not at the top: every erc8004 command starts faster without them.
    from erc8004_backend.actions.worker import run_worker
    from erc8004_backend.api.app import create_app
    from erc8004_backend.api.server import serve_on
    from erc8004_backend.indexer.runner import run_indexers
    from erc8004_backend.triggers.processor import run_processor

    try:
        async with asyncio.TaskGroup() as parts:
            parts.create_task(serve_on(create_app(settings), api_socket, stop,
                                       trusted_proxies=settings.trusted_proxies))  # fmt: skip
            parts.create_task(
                run_indexers(url, chains, stop, settings=settings, on_progress=ProgressLog().update)
            )
            parts.create_task(run_processor(url, stop, poll_interval=1.0))
            parts.create_task(run_worker(url, stop, settings, explorers=explorers))
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
