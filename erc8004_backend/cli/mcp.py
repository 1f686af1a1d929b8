"""`erc8004 mcp`: the MCP server for agents over stdio, for desktop MCP clients, which start
it as a subprocess and talk to it on its stdin and stdout.

stdout carries the protocol and nothing else: the SDK's stdio transport claims it before
anything starts (the embedded PostgreSQL included), pointing the process's own stdout at
stderr meanwhile, so that a stray print or a child process's output cannot break a message.
Logs go to stderr (as JSON lines when stderr is not a terminal, as a client's is not). The
database is the one other commands use (DATABASE_URL or -D; the embedded server without
one); the command applies no migrations.

It ends when the client closes stdin, or at SIGINT or SIGTERM, which clients send when
closing stdin was not enough. For the signals to end it while stdin stays open, stdin is
read on the event loop (protocol_input), not by the SDK's reading thread, which a signal
cannot interrupt: the process would wait for its next line for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled

# The longest message read (a line of JSON); a longer one ends the connection.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def mcp(database_url: DatabaseUrl = None) -> None:
    """Serve the MCP server for agents over stdio (stdin/stdout), for desktop MCP clients."""
    configure_logging()

    async def serve(stop: asyncio.Event) -> None:
        await serve_stdio(database_url)

    asyncio.run(run_until_signalled(serve, "mcp"))


class _Lines:
    """The lines of a stream, as text: what the SDK's stdio transport iterates."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


@contextlib.asynccontextmanager
async def protocol_input() -> AsyncIterator[_Lines | None]:
    """The lines of stdin, read on the event loop from a copy of fd 0, fd 0 itself pointed
    at the null device meanwhile (a child process cannot take the client's messages).
    None when stdin is a regular file, which the event loop cannot watch: the SDK then
    reads it itself (a file ends, so no signal has to wait for it)."""
    loop = asyncio.get_running_loop()
    private = os.dup(0)
    reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(private, "rb", buffering=0)
        )
    except ValueError:  # not a pipe, socket or character device
        os.close(private)
        yield None
        return
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        yield _Lines(reader)
    finally:
        transport.close()


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
    from typing import Any, cast

    from mcp.server.stdio import stdio_server

    from erc8004_backend.api.app import open_pool
    from erc8004_backend.api.dependencies import live_connection
    from erc8004_backend.mcp_server.server import build_server
    from erc8004_backend.mcp_server.tools import Caller

    async with (
        protocol_input() as lines,
        # The transport iterates its input's lines, whatever reads them.
        stdio_server(stdin=cast(Any, lines)) as (incoming, outgoing),
        database_in_thread(database_url) as url,
        open_pool(url, min_size=1, max_size=4) as pool,
    ):
        # Over stdio nobody signs in: the tools that need a user (saved lenses) say so.
        server = build_server(lambda: live_connection(pool), Caller(user_id=None))
        await server.run(incoming, outgoing, server.create_initialization_options())
