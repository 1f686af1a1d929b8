"""A local stand-in for the Telegram Bot API: `sendMessage` only, answered the way Telegram
answers, so the demo's `telegram` actions go through the real channel code without a bot
or the internet. Point ERC8004_TELEGRAM_API_URL at it."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass(frozen=True)
class SentMessage:
    chat_id: str
    text: str
    parse_mode: str | None
    received_at: float  # time.time()


class LocalTelegramApi:
    """An ASGI app answering `POST /bot<token>/sendMessage` for one bot token."""

    def __init__(self, token: str, on_message: Callable[[SentMessage], None] | None = None) -> None:
        self.token = token
        self.on_message = on_message
        self.messages: list[SentMessage] = []
        self._ids = itertools.count(1)
        self._app = Starlette(routes=[Route("/bot{token}/{method}", self._call, methods=["POST"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    async def _call(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        if request.path_params["method"] != "sendMessage":
            return _error(404, "Not Found: method not found")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "Bad Request: invalid JSON")
        text, chat_id = body.get("text"), body.get("chat_id")
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text:
            return _error(400, "Bad Request: message text is empty")
        message = SentMessage(str(chat_id), text, body.get("parse_mode"), time.time())
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)
        result = {"message_id": next(self._ids), "chat": {"id": chat_id},
                  "date": int(message.received_at), "text": text}  # fmt: skip
        return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error_code": status, "description": description}, status_code=status
    )
