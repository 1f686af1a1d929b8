"""Serving the API (or any ASGI app) with uvicorn inside our own event loop, stopped like
every other part (by the `stop` event that our signal handling sets), after the requests in
flight (the API's event streams end at once)."""

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
    await serve_on(app, listen(host, port), stop)


async def serve_on(
    app: ASGIApp, listening: socket.socket, stop: asyncio.Event, *, trusted_proxies: str = ""
) -> None:
    """Serve on a socket `listen` made: a command binds it first, so that a port in use is
    an error before anything starts, and says where the API is only once it is bound.
    `trusted_proxies` (ERC8004_TRUSTED_PROXIES): the proxies whose X-Forwarded-For and
    X-Forwarded-Proto name the client; from anyone else, the headers are ignored."""
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=10,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or None,
    )  # fmt: skip
    server = _Server(config)
    # Bound by `listen` rather than by uvicorn, which exits the process when it cannot bind.
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    # Event streams answer until their clients leave: they end now, or uvicorn would wait
    # for them until its graceful timeout. (Imported here: the commands that import this
    # module to serve something else need not load the API.)
    from erc8004_backend.api.event_stream import close_event_streams

    close_event_streams(app)
    server.should_exit = True  # finish the requests in flight, then return
    stopping.cancel()
    await serving


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port (port 0: any free port), or a ListenError saying
    why it cannot be. Connections made before the server starts wait in its backlog."""
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
    sock.listen()
    return sock


def listening_url(host: str, listening: socket.socket) -> str:
    """`http://host:port` of a listening socket: the host as given, the port as bound."""
    port = listening.getsockname()[1]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
