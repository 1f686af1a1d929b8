"""/events and /action-results through the real application: every filter, keyset pages
(no gaps, no repeats, ties included), bad input naming the parameter, 404s, and action
results kept to their owner."""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import create_model

from erc8004_backend.api.app import Pool
from erc8004_backend.api.events import (
    QUERIES,
    WINDOW_PARTITIONS,
    EventOut,
    _newest_events,
    fields_unlike_the_columns,
)
from erc8004_backend.chain.events import EVENT_COLUMNS
from tests.api.conftest import Account, ApiClient

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A, B = 31337, 84532
CLIENT = "0x" + "c1" * 20
VALIDATOR = "0x" + "e5" * 20
BIG_AGENT = 2**255 + 7
BIG_INDEX = 2**64 - 1


async def insert_event(
    pool: Pool,
    chain_id: int,
    registry: str,
    event_type: str,
    block: int,
    at: datetime,
    log_index: int = 0,
    **fields: Any,
) -> int:
    columns = ["chain_id", "registry", "event_type", "contract_address", "block_number",
               "block_hash", "block_time", "transaction_hash", "transaction_index", "log_index",
               *fields]  # fmt: skip
    block_hash = f"0x{chain_id:08x}{block:056x}"
    values = [chain_id, registry, event_type, "0x" + "80" * 20, block, block_hash, at,
              f"0x{block:032x}{log_index:032x}", 0, log_index, *fields.values()]  # fmt: skip
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"INSERT INTO events ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
            values,
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


@pytest.fixture
async def events(pool: Pool) -> list[int]:
    return await insert_eight_events(pool)


async def insert_eight_events(pool: Pool) -> list[int]:
    """Eight events on two chains, in insertion order; #3 and #6 share a block time across
    chains, #4 and #5 share a block."""
    minute = timedelta(minutes=1)
    return [
        await insert_event(pool, A, "identity", "Registered", 10, T0, agent_id=1,
                           owner="0x" + "aa" * 20, token_uri="ipfs://agent-1"),
        await insert_event(pool, A, "reputation", "NewFeedback", 11, T0 + minute, agent_id=1,
                           client_address=CLIENT, feedback_index=1, value=-45, value_decimals=1,
                           score="-4.5", tag1="quality", tag2="", endpoint="",
                           file_hash="0x" + "f0" * 32),
        await insert_event(pool, A, "reputation", "NewFeedback", 12, T0 + 2 * minute,
                           agent_id=2, client_address="0x" + "d0" * 20, feedback_index=1,
                           value=90, value_decimals=0, score="90"),
        await insert_event(pool, A, "validation", "ValidationRequest", 13, T0 + 3 * minute,
                           agent_id=2, validator_address=VALIDATOR,
                           request_hash="0x" + "12" * 32, request_uri="ipfs://request"),
        await insert_event(pool, A, "validation", "ValidationResponse", 13, T0 + 3 * minute,
                           log_index=1, agent_id=2, validator_address=VALIDATOR,
                           request_hash="0x" + "12" * 32, response=100, tag="hard-finality"),
        await insert_event(pool, B, "identity", "MetadataSet", 500, T0 + 2 * minute,
                           agent_id=1, metadata_key="agentWallet",
                           metadata_value=bytes.fromhex("00ff10"),
                           data=orjson.dumps({"indexed_metadata_key_hash": "0x01"}).decode()),
        await insert_event(pool, B, "identity", "Transfer", 501, T0 + 4 * minute,
                           agent_id=BIG_AGENT, from_address="0x" + "00" * 20,
                           to_address="0x" + "bb" * 20),
        await insert_event(pool, B, "reputation", "NewFeedback", 502, T0 + 5 * minute,
                           agent_id=1, client_address=CLIENT, feedback_index=BIG_INDEX,
                           value=-(2**127), value_decimals=18, score="-170141183460469231731.687303715884105728"),
    ]  # fmt: skip


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def pick(events: list[int], *numbers: int) -> list[int]:
    """Event ids by their 1-based number in the fixture."""
    return [events[n - 1] for n in numbers]


