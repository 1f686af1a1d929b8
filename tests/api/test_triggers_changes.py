"""Change conditions through the API: accepted with their template fields, refused configs
name their field, and the backtest (POST /triggers/{id}/test) shows the old and new values."""

from __future__ import annotations

import copy
import json
from typing import Any

import psycopg
import pytest

from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import assert_refused_naming
from tests.conftest import ROOT
from tests.triggers.test_change_conditions import CHAIN, A, B, history

OWNER_MOVED: dict[str, Any] = {
    "name": "Agent changed hands",
    "chain_id": CHAIN,
    "registry": "identity",
    "conditions": [{"condition_type": "owner_changed", "field": "owner", "operator": "!="}],
    "actions": [{
        "action_type": "telegram", "priority": 1,
        "config": {"chat_id": "1", "message_template":
                   "Agent {{agent_id}}: {{old_owner|short}} -> {{new_owner|short}}"},
    }],
}  # fmt: skip
MCP_MOVED: dict[str, Any] = {
    **OWNER_MOVED,
    "name": "MCP endpoint moved",
    "conditions": [{"condition_type": "uri_changed", "field": "agent_uri", "operator": "!=",
                    "config": {"on": ["mcp_endpoint", "services"]}}],
    "actions": [{
        "action_type": "telegram", "priority": 1,
        "config": {"chat_id": "1", "message_template":
                   "{{old_uri}} -> {{new_uri}}: MCP {{mcp_endpoint_before}} ->"
                   " {{mcp_endpoint_after}}; added {{services_added|default:none}}"},
    }],
}  # fmt: skip


def with_condition(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["conditions"][0].update(changes)
    return changed


INVALID = {
    "an unknown wallet change": (
        with_condition(OWNER_MOVED, condition_type="wallet_changed", field="agent_wallet",
                       config={"change": "cleared"}),
        "conditions[0].config.change", "must be one of set, unset, any"),
    "an unknown aspect": (with_condition(MCP_MOVED, config={"on": ["endpoint"]}),
                          "conditions[0].config.on[0]", "unknown aspect 'endpoint'"),
    "a value": (with_condition(OWNER_MOVED, value=A), "conditions[0].value", "must be empty"),
    "another operator": (with_condition(OWNER_MOVED, operator="="), "conditions[0].operator",
                         "must be !="),
    "another registry": ({**OWNER_MOVED, "registry": "reputation"},
                         "conditions[0].condition_type", "registry must be identity"),
}  # fmt: skip


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
async def test_invalid_change_conditions_are_refused_naming_the_field(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    await assert_refused_naming(api, alice, migrated_url, *INVALID[case])


async def test_the_backtest_shows_old_and_new_values(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    owner = await api.post("/triggers", json=OWNER_MOVED, headers=alice.headers)
    mcp = await api.post("/triggers", json=MCP_MOVED, headers=alice.headers)
    assert owner.status_code == mcp.status_code == 201, (owner.text, mcp.text)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)",
            [CHAIN],
        )
        await history(conn)
    response = await api.post(f"/triggers/{owner.json()['id']}/test", json={},
                              headers=alice.headers)  # fmt: skip
    assert response.status_code == 200, response.text
    fired = response.json()["fired"]
    assert [(f["block_number"], f["computed"]) for f in fired] == [
        (5, {"old_owner": A, "new_owner": B})
    ]
    response = await api.post(f"/triggers/{mcp.json()['id']}/test", json={},
                              headers=alice.headers)  # fmt: skip
    fired = response.json()["fired"]
    assert [f["block_number"] for f in fired] == [7]
    assert fired[0]["computed"]["mcp_endpoint_after"] == "https://b.example/mcp"


def documented_change_triggers() -> list[dict[str, Any]]:
    """The request bodies of docs/triggers.md's section on change conditions."""
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    section = text.split("\n### Change conditions\n", 1)[1].split("\n### ", 1)[0]
    return [json.loads(block.split("```", 1)[0]) for block in section.split("```json")[1:]]


async def test_the_documented_change_triggers_are_accepted_as_written(
    api: ApiClient, alice: Account
) -> None:
    bodies = documented_change_triggers()
    assert [body["conditions"][0]["condition_type"] for body in bodies] == [
        "owner_changed", "wallet_changed", "uri_changed"
    ]  # fmt: skip
    for body in bodies:
        response = await api.post("/triggers", json=body, headers=alice.headers)
        assert response.status_code == 201, response.text
