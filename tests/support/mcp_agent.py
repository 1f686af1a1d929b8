"""A real MCP server for tests: the official SDK's low-level `Server` over streamable HTTP,
served by uvicorn on 127.0.0.1, with one tool (`agent.receiveFeedback` by default) that
records the arguments of every call, behind a token check::

    async with McpAgentServer(token="t0k") as agent:
        ...  # an MCP client reaching agent.url with "Authorization: Bearer t0k"
        assert agent.calls == [{"event": {...}, ...}]

A request without the expected header (name and value) is answered HTTP 401 before the SDK
sees it; `agent.rejected` counts them. `agent.fail_with = "text"` makes the tool answer an
error result (`isError`) with that text; `agent.delay` makes it slow; `agent.status_override
= 503` answers every request with that HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from erc8004_backend.demo.agent_server import INPUT_SCHEMA
from erc8004_backend.demo.agent_server import TOOL_NAME as DEFAULT_TOOL
from tests.support.asgi import serve_asgi

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class McpAgentServer:
    """An agent's MCP server; `url` is its endpoint while the context is entered."""

    def __init__(
        self,
        *,
        token: str = "t0k",  # noqa: S107 (a test token)
        header: str = "Authorization",
        scheme: str = "Bearer",
        tool_name: str = DEFAULT_TOOL,
        reply: str = "feedback received",
        stateless: bool = True,
        json_response: bool = True,
    ) -> None:
        self.token = token
        self.header = header
        self.scheme = scheme
        self.tool_name = tool_name
        self.reply = reply
        self.stateless = stateless  # False: sessions (Mcp-Session-Id)
        self.json_response = json_response  # False: answers as server-sent events
        self.calls: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []  # of every request that passed the check
        self.rejected = 0
        self.fail_with: str | None = None
        self.delay = 0.0  # seconds the tool takes
        self.status_override: int | None = None
        self.retry_after: str | None = None  # sent with status_override
        self._base_url: str | None = None
        self._serving: contextlib.AbstractAsyncContextManager[str] | None = None
        self._closing = asyncio.Event()

    @property
    def expected_value(self) -> str:
        return f"{self.scheme} {self.token}" if self.scheme else self.token

    @property
    def url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the MCP agent server is not running")
        return f"{self._base_url}/mcp"

    def _server(self) -> Server[Any]:
        async def list_tools(
            ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=[
                    types.Tool(
                        name=self.tool_name,
                        description="Receives feedback about this agent.",
                        input_schema=INPUT_SCHEMA,
                    )
                ]
            )

        async def call_tool(
            ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            if params.name != self.tool_name:
                raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
            self.calls.append(dict(params.arguments or {}))
            if self.delay:  # cut short when the server stops, so that it stops at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.delay)
            if self.fail_with is not None:
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=self.fail_with)], is_error=True
                )
            return types.CallToolResult(content=[types.TextContent(type="text", text=self.reply)])

        def input_schema(name: str) -> dict[str, Any] | None:
            return INPUT_SCHEMA if name == self.tool_name else None

        return Server(
            "test-agent",
            version="1.0",
            get_tool_input_schema=input_schema,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
        )

    def _guarded(self, app: Asgi) -> Asgi:
        """The SDK's app behind the token check (lifespan messages pass through)."""
        wanted = self.header.lower().encode("latin-1")

        async def guard(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
            }
            if self.status_override is not None:
                extra = {"retry-after": self.retry_after} if self.retry_after else {}
                await _respond(send, self.status_override, {"error": "overridden"}, extra)
                return
            given = [value for name, value in scope["headers"] if name == wanted]
            if given != [self.expected_value.encode("latin-1")]:
                self.rejected += 1
                await _respond(send, 401, {"error": "invalid token"})
                return
            self.headers_seen.append(headers)
            await app(scope, receive, send)

        return guard

    async def __aenter__(self) -> McpAgentServer:
        app = self._server().streamable_http_app(
            stateless_http=self.stateless, json_response=self.json_response
        )
        self._serving = serve_asgi(self._guarded(app))
        self._base_url = await self._serving.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        serving, self._serving = self._serving, None
        if serving is not None:
            await serving.__aexit__(exc_type, exc, traceback)


async def _respond(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    raw = json.dumps(body).encode()
    extra = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
