"""Replays through the API: asked for on create (`replay_from`) or later
(`POST /triggers/{id}/replays`), shown with their progress, cancelled; a clear 422 for a bad
start; another user's trigger is a 404; the backtest shows what a replay would cover."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from erc8004_backend.triggers.processor import Processor
from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import SIMPLE
from tests.conftest import ROOT

CHAIN = 84532


def store_history(url: str) -> None:
    """Feedback in blocks 1-4 (agent 7 in 1, 3 and 4), confirmed and already passed by the
    processor before any trigger existed."""
    with psycopg.connect(url, autocommit=True) as conn:
        for block, agent in [(1, 7), (2, 8), (3, 7), (4, 7)]:
            conn.execute(
                "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
                " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
                " client_address, score) VALUES (%s, 'reputation', 'NewFeedback', '0xabc', %s,"
                " '0xb', %s, '0xt', 0, 0, %s, '0xc', 50)",
                [CHAIN, block, datetime(2026, 1, block, tzinfo=UTC), agent],
            )  # fmt: skip
        conn.execute("INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
                     " VALUES (%s, 4, 4)", [CHAIN])  # fmt: skip
        conn.execute("INSERT INTO processing_cursors (chain_id, block_number, log_index)"
                     " VALUES (%s, 4, 0)", [CHAIN])  # fmt: skip


async def process(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Processor(url).run_once(conn)


def job_blocks(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT e.block_number FROM action_jobs j JOIN events e ON e.id = j.event_id"
            " ORDER BY e.block_number"
        ).fetchall()
    return [row[0] for row in rows]


async def test_replay_from_on_create_queues_the_history_once(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    store_history(migrated_url)
    created = await api.post("/triggers", json={**SIMPLE, "replay_from": {"from_block": 3}},
                             headers=alice.headers)  # fmt: skip
    assert created.status_code == 201, created.text
    trigger, replay = created.json()["id"], created.json()["replay"]
    assert {k: replay[k] for k in ("from_block", "from_time", "status", "end_block", "jobs")} == {
        "from_block": 3, "from_time": None, "status": "pending", "end_block": None, "jobs": 0}  # fmt: skip
    await process(migrated_url)
    assert job_blocks(migrated_url) == [3, 4]
    (shown,) = (await api.get(f"/triggers/{trigger}/replays", headers=alice.headers)).json()
    assert {k: shown[k] for k in ("id", "status", "end_block", "cursor_block", "events",
                                  "firings", "jobs")} == {
        "id": replay["id"], "status": "done", "end_block": 4, "cursor_block": 4, "events": 2,
        "firings": 2, "jobs": 2}  # fmt: skip
    assert shown["finished_at"] is not None

    # Later, from a time: block 1 gets its job, 3 and 4 have theirs already.
    later = await api.post(f"/triggers/{trigger}/replays",
                           json={"from_time": "2026-01-01T00:00:00Z"}, headers=alice.headers)  # fmt: skip
    assert later.status_code == 201, later.text
    again = await api.post(f"/triggers/{trigger}/replays", json={"from_block": 1},
                           headers=alice.headers)  # fmt: skip
    await process(migrated_url)
    assert job_blocks(migrated_url) == [1, 3, 4]
    listed = (await api.get(f"/triggers/{trigger}/replays", headers=alice.headers)).json()
    assert [(r["id"], r["status"], r["firings"], r["jobs"]) for r in listed] == [
        (again.json()["id"], "done", 3, 0), (later.json()["id"], "done", 3, 1),
        (replay["id"], "done", 2, 2)]  # fmt: skip


async def test_a_plain_create_requests_no_replay(api: ApiClient, alice: Account) -> None:
    created = await api.post("/triggers", json=SIMPLE, headers=alice.headers)
    assert created.json()["replay"] is None
    listed = await api.get(f"/triggers/{created.json()['id']}/replays", headers=alice.headers)
    assert listed.json() == []


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ({}, "exactly one of from_block and from_time"),
        ({"from_block": 1, "from_time": "2026-01-01T00:00:00Z"}, "exactly one of"),
        ({"from_block": -1}, "greater than or equal to 0"),
        ({"from_block": "3"}, "valid integer"),
        ({"from_time": "yesterday"}, "from_time"),
        ({"to_block": 3}, "to_block"),
    ],
)
async def test_a_bad_start_is_a_422_on_create_and_later(
    api: ApiClient, alice: Account, start: dict[str, Any], message: str
) -> None:
    created = await api.post("/triggers", json={**SIMPLE, "replay_from": start},
                             headers=alice.headers)  # fmt: skip
    assert created.status_code == 422, created.text
    assert message in created.text
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()["id"]
    later = await api.post(f"/triggers/{trigger}/replays", json=start, headers=alice.headers)
    assert later.status_code == 422, later.text
    assert message in later.text


async def test_anothers_trigger_or_replay_is_a_404(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    trigger = (await api.post("/triggers", json={**SIMPLE, "replay_from": {"from_block": 1}},
                              headers=alice.headers)).json()  # fmt: skip
    base = f"/triggers/{trigger['id']}/replays"
    replay = trigger["replay"]["id"]
    for method, path, body in [("POST", base, {"from_block": 1}), ("GET", base, None),
                               ("POST", f"{base}/{replay}/cancel", None)]:  # fmt: skip
        response = await api.request(method, path, json=body, headers=bob.headers)
        assert response.status_code == 404, (method, path, response.text)
    missing = await api.post(f"{base}/{replay + 1}/cancel", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "replay not found"
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM trigger_replays").fetchone() == (1,)


async def test_a_cancelled_replay_queues_nothing(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    store_history(migrated_url)
    created = (await api.post("/triggers", json={**SIMPLE, "replay_from": {"from_block": 1}},
                              headers=alice.headers)).json()  # fmt: skip
    path = f"/triggers/{created['id']}/replays/{created['replay']['id']}/cancel"
    cancelled = await api.post(path, headers=alice.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    await process(migrated_url)
    assert job_blocks(migrated_url) == []
    assert (await api.post(path, headers=alice.headers)).json()["status"] == "cancelled"


async def test_the_backtest_shows_what_a_replay_would_cover(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    store_history(migrated_url)
    trigger = (await api.post("/triggers", json={**SIMPLE, "replay_from": {"from_block": 4}},
                              headers=alice.headers)).json()["id"]  # fmt: skip
    await process(migrated_url)
    preview = await api.post(f"/triggers/{trigger}/test", json={"from_block": 2, "replay": True},
                             headers=alice.headers)  # fmt: skip
    assert preview.status_code == 200, preview.text
    result = preview.json()
    assert result["events_checked"] == 3
    assert result["replay_end"] == {"block_number": 4, "log_index": 0}
    assert [(f["block_number"], f["new_jobs"]) for f in result["fired"]] == [(3, 1), (4, 0)]
    plain = (await api.post(f"/triggers/{trigger}/test", json={}, headers=alice.headers)).json()
    assert plain["replay_end"] is None
    assert {f["new_jobs"] for f in plain["fired"]} == {None}
    for body in ({"replay": True}, {"replay": True, "from_block": 1, "to_block": 3}):
        refused = await api.post(f"/triggers/{trigger}/test", json=body, headers=alice.headers)
        assert refused.status_code == 422, refused.text


async def test_the_documented_replay_example_is_accepted(api: ApiClient, alice: Account) -> None:
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    section = text.split("\n### History on purpose: replays\n", 1)[1].split("\n## ", 1)[0]
    body = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    created = await api.post("/triggers", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert created.json()["replay"]["from_block"] == 24_000_000
