"""Serving the API (or any ASGI app) with uvicorn inside our own event loop, stopped like
every other part (by the `stop` event that our signal handling sets), after the requests in
flight."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from erc8004_backend.errors import Erc8004Error


class ListenError(Erc8004Error):
    """The address cannot be listened on (in use, not an address of this machine)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # run_until_signalled owns SIGINT and SIGTERM


async def serve_api(app: ASGIApp, host: str, port: int, stop: asyncio.Event) -> None:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        proxy_headers=False, timeout_graceful_shutdown=10,
    )  # fmt: skip
    server = _Server(config)
    # Bound here rather than by uvicorn, which exits the process when it cannot bind.
    listening = listen(host, port)
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True  # finish the requests in flight, then return
    stopping.cancel()
    await serving


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, or a ListenError saying why it cannot be."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        raise ListenError(f"cannot listen on {host}:{port}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        hint = " (another program listens there: choose another port, with --port)" if (
            error.errno == errno.EADDRINUSE) else ""  # fmt: skip
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror}{hint}") from None
    return sock
