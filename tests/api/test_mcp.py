"""POST /mcp: the backend's MCP server over streamable HTTP, the real application served by
uvicorn on loopback, reached by the official SDK's client with an API key (or an access
token): every tool answers on indexed data, a bad credential is refused before the MCP layer,
and tool errors name the argument."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from erc8004_backend.api.app import Pool
from tests.api.conftest import Account, ApiClient, MakeApp, api_settings, client_of, make_account
from tests.support.agent_world import CHAIN, CLIENT_A, OTHER, SCOUT, build_world
from tests.support.asgi import serve_asgi
from tests.support.mcp_tool_checks import (
    answer,
    check_every_tool,
    check_tool_errors,
    tool_error,
)

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@dataclass
class Served:
    url: str  # the MCP endpoint, http://127.0.0.1:port/mcp
    api: ApiClient  # the same application, in-process
    alice: Account
    key: str  # an API key of alice's
    key_id: str


@pytest.fixture
async def served(migrated_url: str, pool: Pool, make_app: MakeApp) -> AsyncIterator[Served]:
    async with pool.connection() as conn:
        await build_world(conn)
    app = make_app(api_settings(migrated_url), pool)
    async with client_of(app) as api, serve_asgi(app) as base:
        alice = await make_account(api, "alice_mcp")
        created = await api.post("/me/api-keys", json={"name": "agent"}, headers=alice.headers)
        assert created.status_code == 201, created.text
        yield Served(f"{base}/mcp", api, alice, created.json()["key"], created.json()["id"])


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, credential: str, mode: str = "auto", statuses: list[int] | None = None
) -> AsyncIterator[Client]:
    """An SDK client of the endpoint; `statuses` collects the HTTP status of each answer."""

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {credential}"},
        timeout=10,
        event_hooks={"response": [record]},
    )
    client = Client(streamable_http_client(url, http_client=http), mode=mode, cache=None)
    async with http, client:
        yield client


# "legacy": the initialize handshake most MCP clients speak; "auto": the SDK's default, which
# asks server/discover first.
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_every_tool_answers_over_http_with_an_api_key(served: Served, mode: str) -> None:
    async with mcp_client(served.url, served.key, mode) as client:
        await check_every_tool(client)
        await check_tool_errors(client)


async def test_an_access_token_signs_in_too(served: Served) -> None:
    async with mcp_client(served.url, served.alice.token) as client:
        found = await answer(client, "get_agent", {"chain_id": CHAIN, "agent_id": SCOUT})
    assert found["agent"]["registration"]["name"] == "Scout"


async def test_an_unknown_tool_is_a_protocol_error_naming_the_tools(served: Served) -> None:
    async with mcp_client(served.url, served.key) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("delete_agent", {"chain_id": CHAIN, "agent_id": SCOUT})
    assert raised.value.code == types.INVALID_PARAMS
    assert "unknown tool 'delete_agent'" in str(raised.value)
    assert "search_agents" in str(raised.value)


async def test_a_saved_lens_is_used_by_name(served: Served) -> None:
    saved = await served.api.post(
        "/me/lenses",
        json={"name": "only-a", "lens": {"allowlist": [CLIENT_A]}},
        headers=served.alice.headers,
    )
    assert saved.status_code == 201, saved.text
    agent = {"chain_id": CHAIN, "agent_id": SCOUT}
    async with mcp_client(served.url, served.key) as client:
        through = await answer(client, "get_reputation", {**agent, "lens_name": "only-a"})
        assert through["lens"]["lens_name"] == "only-a"
        assert through["lens"]["score"] == "90.000000000000000000"
        ranked = await answer(client, "search_agents", {"sort": "lens", "lens_name": "only-a"})
        assert [a["agent_id"] for a in ranked["agents"]] == [str(SCOUT), str(OTHER)]
        assert ranked["agents"][0]["lens_score"] == "90.000000000000000000"
        missing = await tool_error(client, "get_reputation", {**agent, "lens_name": "nope"})
        assert missing.startswith("lens_name: you have no lens named 'nope'")
        both = await tool_error(
            client, "get_reputation", {**agent, "lens_name": "only-a", "lens": {}}
        )
        assert both == "invalid arguments: lens_name: give lens or lens_name, not both"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ek_not-a-key", "Bearer not-a-token", "Basic YWxpY2U6cHc="],
)
async def test_a_request_without_a_valid_credential_is_refused(
    served: Served, authorization: str | None
) -> None:
    headers = {**MCP_HEADERS, **({"Authorization": authorization} if authorization else {})}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(served.url, json=INITIALIZE, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_revoked_key_is_refused_and_the_sdk_client_fails(served: Served) -> None:
    async with mcp_client(served.url, served.key) as client:
        await client.list_tools()
    revoked = await served.api.delete(f"/me/api-keys/{served.key_id}", headers=served.alice.headers)
    assert revoked.status_code == 204, revoked.text
    statuses: list[int] = []
    with pytest.raises(ExceptionGroup) as raised:  # the SDK's task groups' own
        async with mcp_client(served.url, served.key, "legacy", statuses) as client:
            await client.list_tools()
    assert raised.group_contains(MCPError)
    assert statuses == [401]


async def test_a_plain_post_gets_a_json_answer_without_a_session(served: Served) -> None:
    """Stateless: the answer is in the response (JSON, no event stream), and no session id
    is handed out to keep."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {served.key}"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(served.url, json=INITIALIZE, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in response.headers
    result = response.json()["result"]
    assert result["serverInfo"]["name"] == "erc8004-backend"
    assert "search_agents" in result["instructions"]


async def test_get_is_not_allowed(served: Served) -> None:
    """No stream of messages the server sends on its own: it sends none."""
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {served.key}"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(served.url, headers=headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


async def test_mcp_is_not_in_the_openapi_document(served: Served) -> None:
    document = (await served.api.get("/openapi.json")).json()
    assert "/mcp" not in document["paths"]
    assert all(path.startswith("/api/v1/") for path in document["paths"])
