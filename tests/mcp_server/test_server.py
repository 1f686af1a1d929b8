"""The MCP server in-process (the SDK's client connected to the Server object): what each
kind of failure becomes, tool errors or protocol errors, and the tools' input schemas."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from erc8004_backend.api.app import Pool, open_pool
from erc8004_backend.api.dependencies import live_connection
from erc8004_backend.mcp_server.server import build_server
from erc8004_backend.mcp_server.tools import (
    TOOLS,
    AgentArguments,
    Caller,
    Connection,
    Tool,
    ToolCallError,
    jsonable,
    parse_arguments,
)
from tests.support.mcp_tool_checks import text_of

AGENT = {"chain_id": 31337, "agent_id": 1}


@contextlib.asynccontextmanager
async def pool_on(url: str) -> AsyncIterator[Pool]:
    async with open_pool(url, min_size=1, max_size=2) as pool:
        yield pool


def server_on(pool: Pool, tools: tuple[Tool[Any], ...] = TOOLS) -> Client:
    source = lambda: live_connection(pool, timeout=2)  # noqa: E731
    return Client(build_server(source, Caller(), tools), mode="legacy", cache=None)


async def test_a_database_without_the_read_model_is_a_tool_error_saying_so(
    database_url: str,
) -> None:
    async with pool_on(database_url) as pool, server_on(pool) as client:
        result = await client.call_tool("get_agent", AGENT)
    assert result.is_error
    assert text_of(result).startswith("the database has no read model yet: apply the migrations")


async def test_an_unreachable_database_is_a_tool_error_saying_so() -> None:
    unreachable = "postgresql://postgres@127.0.0.1:1/nothing"
    async with pool_on(unreachable) as pool, server_on(pool) as client:
        result = await client.call_tool("get_agent", AGENT)
    assert result.is_error
    assert text_of(result) == "the database is unavailable; try again in a few seconds"


async def test_an_unexpected_failure_is_an_internal_error_without_its_details(
    migrated_url: str,
) -> None:
    async def broken(conn: Connection, args: AgentArguments, caller: Caller) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    tool = Tool("broken", "Broken", "Fails.", AgentArguments, broken)
    async with pool_on(migrated_url) as pool, server_on(pool, (tool,)) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("broken", AGENT)
    assert raised.value.code == types.INTERNAL_ERROR
    assert str(raised.value) == "broken failed unexpectedly; see the server's log"


def test_every_argument_is_described_and_numbers_are_bounded() -> None:
    for tool in TOOLS:
        properties = tool.input_schema["properties"]
        for name, schema in properties.items():
            assert schema.get("description"), (tool.name, name)
            for variant in schema.get("anyOf", [schema]):
                if variant.get("type") == "integer":
                    assert "minimum" in variant, (tool.name, name)
                    assert "maximum" in variant, (tool.name, name)
                if variant.get("type") == "string" and "enum" not in variant:
                    bounded = {"maxLength", "pattern", "format"} & set(variant)
                    assert bounded, (tool.name, name)


def test_arguments_are_taken_as_written() -> None:
    with pytest.raises(ToolCallError) as raised:
        parse_arguments(AgentArguments, {"chain_id": True, "agent_id": 1.0})
    assert str(raised.value) == (
        "invalid arguments: chain_id: Input should be a valid integer;"
        " agent_id: Input should be a valid integer"
    )
    with pytest.raises(ToolCallError) as raised:
        parse_arguments(AgentArguments, {"agent_id": 1})
    assert str(raised.value) == "invalid arguments: chain_id: Field required"


def test_answers_are_json_with_big_numbers_as_exact_text() -> None:
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    record = {
        "agent_id": 2**255 + 7,
        "value": -(2**127),
        "feedback_index": 3,
        "block_number": 12,
        "score": Decimal("-4.50"),
        "at": at,
        "paris": at.astimezone(timezone(timedelta(hours=1))),
        "metadata": {"key": b"\x00\xff"},
        "items": (1, None, True),
    }
    assert jsonable(record) == {
        "agent_id": str(2**255 + 7),
        "value": str(-(2**127)),
        "feedback_index": "3",
        "block_number": 12,
        "score": "-4.50",
        "at": "2026-03-02T12:00:00Z",
        "paris": "2026-03-02T13:00:00+01:00",
        "metadata": {"key": "0x00ff"},
        "items": [1, None, True],
    }