async def test_newest_first_with_each_types_fields(
    api: ApiClient, alice: Account, events: list[int]
) -> None:
    response = await api.get("/events", headers=alice.headers)
    assert ids(response) == pick(events, 8, 7, 5, 4, 6, 3, 2, 1)  # ties: the later id first
    body = response.json()
    assert body["next_cursor"] is None
    by_id = {item["id"]: item for item in body["items"]}
    registered = by_id[events[0]]
    assert registered == {
        "id": events[0], "chain_id": A, "registry": "identity", "event_type": "Registered",
        "contract_address": "0x" + "80" * 20, "block_number": 10,
        "block_hash": f"0x{A:08x}{10:056x}", "block_time": registered["block_time"],
        "transaction_hash": f"0x{10:032x}{0:032x}", "transaction_index": 0, "log_index": 0,
        "agent_id": "1", "data": {}, "owner": "0x" + "aa" * 20, "token_uri": "ipfs://agent-1",
    }  # fmt: skip
    assert datetime.fromisoformat(registered["block_time"]) == T0
    feedback = by_id[events[1]]
    assert (feedback["client_address"], feedback["feedback_index"], feedback["value"],
            feedback["value_decimals"], feedback["score"], feedback["tag2"]) == (
        CLIENT, "1", "-45", 1, "-4.5", "",
    )  # fmt: skip
    assert "owner" not in feedback
    assert "file_uri" not in feedback  # null: absent
    big = by_id[events[7]]
    assert big["feedback_index"] == str(BIG_INDEX)
    assert big["value"] == str(-(2**127))
    assert big["score"] == "-170141183460469231731.687303715884105728"
    assert by_id[events[6]]["agent_id"] == str(BIG_AGENT)
    metadata = by_id[events[5]]
    assert metadata["metadata_value"] == "0x00ff10"
    assert metadata["data"] == {"indexed_metadata_key_hash": "0x01"}
    response_event = by_id[events[4]]
    assert (response_event["response"], response_event["tag"]) == (100, "hard-finality")


async def test_one_event_by_id(api: ApiClient, alice: Account, events: list[int]) -> None:
    listed = (await api.get("/events", headers=alice.headers)).json()["items"]
    for item in listed:
        one = await api.get(f"/events/{item['id']}", headers=alice.headers)
        assert one.status_code == 200
        assert one.json() == item
    missing = await api.get(f"/events/{max(events) + 1000}", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "event not found"
    for bad in ("0", "abc", str(2**63), f"{events[0]}.0", f"+{events[0]}"):
        response = await api.get(f"/events/{bad}", headers=alice.headers)
        assert response.status_code == 422, bad
        assert response.json()["error"]["details"][0]["field"] == "event_id"


async def test_every_signed_in_user_sees_every_event(
    api: ApiClient, alice: Account, bob: Account, events: list[int]
) -> None:
    assert ids(await api.get("/events", headers=bob.headers)) == ids(
        await api.get("/events", headers=alice.headers)
    )
    assert (await api.get("/events")).status_code == 401
    assert (await api.get(f"/events/{events[0]}")).status_code == 401


FILTERS: list[tuple[dict[str, Any], list[int]]] = [
    ({"chain_id": A}, [5, 4, 3, 2, 1]),
    ({"chain_id": B}, [8, 7, 6]),
    ({"chain_id": 1}, []),
    ({"registry": "validation"}, [5, 4]),
    ({"registry": "identity"}, [7, 6, 1]),
    ({"event_type": "NewFeedback"}, [8, 3, 2]),
    ({"event_type": "Transfer"}, [7]),
    ({"registry": "identity", "event_type": "NewFeedback"}, []),
    ({"chain_id": B, "registry": "reputation"}, [8]),
    ({"chain_id": A, "agent_id": 1}, [2, 1]),
    ({"chain_id": A, "agent_id": 2}, [5, 4, 3]),
    ({"chain_id": B, "agent_id": 1}, [8, 6]),
    ({"chain_id": B, "agent_id": BIG_AGENT}, [7]),
    ({"client_address": CLIENT}, [8, 2]),
    ({"client_address": CLIENT.upper().replace("0X", "0x")}, [8, 2]),
    ({"client_address": "0x" + "C1" * 19 + "c1", "chain_id": A}, [2]),
    ({"validator_address": "0x" + "E5" * 20}, [5, 4]),
    ({"validator_address": "0x" + "e6" * 20}, []),
    ({"chain_id": A, "from_block": 12, "to_block": 13}, [5, 4, 3]),
    ({"chain_id": A, "from_block": 13}, [5, 4]),
    ({"chain_id": A, "to_block": 11}, [2, 1]),
    ({"chain_id": A, "from_block": 11, "to_block": 11}, [2]),
    ({"chain_id": A, "from_block": 14}, []),
    ({"chain_id": B, "to_block": 499}, []),
    ({"chain_id": B, "from_block": 501, "to_block": 10**12}, [8, 7]),
    ({"from_time": "2026-03-02T12:02:00Z", "to_time": "2026-03-02T12:03:00Z"}, [5, 4, 6, 3]),
    ({"from_time": "2026-03-02T12:04:00+00:00"}, [8, 7]),
    ({"to_time": "2026-03-02T13:01:30+01:00"}, [2, 1]),  # 12:01:30 UTC
    ({"from_time": "2026-03-02T12:05:00"}, [8]),  # no zone: UTC
    ({"from_time": "2026-03-02T12:03:00Z", "to_time": "2026-03-02T12:03:00Z"}, [5, 4]),
    ({"chain_id": A, "registry": "validation", "agent_id": 2, "validator_address": VALIDATOR,
      "from_block": 13, "to_block": 13, "from_time": "2026-03-02T12:00:00Z"}, [5, 4]),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), FILTERS)
