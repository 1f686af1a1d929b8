"""GET /events/stream on a real server (uvicorn on loopback, read by httpx as it streams):
events while writers store them, a client that leaves and comes back with Last-Event-ID
gets each once and in order, ids that commit out of order, the filters of GET /events, the
confirmation of each event, bad input, a credential that stops signing in, a small pool,
and a stopping server that ends its streams at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from erc8004_backend.api.app import Pool, open_pool
from erc8004_backend.api.event_stream import MAX_STREAMS_PER_ACCOUNT, EventStreams, Horizon
from erc8004_backend.api.server import listen, listening_url, serve_on
from erc8004_backend.chain.events import EventRow
from erc8004_backend.indexer.store import BlockHeader, EventStore
from tests.api import test_events as listing
from tests.api.conftest import Account, ApiClient, MakeApp, api_settings, client_of, make_account
from tests.support.asgi import serve_asgi

pytestmark = pytest.mark.timeout(120)

A, B = listing.A, listing.B
T0 = listing.T0


def quick_streams(pool: Pool) -> EventStreams:
    """Streams that look, beat and check often, and read in small pieces (so that paging
    and the bounded scans are exercised)."""
    return EventStreams(pool, poll_seconds=0.2, heartbeat_seconds=0.2, recheck_seconds=0.3,
                        page_rows=7, scan_ids=5)  # fmt: skip


# -- reading a stream ----------------------------------------------------------------------


@dataclass
class Message:
    id: str | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


class StreamReader:
    """Reads an SSE response into a queue of messages, as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()  # None: the end
        self.task = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        message = Message()
        try:
            async for line in response.aiter_lines():
                if line == "":
                    await self.queue.put(message)
                    message = Message()
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    message.comments.append(value)
                elif name == "id":
                    message.id = value
                elif name == "data":
                    message.data = orjson.loads(value)
                elif name == "retry":
                    message.retry = int(value)
        finally:
            await self.queue.put(None)

    async def next(self, timeout: float = 10.0) -> Message | None:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def events(self, count: int, timeout: float = 20.0) -> list[Message]:
        """The next `count` events (messages with data), skipping the others."""
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            message = await self.next(max(0.0, deadline - time.monotonic()))
            assert message is not None, f"the stream ended after {len(found)} of {count}"
            if message.data is not None:
                found.append(message)
        return found

    async def quiet(self, seconds: float) -> list[Message]:
        """The events that come within `seconds`."""
        found: list[Message] = []
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while (remaining := deadline - time.monotonic()) > 0:
                message = await self.next(remaining)
                if message is not None and message.data is not None:
                    found.append(message)
        return found

    async def up_to(self, last_id: int, timeout: float = 20.0) -> list[Message]:
        """The events until a message (an event, or a comment with the position it reached)
        has an id at or past `last_id`."""
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.0, deadline - time.monotonic()))
            assert message is not None, "the stream ended"
            if message.data is not None:
                found.append(message)
            if message.id is not None and int(message.id) >= last_id:
                return found

    async def rest(self, timeout: float = 10.0) -> list[Message]:
        """Every message until the response ends (which it must, cleanly)."""
        found: list[Message] = []
        while (message := await self.next(timeout)) is not None:
            found.append(message)
        await self.task  # the body ended as a body should, not cut off
        return found


