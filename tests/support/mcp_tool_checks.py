"""Every tool of the backend's MCP server called through an MCP client, its answers checked
against the world of tests/support/agent_world.py: the same checks over each transport."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp import Client

from tests.support.agent_world import (
    CHAIN,
    CLIENT_A,
    CLIENT_B,
    OTHER,
    OWNER,
    REQUEST_HASH,
    SCOUT,
    SCOUT_MCP,
    VALIDATOR,
)

TOOL_NAMES = {"search_agents", "get_agent", "get_reputation", "list_feedback",
              "list_validations", "recent_events"}  # fmt: skip


async def answer(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The tool's structured answer, which its text content repeats; fails on a tool error."""
    result = await client.call_tool(tool, arguments)
    text = text_of(result)
    assert not result.is_error, text
    assert isinstance(result.structured_content, dict)
    assert json.loads(text) == result.structured_content
    return result.structured_content


async def tool_error(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """The text of the tool error the call answers."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    return text_of(result)


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def check_tool_list(client: Client) -> None:
    listed = (await client.list_tools()).tools
    assert {tool.name for tool in listed} == TOOL_NAMES
    for tool in listed:
        assert tool.description
        assert tool.annotations
        assert tool.annotations.read_only_hint
        schema = tool.input_schema
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
    get_agent = next(tool for tool in listed if tool.name == "get_agent").input_schema
    assert get_agent["required"] == ["chain_id", "agent_id"]
    agent_id = get_agent["properties"]["agent_id"]
    assert agent_id["minimum"] == 0
    assert agent_id["maximum"] == 2**256 - 1
    assert "identity registry" in agent_id["description"]


async def check_every_tool(client: Client) -> None:
    """Lists the tools, then calls each one, checking what it answers."""
    await check_tool_list(client)
    agent = {"chain_id": CHAIN, "agent_id": SCOUT}

    found = await answer(client, "search_agents", {"text": "SCOUT"})
    assert [(a["chain_id"], a["agent_id"], a["name"]) for a in found["agents"]] == [
        (CHAIN, str(SCOUT), "Scout")
    ]
    scout = found["agents"][0]
    assert (scout["mcp_endpoint"], scout["feedback_count"], scout["revoked_count"],
            scout["client_count"]) == (SCOUT_MCP, 2, 1, 2)  # fmt: skip
    by_feedback = await answer(client, "search_agents", {"sort": "feedback_count", "limit": 1})
    assert [a["agent_id"] for a in by_feedback["agents"]] == [str(SCOUT)]
    rest = await answer(client, "search_agents", {"sort": "feedback_count", "limit": 1,
                                                  "cursor": by_feedback["next_cursor"]})  # fmt: skip
    assert [a["agent_id"] for a in rest["agents"]] == [str(OTHER)]
    assert rest["next_cursor"] is None

    profile = await answer(client, "get_agent", agent)
    assert profile["agent"]["owner"] == OWNER
    assert profile["agent"]["registration"]["name"] == "Scout"
    assert profile["agent"]["registration"]["mcp_endpoint"] == SCOUT_MCP
    assert profile["stats"] == {"feedback_count": 2, "revoked_count": 1, "client_count": 2,
                                "validation_count": 1}  # fmt: skip

    # getSummary as the contract computes it: 90 and 45.5 scaled to 18 decimals, averaged,
    # then cut to the most frequent valueDecimals (a tie: the smaller, 0): 67, not 67.75.
    spec = await answer(client, "get_reputation", {**agent, "clients": [CLIENT_A, CLIENT_B]})
    assert spec["spec"] == {"clients": [CLIENT_A, CLIENT_B], "tag1": "", "tag2": "",
                            "count": 2, "value": "67", "decimals": 0, "average": "67"}  # fmt: skip
    assert "lens" not in spec
    assert spec["validation"] == {"validators": None, "tag": "", "count": 1, "average": 100}
    plain = await answer(client, "get_reputation", agent)
    assert "spec" not in plain
    assert plain["lens"]["score"] == "67.750000000000000000"
    assert plain["lens"]["explain"]["counted"] == 2
    assert plain["lens"]["explain"]["excluded"]["revoked"] == 1
    trusted = await answer(client, "get_reputation", {**agent, "lens": {"allowlist": [CLIENT_A]}})
    assert trusted["lens"]["score"] == "90.000000000000000000"
    assert trusted["lens"]["explain"]["excluded"]["untrusted_client"] == 1
    assert [c["client"] for c in trusted["lens"]["explain"]["top_clients"]] == [CLIENT_A]

    feedback = await answer(client, "list_feedback", {**agent, "include_revoked": True})
    assert [(f["client_address"], f["feedback_index"], f["score"], f["revoked"])
            for f in feedback["feedback"]] == [
        (CLIENT_A, "1", "90", False), (CLIENT_A, "2", "70", True), (CLIENT_B, "1", "45.5", False),
    ]  # fmt: skip
    first = feedback["feedback"][0]
    assert [(r["responder"], r["response_uri"]) for r in first["responses"]] == [
        (OWNER, "ipfs://thanks")
    ]
    speed = await answer(client, "list_feedback", {**agent, "tag1": "speed"})
    assert [f["client_address"] for f in speed["feedback"]] == [CLIENT_B]

    validations = await answer(client, "list_validations", agent)
    assert [(v["request_hash"], v["validator_address"], v["response"], v["response_tag"])
            for v in validations["validations"]] == [
        (REQUEST_HASH, VALIDATOR, 100, "hard-finality")
    ]  # fmt: skip

    latest = await answer(client, "recent_events", {"chain_id": CHAIN, "limit": 2})
    assert [e["event_type"] for e in latest["events"]] == ["ValidationResponse",
                                                          "ValidationRequest"]  # fmt: skip
    older = await answer(client, "recent_events", {"chain_id": CHAIN, "limit": 2,
                                                   "cursor": latest["next_cursor"]})  # fmt: skip
    assert [e["event_type"] for e in older["events"]] == ["ResponseAppended", "FeedbackRevoked"]
    revocations = await answer(client, "recent_events", {"event_type": "FeedbackRevoked"})
    assert [(e["agent_id"], e["feedback_index"]) for e in revocations["events"]] == [
        (str(SCOUT), "2")
    ]


async def check_tool_errors(client: Client) -> None:
    """Bad arguments and unknown agents are tool errors naming the argument."""
    message = await tool_error(client, "get_agent", {"chain_id": CHAIN, "agent_id": -1})
    assert message == "invalid arguments: agent_id: Input should be greater than or equal to 0"
    message = await tool_error(client, "get_agent", {"chain_id": CHAIN, "agent_id": 9})
    assert message.startswith("agent_id: no agent 9 on chain 31337")
    message = await tool_error(client, "list_feedback", {"chain_id": CHAIN, "agent_id": "0"})
    assert message == "invalid arguments: agent_id: Input should be a valid integer"
    message = await tool_error(
        client, "get_reputation", {"chain_id": CHAIN, "agent_id": SCOUT, "lens": {"half_life": "x"}}
    )
    assert message.startswith("invalid arguments: lens.half_life: must be a duration")
    message = await tool_error(client, "recent_events", {"agent_id": SCOUT})
    assert message == "invalid arguments: agent_id: needs chain_id (each chain numbers its own)"
    message = await tool_error(client, "search_agents", {"cursor": "nonsense"})
    assert message.startswith("invalid arguments: cursor: not a cursor")
    message = await tool_error(client, "search_agents", {"colour": "blue"})
    assert message == "invalid arguments: colour: Extra inputs are not permitted"
