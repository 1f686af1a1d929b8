"""Serving on an address that cannot be listened on is a clear error, not an exit."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from starlette.applications import Starlette

from erc8004_backend.api.server import ListenError, listen, serve_api


async def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ListenError, match=re.escape(f"127.0.0.1:{port}: Address already in use")
        ):
            await serve_api(Starlette(), "127.0.0.1", port, asyncio.Event())


def test_an_address_of_another_machine_is_a_clear_error() -> None:
    with pytest.raises(ListenError, match=re.escape("cannot listen on 192.0.2.1:0")):
        listen("192.0.2.1", 0)
