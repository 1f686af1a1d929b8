"""Silence conditions through the API: the documented triggers accepted as written, refused
variants name their field with nothing written, and the backtest (POST /triggers/{id}/test)
shows the silent periods up to the confirmed head."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import assert_refused_naming
from tests.conftest import ROOT


def documented_silence_triggers() -> list[dict[str, Any]]:
    """The request bodies of docs/triggers.md's section on silence conditions."""
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    section = text.split("\n### Silence conditions\n", 1)[1].split("\n### ", 1)[0]
    return [json.loads(block.split("```", 1)[0]) for block in section.split("```json")[1:]]


QUIET_AGENT, UNANSWERED = documented_silence_triggers()


def changed(body: dict[str, Any], index: int = -1, **changes: Any) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    copied["conditions"][index].update(changes)
    return copied


INVALID = {
    "no state": ({**QUIET_AGENT, "is_stateful": False}, "conditions[2]", "set is_stateful"),
    "a bad duration": (changed(QUIET_AGENT, value="a day"), "conditions[2].value",
                       "'a day' is not a duration"),
    "a scope of another registry": (changed(QUIET_AGENT, config={"scope": "request"}),
                                    "conditions[2].config.scope", "validation registry"),
    "an after of another registry": (changed(QUIET_AGENT, config={"after": "ValidationRequest"}),
                                     "conditions[2].config.after", "validation registry"),
    "an event type beside after": (changed(QUIET_AGENT, config={"after": "NewFeedback"}),
                                   "conditions", "leave the event type out"),
    "two silences": ({**QUIET_AGENT, "conditions": [*QUIET_AGENT["conditions"],
                                                     QUIET_AGENT["conditions"][2]]},
                     "conditions", "at most one silence condition"),
    "in a group": ({**QUIET_AGENT, "conditions": {"any": QUIET_AGENT["conditions"]}},
                   "conditions", "a flat list"),
}  # fmt: skip


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
async def test_invalid_silences_are_refused_naming_the_field(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    await assert_refused_naming(api, alice, migrated_url, *INVALID[case])


async def test_the_documented_silences_are_accepted_and_backtested_to_the_head(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    ids = []
    for body in (QUIET_AGENT, UNANSWERED):
        response = await api.post("/triggers", json=body, headers=alice.headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        rows = [  # (block, hours after t0, registry, event type, agent, request)
            (1, 0, "reputation", "NewFeedback", 42, None),
            (2, 30, "reputation", "NewFeedback", 42, None),  # 30 h of silence before it
            (3, 31, "validation", "ValidationRequest", 42, 1),
            (4, 33, "validation", "ValidationResponse", 42, 1),
            (5, 34, "validation", "ValidationRequest", 42, 2),  # never answered
        ]
        for block, hours, registry, kind, agent, request in rows:
            conn.execute(
                "INSERT INTO events (chain_id, registry, event_type, contract_address,"
                " block_number, block_hash, block_time, transaction_hash, transaction_index,"
                " log_index, agent_id, score, request_hash) VALUES (8453, %s, %s, '0xabc', %s,"
                " %s, %s, '0xt', 0, 0, %s, 50, %s)",
                [registry, kind, block, f"0x{block:064x}", t0 + timedelta(hours=hours), agent,
                 request and f"0x{request:064x}"],
            )  # fmt: skip
        conn.execute("INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
                     " VALUES (8453, 9, 9)")  # fmt: skip
        conn.execute("INSERT INTO indexed_blocks (chain_id, block_number, block_hash,"
                     " parent_hash, block_time) VALUES (8453, 9, '0x9', '0x8', %s)",
                     [t0 + timedelta(hours=41)])  # fmt: skip
    quiet = (await api.post(f"/triggers/{ids[0]}/test", json={}, headers=alice.headers)).json()
    # From the first feedback (the backtest's start) a day passes before the second.
    assert [(f["block_number"], f["event_type"], f["computed"]) for f in quiet["fired"]] == [
        (2, "silence", {"silent_since": t0.isoformat(), "silence_seconds": "86400"})
    ]
    text = quiet["fired"][0]["messages"][0]["text"]
    assert text == "Agent 42: no feedback since 2026-05-01T00:00:00Z"
    unanswered = (await api.post(f"/triggers/{ids[1]}/test", json={},
                                 headers=alice.headers)).json()  # fmt: skip
    # Request 2 is due at 40 h; the head (block 9) is at 41 h.
    assert [(f["block_number"], f["event_id"] is not None) for f in unanswered["fired"]] == [
        (9, True)
    ]
    body = unanswered["fired"][0]["messages"][0]["body"]
    assert body == {"request": f"0x{2:064x}",
                    "since": (t0 + timedelta(hours=34)).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    # Up to a time before the head: nothing was due yet.
    early = await api.post(f"/triggers/{ids[1]}/test", headers=alice.headers,
                           json={"to_time": (t0 + timedelta(hours=39)).isoformat()})  # fmt: skip
    assert early.json()["fired"] == []