@contextlib.asynccontextmanager
async def stream(
    base: str,
    account: Account | dict[str, str],
    last_event_id: int | str | None = None,
    **params: Any,
) -> AsyncIterator[StreamReader]:
    headers = account.headers if isinstance(account, Account) else account
    if last_event_id is not None:
        headers = {**headers, "Last-Event-ID": str(last_event_id)}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client,
        client.stream("GET", f"{base}/events/stream", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = StreamReader(response)
        try:
            yield reader
        finally:
            reader.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader.task


async def connected(reader: StreamReader) -> int:
    """Reads a new stream's first messages: the retry time, then where it starts (an id)."""
    message = await reader.next()
    assert message is not None
    assert message.retry == 2000, message
    while message.id is None:
        message = await reader.next()
        assert message is not None
    return int(message.id)


@dataclass
class Live:
    base: str  # the served API, http://127.0.0.1:port/api/v1
    api: ApiClient  # the same application, in-process
    alice: Account


@pytest.fixture
async def live(migrated_url: str, pool: Pool, make_app: MakeApp) -> AsyncIterator[Live]:
    app = make_app(api_settings(migrated_url), pool)
    app.state.api.event_streams = quick_streams(pool)
    async with client_of(app) as api, serve_asgi(app) as base:
        yield Live(f"{base}/api/v1", api, await make_account(api, "alice_s"))


# -- writing events ------------------------------------------------------------------------


def event_row(chain_id: int, block: int, log_index: int) -> EventRow:
    return EventRow(
        chain_id=chain_id, registry="identity", event_type="Registered",
        contract_address="0x" + "80" * 20, block_number=block,
        block_hash=f"0x{chain_id:08x}{block:056x}", block_time=T0 + timedelta(seconds=block),
        transaction_hash=f"0x{block:032x}{log_index:032x}", transaction_index=0,
        log_index=log_index, agent_id=block * 10 + log_index, owner="0x" + "aa" * 20,
        token_uri=f"ipfs://agent-{block}-{log_index}", data={"batch": block},
    )  # fmt: skip


async def write_batches(url: str, chain_id: int, batches: int, per_batch: int) -> None:
    """Batches of events as the indexer stores them, one block each."""
    store = EventStore(chain_id)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        previous: int | None = None
        for number in range(1, batches + 1):
            header = BlockHeader(number, f"0x{chain_id:08x}{number:056x}",
                                 f"0x{chain_id:08x}{number - 1:056x}",
                                 T0 + timedelta(seconds=number))  # fmt: skip
            rows = [event_row(chain_id, number, index) for index in range(per_batch)]
            await store.write_batch(conn, previous=previous, rows=rows, blocks=[header],
                                    checkpoint=header, head=number, confirmed=None,
                                    keep_blocks_from=0)  # fmt: skip
            previous = number
            await asyncio.sleep(0.01)


async def write_singles(pool: Pool, chain_id: int, count: int) -> None:
    """Events inserted one by one, by SQL."""
    for n in range(1, count + 1):
        await listing.insert_event(pool, chain_id, "reputation", "NewFeedback", n, T0,
                                   agent_id=n, client_address=listing.CLIENT, value=n,
                                   value_decimals=0, score=str(n))  # fmt: skip
        await asyncio.sleep(0.005)


async def stored_ids(pool: Pool) -> list[int]:
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id FROM events ORDER BY id")).fetchall()
    return [row["id"] for row in rows]


# -- resuming ------------------------------------------------------------------------------


async def test_a_client_that_comes_back_gets_every_event_once_in_order(
    live: Live, pool: Pool, migrated_url: str
) -> None:
    """Two writers at once (the indexer's store on one chain, SQL on another) while the
    client reads, leaves after every few events and comes back with the last id it read."""
    async with pool.connection() as conn:
        # The store makes the weeks' partitions before its batches; made before both
        # writers start, the SQL writer's rows do not race it into the default partition.
        await conn.execute("SELECT ensure_event_partitions(%s, %s)",
                           [T0, T0 + timedelta(days=1)])  # fmt: skip
    received: list[Message] = []
    async with stream(live.base, live.alice) as reader:
        start = await connected(reader)
        writers = asyncio.gather(write_batches(migrated_url, A, batches=12, per_batch=5),
                                 write_singles(pool, B, count=40))  # fmt: skip
        received += await reader.events(9)
    visits = 1
    while len(received) < 100:
        async with stream(live.base, live.alice, last_event_id=received[-1].id) as reader:
            assert await connected(reader) == int(received[-1].id or "")
            received += await reader.events(min(13, 100 - len(received)))
            visits += 1
    await writers
    async with stream(live.base, live.alice, last_event_id=received[-1].id) as reader:
        assert await reader.quiet(1.0) == [], "an event came twice"

    ids = [int(message.id or "") for message in received]
    assert ids == await stored_ids(pool)  # each once, in order
    assert start < ids[0]
    assert visits >= 8
    for message in received:
        assert message.data is not None
        assert message.data["id"] == int(message.id or "")
        assert message.data["confirmed"] is False  # no chain here confirms anything
    by_chain = {
        chain: [(m.data["block_number"], m.data["log_index"]) for m in received
                if m.data is not None and m.data["chain_id"] == chain]
        for chain in (A, B)
    }  # fmt: skip
    assert by_chain[A] == [(block, index) for block in range(1, 13) for index in range(5)]
    assert by_chain[B] == [(n, 0) for n in range(1, 41)]
    written = next(m.data for m in received if m.data and m.data["chain_id"] == A)
    assert (written["agent_id"], written["token_uri"], written["data"]) == (
        "10", "ipfs://agent-1-0", {"batch": 1},
    )  # fmt: skip


async def test_an_id_that_commits_after_a_later_one_still_comes_first(
    live: Live, pool: Pool, migrated_url: str
) -> None:
    """Ids are taken before commit: a transaction holding a lower id that commits after a
    higher one must not be skipped (nor its event sent after the higher one)."""
    async with (
        stream(live.base, live.alice) as reader,
        await psycopg.AsyncConnection.connect(migrated_url) as slow,  # in a transaction
    ):
        await connected(reader)
        cursor = await slow.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index)"
            " VALUES (%s, 'identity', 'Registered', %s, 7, %s, %s, %s, 0, 0) RETURNING id",
            [B, "0x" + "80" * 20, "0x" + "07" * 32, T0, "0x" + "77" * 32],
        )
        (early,) = await cursor.fetchone() or (None,)
        late = await listing.insert_event(pool, A, "identity", "Registered", 8, T0)
        assert early is not None
        assert late > early
        assert await reader.quiet(1.5) == [], "an id was sent while a lower one could come"
        await slow.commit()
        assert [int(m.id or "") for m in await reader.events(2)] == [early, late]

    # A reader that had left in between, resuming from before both, gets them both, once.
    async with stream(live.base, live.alice, last_event_id=early - 1) as reader:
        assert [int(m.id or "") for m in await reader.events(2)] == [early, late]
        assert await reader.quiet(0.6) == []


