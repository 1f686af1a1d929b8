"""GET /events/stream: the indexed events as Server-Sent Events, live, with the filters of
GET /events, resumable with `Last-Event-ID`.

Order, and resuming
-------------------
An event's SSE id is its `id` in `events`, which the table's sequence hands out as the
event is inserted. A stream sends events in id order, and a client that reconnects with
`Last-Event-ID: N` gets every event with an id above N that its filters select: each once,
in order, however long it was away. Chain order or block time could not be resumed from:
several chains commit side by side, and a backfill or a reorg stores events of earlier
blocks after those of later ones; insertion order has neither problem.

Ids are taken before the transactions that insert them commit, so they become visible out
of order: a batch holding ids 100-110 may commit after one holding 111-120, and a stream
that had sent 111-120 would never send 100-110. A stream therefore sends only ids up to a
horizon below which every id is final (visible, or never to be: rolled back, or deleted by a
reorg). One tracker per API process finds it for all its streams (`Horizon`, event_stream.sql):
  1. it reads the last id the sequence handed out, S;
  2. then the transactions holding ROW EXCLUSIVE on `events`, W. An INSERT or COPY into
     events takes that lock before its rows take ids and keeps it until its transaction
     ends, so each transaction that took an id up to S has ended or is in W;
  3. once no transaction of W holds the lock any more (seen at a later look; none at all:
     at once), every id up to S is final, and S is the horizon.
This holds while every event takes its id from the column's default, in a statement on
`events` itself (the indexer's COPY, any INSERT), from a sequence that caches no ids (CACHE
1, as the migrations make it). A row written straight into a partition, or with an id
drawn from the sequence beforehand, would escape it; nothing here writes one.
It looks on every `new_event` notification (sent as a batch commits) and at least every
`poll_seconds`. An event is sent about when the transactions writing events alongside it
have ended: at once usually, a transaction that stays open (a long backfill batch, a session
left in a transaction after writing events) holds the stream back until it ends.

pg_snapshot_xmin() is the usual horizon of such a feed, but it is one of transaction ids,
which are not the events' ids: ordering by it needs the inserting transaction's id in a
column of its own (a migration), and it waits for every transaction of the whole server,
not only those writing events. The writers' lock gives a horizon in the existing ids.

Confirmation and reorgs
-----------------------
A stream sends events as they are stored, each with `confirmed`: whether its block was at or
below its chain's confirmed block when the event was sent. Waiting for confirmations would
let one chain's slow confirmations hold back every other chain's events (a stream is one
order across chains). A reorg deletes the orphaned events and stores the new chain's: a
stream does not take back an event it sent (GET /events/{id} then answers 404), and sends
the new events, with new ids, as any others. A client that must act only on final events
acts on confirmed ones.

Each stream holds no database connection between reads (it borrows one from the pool per
read, and half the pool at most among all streams); a read returns at most `page_rows`
events from at most `scan_ids` ids, so a stream's memory is bounded whatever its filters
and however far behind it starts. Comments keep idle streams alive through proxies, and
carry the position a filtered stream has reached (`id:`), so that a client reconnecting
after a quiet spell does not read again the ids it already passed. A stopping server ends
every stream at once (see `close_event_streams`); a client reconnects with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
import structlog
from fastapi import APIRouter, Depends, Header
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.sse import EventSourceResponse, ServerSentEvent
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import Field

from erc8004_backend.api.dependencies import (
    ApiState,
    Credentials,
    State,
    User,
    current_user,
    live_connection,
)
from erc8004_backend.api.errors import ApiError, raises
from erc8004_backend.api.events import (
    BIGINT_MAX,
    EventFilters,
    EventOut,
    Filters,
    invalid,
    with_event_columns,
)
from erc8004_backend.database.queries import load_queries

QUERIES = with_event_columns(load_queries("erc8004_backend.api", "event_stream.sql"))
router = APIRouter(tags=["events"])
log = structlog.get_logger(__name__)

Pool = AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]

RETRY_MILLISECONDS = 2000  # how long a client waits before reconnecting (SSE `retry`)
# Streams one account may have open at once: each holds a connection of the server and reads
# beside the others (half the pool's connections between them all).
MAX_STREAMS_PER_ACCOUNT = 8
LAST_EVENT_ID = "Last-Event-ID"
_EVENT_ID = re.compile(r"[0-9]{1,19}")


class StreamedEvent(EventOut):
    """One event of the stream (the `data` of an SSE message whose `id` is the event's)."""

    confirmed: bool = Field(
        description="Whether the event's block was confirmed when it was sent (at or below"
        " its chain's confirmed block): an unconfirmed event may yet be removed by a reorg."
    )


# --- the horizon ------------------------------------------------------------------------


@dataclass(frozen=True)
class Horizon:
    """What a tracker knows of the events' ids (see the module's docstring)."""

    # Every id up to this one is final; None: not known yet.
    final: int | None = None
    # The last id handed out at an earlier look, and the writers then: final once none of
    # them writes any more.
    pending: tuple[int, frozenset[str]] | None = None

    def seen(self, last_id: int, writers: frozenset[str]) -> Horizon:
        """The horizon after a look that read `last_id`, then `writers`."""
        final, pending = self.final, self.pending
        if pending is not None and not pending[1] & writers:
            final, pending = _later(final, pending[0]), None
        if not writers:
            return Horizon(_later(final, last_id), None)
        # A pending look is kept until it resolves: replacing it at every look would never
        # resolve while writers overlap one another.
        return Horizon(final, pending or (last_id, writers))


def _later(known: int | None, other: int) -> int:
    return other if known is None else max(known, other)


# --- the streams of an application --------------------------------------------------------


class EventStreams:
    """The event streams of one application: the horizon and the wake-ups they share, their
    reads, and their end when the server stops."""

    def __init__(
        self,
        pool: Pool,
        *,
        poll_seconds: float = 1.0,
        heartbeat_seconds: float = 15.0,
        recheck_seconds: float = 300.0,
        page_rows: int = 200,
        scan_ids: int = 10_000,
    ) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.recheck_seconds = recheck_seconds  # how often a stream's credential is checked
        self.page_rows = page_rows
        self.scan_ids = scan_ids
        self.closing = asyncio.Event()
        self._horizon = Horizon()
        self._moved = asyncio.Event()  # set (and replaced) when the horizon moves
        self._streams = 0
        self._by_account: Counter[str] = Counter()
        self._tracker: asyncio.Task[None] | None = None
        # Streams leave the other half of the pool to the API's requests.
        self._reads = asyncio.Semaphore(max(1, pool.max_size // 2))

    def close(self) -> None:
        """Ends every stream (each sends a last comment and finishes its response)."""
        self.closing.set()
        if self._tracker is not None:
            self._tracker.cancel()
            self._tracker = None

    def open_of(self, account: str) -> int:
        """How many streams the account has open."""
        return self._by_account[account]

    @contextlib.asynccontextmanager
    async def open(self, account: str) -> AsyncIterator[None]:
        """One stream of the account, for as long as it lasts: the tracker runs while any
        stream does."""
        self._streams += 1
        self._by_account[account] += 1
        if self._tracker is None and not self.closing.is_set():
            # A horizon from an earlier run would start new streams in the past.
            self._horizon = Horizon()
            self._tracker = asyncio.create_task(self._track(), name="event-stream-horizon")
        try:
            yield
        finally:
            self._streams -= 1
            self._by_account[account] -= 1
            if not self._by_account[account]:
                del self._by_account[account]
            if self._streams == 0 and self._tracker is not None:
                self._tracker.cancel()  # not awaited: this may be a cancelled task
                self._tracker = None

    def horizon(self) -> tuple[int | None, asyncio.Event]:
        """The final id (None: not known yet), and an event set when it next moves."""
        return self._horizon.final, self._moved

    async def wait(self, moved: asyncio.Event, timeout: float) -> bool:
        """Until `moved` is set or the streams close (True), or `timeout` (False)."""
        waiters = {asyncio.ensure_future(moved.wait()), asyncio.ensure_future(self.closing.wait())}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)

    async def last_id(self) -> int:
        """The last event id handed out (0: none)."""
        async with live_connection(self.pool) as conn:
            row = await (await conn.execute(QUERIES["last_event_id"])).fetchone()
        assert row is not None
        return int(row["last_id"])

    async def read(
        self, filters: EventFilters, after: int, final: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The events of `filters` after id `after` (at most page_rows of them, from at most
        scan_ids ids, none above `final`), and the id the stream has reached: every event it
        selects up to that id is in the list."""
        until = min(final, after + self.scan_ids)
        params = {**filters.params(), "after": after, "until": until, "limit": self.page_rows}
        async with self._reads, live_connection(self.pool) as conn, conn.transaction():
            # A plan made once per connection, not one per read as the pool's other queries
            # get (plan_cache_mode): the ids of a read are no block times to prune `events`
            # partitions by, so a custom plan would cost its planning for each partition (12
            # ms with two years of weeks) every time, for the same plan.
            await conn.execute(QUERIES["plan_once"])
            cursor = await conn.execute(QUERIES["stream_events"], params, prepare=True)
            rows = await cursor.fetchall()
        reached = rows[-1]["id"] if len(rows) == self.page_rows else until
        return rows, int(reached)

    # -- the tracker ---------------------------------------------------------------------

    async def _track(self) -> None:
        conninfo = self.pool.conninfo
        if not isinstance(conninfo, str):  # never so in this project: create_app's pools
            log.error("event_stream.no_conninfo", hint="streams need a pool made from a URL")
            return
        while not self.closing.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute("LISTEN new_event")
                    while not self.closing.is_set():
                        await self._look(conn)
                        # Until a batch commits (notifications that came during the look
                        # are kept for this call), or poll_seconds at most.
                        async for _ in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                            pass
            except Exception as error:  # the database is away, most likely: look again
                log.warning("event_stream.horizon_failed", error=str(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), self.poll_seconds)

    async def _look(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # In this order: the writers are read after the last id (the module's docstring).
        row = await (await conn.execute(QUERIES["last_event_id"])).fetchone()
        assert row is not None
        writers = await (await conn.execute(QUERIES["event_writers"])).fetchone()
        assert writers is not None
        horizon = self._horizon.seen(int(row[0]), frozenset(writers[0]))
        moved = horizon.final != self._horizon.final
        self._horizon = horizon
        if moved:
            self._moved.set()
            self._moved = asyncio.Event()


def close_event_streams(app: object) -> None:
    """Ends the open event streams of `app`, an application of create_app (any other has
    none): a stream answers until its client leaves, and a server that stops waits for the
    responses in flight."""
    state = getattr(getattr(app, "state", None), "api", None)
    if isinstance(state, ApiState):
        state.event_streams.close()


# --- the route ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Who reads a stream, and with which credential."""

    user: User
    credentials: HTTPAuthorizationCredentials
    state: ApiState

    async def refusal(self) -> str | None:
        """Why the credential no longer signs its user in (None: it still does)."""
        try:
            async with live_connection(self.state.pool) as conn:
                await current_user(self.state, conn, self.credentials)
        except ApiError as error:
            return error.message if error.status in (401, 403) else None
        return None


@raises(401, 403, 429, 503)
async def stream_reader(
    state: State,
    credentials: Credentials,
) -> Reader:
    """The signed-in user, as for any other route, found on a connection that goes back to
    the pool at once: a stream must not keep one for its whole life. An account with
    MAX_STREAMS_PER_ACCOUNT streams open is refused another (429)."""
    async with live_connection(state.pool) as conn:
        user = await current_user(state, conn, credentials)
    assert credentials is not None  # current_user refused the request otherwise
    if state.event_streams.open_of(user.id) >= MAX_STREAMS_PER_ACCOUNT:
        raise ApiError(
            429,
            f"this account has {MAX_STREAMS_PER_ACCOUNT} event streams open, the most it may:"
            " close one (or filter one stream for all you need)",
            headers={"Retry-After": str(RETRY_MILLISECONDS // 1000)},
        )
    return Reader(user, credentials, state)


@raises(503)
async def resume_after(
    state: State,
    last_event_id: Annotated[
        str | None,
        Header(
            alias=LAST_EVENT_ID,
            max_length=40,
            description="Resume after this event: the `id` of the last message received (0:"
            " from the first stored event). Without it the stream starts now.",
        ),
    ] = None,
) -> int | None:
    """The event id a stream resumes after; None: it starts now."""
    if last_event_id is None:
        return None
    if not _EVENT_ID.fullmatch(last_event_id) or int(last_event_id) > BIGINT_MAX:
        raise invalid(LAST_EVENT_ID, "must be the id of a message of this stream, or 0")
    after = int(last_event_id)
    last = await state.event_streams.last_id()
    if after > last:
        # Its events would never come: the ids start again in a new database.
        raise invalid(
            LAST_EVENT_ID,
            f"is beyond the last event id of this server ({last}): was the database made"
            " afresh? Connect without Last-Event-ID",
        )
    return after


def _message(**fields: Any) -> Any:
    """An SSE message. Typed Any so that the route's annotation can name the model of its
    `data`, which FastAPI documents as the stream's items."""
    return ServerSentEvent(**fields)


@router.get(
    "/events/stream",
    response_class=EventSourceResponse,
    responses={200: {"description": "Events, one SSE message each, until the client leaves."}},
)
async def stream_events(
    reader: Annotated[Reader, Depends(stream_reader)],
    state: State,
    filters: Filters,
    after: Annotated[int | None, Depends(resume_after)],
) -> AsyncIterator[StreamedEvent]:
    """Events as they are indexed, as Server-Sent Events (`text/event-stream`), filtered as
    GET /events filters them. Each message's `data` is an event, with `confirmed`; its
    `id` is the event's id. Events come in the order they were stored, which across chains
    and after a backfill or a reorg is not block order.

    Reconnecting with `Last-Event-ID: <id of the last message>` resumes: every event after
    it that the filters select comes, once, in order. Without it the stream starts now;
    `Last-Event-ID: 0` starts from the first stored event. Comments (`: keep-alive`) come
    when nothing else does, with an `id` when a filtered stream has passed events it does
    not send. The stream ends when the server stops, or when the credential no longer
    signs in (checked every few minutes): reconnect as before."""
    async with contextlib.aclosing(_stream(state.event_streams, reader, filters, after)) as it:
        async for message in it:
            yield message


async def _stream(
    streams: EventStreams, reader: Reader, filters: EventFilters, after: int | None
) -> AsyncGenerator[Any, None]:
    async with streams.open(reader.user.id):
        position, told = after, after  # the id reached; the last id the client was given
        yield _message(
            id=None if position is None else str(position),
            retry=RETRY_MILLISECONDS,
            comment="events" if position is None else f"events after {position}",
        )
        recheck_at = time.monotonic() + streams.recheck_seconds
        try:
            while not streams.closing.is_set():
                if time.monotonic() >= recheck_at:
                    refusal = await reader.refusal()
                    if refusal is not None:
                        yield _message(comment=f"signed out: {refusal}")
                        return
                    recheck_at = time.monotonic() + streams.recheck_seconds
                final, moved = streams.horizon()
                if position is None and final is not None:
                    position = told = final  # now
                    yield _message(id=str(position), comment="now")
                    continue
                if position is not None and final is not None and position < final:
                    rows, position = await streams.read(filters, position, final)
                    for row in rows:
                        yield _message(id=str(row["id"]), data=StreamedEvent.model_validate(row))
                        told = row["id"]
                    continue
                if not await streams.wait(moved, streams.heartbeat_seconds):
                    passed = position is not None and position != told
                    yield _message(comment="keep-alive", id=str(position) if passed else None)
                    told = position
        except (psycopg.Error, PoolTimeout) as error:
            log.warning("event_stream.database_error", error=str(error))
            yield _message(comment="the database is unavailable: reconnect with Last-Event-ID")
            return
        yield _message(comment="the server is stopping: reconnect with Last-Event-ID")
