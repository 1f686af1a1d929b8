"""Conditions as trees of all / any / not groups through the API: stored and read back as
given, kept by a patch of other settings, refused naming the path of the problem with
nothing written; and run by the processor as the backtest shows, a rate_limit inside an `any`
counting every event the trigger sees."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from erc8004_backend.triggers.processor import load_trigger_index, process_batch
from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import WEBHOOK, assert_refused_naming, row_counts
from tests.triggers.test_examples_end_to_end import group_example

AGENT_7 = {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "7"}
FEEDBACK = {
    "condition_type": "event_type_equals", "field": "event_type", "operator": "=",
    "value": "NewFeedback",
}  # fmt: skip
LOW = {"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "30"}
REFUND = {"condition_type": "tag_equals", "field": "tag1", "operator": "=", "value": "refund"}
THIRD_IN_TEN_MINUTES = {
    "condition_type": "rate_limit", "field": "feedback_count", "operator": ">=", "value": "3",
    "config": {"time_window": "10m"},
}  # fmt: skip
TREE = {"all": [AGENT_7, {"any": [LOW, {"all": [REFUND, {"not": FEEDBACK}]}]}]}
GROUPED: dict[str, Any] = {
    "name": "low scores or refunds that are not feedback", "chain_id": 84532,
    "registry": "reputation", "conditions": TREE, "actions": [WEBHOOK],
}  # fmt: skip


def without_ids(tree: Any) -> Any:
    if isinstance(tree, list):
        return [without_ids(item) for item in tree]
    for kind in ("all", "any", "not"):
        if kind in tree:
            return {kind: without_ids(tree[kind])}
    return {key: value for key, value in tree.items() if key != "id"}


def with_defaults(tree: Any) -> Any:
    """A tree as the server shows it: every condition with its config."""
    if isinstance(tree, list):
        return [with_defaults(item) for item in tree]
    for kind in ("all", "any", "not"):
        if kind in tree:
            return {kind: with_defaults(tree[kind])}
    return {"config": {}, **tree}


async def test_a_tree_is_stored_and_read_back_as_given(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    created = await api.post("/triggers", json=GROUPED, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert without_ids(created.json()["conditions"]) == with_defaults(TREE)
    trigger_id = created.json()["id"]
    read = (await api.get(f"/triggers/{trigger_id}", headers=alice.headers)).json()
    assert read["conditions"] == created.json()["conditions"]
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute(
            "SELECT group_path, value FROM trigger_conditions ORDER BY position"
        ).fetchall()
    assert rows == [("all[0]", "7"), ("all[1].any[0]", "30"), ("all[1].any[1].all[0]", "refund"),
                    ("all[1].any[1].all[1].not", "NewFeedback")]  # fmt: skip

    # A patch of another setting keeps the tree; a flat list replaces it as before.
    patched = await api.patch(
        f"/triggers/{trigger_id}", json={"cooldown_seconds": 60}, headers=alice.headers
    )
    assert patched.status_code == 200, patched.text
    assert without_ids(patched.json()["conditions"]) == with_defaults(TREE)
    flat = await api.patch(
        f"/triggers/{trigger_id}", json={"conditions": [AGENT_7, LOW]}, headers=alice.headers
    )
    assert without_ids(flat.json()["conditions"]) == with_defaults([AGENT_7, LOW])
    negated = await api.patch(
        f"/triggers/{trigger_id}", json={"conditions": {"not": {"any": [LOW]}}},
        headers=alice.headers,
    )  # fmt: skip
    assert without_ids(negated.json()["conditions"]) == with_defaults({"not": {"any": [LOW]}})
    assert row_counts(migrated_url) == (1, 1, 1)


def nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"all": [AGENT_7]}
    for _ in range(depth - 1):
        tree = {"not": tree}
    return tree


def replaced(path: list[Any], value: Any) -> dict[str, Any]:
    """GROUPED with the node at `path` in its conditions replaced."""
    body = copy.deepcopy(GROUPED)
    node = body["conditions"]
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


INVALID = {
    "an engine problem deep in the tree": (
        replaced(["all", 1, "any", 0], {**LOW, "operator": "LIKE"}),
        "conditions.all[1].any[0]",
        "conditions.all[1].any[0] (score_threshold): unknown operator 'LIKE'",
    ),
    "a missing key deep in the tree": (
        replaced(["all", 1, "any", 1, "all", 1, "not"], {"condition_type": "tag_equals"}),
        "conditions.all[1].any[1].all[1].not.field",
        "Field required",
    ),
    "an empty group": (
        replaced(["all", 1, "any"], []),
        "conditions.all[1].any",
        "at least 1 item",
    ),
    "a group and a condition in one object": (
        replaced(["all", 0], {**AGENT_7, "any": [LOW]}),
        "conditions.all[0].condition_type",
        "Extra inputs are not permitted",
    ),
    "a condition alone at the top": (
        {**GROUPED, "conditions": AGENT_7},
        "conditions",
        'must be a list of conditions or a group: {"all": [...]}',
    ),
    "a stateful condition in a stateless trigger": (
        replaced(["all", 1, "any", 0], THIRD_IN_TEN_MINUTES),
        "conditions.all[1].any[0]",
        "conditions.all[1].any[0] (rate_limit) keeps state: set is_stateful to true",
    ),
    "groups nine deep": (
        {**GROUPED, "conditions": nested(9)},
        "conditions" + ".not" * 8,
        "groups nest at most 8 deep",
    ),
    "more than 50 conditions in all": (
        {**GROUPED, "conditions": {"any": [{"all": [AGENT_7] * 30}, {"all": [LOW] * 21}]}},
        "conditions",
        "at most 50 conditions in all",
    ),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
async def test_invalid_trees_are_refused_naming_the_path_with_nothing_written(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    await assert_refused_naming(api, alice, migrated_url, *INVALID[case])


async def test_eight_deep_is_accepted(api: ApiClient, alice: Account) -> None:
    body = {**GROUPED, "conditions": nested(8)}
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert without_ids(response.json()["conditions"]) == with_defaults(nested(8))


async def test_the_processor_counts_every_event_the_trigger_sees_as_the_backtest_shows(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    """Feedback for agent 7 with a low score, or the third in ten minutes: the low scores
    fire by themselves and still count, so the third fires with a high score; a revocation
    is not feedback (the top-level all) and counts for nothing."""
    body = {
        **GROUPED, "is_stateful": True,
        "conditions": {"all": [FEEDBACK, AGENT_7, {"any": [LOW, THIRD_IN_TEN_MINUTES]}]},
    }  # fmt: skip
    created = await api.post("/triggers", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    trigger_id = created.json()["id"]
    start = datetime(2026, 1, 5, tzinfo=UTC)
    history = [(1, "NewFeedback", 10), (2, "NewFeedback", 10), (3, "FeedbackRevoked", None),
               (4, "NewFeedback", 90), (30, "NewFeedback", 90)]  # fmt: skip
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        for block, event_type, score in history:
            await conn.execute(
                "INSERT INTO events (chain_id, registry, event_type, contract_address,"
                " block_number, block_hash, block_time, transaction_hash, transaction_index,"
                " log_index, agent_id, client_address, feedback_index, score) VALUES (84532,"
                " 'reputation', %s, '0xabc', %s, %s, %s, '0xt', 0, 0, 7, '0xc', 1, %s)",
                [event_type, block, f"0x{block:064x}", start + timedelta(minutes=block), score],
            )
        # The trigger fires for events from its creation on: these are older.
        await conn.execute("UPDATE triggers SET fires_from = %s", [start])
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (84532, 30, 30)"
        )
        index = await load_trigger_index(conn)
        while (await process_batch(conn, 84532, index, limit=2)).events:
            pass
        cursor = await conn.execute(
            "SELECT e.block_number FROM action_jobs j JOIN events e ON e.id = j.event_id"
            " ORDER BY e.block_number"
        )
        queued = [block for (block,) in await cursor.fetchall()]
        cursor = await conn.execute("SELECT scope, state FROM trigger_state")
        states: dict[str, Any] = dict(await cursor.fetchall())
    assert queued == [1, 2, 4]
    # The window holds the last feedback only: the three before are more than ten minutes old.
    assert states == {"agent:7": {"4": {"times": [(start + timedelta(minutes=30)).timestamp()]}}}
    shown = await api.post(f"/triggers/{trigger_id}/test", json={}, headers=alice.headers)
    assert [f["block_number"] for f in shown.json()["fired"]] == queued
    assert shown.json()["matched"] == 4


async def test_the_documented_example_is_stored_as_given(api: ApiClient, alice: Account) -> None:
    body = group_example()  # the schema's example, as docs/triggers.md shows it
    created = await api.post("/triggers", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert without_ids(created.json()["conditions"]) == with_defaults(body["conditions"])
