"""Summary conditions through the API: refused config names its field, the backtest
(POST /triggers/{id}/test) shows what the processor fired, and a saved lens a trigger names
cannot be deleted under it."""

from __future__ import annotations

import copy
import json
from typing import Any

import psycopg
import pytest

from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import assert_refused_naming
from tests.conftest import ROOT
from tests.triggers.test_summary_conditions import (
    CHAIN,
    A,
    B,
    C,
    add_event,
    give,
    index_all,
    jobs,
    process_all,
)

REPUTATION_DROP: dict[str, Any] = {
    "name": "Reputation among A and B below 50",
    "chain_id": CHAIN,
    "registry": "reputation",
    "is_stateful": True,
    "conditions": [{
        "condition_type": "reputation_threshold", "field": "reputation", "operator": "<",
        "value": "50", "config": {"clients": [A, B]},
    }],
    "actions": [{
        "action_type": "telegram", "priority": 1,
        "config": {"chat_id": "1", "message_template":
                   "Agent {{agent_id}}: {{reputation_before}} -> {{reputation_after}}"
                   " over {{reputation_count}} feedback"},
    }],
}  # fmt: skip
VALIDATION_DROP: dict[str, Any] = {
    **REPUTATION_DROP,
    "registry": "validation",
    "conditions": [{
        "condition_type": "validation_threshold", "field": "validation", "operator": "<",
        "value": "70", "config": {"validators": [], "tag": ""},
    }],
    "actions": [{
        "action_type": "telegram", "priority": 1,
        "config": {"chat_id": "1", "message_template":
                   "{{validation_before}} -> {{validation_after}} ({{validation_count}})"},
    }],
}  # fmt: skip


def edited(body: dict[str, Any], **config: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["conditions"][0]["config"] = config
    return changed


INVALID = {
    "a client that is no address": (
        edited(REPUTATION_DROP, clients=[A, "0xabc"]), "conditions[0].config.clients[1]",
        "is not an address"),
    "no clients": (edited(REPUTATION_DROP, clients=[]), "conditions[0].config.clients",
                   "must be a non-empty list of addresses"),
    "a lens that does not run": (
        edited(REPUTATION_DROP, lens={"half_life": "a while"}),
        "conditions[0].config.lens.half_life", "must be a duration"),
    "no such saved lens": (edited(REPUTATION_DROP, lens_name="bobs"),
                           "conditions[0].config.lens_name", "no saved lens named 'bobs'"),
    "no summary named": (edited(REPUTATION_DROP), "conditions[0].config",
                         "give one of config.clients"),
    "validators not a list": (edited(VALIDATION_DROP, validators=A),
                              "conditions[0].config.validators", "must be a list"),
    "another registry": ({**REPUTATION_DROP, "registry": "validation"},
                         "conditions[0].condition_type", "registry must be reputation"),
    "not stateful": ({**REPUTATION_DROP, "is_stateful": False}, "conditions[0]",
                     "set is_stateful to true"),
    "equality is no threshold": (
        {**REPUTATION_DROP, "conditions": [{**REPUTATION_DROP["conditions"][0],
                                             "operator": "="}]},
        "conditions[0].operator", "= is not a threshold"),
}  # fmt: skip


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
async def test_invalid_summary_conditions_are_refused_naming_the_field(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str, case: str
) -> None:
    # Bob's lens is not Alice's.
    saved = await api.post("/me/lenses", json={"name": "bobs", "lens": {}}, headers=bob.headers)
    assert saved.status_code == 201
    await assert_refused_naming(api, alice, migrated_url, *INVALID[case])


async def test_the_backtest_shows_the_firings_the_processor_made(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    created = await api.post("/triggers", json=REPUTATION_DROP, headers=alice.headers)
    assert created.status_code == 201, created.text
    trigger = created.json()["id"]
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)",
            [CHAIN],
        )
        # The trigger fires for events from its creation on: these are a minute later.
        await conn.execute("UPDATE triggers SET fires_from = '2000-01-01'")
        await give(conn, 1, 7, A, 1, 60)
        await give(conn, 2, 7, B, 1, 20)  # 40: crosses
        await give(conn, 3, 7, C, 1, 0)  # C is not listed
        await add_event(conn, 4, "FeedbackRevoked", 7, client_address=B, feedback_index=1)
        await give(conn, 5, 7, A, 2, 10)  # 35: crosses again
        await index_all(conn, 5)
        await process_all(conn)
        processed = await jobs(conn, trigger)
    assert [row[0] for row in processed] == [2, 5]
    response = await api.post(f"/triggers/{trigger}/test", json={}, headers=alice.headers)
    assert response.status_code == 200, response.text
    fired = response.json()["fired"]
    assert [(f["block_number"], f["agent_id"]) for f in fired] == [(2, "7"), (5, "7")]
    assert [f["computed"] for f in fired] == [
        {"reputation_before": "60", "reputation_after": "40", "reputation_count": "2"},
        {"reputation_before": "60", "reputation_after": "35", "reputation_count": "2"},
    ]
    assert [row[3] | {"trigger_id": "", "trigger_name": ""} for row in processed] == [
        {**f["computed"], "reputation_count": int(f["computed"]["reputation_count"]),
         "trigger_id": "", "trigger_name": ""}
        for f in fired
    ]  # fmt: skip


