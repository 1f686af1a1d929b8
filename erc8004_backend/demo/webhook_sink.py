"""A local receiver of the backend's signed webhooks, to watch deliveries arrive.

`WebhookReceiver` is an ASGI app that records every request, whatever its method and path,
and answers `200 {"ok": true}`. With the trigger's webhook secret(s) it checks each signature
as a receiver should (see `actions/rest.py`): `X-ERC8004-Signature` is `sha256=` and the hex
HMAC-SHA256 of `<X-ERC8004-Timestamp>.<raw body>`, and the timestamp must be recent. It also
notes a repeated `Idempotency-Key` (a receiver processes each key once)::

    receiver = WebhookReceiver(secrets=["whsec_..."], on_receive=print)
    await serve_api(receiver, "127.0.0.1", 9000, stop)

It is a tool for looking, not a hardened endpoint: it answers 200 to a request with a bad
signature too (the verdict is in `signature_ok`), so that whatever arrives can be seen.
`erc8004 webhook-sink` serves it and prints each webhook.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from erc8004_backend.actions.rest import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_AGE_SECONDS = 300.0  # older signatures are refused: a captured request cannot be replayed
MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request as it arrived. `headers` has lowercase names (repeated ones joined by
    ", "); `received_at` is `time.time()`."""

    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    signature_ok: bool | None  # None when the receiver knows no secret
    idempotency_key: str | None
    repeat: bool  # an idempotency key seen before (in a request not refused for its signature)
    method: str = "POST"
    query: str = ""  # the query string, without "?"
    signature_error: str | None = None  # why signature_ok is False

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not)."""
        return json.loads(self.body)

    @property
    def verdict(self) -> str:
        """The signature check in words: "valid", "not checked (...)" or "INVALID: why"."""
        if self.signature_ok is None:
            return "not checked (no secret given)"
        if self.signature_ok:
            return "valid"
        return f"INVALID: {self.signature_error}"


class WebhookReceiver:
    """An ASGI app that records webhooks (in `received`, in order of arrival), checks their
    signatures against `secrets` (any of them; the set may grow later) and calls `on_receive`
    with each one before answering 200 `{"ok": true}`."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        on_receive: Callable[[ReceivedWebhook], None] | None = None,
        *,
        max_age_seconds: float = MAX_AGE_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.secrets: set[str] = set(secrets)
        self.on_receive = on_receive
        self.max_age_seconds = max_age_seconds
        self.max_body_bytes = max_body_bytes
        self.received: list[ReceivedWebhook] = []
        self._keys: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not a webhook; the server closes the connection
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await _respond(send, 413, {"ok": False, "error": "body too large"})
            return
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        webhook = self.record(scope["method"], scope["path"], _headers(scope), body, query=query)
        if self.on_receive is not None:
            self.on_receive(webhook)
        await _respond(send, 200, {"ok": True})

    def record(
        self, method: str, path: str, headers: dict[str, str], body: bytes, *, query: str = ""
    ) -> ReceivedWebhook:
        """Check and keep one request (`headers` with lowercase names)."""
        now = time.time()
        signature_ok, error = self._check(headers, body, now)
        key = headers.get(IDEMPOTENCY_HEADER.lower())
        repeat = key is not None and key in self._keys
        if key is not None and signature_ok is not False:
            self._keys.add(key)
        webhook = ReceivedWebhook(
            path=path,
            headers=headers,
            body=body,
            received_at=now,
            signature_ok=signature_ok,
            idempotency_key=key,
            repeat=repeat,
            method=method,
            query=query,
            signature_error=error,
        )
        self.received.append(webhook)
        return webhook

    def _check(
        self, headers: dict[str, str], body: bytes, now: float
    ) -> tuple[bool | None, str | None]:
        if not self.secrets:
            return None, None
        timestamp = headers.get(TIMESTAMP_HEADER.lower())
        signature = headers.get(SIGNATURE_HEADER.lower())
        if timestamp is None or signature is None:
            missing = TIMESTAMP_HEADER if timestamp is None else SIGNATURE_HEADER
            return False, f"no {missing} header"
        if not timestamp.isdigit():
            return False, f"{TIMESTAMP_HEADER} is not Unix seconds: {timestamp[:40]!r}"
        if not any(verify_signature(s, timestamp, body, signature) for s in self.secrets):
            return False, "the signature matches none of the secrets"
        age = now - int(timestamp)
        if age > self.max_age_seconds:
            return (
                False,
                f"signed {age:.0f} s ago (a replay? the limit is {self.max_age_seconds:.0f} s)",
            )
        if -age > self.max_age_seconds:
            return False, f"signed {-age:.0f} s in the future (are the clocks apart?)"
        return True, None


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