async def test_filters(
    api: ApiClient,
    alice: Account,
    events: list[int],
    query: dict[str, Any],
    expected: list[int],
) -> None:
    response = await api.get("/events", params=query, headers=alice.headers)
    assert ids(response) == pick(events, *expected)


async def test_pages_read_in_partition_windows_equal_one_query_over_all(pool: Pool) -> None:
    """Over 41 weekly partitions (a busy agent every week, a quiet one only long ago), random
    filters, time bounds, limits and cursors: reading a page in windows of partitions returns
    what one query over every partition returns, and the walk goes past its first windows;
    so does a page of a filter that picks few events (list_events_selective)."""
    rng = random.Random(8004)
    first_week = T0 - timedelta(weeks=40)
    async with pool.connection() as conn:
        await conn.execute("SELECT ensure_event_partitions(%s, %s)", [first_week, T0])
    stored = []
    monday = (first_week - timedelta(days=first_week.weekday())).replace(hour=0)
    for block in range(440):
        # Some exactly where a partition begins (a window's edge), the others at random.
        at = (monday + timedelta(weeks=block - 400) if block >= 400
              else first_week + timedelta(hours=rng.randrange(40 * 7 * 24)))  # fmt: skip
        quiet = block % 50 == 0 and at < T0 - timedelta(weeks=30)
        stored.append(await insert_event(
            pool, rng.choice([A, B]), "reputation", "NewFeedback", block, at,
            agent_id=7 if quiet else rng.choice([1, 2, 3]), client_address=CLIENT,
            feedback_index=block, value=block, value_decimals=0, score=str(block),
        ))  # fmt: skip
    nulls = dict.fromkeys(["chain_id", "registry", "event_type", "agent_id", "client_address",
                           "validator_address", "from_block", "to_block", "first_time",
                           "last_time", "from_time", "to_time", "before_time", "before_id"])  # fmt: skip
    beyond_first_windows = 0
    async with pool.connection() as conn:
        events = await (await conn.execute("SELECT id, block_time FROM events")).fetchall()
        for _ in range(150):
            params: dict[str, Any] = {**nulls}
            if rng.random() < 0.4:
                params["chain_id"] = rng.choice([A, B])
            if rng.random() < 0.3:
                params["agent_id"] = rng.choice([1, 7])
            if rng.random() < 0.2:  # (read by list_events_selective's kept plan)
                params["client_address"] = CLIENT
            if rng.random() < 0.2:
                params["from_time"] = first_week + timedelta(days=rng.randrange(280))
            if rng.random() < 0.2:
                params["to_time"] = first_week + timedelta(days=rng.randrange(280))
            if rng.random() < 0.3:
                before = rng.choice(events)
                params["before_time"], params["before_id"] = before["block_time"], before["id"]
            wanted = rng.randrange(1, 80)
            windowed = await _newest_events(conn, params, wanted)
            cursor = await conn.execute(QUERIES["list_events"], {**params, "limit": wanted})
            assert [row["id"] for row in windowed] == [row["id"] for row in await cursor.fetchall()]
            first_windows = T0 - timedelta(weeks=sum(WINDOW_PARTITIONS))
            beyond_first_windows += any(row["block_time"] < first_windows for row in windowed)
    assert beyond_first_windows >= 10