async def test_a_saved_lens_named_by_a_trigger_is_not_deleted_under_it(
    api: ApiClient, alice: Account
) -> None:
    saved = await api.post("/me/lenses", json={"name": "recent", "lens": {"half_life": "7d"}},
                           headers=alice.headers)  # fmt: skip
    assert saved.status_code == 201
    body = edited(REPUTATION_DROP, lens_name="recent")
    created = await api.post("/triggers", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    trigger = created.json()
    assert trigger["conditions"][0]["config"] == {"lens_name": "recent"}
    refused = await api.delete("/me/lenses/recent", headers=alice.headers)
    assert refused.status_code == 409
    assert f"'Reputation among A and B below 50' ({trigger['id']})" in refused.text
    # It may change: the trigger reads it as it is.
    changed = await api.put("/me/lenses/recent", json={"lens": {"vote": "latest"}},
                            headers=alice.headers)  # fmt: skip
    assert changed.status_code == 200
    assert (
        await api.delete(f"/triggers/{trigger['id']}", headers=alice.headers)
    ).status_code == 204
    assert (await api.delete("/me/lenses/recent", headers=alice.headers)).status_code == 204


def documented_summary_triggers() -> list[dict[str, Any]]:
    """The request bodies of docs/triggers.md's section on summary conditions."""
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    section = text.split("\n### Summary conditions\n", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]  # up to the next section (Groups)
    return [json.loads(block.split("```", 1)[0]) for block in section.split("```json")[1:]]


async def test_the_documented_summary_triggers_are_accepted_as_written(
    api: ApiClient, alice: Account
) -> None:
    bodies = documented_summary_triggers()
    assert [body["registry"] for body in bodies] == ["reputation", "validation"]
    saved = await api.post("/me/lenses", json={"name": "trusted-recent", "lens": {}},
                           headers=alice.headers)  # fmt: skip
    assert saved.status_code == 201
    reputation = bodies[0]["conditions"][1]
    lens = {"min_feedback": 3, "min_agents": 2, "vote": "latest", "half_life": "30d"}
    variants = [{"lens_name": "trusted-recent"}, {"lens": lens}]
    for config in variants:
        bodies.append(copy.deepcopy(bodies[0]))
        bodies[-1]["conditions"][1] = {**reputation, "config": config}
    for body in bodies:
        response = await api.post("/triggers", json=body, headers=alice.headers)
        assert response.status_code == 201, response.text
        assert response.json()["conditions"] == [
            {"config": {}, **condition, "id": stored["id"]}
            for condition, stored in zip(body["conditions"], response.json()["conditions"],
                                         strict=True)
        ]  # fmt: skip
