"""Real HTTP servers that action workers deliver to, speaking the targets' protocols.

`WebhookSink`: receives signed webhooks, checks each signature against the trigger's secret
and the timestamp, and processes each Idempotency-Key once (as a receiver should); a plan of
answers makes it fail for a while (`fail_next`) or stall (`stall_next`).

`TelegramServer`: the Bot API's sendMessage: the bot token in the path, chat_id and text
required, parse modes checked (MarkdownV2 text with an unescaped reserved character is
refused, as Telegram does; so is a text past 4,096 UTF-16 code units, counted as sent, which
Telegram counts after parsing entities, never more), and 429 with parameters.retry_after on
command.

Both are ASGI apps; serve them with `serve_asgi` (tests/support/asgi.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from erc8004_backend.actions.rest import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

Scope = dict[str, Any]


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def _respond(
    send: Any, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    at: float  # time.time() when it arrived

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookSink:
    secret: str
    max_age_seconds: float = 300.0
    received: list[Received] = field(default_factory=list)  # every request, in order
    processed: dict[str, Received] = field(default_factory=dict)  # first success per key
    repeats: Counter[str] = field(default_factory=Counter)  # keys seen again after success
    _plan: list[tuple[int, int, float, dict[str, str]]] = field(default_factory=list)

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        """The next `count` requests are answered with `status` (and not processed)."""
        self._plan.append((count, status, 0.0, headers or {}))

    def stall_next(self, count: int, seconds: float) -> None:
        """The next `count` requests wait `seconds` before an answer (clients time out)."""
        self._plan.append((count, 200, seconds, {}))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature_ok = (
            verify_signature(
                self.secret, timestamp, body, headers.get(SIGNATURE_HEADER.lower(), "")
            )
            and abs(time.time() - int(timestamp)) <= self.max_age_seconds
        )
        request = Received(scope["method"], scope["path"], headers, body, signature_ok, time.time())
        self.received.append(request)
        status, stall, extra = 200, 0.0, dict[str, str]()
        if self._plan:
            count, status, stall, extra = self._plan[0]
            self._plan[0] = (count - 1, status, stall, extra)
            if count <= 1:
                self._plan.pop(0)
        if stall:
            await asyncio.sleep(stall)
        if not signature_ok:
            await _respond(send, 401, b'{"error": "bad signature"}')
            return
        if status < 300:
            if request.key in self.processed:
                self.repeats[request.key] += 1
            else:
                self.processed[request.key] = request
        await _respond(send, status, json.dumps({"status": status}).encode(), extra)


# https://core.telegram.org/bots/api#markdownv2-style: these must be escaped with '\'.
_MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")


def plain_markdown_v2_problem(text: str) -> str | None:
    """Telegram's complaint about plain text (no entities) in MarkdownV2, or None."""
    escaped = False
    for offset, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _MARKDOWN_V2_RESERVED:
            return (
                f"can't parse entities: Character '{char}' is reserved and must be escaped"
                f" with the preceding '\\' (byte offset {offset})"
            )
    return None


def unescape_markdown_v2(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@dataclass
class TelegramServer:
    token: str
    messages: list[dict[str, Any]] = field(default_factory=list)  # accepted sendMessage bodies
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each accepted
    requests: int = 0
    _limited: list[int] = field(default_factory=list)  # retry_after of the next 429s

    def rate_limit_next(self, count: int, retry_after: int) -> None:
        self._limited.extend([retry_after] * count)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.requests += 1
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", scope["path"])
        if match is None or match.group(1) != self.token:
            await self._error(send, 401, "Unauthorized")
            return
        if match.group(2) != "sendMessage":
            await self._error(send, 404, "Not Found: method not found")
            return
        if self._limited:
            retry_after = self._limited.pop(0)
            await self._error(send, 429, f"Too Many Requests: retry after {retry_after}",
                              {"retry_after": retry_after})  # fmt: skip
            return
        try:
            message = json.loads(body)
        except ValueError:
            await self._error(send, 400, "Bad Request: invalid JSON")
            return
        if not message.get("chat_id"):
            await self._error(send, 400, "Bad Request: chat_id is empty")
            return
        text = message.get("text")
        if not isinstance(text, str) or not text:
            await self._error(send, 400, "Bad Request: message text is empty")
            return
        if len(text.encode("utf-16-le")) // 2 > 4096:
            await self._error(send, 400, "Bad Request: message is too long")
            return
        mode = message.get("parse_mode")
        if mode not in (None, "MarkdownV2", "Markdown", "HTML"):
            await self._error(send, 400, f"Bad Request: unsupported parse_mode {mode}")
            return
        if mode == "MarkdownV2" and (problem := plain_markdown_v2_problem(text)):
            await self._error(send, 400, f"Bad Request: {problem}")
            return
        self.messages.append(message)
        self.arrivals.append(time.monotonic())
        result = {"message_id": len(self.messages), "chat": {"id": message["chat_id"]},
                  "date": int(time.time()), "text": text}  # fmt: skip
        await _respond(send, 200, json.dumps({"ok": True, "result": result}).encode())

    @staticmethod
    async def _error(
        send: Any, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        answer: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            answer["parameters"] = parameters
        await _respond(send, status, json.dumps(answer).encode())
