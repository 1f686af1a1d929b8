"""Replays through the API: asked for on create (`replay_from`) or later
(`POST /triggers/{id}/replays`), shown with their progress, cancelled; a clear 422 for a bad
start; another user's trigger is a 404; the backtest shows what a replay would cover; the
jobs a replay queues are marked `replay` and delivered as such, with the keys live jobs have."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from erc8004_backend.actions.rest import REPLAY_HEADER
from erc8004_backend.triggers.processor import Processor
from tests.actions.test_worker import running_worker, settings_for
from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import SIMPLE
from tests.conftest import ROOT
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.waiting import eventually

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
                " %s, %s, '0xt', 0, 0, %s, '0xc', 50)",
                [CHAIN, block, f"0xb{block}", datetime(2026, 1, block, tzinfo=UTC), agent],
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
        ({"to_block": 3}, "exactly one of from_block and from_time"),
        ({"from_block": 3, "to_block": 2}, "from_block 3 is after to_block 2"),
        ({"from_time": "2026-01-02T00:00:00Z", "to_time": "2026-01-01"}, "from_time is after"),
        (
            {"from_block": 1, "to_block": 3, "to_time": "2026-01-01T00:00:00Z"},
            "at most one of to_block and to_time",
        ),
        ({"from_block": 1, "to_block": -1}, "greater than or equal to 0"),
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
    for body in ({"replay": True},
                 {"replay": True, "from_block": 1, "to_block": 3, "to_time": "2026-01-04"}):  # fmt: skip
        refused = await api.post(f"/triggers/{trigger}/test", json=body, headers=alice.headers)
        assert refused.status_code == 422, refused.text
    # A range ends at its own end: block 3 only.
    ranged = await api.post(f"/triggers/{trigger}/test", headers=alice.headers,
                            json={"from_block": 2, "to_block": 3, "replay": True})  # fmt: skip
    assert [(f["block_number"], f["new_jobs"]) for f in ranged.json()["fired"]] == [(3, 1)]


async def test_the_documented_replay_example_is_accepted(api: ApiClient, alice: Account) -> None:
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    section = text.split("\n### History on purpose: replays\n", 1)[1].split("\n## ", 1)[0]
    body = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    created = await api.post("/triggers", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert created.json()["replay"]["from_block"] == 24_000_000


def store_live_event(url: str, block: int) -> None:
    """Feedback for agent 7 in `block`, a block time after any trigger's start, confirmed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
            " client_address, score) VALUES (%s, 'reputation', 'NewFeedback', '0xabc', %s,"
            " %s, %s, '0xt', 0, 0, 7, '0xc', 50)",
            [CHAIN, block, f"0xb{block}", datetime.now(UTC) + timedelta(minutes=1)],
        )  # fmt: skip
        conn.execute("UPDATE checkpoints SET block_number = %s, confirmed_block_number = %s"
                     " WHERE chain_id = %s", [block, block, CHAIN])  # fmt: skip


def live_key(url: str, block: int, trigger_id: str, action_id: str) -> str:
    """The idempotency key of a live job for the event of `block` (processor.idempotency_key,
    computed here from its definition: chain, block hash, log index, trigger, action)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT block_hash, log_index FROM events WHERE chain_id = %s AND"
                           " block_number = %s", [CHAIN, block]).fetchone()  # fmt: skip
    assert row is not None
    name = f"{CHAIN}:{row[0]}:{row[1]}:{trigger_id}:{action_id}"
    return hashlib.sha256(name.encode()).hexdigest()


def jobs_by_block(url: str) -> dict[int, tuple[bool, str]]:
    """Each job's event block: (marked replay, idempotency key)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT e.block_number, j.replay, j.idempotency_key FROM action_jobs j"
            " JOIN events e ON e.id = j.event_id ORDER BY e.block_number"
        ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


