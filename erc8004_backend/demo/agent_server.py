"""The demo agent's own MCP server (official `mcp` SDK, streamable HTTP): one tool,
`agent.receiveFeedback`, behind the bearer token the agent's owner stored with the backend.
The demo agent's registration file names this server as its MCP service."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from starlette.responses import JSONResponse

TOOL_NAME = "agent.receiveFeedback"

# Any JSON object: the tool takes the event, trigger and computed values the backend sends.
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "object"},
        "trigger": {"type": "object"},
        "computed": {"type": "object"},
        "file": {},
    },
    "required": ["event"],
}


@dataclass(frozen=True)
class ToolCall:
    arguments: dict[str, Any]
    received_at: float  # time.time()

    @property
    def event(self) -> dict[str, Any]:
        event = self.arguments.get("event")
        return event if isinstance(event, dict) else {}


class DemoAgentServer:
    """An ASGI app: the MCP endpoint at `/mcp`, refusing requests without the token."""

    def __init__(self, token: str, on_call: Callable[[ToolCall], None] | None = None) -> None:
        self.token = token
        self.on_call = on_call
        self.calls: list[ToolCall] = []
        self.rejected = 0
        server: Server[Any] = Server(
            "erc8004-demo-agent",
            version="1.0",
            get_tool_input_schema=lambda name: INPUT_SCHEMA if name == TOOL_NAME else None,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._app = server.streamable_http_app(stateless_http=True, json_response=True)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if given != f"Bearer {self.token}":
                self.rejected += 1
                await JSONResponse({"error": "invalid token"}, status_code=401)(
                    scope, receive, send
                )
                return
        await self._app(scope, receive, send)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tool = types.Tool(name=TOOL_NAME, description="Receives feedback about this agent.",
                          input_schema=INPUT_SCHEMA)  # fmt: skip
        return types.ListToolsResult(tools=[tool])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name != TOOL_NAME:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        call = ToolCall(dict(params.arguments or {}), time.time())
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        score = call.event.get("score")
        reply = json.dumps({"received": True, "score": score})
        return types.CallToolResult(content=[types.TextContent(type="text", text=reply)])
