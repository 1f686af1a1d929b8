"""POST /mcp: the backend's MCP server (mcp_server/) over streamable HTTP, for agents.

Signed in as the REST API is: `Authorization: Bearer <API key>` (ek_..., from
/api/v1/me/api-keys) or an access token from /api/v1/auth/login. A request without a valid
one is answered 401 with `WWW-Authenticate: Bearer` before the MCP layer sees it; the
per-address and per-user rate limits apply as to any request.

Stateless, and answered in JSON: each POST carries one JSON-RPC message and gets its answer
in the response, with no session and no stream kept between requests. The tools only read,
and nothing is ever sent unasked, so sessions would bring nothing but state to lose: any API
process behind a load balancer answers any request, a restart interrupts nobody, and a
stopping server only finishes the requests in flight. GET (a stream for messages the server
sends on its own) is answered 405, as the protocol allows a server that sends none.

Each request gets its own SDK session manager, entered for that request only: stateless,
the manager keeps nothing across requests, and the application needs no lifespan for it (it
answers the same called in-process, as the tests do, as served by uvicorn). The route is not
in the OpenAPI document: MCP clients learn the tools from the protocol itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from erc8004_backend.api.dependencies import State, User, bearer, current_user, live_connection
from erc8004_backend.api.errors import raises
from erc8004_backend.mcp_server.server import build_server
from erc8004_backend.mcp_server.tools import Caller

MCP_PATH = "/mcp"
router = APIRouter()


class McpExchange(Response):
    """The response to one MCP request: the SDK's streamable HTTP transport reads the
    request's body and answers it."""

    def __init__(self, server: Server[Any]) -> None:
        super().__init__()
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = StreamableHTTPSessionManager(app=self.server, json_response=True, stateless=True)
        async with manager.run():
            await manager.handle_request(scope, receive, send)


@raises(401, 403, 429, 503)
async def mcp_user(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The signed-in user, found on a connection that goes back to the pool at once (each
    tool call borrows its own)."""
    async with live_connection(state.pool) as conn:
        return await current_user(state, conn, credentials)


@router.post(MCP_PATH, include_in_schema=False)
async def mcp_endpoint(user: Annotated[User, Depends(mcp_user)], state: State) -> Response:
    server = build_server(lambda: live_connection(state.pool), Caller(user_id=user.id))
    return McpExchange(server)
