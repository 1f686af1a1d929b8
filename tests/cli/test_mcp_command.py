"""`erc8004 mcp`: the MCP server over stdio as a desktop client runs it, a subprocess on the
database DATABASE_URL names: the official SDK's client calls every tool on indexed data, its
stdout carries the protocol and nothing else, and it ends when the client closes stdin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import psycopg
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.conftest import ROOT
from tests.support.agent_world import CHAIN, OTHER, SCOUT, build_world
from tests.support.mcp_tool_checks import check_every_tool, check_tool_errors, tool_error

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def world_url(migrated_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await build_world(conn)
    return migrated_url


def server_parameters(*args: str, env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "erc8004_backend", "mcp", *args], env=env, cwd=ROOT
    )


async def test_every_tool_answers_over_stdio(world_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": world_url}
    async with Client(server_parameters(env=env), mode="legacy", cache=None) as client:
        await check_every_tool(client)
        await check_tool_errors(client)
        # Nobody signs in over stdio: a saved lens cannot be named.
        message = await tool_error(
            client, "get_reputation", {"chain_id": CHAIN, "agent_id": SCOUT, "lens_name": "mine"}
        )
        assert message.startswith("lens_name: saved lenses belong to a signed-in user")


async def test_the_database_option_names_the_database(world_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    async with Client(server_parameters("-D", world_url, env=env), cache=None) as client:
        found = await client.call_tool("search_agents", {"text": "scout"})
    assert not found.is_error, found
    assert isinstance(found.structured_content, dict)
    assert [a["name"] for a in found.structured_content["agents"]] == ["Scout"]


async def test_stdout_is_the_protocol_only_and_closing_stdin_ends_it(world_url: str) -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "get_agent", "arguments": {"chain_id": CHAIN, "agent_id": OTHER}}},
    ]  # fmt: skip
    server = await start_server(world_url)
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("".join(json.dumps(message) + "\n" for message in messages).encode())
    await server.stdin.drain()
    answers = [json.loads(await asyncio.wait_for(server.stdout.readline(), 30)) for _ in "12"]
    server.stdin.close()  # as a client leaving does: the server ends, and says nothing more
    assert await asyncio.wait_for(server.wait(), 15) == 0
    assert await server.stdout.read() == b""
    assert [a["id"] for a in answers] == [1, 2], answers
    assert answers[0]["result"]["serverInfo"]["name"] == "erc8004-backend"
    agent = answers[1]["result"]["structuredContent"]["agent"]
    assert (agent["agent_id"], agent["registration"]["status"]) == (str(OTHER), None)


async def start_server(url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "mcp", cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_sigterm_ends_it_while_stdin_stays_open(world_url: str) -> None:
    server = await start_server(world_url)
    assert server.stdin is not None
    assert server.stdout is not None
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    server.stdin.write((json.dumps(ping) + "\n").encode())
    await server.stdin.drain()
    answered = json.loads(await asyncio.wait_for(server.stdout.readline(), 30))
    assert answered == {"jsonrpc": "2.0", "id": 1, "result": {}}  # serving
    server.terminate()
    assert await asyncio.wait_for(server.wait(), 15) == 0