async def test_replay_jobs_are_marked_and_delivered_as_such_with_the_live_keys(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    store_history(migrated_url)  # agent 7 in blocks 1, 3 and 4, before the trigger
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        webhook = {"action_type": "rest", "priority": 1, "config": {"url": url}}
        created = (await api.post("/triggers", json={**SIMPLE, "actions": [webhook]},
                                  headers=alice.headers)).json()  # fmt: skip
        sink.secret = created["webhook_secret"]
        trigger, action = created["id"], created["actions"][0]["id"]
        store_live_event(migrated_url, 5)
        await process(migrated_url)  # block 5 fires live
        keys = {block: live_key(migrated_url, block, trigger, action) for block in (1, 3, 4, 5)}
        assert jobs_by_block(migrated_url) == {5: (False, keys[5])}

        # From block 2: blocks 3 and 4 had no job and get one, marked; block 5 has its own.
        replay = await api.post(f"/triggers/{trigger}/replays", json={"from_block": 2},
                                headers=alice.headers)  # fmt: skip
        assert replay.status_code == 201, replay.text
        await process(migrated_url)
        assert jobs_by_block(migrated_url) == {3: (True, keys[3]), 4: (True, keys[4]),
                                               5: (False, keys[5])}  # fmt: skip
        # From block 1: block 1 only; and the same again: nothing.
        further = await api.post(f"/triggers/{trigger}/replays", json={"from_block": 1},
                                 headers=alice.headers)  # fmt: skip
        await process(migrated_url)
        again = await api.post(f"/triggers/{trigger}/replays", json={"from_block": 1},
                               headers=alice.headers)  # fmt: skip
        await process(migrated_url)
        marks = {block: block != 5 for block in keys}
        assert jobs_by_block(migrated_url) == {b: (marks[b], keys[b]) for b in keys}
        listed = (await api.get(f"/triggers/{trigger}/replays", headers=alice.headers)).json()
        assert [(r["id"], r["jobs"]) for r in listed] == [
            (again.json()["id"], 0), (further.json()["id"], 1), (replay.json()["id"], 2)]  # fmt: skip

        # The API shows the mark, and filters by it.
        jobs = (await api.get("/jobs", headers=alice.headers)).json()["items"]
        assert {job["idempotency_key"]: job["replay"] for job in jobs} == {
            keys[b]: marks[b] for b in keys}  # fmt: skip
        for wanted in (True, False):
            page = await api.get("/jobs", params={"replay": str(wanted).lower()},
                                 headers=alice.headers)  # fmt: skip
            assert {job["idempotency_key"] for job in page.json()["items"]} == {
                keys[b] for b in keys if marks[b] == wanted}  # fmt: skip
        vague = await api.get("/jobs", params={"replay": "yes"}, headers=alice.headers)
        assert vague.status_code == 422, vague.text
        assert "must be true or false" in vague.text
        one = (await api.get(f"/jobs/{jobs[0]['id']}", headers=alice.headers)).json()
        assert (one["replay"], one["payload"]["replay"]) == (True, True)

        # Delivered: the replay's with its header and body field, each with its live key.
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(sink.processed) == len(keys))
    assert all(request.signature_ok for request in sink.received)
    for block, key in keys.items():
        request = sink.processed[key]
        assert request.json()["event"]["block_number"] == block
        assert request.json()["idempotency_key"] == key
        assert request.headers.get(REPLAY_HEADER.lower()) == ("true" if marks[block] else None)
        assert request.json().get("replay") is (True if marks[block] else None)


async def test_a_replay_of_a_range_covers_that_range_only(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    """To a block, to a time: the events of the range, none after it, even those the live
    processor has not passed yet and that are older than the trigger."""
    store_history(migrated_url)  # agent 7 in blocks 1, 3 and 4; the cursor at block 4
    created = (await api.post("/triggers", json={**SIMPLE, "replay_from": {
        "from_block": 1, "to_block": 2}}, headers=alice.headers)).json()  # fmt: skip
    trigger = created["id"]
    assert (created["replay"]["to_block"], created["replay"]["to_time"]) == (2, None)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        before = conn.execute("SELECT fires_from FROM triggers WHERE id = %s",
                              [trigger]).fetchone()  # fmt: skip
        # Block 5, older than the trigger, that the processor has not passed yet.
        conn.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
            " client_address, score) VALUES (%s, 'reputation', 'NewFeedback', '0xabc', 5,"
            " '0xb5', '2026-01-05', '0xt', 0, 0, 7, '0xc', 50)", [CHAIN])  # fmt: skip
        conn.execute("UPDATE checkpoints SET block_number = 5, confirmed_block_number = 5")
    await process(migrated_url)
    assert job_blocks(migrated_url) == [1]
    with psycopg.connect(migrated_url) as conn:
        after = conn.execute("SELECT fires_from FROM triggers WHERE id = %s", [trigger]).fetchone()
    assert after == before  # a bounded replay leaves the trigger's start alone

    to_time = await api.post(f"/triggers/{trigger}/replays", headers=alice.headers,
                             json={"from_block": 2, "to_time": "2026-01-03T00:00:00Z"})  # fmt: skip
    assert to_time.status_code == 201, to_time.text
    await process(migrated_url)
    assert job_blocks(migrated_url) == [1, 3]
    listed = (await api.get(f"/triggers/{trigger}/replays", headers=alice.headers)).json()
    assert [(r["to_block"], r["to_time"], r["status"], r["jobs"]) for r in listed] == [
        (None, "2026-01-03T00:00:00Z", "done", 1), (2, None, "done", 1)]  # fmt: skip
