"""Real HTTP servers for tests: any ASGI app served by uvicorn on 127.0.0.1, in the test's
own event loop, on a port the system picks::

    async with serve_asgi(app) as base_url:
        ...  # requests to base_url reach app
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # Ctrl-C belongs to pytest, not to the test server


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "auto", port: int = 0) -> AsyncIterator[str]:
    """`port` 0: one the system picks; another, to bring a server back where it was."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the reason it could not start
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