async def test_block_ranges_where_blocks_share_a_time(
    api: ApiClient, alice: Account, pool: Pool
) -> None:
    # Like Arbitrum: several blocks in one second; the block range still decides.
    chain, at = 42161, T0 + timedelta(hours=2)
    block = {n: await insert_event(pool, chain, "identity", "Registered", n, at, agent_id=n)
             for n in (1, 2, 3)}  # fmt: skip
    block[4] = await insert_event(
        pool, chain, "identity", "Registered", 4, at + timedelta(seconds=1)
    )
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"from_block": 2}, [4, 3, 2]),
        ({"to_block": 2}, [2, 1]),
        ({"from_block": 2, "to_block": 2}, [2]),
        ({"from_block": 3, "to_time": at.isoformat()}, [3]),
        ({"from_block": 1, "from_time": (at + timedelta(seconds=1)).isoformat()}, [4]),
        ({"from_block": 5}, []),
        ({"to_block": 0}, []),
    ]
    for query, expected in cases:
        response = await api.get("/events", params={"chain_id": chain, **query},
                                 headers=alice.headers)  # fmt: skip
        assert ids(response) == [block[n] for n in expected], query


async def collect_pages(
    api: ApiClient, path: str, headers: dict[str, str], limit: int, **params: Any
) -> tuple[list[int], int]:
    """Every id over all pages, and the number of pages."""
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await api.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["items"]) <= limit
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages
        assert len(body["items"]) == limit
        assert pages < 100


async def test_pages_have_no_gaps_or_repeats_across_ties(
    api: ApiClient, alice: Account, pool: Pool
) -> None:
    # 30 events: runs of up to 7 share a block time (within and across chains).
    for n in range(30):
        at = T0 + timedelta(seconds=12 * (n // 7))
        chain = (A, B)[n % 2]
        await insert_event(pool, chain, "reputation", "NewFeedback", 100 + n // 7, at,
                           log_index=n, agent_id=n % 4, client_address=CLIENT)  # fmt: skip
    everything = ids(await api.get("/events", params={"limit": 500}, headers=alice.headers))
    assert len(everything) == 30
    for limit in (1, 3, 7, 29, 30, 31):
        paged, pages = await collect_pages(api, "/events", alice.headers, limit)
        assert paged == everything, limit
        assert pages == max(1, -(-30 // limit)), limit  # the last full page says "no more"
    for filters in ({"chain_id": B}, {"chain_id": A, "agent_id": 0}, {"client_address": CLIENT},
                    {"chain_id": A, "from_block": 101, "to_block": 103}):  # fmt: skip
        expected = ids(await api.get("/events", params={**filters, "limit": 500},
                                     headers=alice.headers))  # fmt: skip
        assert 2 < len(expected) <= 30
        paged, _ = await collect_pages(api, "/events", alice.headers, 2, **filters)
        assert paged == expected, filters


async def test_a_cursor_keeps_its_place_while_events_arrive(
    api: ApiClient, alice: Account, pool: Pool, events: list[int]
) -> None:
    first = (await api.get("/events", params={"limit": 3}, headers=alice.headers)).json()
    assert [item["id"] for item in first["items"]] == pick(events, 8, 7, 5)
    await insert_event(pool, A, "identity", "Registered", 99, T0 + timedelta(hours=1))
    await insert_event(pool, 10, "identity", "Registered", 9, T0 + timedelta(minutes=3))  # a tie
    rest = await api.get(
        "/events", params={"limit": 500, "cursor": first["next_cursor"]}, headers=alice.headers
    )
    # The tie is newer by id than #5, so it sorts before the cursor: not on the next pages.
    assert ids(rest) == pick(events, 4, 6, 3, 2, 1)


BAD_EVENT_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"registry": "identities"}, "registry"),
    ({"event_type": "Approval"}, "event_type"),
    ({"event_type": "newfeedback"}, "event_type"),
    ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),  # base64 of "not a cursor"
    ({"cursor": base64.urlsafe_b64encode(b"2026-03-02T12:00:00|5").decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"2026-03-02T12:00:00+00:00|-1").decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"2026-03-02T12:00:00+00:00").decode()}, "cursor"),
    ({"cursor": "é"}, "cursor"),
    ({"cursor": "x" * 201}, "cursor"),
    ({"chain_id": 0}, "chain_id"),
    ({"chain_id": 2**63}, "chain_id"),
    ({"chain_id": "base"}, "chain_id"),
    ({"agent_id": 1}, "agent_id"),
    ({"chain_id": A, "agent_id": -1}, "agent_id"),
    ({"chain_id": A, "agent_id": 2**256}, "agent_id"),
    ({"client_address": "0x1234"}, "client_address"),
    ({"client_address": "0x" + "g1" * 20}, "client_address"),
    ({"validator_address": "e5" * 21}, "validator_address"),
    ({"from_block": 1}, "from_block"),
    ({"to_block": 1}, "to_block"),
    ({"chain_id": A, "from_block": -1}, "from_block"),
    ({"chain_id": A, "from_block": 20, "to_block": 10}, "from_block"),
    ({"from_time": "yesterday"}, "from_time"),
    ({"to_time": "2026-13-01T00:00:00Z"}, "to_time"),
    ({"from_time": "2026-03-02T12:00:01Z", "to_time": "2026-03-02T12:00:00Z"}, "from_time"),
    # No loose coercions: a number is not a time, nor 2.0 or +1 a whole number.
    ({"to_time": "0.5"}, "to_time"),
    ({"from_time": "1700000000"}, "from_time"),
    ({"chain_id": "1.0"}, "chain_id"),
    ({"limit": "+5"}, "limit"),
    ({"chain_id": A, "from_block": "1_000"}, "from_block"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "field"), BAD_EVENT_QUERIES)
