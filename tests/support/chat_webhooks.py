"""Local stand-ins for Slack's and Discord's incoming webhooks, speaking their protocols:
the JSON each accepts, the limits each enforces (refusing what the service refuses), 429 with
the service's own way of saying how long to wait, and Discord's per-webhook rate-limit
bucket headers. ASGI apps; serve them with `serve_asgi` (tests/support/asgi.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.delivery_targets import read_body

Scope = dict[str, Any]


async def _read_json(receive: Any) -> Any:
    try:
        return json.loads(await read_body(receive))
    except ValueError:
        return None


async def _respond(send: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


@dataclass
class SlackWebhook:
    """https://api.slack.com/messaging/webhooks: `text` required (the notification, with
    blocks), 40,000 characters at most; blocks' texts within Block Kit's limits; "ok"."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[float] = field(default_factory=list)  # time.monotonic() of each
    _limited: list[int] = field(default_factory=list)

    def rate_limit_next(self, count: int, retry_after: int) -> None:
        self._limited.extend([retry_after] * count)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await _read_json(receive)
        self.requests.append(time.monotonic())
        if self._limited:
            wait = self._limited.pop(0)
            await _respond(send, 429, b"rate_limited", {"Retry-After": str(wait)})
            return
        problem = _slack_problem(message)
        if problem:
            await _respond(send, 400, problem.encode(), {"Content-Type": "text/plain"})
            return
        self.messages.append(message)
        await _respond(send, 200, b"ok", {"Content-Type": "text/plain"})


def _slack_problem(message: Any) -> str | None:
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return "invalid_payload"
    if not message["text"] or len(message["text"]) > 40_000:
        return "invalid_payload"
    for block in message.get("blocks") or []:
        text = block.get("text") if isinstance(block, dict) else None
        limit = 150 if block.get("type") == "header" else 3_000
        if isinstance(text, dict) and len(str(text.get("text", ""))) > limit:
            return "invalid_blocks"
    return None


@dataclass
class DiscordWebhook:
    """https://discord.com/developers/docs/resources/webhook#execute-webhook: content (2,000)
    or embeds (10, each within its field limits, 6,000 characters in all); a bucket of
    `bucket_size` messages per `bucket_seconds`, announced in X-RateLimit-* headers, and a
    429 with `retry_after` (seconds) for a message over it."""

    bucket_size: int = 5
    bucket_seconds: float = 2.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 400s, with why
    limited: int = 0  # 429s answered
    _sent: list[float] = field(default_factory=list)
    _forced: list[float] = field(default_factory=list)

    def rate_limit_next(self, count: int, retry_after: float) -> None:
        self._forced.extend([retry_after] * count)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await _read_json(receive)
        now = time.monotonic()
        self._sent = [t for t in self._sent if t > now - self.bucket_seconds]
        if self._forced or len(self._sent) >= self.bucket_size:
            wait = (
                self._forced.pop(0) if self._forced else self._sent[0] + self.bucket_seconds - now
            )
            self.limited += 1
            body = {"message": "You are being rate limited.", "retry_after": round(wait, 3),
                    "global": False}  # fmt: skip
            await _respond(send, 429, json.dumps(body).encode(),
                           {"Content-Type": "application/json", "Retry-After": str(int(wait) + 1),
                            "X-RateLimit-Remaining": "0"})  # fmt: skip
            return
        problem = _discord_problem(message)
        if problem:
            self.refused.append(problem)
            await _respond(send, 400, json.dumps({"message": problem, "code": 50035}).encode(),
                           {"Content-Type": "application/json"})  # fmt: skip
            return
        self._sent.append(now)
        self.messages.append(message)
        reset = self._sent[0] + self.bucket_seconds - now
        headers = {"X-RateLimit-Limit": str(self.bucket_size),
                   "X-RateLimit-Remaining": str(self.bucket_size - len(self._sent)),
                   "X-RateLimit-Reset-After": f"{reset:.3f}"}  # fmt: skip
        await _respond(send, 204, b"", headers)


_EMBED_LIMITS = {"title": 256, "description": 4096}


def _discord_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "Invalid Form Body"
    content, embeds = message.get("content"), message.get("embeds") or []
    if not content and not embeds:
        return "Cannot send an empty message"
    if content is not None and len(content) > 2000:
        return "content: Must be 2000 or fewer in length."
    if len(embeds) > 10:
        return "embeds: Must be 10 or fewer in length."
    total = 0
    for embed in embeds:
        for key, limit in _EMBED_LIMITS.items():
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > limit:
                return f"embeds.{key}: Must be {limit} or fewer in length."
        for item in embed.get("fields") or []:
            total += len(item.get("name", "")) + len(item.get("value", ""))
            if len(item.get("name", "")) > 256 or len(item.get("value", "")) > 1024:
                return "embeds.fields: too long"
        total += len((embed.get("footer") or {}).get("text", ""))
        total += len((embed.get("author") or {}).get("name", ""))
        for key in ("url",):
            if key in embed and not str(embed[key]).startswith(("http://", "https://")):
                return f"embeds.{key}: Not a well formed URL."
    if total > 6000:
        return "embeds: Embed size exceeds maximum size of 6000"
    return None
