"""Serving the API with uvicorn inside our own event loop, stopped like every other part
(by the `stop` event that our signal handling sets), after the requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # run_until_signalled owns SIGINT and SIGTERM


async def serve_api(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        proxy_headers=False, timeout_graceful_shutdown=10,
    )  # fmt: skip
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True  # finish the requests in flight, then return
    stopping.cancel()
    await serving