async def test_bad_input_names_the_parameter(
    api: ApiClient, alice: Account, query: dict[str, Any], field: str
) -> None:
    response = await api.get("/events", params=query, headers=alice.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["field"] == field
    assert error["message"].startswith(f"{field}: ")


# --- action results -----------------------------------------------------------------------


async def make_trigger(pool: Pool, user_id: str, name: str) -> tuple[str, str]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO triggers (user_id, name, chain_id, registry)"
            " VALUES (%s, %s, %s, 'reputation') RETURNING id::text",
            [user_id, name, A],
        )
        trigger = await cursor.fetchone()
        assert trigger is not None
        cursor = await conn.execute(
            "INSERT INTO trigger_actions (trigger_id, action_type, config)"
            " VALUES (%s, 'rest', '{}') RETURNING id::text",
            [trigger["id"]],
        )
        action = await cursor.fetchone()
        assert action is not None
    return trigger["id"], action["id"]


async def make_job(
    pool: Pool,
    trigger: tuple[str, str],
    event_id: int,
    *,
    status: str,
    attempts: int,
    last_error: str | None = None,
) -> int:
    trigger_id, action_id = trigger
    key = hashlib.sha256(f"{event_id}:{trigger_id}".encode()).hexdigest()
    finished = T0 if status in ("succeeded", "dead") else None
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, status,"
            " attempts, max_attempts, idempotency_key, payload, last_error, finished_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, 5, %s, '{}', %s, %s) RETURNING id",
            [trigger_id, action_id, event_id, A, status, attempts, key, last_error, finished],
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


async def make_result(
    pool: Pool,
    user_id: str,
    trigger: tuple[str, str] | None,
    job_id: int | None,
    status: str,
    at: datetime,
    *,
    retry_count: int = 0,
    error: str | None = None,
    response: Any = None,
) -> int:
    trigger_id, action_id = trigger or (None, None)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO action_results (job_id, user_id, trigger_id, action_id, event_id,"
            " chain_id, action_type, status, retry_count, duration_ms, error_message,"
            " response_data, executed_at)"
            " VALUES (%s, %s, %s, %s, 7, %s, 'rest', %s, %s, 42, %s, %s, %s) RETURNING id",
            [job_id, user_id, trigger_id, action_id, A, status, retry_count, error,
             None if response is None else orjson.dumps(response).decode(), at],
        )  # fmt: skip
        row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