def test_the_horizon_waits_for_the_writers_that_could_hold_lower_ids() -> None:
    nothing = frozenset[str]()
    horizon = Horizon().seen(10, frozenset({"3/1"}))
    assert horizon.final is None  # 3/1 may hold an id up to 10
    horizon = horizon.seen(12, frozenset({"3/1", "4/7"}))
    assert horizon == Horizon(None, (10, frozenset({"3/1"})))  # the first look still waits
    horizon = horizon.seen(15, frozenset({"4/7"}))
    assert horizon == Horizon(10, (15, frozenset({"4/7"})))  # 3/1 ended; 4/7 may hold 11-15
    horizon = horizon.seen(15, frozenset({"5/2"}))
    assert horizon == Horizon(15, (15, frozenset({"5/2"})))  # 4/7 ended; 5/2 took no id yet
    assert horizon.seen(16, nothing) == Horizon(16, None)  # nobody writes: all is final
    assert Horizon(20).seen(18, nothing) == Horizon(20)  # never backwards


# -- what is sent ------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), listing.FILTERS)
async def test_the_filters_of_the_listing(
    live: Live, pool: Pool, query: dict[str, Any], expected: list[int]
) -> None:
    events = await listing.insert_eight_events(pool)
    async with stream(live.base, live.alice, last_event_id=0, **query) as reader:
        sent = await reader.up_to(max(events))
    assert [int(m.id or "") for m in sent] == sorted(listing.pick(events, *expected)), query


async def test_each_event_as_the_listing_shows_it_with_its_confirmation(
    live: Live, pool: Pool
) -> None:
    events = await listing.insert_eight_events(pool)  # chain A: blocks 10-13; B: 500-502
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 13, 11)",
            [A],
        )
    async with stream(live.base, live.alice, last_event_id=0) as reader:
        sent = await reader.events(8)
        more = await reader.quiet(0.5)
    assert [int(m.id or "") for m in sent] == events
    listed = (await live.api.get("/events", headers=live.alice.headers)).json()["items"]
    by_id = {item["id"]: item for item in listed}
    for message in sent:
        assert message.data is not None
        confirmed = message.data.pop("confirmed")
        assert message.data == by_id[message.data["id"]]
        chain, block = message.data["chain_id"], message.data["block_number"]
        assert confirmed is (chain == A and block <= 11), (chain, block)
    assert more == []


async def test_an_account_has_at_most_eight_streams_open(live: Live) -> None:
    """Each stream holds a connection of the server and reads beside the others: one account
    opening many would starve everyone's. The ninth is refused (429) until one closes;
    another account opens its own."""
    async with contextlib.AsyncExitStack() as open_streams:
        readers = [await open_streams.enter_async_context(stream(live.base, live.alice))
                   for _ in range(MAX_STREAMS_PER_ACCOUNT)]  # fmt: skip
        for reader in readers:
            await connected(reader)
        async with httpx.AsyncClient(base_url=live.base) as client:
            refused = await client.get("/events/stream", headers=live.alice.headers)
        assert refused.status_code == 429
        assert "8 event streams open" in refused.json()["error"]["message"]
        bob = await make_account(live.api, "bob_s")
        async with stream(live.base, bob) as reader:
            await connected(reader)
    async with stream(live.base, live.alice) as reader:  # all closed: open again
        await connected(reader)


async def test_a_stream_that_starts_now_sends_only_what_comes_after(live: Live, pool: Pool) -> None:
    before = await listing.insert_event(pool, A, "identity", "Registered", 1, T0)
    async with stream(live.base, live.alice) as reader:
        start = await connected(reader)
        assert start >= before
        after = await listing.insert_event(pool, A, "identity", "Registered", 2, T0)
        assert [int(m.id or "") for m in await reader.events(1)] == [after]
        # Idle, it keeps the connection alive with comments.
        assert await reader.quiet(0.5) == []
        beat = await reader.next()
        assert beat is not None
        assert beat.comments == ["keep-alive"]


