"""The tools as an MCP server: the official SDK's low-level `Server`, whose handlers list
the tools and call them on a database connection.

    server = build_server(connection_source, Caller(user_id))

`connection_source()` is an async context manager giving a connection: a pooled one for each
call, in the API (api/mcp.py) and in `erc8004 mcp` (cli/mcp.py). The low-level server rather
than the SDK's MCPServer: the tools' schemas come from their own strict models (tools.py),
and MCPServer configures the process's logging when it is made, which the API's must not be.

A tool's answer is a JSON object, sent both as the result's structured content and as its
text (for clients that read only text). What goes wrong is answered as the protocol wants:
- bad arguments, an unknown agent, an unreachable database: a tool error (`isError`, its
  text naming the argument or the cause), which the calling model reads and can act on;
- an unknown tool: a JSON-RPC error (invalid params), naming the tools there are;
- anything unexpected: a JSON-RPC internal error; the details go to the server's log only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types as types
import psycopg
import structlog
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from erc8004_backend import __version__
from erc8004_backend.mcp_server.tools import TOOLS, Caller, Connection, Tool, ToolCallError

log = structlog.get_logger(__name__)

ConnectionSource = Callable[[], contextlib.AbstractAsyncContextManager[Connection]]

SERVER_NAME = "erc8004-backend"
INSTRUCTIONS = (
    "Read-only access to the ERC-8004 registries (identity, reputation, validation) as this"
    " backend indexed them. An agent is named by (chain_id, agent_id). search_agents finds"
    " agents; get_agent tells who an agent is and how to reach it; get_reputation summarizes"
    " its feedback as the spec's getSummary does, or through a lens (trusted clients, one"
    " vote per client, recency decay) that explains what it counted; list_feedback and"
    " list_validations give the records; recent_events what happened lately."
)
_READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def tool_descriptor(tool: Tool[Any]) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        annotations=_READ_ONLY.model_copy(update={"title": tool.title}),
    )


def answer(result: dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=result
    )


def tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


def build_server(
    connection: ConnectionSource, caller: Caller, tools: Sequence[Tool[Any]] = TOOLS
) -> Server[Any]:
    """An MCP server of `tools`, each call on a connection from `connection` as `caller`."""
    by_name = {tool.name: tool for tool in tools}
    descriptors = [tool_descriptor(tool) for tool in tools]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=descriptors)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            raise MCPError(
                types.INVALID_PARAMS,
                f"unknown tool {params.name!r}; the tools are {', '.join(by_name)}",
            )
        try:
            async with connection() as conn:
                return answer(await tool.call(conn, params.arguments or {}, caller))
        except ToolCallError as failure:
            return tool_error(str(failure))
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
            return tool_error(
                "the database has no read model yet: apply the migrations"
                " (erc8004 db migrate run) and index a chain"
            )
        except psycopg.OperationalError:  # the pool's timeout too
            return tool_error("the database is unavailable; try again in a few seconds")
        except Exception:
            log.exception("mcp.tool_failed", tool=tool.name)
            raise MCPError(
                types.INTERNAL_ERROR, f"{tool.name} failed unexpectedly; see the server's log"
            ) from None

    def input_schema(name: str) -> dict[str, Any] | None:
        tool = by_name.get(name)
        return None if tool is None else tool.input_schema

    return Server(
        SERVER_NAME,
        version=__version__,
        title="ERC-8004 agents",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