@pytest.fixture
async def results(pool: Pool, alice: Account, bob: Account) -> dict[str, Any]:
    """Alice: a job tried three times (two retries, then success), a dead job of another
    trigger, and an attempt whose job is gone; Bob: one success."""
    minute = timedelta(minutes=1)
    first, second = (
        await make_trigger(pool, alice.id, "one"),
        await make_trigger(pool, alice.id, "two"),
    )
    bobs = await make_trigger(pool, bob.id, "bob's")
    retried = await make_job(pool, first, 1, status="succeeded", attempts=3)
    dead = await make_job(pool, second, 2, status="dead", attempts=1, last_error="HTTP 404")
    orphan = await make_result(pool, alice.id, None, None, "failed", T0, error="gone")
    tries = [
        await make_result(pool, alice.id, first, retried, "retrying", T0 + minute,
                          error="HTTP 503"),
        await make_result(pool, alice.id, first, retried, "retrying", T0 + 2 * minute,
                          retry_count=1, error="timeout"),
        await make_result(pool, alice.id, first, retried, "success", T0 + 3 * minute,
                          retry_count=2, response={"status": 200, "body": "ok"}),
    ]  # fmt: skip
    failed = await make_result(pool, alice.id, second, dead, "failed", T0 + 4 * minute,
                               error="HTTP 404")  # fmt: skip
    bob_job = await make_job(pool, bobs, 1, status="succeeded", attempts=1)
    bob_result = await make_result(pool, bob.id, bobs, bob_job, "success", T0 + 5 * minute)
    return {"first": first[0], "second": second[0], "retried": retried, "dead": dead,
            "orphan": orphan, "tries": tries, "failed": failed, "bob": bob_result}  # fmt: skip


async def test_action_results_are_the_users_own_newest_first(
    api: ApiClient, alice: Account, bob: Account, results: dict[str, Any]
) -> None:
    response = await api.get("/action-results", headers=alice.headers)
    assert ids(response) == [results["failed"], *results["tries"][::-1], results["orphan"]]
    items = response.json()["items"]
    assert response.json()["next_cursor"] is None
    failed, success, orphan = items[0], items[1], items[-1]
    assert failed["job"] == {
        "id": results["dead"], "status": "dead", "attempts": 1, "max_attempts": 5,
        "run_at": failed["job"]["run_at"], "last_error": "HTTP 404",
        "finished_at": failed["job"]["finished_at"], "retraction": False,
    }  # fmt: skip
    assert datetime.fromisoformat(failed["job"]["finished_at"]) == T0
    assert (failed["trigger_id"], failed["status"], failed["error_message"]) == (
        results["second"], "failed", "HTTP 404",
    )  # fmt: skip
    assert (success["retry_count"], success["response_data"], success["duration_ms"]) == (
        2, {"status": 200, "body": "ok"}, 42,
    )  # fmt: skip
    assert success["job"]["status"] == "succeeded"
    assert datetime.fromisoformat(success["executed_at"]) == T0 + timedelta(minutes=3)
    assert orphan["job"] is None
    assert orphan["trigger_id"] is None
    assert ids(await api.get("/action-results", headers=bob.headers)) == [results["bob"]]
    assert (await api.get("/action-results")).status_code == 401


async def test_action_result_filters(
    api: ApiClient, alice: Account, results: dict[str, Any]
) -> None:
    tries = results["tries"]
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"trigger_id": results["first"]}, tries[::-1]),
        ({"trigger_id": results["second"]}, [results["failed"]]),
        ({"status": "retrying"}, tries[1::-1]),
        ({"status": "failed"}, [results["failed"], results["orphan"]]),
        ({"status": "success", "trigger_id": results["first"]}, [tries[2]]),
        ({"from_time": "2026-03-02T12:02:00Z"}, [results["failed"], tries[2], tries[1]]),
        ({"to_time": "2026-03-02T12:01:00Z"}, [tries[0], results["orphan"]]),
        ({"from_time": "2026-03-02T12:01:00Z", "to_time": "2026-03-02T12:02:59Z"},
         [tries[1], tries[0]]),
        ({"trigger_id": "00000000-0000-4000-8000-000000000000"}, []),
    ]  # fmt: skip
    for query, expected in cases:
        response = await api.get("/action-results", params=query, headers=alice.headers)
        assert ids(response) == expected, query


