"""A webhook sink for the delivery and pipeline benchmarks, in its own process so that it does
not share a core's event loop with the worker it measures: answers every request as the
service its path names would (a Telegram sendMessage, Slack's "ok", Discord's 204,
PagerDuty's 202; else 200), remembers (path, arrival time), and lists them at GET /receipts;
GET /requests lists them with the body and the signature headers (for checking signatures
after the run), GET /count says how many arrived (cheap enough to poll while waiting). It also
takes mail, as an SMTP server (aiosmtpd, a development dependency) on a port of its own, each
message a receipt at the path /smtp.

    python -m bench.sink   # prints "port N smtp M", then serves on 127.0.0.1 until SIGTERM
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import uvicorn

receipts: list[tuple[str, float]] = []
# path, arrival, Idempotency-Key, X-ERC8004-Timestamp, X-ERC8004-Signature, body
requests: list[tuple[str, float, str, str, str, str]] = []
KEPT_HEADERS = (b"idempotency-key", b"x-erc8004-timestamp", b"x-erc8004-signature")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/receipts":
        body = json.dumps(receipts).encode()
    elif path == "/requests":
        body = json.dumps(requests).encode()
    elif path == "/count":
        body = json.dumps(len(receipts)).encode()
    else:
        arrived = time.time()
        receipts.append((path, arrived))
        received = dict(scope["headers"])
        kept = [received.get(name, b"").decode("latin-1") for name in KEPT_HEADERS]
        requests.append((path, arrived, kept[0], kept[1], kept[2],
                         b"".join(chunks).decode("utf-8", "replace")))  # fmt: skip
        status, body = _answer(path, len(receipts))
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _answer(path: str, count: int) -> tuple[int, bytes]:
    """What the service behind `path` answers a delivery."""
    if path.endswith("/sendMessage"):  # Telegram's Bot API
        return 200, json.dumps({"ok": True, "result": {"message_id": count}}).encode()
    if path.startswith("/slack/"):
        return 200, b"ok"
    if path.startswith("/discord/"):
        return 204, b""
    if path.startswith("/pagerduty"):
        return 202, b'{"status": "success", "message": "Event processed"}'
    return 200, b"{}"


class MailReceipts:
    """aiosmtpd's handler: each accepted message, a receipt."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        arrived = time.time()
        receipts.append(("/smtp", arrived))
        body = envelope.content.decode("utf-8", "replace")
        requests.append(("/smtp", arrived, "", "", "", body))
        return "250 OK"


def serve_smtp() -> int:
    """An SMTP server on a thread of its own (aiosmtpd's Controller); its port."""
    from aiosmtpd.controller import Controller  # a development dependency, as the bench is

    with socket.socket() as probe:  # the Controller needs its port named (it dials it once up)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    Controller(MailReceipts(), hostname="127.0.0.1", port=port).start()
    return port


def main() -> None:
    smtp_port = serve_smtp()
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every response waits out the client's delayed ACK (40 ms).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)  # connections queue from now on, before uvicorn has started
    print(f"port {listener.getsockname()[1]} smtp {smtp_port}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096)
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
