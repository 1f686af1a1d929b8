"""Limits on what one client can ask of the API: request rates (per address, per user,
tighter for logins and for reads without signing in) answered with 429 and Retry-After, and
the request body's size.

Rates are counted in this process's memory (moving windows from `limits`); several API
processes each count their own, so a deployment of N processes allows up to N times the
configured rate (see the README's scaling notes).
"""

from __future__ import annotations

import math
import time

import orjson
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from erc8004_backend.api.errors import ApiError, error_body


class RateLimits:
    """Named rate limits over one in-memory store."""

    def __init__(self, *, per_user: str, per_ip: str, login: str, public: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._limits = {
            "user": parse_many(per_user),
            "ip": parse_many(per_ip),
            "login": parse_many(login),
            # Reads without signing in (ERC8004_PUBLIC_READS), per client address.
            "public": parse_many(public),
        }

    async def check(self, kind: str, key: str) -> None:
        """Counts one request of `key` against the `kind` limits; ApiError 429 when over."""
        for item in self._limits[kind]:
            if not await self._limiter.hit(item, kind, key):
                raise ApiError(
                    429,
                    f"too many requests ({item}); try again later",
                    headers={"Retry-After": str(await self._retry_after(item, kind, key))},
                )

    async def _retry_after(self, item: RateLimitItem, kind: str, key: str) -> int:
        stats = await self._limiter.get_window_stats(item, kind, key)
        return max(1, math.ceil(stats.reset_time - time.time()))


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413, by Content-Length when it is given
    and by counting otherwise (a chunked body is cut off as soon as it passes the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._message = f"request body larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(error_body(413, self._message))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