async def test_a_filtered_stream_tells_how_far_it_has_read(live: Live, pool: Pool) -> None:
    """The keep-alive comments carry the id a filtered stream has passed, so that a client
    that comes back after a quiet spell does not start from its last event."""
    async with stream(live.base, live.alice, chain_id=B) as reader:
        await connected(reader)
        for block in range(1, 4):
            last = await listing.insert_event(pool, A, "identity", "Registered", block, T0)
        passed = await reader.up_to(last)
    assert passed == []


# Each refused: a valid one would start a stream, which an in-process client waits out.
BAD_LAST_EVENT_IDS = ["abc", "-1", "1.5", "+1", "", "1e3", "0x1", str(2**63), "9" * 41]


async def test_bad_input_is_refused_before_the_stream_starts(live: Live, pool: Pool) -> None:
    await listing.insert_eight_events(pool)
    headers = live.alice.headers
    for bad in BAD_LAST_EVENT_IDS:
        response = await live.api.get("/events/stream",
                                      headers={**headers, "Last-Event-ID": bad})  # fmt: skip
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["details"][0]["field"] == "Last-Event-ID", bad
    last = max(await stored_ids(pool))
    response = await live.api.get("/events/stream",
                                  headers={**headers, "Last-Event-ID": str(last + 1)})  # fmt: skip
    assert response.status_code == 422
    assert f"beyond the last event id of this server ({last})" in response.text
    for query, name in listing.BAD_EVENT_QUERIES:
        if name in ("limit", "cursor"):
            continue
        response = await live.api.get("/events/stream", params=query, headers=headers)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["error"]["details"][0]["field"] == name, query
    assert (await live.api.get("/events/stream")).status_code == 401
    not_a_key = {"Authorization": "Bearer ek_" + "0" * 40}
    assert (await live.api.get("/events/stream", headers=not_a_key)).status_code == 401


# -- signing in ------------------------------------------------------------------------------


async def test_an_api_key_signs_in_and_a_revoked_one_ends_the_stream(live: Live) -> None:
    created = await live.api.post("/me/api-keys", json={"name": "feed"},
                                  headers=live.alice.headers)  # fmt: skip
    assert created.status_code == 201
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    async with stream(live.base, key) as reader:
        await connected(reader)
        revoked = await live.api.delete(f"/me/api-keys/{created.json()['id']}",
                                        headers=live.alice.headers)  # fmt: skip
        assert revoked.status_code == 204
        rest = await reader.rest()
    assert rest[-1].comments == ["signed out: the API key is not valid (unknown or revoked)"]


async def test_streams_hold_no_connection_of_the_pool(migrated_url: str, make_app: MakeApp) -> None:
    """Five streams on a pool of two connections, and requests still get theirs."""
    async with open_pool(migrated_url, min_size=1, max_size=2) as small:
        app = make_app(api_settings(migrated_url), small)
        app.state.api.event_streams = quick_streams(small)
        async with client_of(app) as api, serve_asgi(app) as base:
            alice = await make_account(api, "alice_p")
            async with contextlib.AsyncExitStack() as streams:
                readers = [await streams.enter_async_context(stream(f"{base}/api/v1", alice))
                           for _ in range(5)]  # fmt: skip
                for reader in readers:
                    await connected(reader)
                event = await listing.insert_event(small, A, "identity", "Registered", 1, T0)
                for reader in readers:
                    assert [int(m.id or "") for m in await reader.events(1)] == [event]
                response = await api.get("/events", headers=alice.headers)
                assert response.status_code == 200


# -- stopping --------------------------------------------------------------------------------


async def test_a_stopping_server_ends_its_streams_at_once(
    migrated_url: str, pool: Pool, make_app: MakeApp
) -> None:
    """As `erc8004 api` and `erc8004 run` serve (serve_on, whose graceful timeout is 10 s):
    the open stream ends with a last comment and the server stops promptly."""
    app = make_app(api_settings(migrated_url), pool)
    app.state.api.event_streams = quick_streams(pool)
    stop = asyncio.Event()
    listening = listen("127.0.0.1", 0)
    serving = asyncio.create_task(serve_on(app, listening, stop))
    try:
        async with client_of(app) as api:
            alice = await make_account(api, "alice_q")
        base = f"{listening_url('127.0.0.1', listening)}/api/v1"
        async with stream(base, alice) as reader:
            await connected(reader)
            stopped_at = time.monotonic()
            stop.set()
            await asyncio.wait_for(serving, 5)
            took = time.monotonic() - stopped_at
            rest = await reader.rest()
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)
    assert took < 2.0, took
    assert rest[-1].comments == ["the server is stopping: reconnect with Last-Event-ID"]
