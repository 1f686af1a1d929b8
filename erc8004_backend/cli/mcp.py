"""`erc8004 mcp`: the MCP server for agents over stdio, for desktop MCP clients, which start
it as a subprocess and talk to it on its stdin and stdout.

stdout carries the protocol and nothing else: the SDK's stdio transport claims it before
anything starts (the embedded PostgreSQL included), pointing the process's own stdout at
stderr meanwhile, so that a stray print or a child process's output cannot break a message.
Logs go to stderr (as JSON lines when stderr is not a terminal, as a client's is not). The
database is the one other commands use (DATABASE_URL or -D; the embedded server without
one); the command applies no migrations. It ends when the client closes stdin, or at
SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from erc8004_backend.cli.db import DatabaseUrl, database
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled


def mcp(database_url: DatabaseUrl = None) -> None:
    """Serve the MCP server for agents over stdio (stdin/stdout), for desktop MCP clients."""
    configure_logging()

    async def serve(stop: asyncio.Event) -> None:
        await serve_stdio(database_url)

    asyncio.run(run_until_signalled(serve, "mcp"))


@contextlib.asynccontextmanager
async def database_in_thread(url: str | None) -> AsyncIterator[str]:
    """`database(url)`, entered and left in a thread: starting or stopping the embedded
    server takes seconds, during which the transport keeps reading."""
    manager = database(url)
    resolved = await asyncio.to_thread(manager.__enter__)
    try:
        yield resolved
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def serve_stdio(database_url: str | None) -> None:
    # Imported here, not at the top: every erc8004 command starts faster without them.
    from mcp.server.stdio import stdio_server

    from erc8004_backend.api.app import open_pool
    from erc8004_backend.api.dependencies import live_connection
    from erc8004_backend.mcp_server.server import build_server
    from erc8004_backend.mcp_server.tools import Caller

    async with (
        stdio_server() as (incoming, outgoing),
        database_in_thread(database_url) as url,
        open_pool(url, min_size=1, max_size=4) as pool,
    ):
        # Over stdio nobody signs in: the tools that need a user (saved lenses) say so.
        server = build_server(lambda: live_connection(pool), Caller(user_id=None))
        await server.run(incoming, outgoing, server.create_initialization_options())