async def test_action_results_page_by_cursor(
    api: ApiClient, alice: Account, pool: Pool, results: dict[str, Any]
) -> None:
    for n in range(6):  # ties in executed_at
        await make_result(pool, alice.id, None, None, "success", T0 + timedelta(minutes=n % 2))
    everything = ids(await api.get("/action-results", params={"limit": 500},
                                   headers=alice.headers))  # fmt: skip
    assert len(everything) == 11
    for limit in (1, 2, 5, 11):
        paged, _ = await collect_pages(api, "/action-results", alice.headers, limit)
        assert paged == everything, limit


async def test_an_action_result_with_every_attempt_of_its_job(
    api: ApiClient, alice: Account, bob: Account, results: dict[str, Any]
) -> None:
    tries = results["tries"]
    for one in tries:
        response = await api.get(f"/action-results/{one}", headers=alice.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == one
        assert body["job"]["id"] == results["retried"]
        assert [attempt["id"] for attempt in body["attempts"]] == tries
        assert [attempt["status"] for attempt in body["attempts"]] == [
            "retrying", "retrying", "success",
        ]  # fmt: skip
        assert [attempt["error_message"] for attempt in body["attempts"]] == [
            "HTTP 503", "timeout", None,
        ]  # fmt: skip
    orphan = (await api.get(f"/action-results/{results['orphan']}", headers=alice.headers)).json()
    assert orphan["job"] is None
    assert [attempt["id"] for attempt in orphan["attempts"]] == [results["orphan"]]


async def test_another_users_action_result_is_not_found(
    api: ApiClient, alice: Account, bob: Account, results: dict[str, Any]
) -> None:
    for account, result in ((bob, results["tries"][0]), (bob, results["orphan"]),
                            (alice, results["bob"])):  # fmt: skip
        response = await api.get(f"/action-results/{result}", headers=account.headers)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "action result not found"
    missing = await api.get(f"/action-results/{results['bob'] + 100}", headers=alice.headers)
    assert missing.status_code == 404
    # Filtering by another user's trigger shows nothing either.
    theirs = await api.get(
        "/action-results", params={"trigger_id": results["first"]}, headers=bob.headers
    )
    assert ids(theirs) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "succeeded"}, "status"),
        ({"trigger_id": "not-a-uuid"}, "trigger_id"),
        ({"limit": 0}, "limit"),
        ({"cursor": "nope"}, "cursor"),
        ({"from_time": "2026-03-02T12:00:01Z", "to_time": "2026-03-02T12:00:00Z"}, "from_time"),
        ({"to_time": "0.5"}, "to_time"),
    ],
)
async def test_bad_action_result_queries_name_the_parameter(
    api: ApiClient, alice: Account, query: dict[str, Any], field: str
) -> None:
    response = await api.get("/action-results", params=query, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    bad_id = await api.get("/action-results/zero", headers=alice.headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["error"]["details"][0]["field"] == "result_id"
    for loose in ("1.0", "+1"):
        bad_id = await api.get(f"/action-results/{loose}", headers=alice.headers)
        assert bad_id.status_code == 422
        assert bad_id.json()["error"]["details"][0]["field"] == "result_id"


# -- the columns ----------------------------------------------------------------------------


async def test_an_event_is_its_id_and_every_event_row_column(pool: Pool) -> None:
    """EventRow (chain/events.py) is the one list of an event's columns: the queries select
    them from it, and the response model has a field for each (checked when it loads)."""
    assert fields_unlike_the_columns(EventOut) == {}
    event_id = await insert_event(pool, A, "identity", "Registered", 1, T0)
    async with pool.connection() as conn:
        for name in ("list_events", "event_by_id"):
            assert b"{event_columns}" not in QUERIES[name]
        cursor = await conn.execute(QUERIES["event_by_id"], {"event_id": event_id})
        assert [column.name for column in cursor.description or []] == ["id", *EVENT_COLUMNS]


def test_a_model_that_drifts_from_the_columns_is_found_out() -> None:
    class Renamed(EventOut):
        feedback_id: str | None = None

    fields: dict[str, Any] = {name: (Any, None) for name in EventOut.model_fields if name != "tag"}
    without_tag = create_model("WithoutTag", **fields)
    assert fields_unlike_the_columns(Renamed) == {"not a column": ["feedback_id"]}
    assert fields_unlike_the_columns(without_tag) == {"missing": ["tag"]}
