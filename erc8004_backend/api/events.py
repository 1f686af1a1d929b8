"""/events (the indexed registry events: public chain data, every signed-in user sees all of
them) and /action-results (the signed-in user's delivery attempts, with their jobs).

Lists are newest first and paged by keyset: a response's `next_cursor` is passed back as
`cursor` for the next page (null: no more). A cursor is the last row's sort key, so pages
neither skip nor repeat rows while new ones arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import psycopg
from fastapi import APIRouter, Depends, Path, Query
from psycopg import sql
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from erc8004_backend.api.dependencies import DIGITS_ONLY, CurrentUser, Db, IsoTime
from erc8004_backend.api.errors import ApiError, error_responses, not_found
from erc8004_backend.api.pages import decode_cursor, encode_cursor
from erc8004_backend.chain.events import EVENT_COLUMNS, REGISTRY_OF
from erc8004_backend.database.queries import compose, load_queries

router = APIRouter(tags=["events"])

BIGINT_MAX = 2**63 - 1
UINT256_MAX = 2**256 - 1
MAX_LIMIT = 500

Registry = Literal["identity", "reputation", "validation"]
EventType = Literal[
    "Registered", "URIUpdated", "MetadataSet", "Transfer",
    "NewFeedback", "FeedbackRevoked", "ResponseAppended",
    "ValidationRequest", "ValidationResponse",
]  # fmt: skip
ResultStatus = Literal["success", "failed", "retrying", "cancelled", "digested"]

# A type names its registry too (REGISTRY_OF), so the listing can use the (registry,
# event_type, block_time) index.
if set(REGISTRY_OF) != set(get_args(EventType)):
    raise RuntimeError("EventType differs from the indexed events (chain/events.py SPECS)")

# Absent from a response instead of null: the field does not apply to the event's type.
Absent = SkipJsonSchema[None]


def _is_none(value: Any) -> bool:
    return value is None


def absent_if_none() -> Any:
    return Field(default=None, exclude_if=_is_none)


ADDRESS = r"^0x[0-9a-fA-F]{40}$"
Uint = Annotated[str, Field(description="An unsigned integer, in decimal (exact).")]
Int = Annotated[str, Field(description="A signed integer, in decimal (exact).")]
Decimal_ = Annotated[str, Field(description="A decimal number, exact, without exponent.")]
Hex = Annotated[str, Field(description="0x-prefixed lowercase hex.")]


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", details=[{"field": field, "message": message}])


# --- an event's columns, as the API reads them ----------------------------------------------

# Every column of EventRow (chain/events.py), the one list of them, is read as stored but
# these: numbers that can pass 2^53 as exact decimal text, bytes as 0x-hex.
_READ_AS_TEXT = frozenset({"agent_id", "feedback_index", "value", "score"})
_READ_AS_HEX = frozenset({"metadata_value"})
if (_READ_AS_TEXT | _READ_AS_HEX) - set(EVENT_COLUMNS):
    raise RuntimeError("an event column read as text or hex is not in EVENT_COLUMNS")


def _read(column: str) -> sql.Composable:
    stored = sql.Identifier("e", column)
    if column in _READ_AS_TEXT:
        read = sql.SQL("{}::text").format(stored)
    elif column in _READ_AS_HEX:
        read = sql.SQL("'0x' || encode({}, 'hex')").format(stored)
    else:
        return stored
    return sql.SQL("{} AS {}").format(read, sql.Identifier(column))


# `{event_columns}` in a query: the event's id and every EventRow column, of `events e`.
EVENT_SELECT_LIST = sql.SQL(", ").join(
    [sql.Identifier("e", "id"), *(_read(column) for column in EVENT_COLUMNS)]
)


_LOADED = load_queries("erc8004_backend.api", "events.sql")
# `{event_filters}` in a query: GET /events's filters by equality (events.sql).
EVENT_FILTERS = sql.SQL(_LOADED["event_filters"].decode().strip())


def with_event_columns(queries: Mapping[str, bytes]) -> dict[str, bytes]:
    """`queries` with their `{event_columns}` and `{event_filters}` written out, once, when a
    module loads them."""
    return {
        name: compose(query, event_columns=EVENT_SELECT_LIST, event_filters=EVENT_FILTERS)
        if b"{event_columns}" in query
        else query
        for name, query in queries.items()
    }


QUERIES = with_event_columns({name: query for name, query in _LOADED.items()
                              if name != "list_events_selective"})  # fmt: skip
# list_events_selective for each filter that picks few events, the first one given in this
# order (an agent's id with its chain's: the API asks for both).
SELECTIVE_QUERIES = {
    name: compose(_LOADED["list_events_selective"], event_columns=EVENT_SELECT_LIST,
                  event_filters=EVENT_FILTERS,
                  selective=sql.SQL(_LOADED[f"events_of_{of}"].decode().strip()))
    for name, of in (("agent_id", "agent"), ("client_address", "client"),
                     ("validator_address", "validator"))
}  # fmt: skip


# --- models -----------------------------------------------------------------------------


class EventOut(BaseModel):
    """One registry event. The fields after `data` appear only for the event types that have
    them (see the ERC-8004 events: identity, reputation, validation)."""

    id: int
    chain_id: int
    registry: str
    event_type: str
    contract_address: Hex
    block_number: int
    block_hash: Hex
    block_time: datetime
    transaction_hash: Hex
    transaction_index: int
    log_index: int
    agent_id: Uint | None = Field(description="The agent (uint256), in decimal.")
    data: dict[str, Any] = Field(
        description="Values without a column: hashes of indexed strings, older ABI fields."
    )
    # identity
    owner: Hex | Absent = absent_if_none()
    token_uri: str | Absent = absent_if_none()
    metadata_key: str | Absent = absent_if_none()
    metadata_value: Hex | Absent = absent_if_none()
    from_address: Hex | Absent = absent_if_none()
    to_address: Hex | Absent = absent_if_none()
    updated_by: Hex | Absent = absent_if_none()
    # reputation
    client_address: Hex | Absent = absent_if_none()
    feedback_index: Uint | Absent = absent_if_none()
    value: Int | Absent = absent_if_none()
    value_decimals: int | Absent = absent_if_none()
    score: Decimal_ | Absent = absent_if_none()
    tag1: str | Absent = absent_if_none()
    tag2: str | Absent = absent_if_none()
    endpoint: str | Absent = absent_if_none()
    file_uri: str | Absent = absent_if_none()
    file_hash: Hex | Absent = absent_if_none()
    responder: Hex | Absent = absent_if_none()
    # validation
    validator_address: Hex | Absent = absent_if_none()
    request_hash: Hex | Absent = absent_if_none()
    request_uri: str | Absent = absent_if_none()
    response: int | Absent = absent_if_none()
    response_uri: str | Absent = absent_if_none()
    response_hash: Hex | Absent = absent_if_none()
    tag: str | Absent = absent_if_none()


def fields_unlike_the_columns(model: type[BaseModel]) -> dict[str, list[str]]:
    """How an event model's fields differ from an event's id and EventRow columns (empty:
    they do not): the API's events are the rows that `{event_columns}` selects."""
    fields, columns = set(model.model_fields), {"id", *EVENT_COLUMNS}
    differences = {"not a column": sorted(fields - columns), "missing": sorted(columns - fields)}
    return {name: names for name, names in differences.items() if names}


if fields_unlike_the_columns(EventOut):
    raise RuntimeError(
        f"EventOut differs from EVENT_COLUMNS (chain/events.py): "
        f"{fields_unlike_the_columns(EventOut)}"
    )


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class JobOut(BaseModel):
    id: int
    status: str = Field(
        description="queued, running, succeeded, dead, or cancelled (its event was reorged out)."
    )
    attempts: int
    max_attempts: int
    run_at: datetime = Field(description="When the job runs (again), if queued.")
    last_error: str | None
    finished_at: datetime | None
    retraction: bool = Field(
        description="A retraction: a reorg removed the event of a delivery of this action."
    )


class AttemptOut(BaseModel):
    """One delivery attempt of an action."""

    id: int
    trigger_id: uuid.UUID | None = Field(description="Null once the trigger is deleted.")
    action_id: uuid.UUID | None
    event_id: int | None
    chain_id: int | None
    action_type: str
    status: str = Field(
        description="success, retrying (will be tried again), failed, cancelled (its event"
        " was reorged out) or digested (folded into a digest: response_data.digest_job_id)."
    )
    retry_count: int = Field(description="Attempts of the same job before this one.")
    duration_ms: int | None
    error_message: str | None
    response_data: Any = Field(description="What the target answered (an excerpt), if kept.")
    executed_at: datetime


class ActionResultOut(AttemptOut):
    job: JobOut | None = Field(description="The job this attempt belongs to; null once gone.")


class ActionResultDetail(ActionResultOut):
    attempts: list[AttemptOut] = Field(description="Every attempt of the same job, in order.")


class ActionResultPage(BaseModel):
    items: list[ActionResultOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


# --- cursors and parameters ---------------------------------------------------------------


def parse_row_id(text: str) -> int:
    row_id = int(text)
    if not 0 <= row_id <= BIGINT_MAX:
        raise ValueError(text)
    return row_id


def as_utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def check_ordered(low: str, low_value: Any, high: str, high_value: Any) -> None:
    if low_value is not None and high_value is not None and low_value > high_value:
        raise invalid(low, f"must not be after {high}")


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page."), DIGITS_ONLY]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]
FromTime = Annotated[
    IsoTime | None, Query(description="ISO 8601, inclusive (UTC if no zone is given).")
]
ToTime = Annotated[
    IsoTime | None, Query(description="ISO 8601, inclusive (UTC if no zone is given).")
]


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilters:
    """What GET /events and GET /events/stream select events by (None: any)."""

    chain_id: int | None
    registry: str | None
    event_type: str | None
    agent_id: int | None
    client_address: str | None  # lower case
    validator_address: str | None  # lower case
    from_block: int | None
    to_block: int | None
    from_time: datetime | None
    to_time: datetime | None

    def params(self) -> dict[str, Any]:
        return asdict(self)


async def event_filters(
    chain_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX), DIGITS_ONLY] = None,
    registry: Registry | None = None,
    event_type: EventType | None = None,
    agent_id: Annotated[
        int | None, Query(ge=0, le=UINT256_MAX, description="Needs chain_id."), DIGITS_ONLY
    ] = None,
    client_address: Annotated[str | None, Query(pattern=ADDRESS, description="Any case.")] = None,
    validator_address: Annotated[
        str | None, Query(pattern=ADDRESS, description="Any case.")
    ] = None,
    from_block: Annotated[
        int | None,
        Query(ge=0, le=BIGINT_MAX, description="Inclusive; needs chain_id."),
        DIGITS_ONLY,
    ] = None,
    to_block: Annotated[
        int | None,
        Query(ge=0, le=BIGINT_MAX, description="Inclusive; needs chain_id."),
        DIGITS_ONLY,
    ] = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
) -> EventFilters:
    """The event filters of the query, checked together."""
    from_time, to_time = as_utc(from_time), as_utc(to_time)
    check_ordered("from_block", from_block, "to_block", to_block)
    check_ordered("from_time", from_time, "to_time", to_time)
    # Agent ids and block numbers are each chain's own: across chains they name unrelated
    # agents and blocks (and no index serves them).
    for name, value in (("agent_id", agent_id), ("from_block", from_block),
                        ("to_block", to_block)):  # fmt: skip
        if value is not None and chain_id is None:
            raise invalid(name, "needs chain_id (each chain numbers its own)")
    return EventFilters(
        chain_id=chain_id,
        # Event names are unique across the registries: a type names its registry too.
        registry=registry or (REGISTRY_OF[event_type] if event_type else None),
        event_type=event_type,
        agent_id=agent_id,
        client_address=client_address.lower() if client_address else None,
        validator_address=validator_address.lower() if validator_address else None,
        from_block=from_block,
        to_block=to_block,
        from_time=from_time,
        to_time=to_time,
    )


Filters = Annotated[EventFilters, Depends(event_filters)]


@router.get("/events")
async def list_events(
    user: CurrentUser, conn: Db, filters: Filters, limit: Limit = 50, cursor: Cursor = None
) -> EventPage:
    """Events, newest first (by block time, then id), filtered by any of the parameters."""
    return await event_page(conn, filters, limit, cursor)


async def event_page(
    conn: psycopg.AsyncConnection[dict[str, Any]],
    filters: EventFilters,
    limit: int,
    cursor: str | None = None,
) -> EventPage:
    """A page of events, newest first: GET /events, and the MCP server's recent_events.
    An invalid cursor is an ApiError (422) naming `cursor`."""
    before_time, before_id = decode_cursor(cursor, parse_row_id) if cursor else (None, None)
    from_time, to_time = filters.from_time, filters.to_time
    first, last = None, None
    if filters.from_block is not None or filters.to_block is not None:
        bounds = await _block_range_times(
            conn, filters.chain_id, filters.from_block, filters.to_block
        )
        if bounds is None:
            return EventPage(items=[], next_cursor=None)
        first, last = bounds
        if first is not None:
            from_time = first if from_time is None else max(from_time, first)
        if last is not None:
            to_time = last if to_time is None else min(to_time, last)
    params = {
        **filters.params(),
        "first_time": first,
        "last_time": last,
        "from_time": from_time,
        "to_time": to_time,
        "before_time": before_time,
        "before_id": before_id,
        "limit": limit + 1,
    }
    rows = await _newest_events(conn, params, limit + 1)
    items = [EventOut.model_validate(row) for row in rows[:limit]]
    last_item = items[-1] if len(rows) > limit else None
    return EventPage(
        items=items,
        next_cursor=encode_cursor(last_item.block_time, last_item.id) if last_item else None,
    )


# A page that no time range narrows would plan and start a scan of every weekly partition
# (about 0.1 ms each to plan: 10-40 ms at two years of them). It is read in windows of
# partitions instead, newest first, each query pruned to its window, until the page is full:
# the newest partition, the seven before it, then the rest. A filter that picks few events
# (an agent, a client, a validator) would read them all: it has a statement of its own
# instead, planned once (list_events_selective).
WINDOW_PARTITIONS = (1, 7)
MICROSECOND = timedelta(microseconds=1)  # timestamptz's resolution: to_time is inclusive
# No bound, where a bound must be given: the first and last times a datetime holds.
_NO_START = datetime.min.replace(tzinfo=UTC)
_NO_END = datetime.max.replace(tzinfo=UTC)


async def _newest_events(
    conn: psycopg.AsyncConnection[dict[str, Any]], params: dict[str, Any], wanted: int
) -> list[dict[str, Any]]:
    """The first `wanted` events of list_events for `params`, newest first."""
    lowest, highest = params["from_time"], _earliest(params["to_time"], params["before_time"])
    selective = _selective_filter(params)
    if selective is not None:
        bounded = {**params, "limit": wanted,
                   "from_time": lowest or _NO_START, "to_time": highest or _NO_END,
                   "before_time": params["before_time"] or _NO_END,
                   "before_id": params["before_id"] or 0}  # fmt: skip
        async with conn.transaction():
            await conn.execute(QUERIES["generic_plans"])
            query = SELECTIVE_QUERIES[selective]
            return await (await conn.execute(query, bounded, prepare=True)).fetchall()
    cursor = await conn.execute(QUERIES["event_partition_starts"])
    starts = [
        start
        for start in (row["starts"] for row in await cursor.fetchall())
        if (highest is None or start <= highest) and (lowest is None or start > lowest)
    ]
    rows: list[dict[str, Any]] = []
    window_end: datetime | None = None  # exclusive; None: the query's own bound
    taken = 0
    for size in WINDOW_PARTITIONS:
        if taken + size >= len(starts):
            break  # the rest is few partitions: one query
        taken += size
        window_start = starts[taken - 1]
        rows += await _events_in(conn, params, window_start, window_end, wanted - len(rows))
        if len(rows) >= wanted:
            return rows
        window_end = window_start
    return rows + await _events_in(conn, params, None, window_end, wanted - len(rows))


def _selective_filter(params: dict[str, Any]) -> str | None:
    """The first filter of SELECTIVE_QUERIES that `params` give (an agent with its chain)."""
    for name in SELECTIVE_QUERIES:
        if params[name] is not None and (name != "agent_id" or params["chain_id"] is not None):
            return name
    return None


async def _events_in(
    conn: psycopg.AsyncConnection[dict[str, Any]],
    params: dict[str, Any],
    window_start: datetime | None,
    window_end: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """list_events within [window_start, window_end) as well as its own bounds."""
    from_time, to_time = params["from_time"], params["to_time"]
    if window_start is not None:
        from_time = window_start if from_time is None else max(from_time, window_start)
    if window_end is not None:
        to_time = _earliest(to_time, window_end - MICROSECOND)
    bounded = {**params, "from_time": from_time, "to_time": to_time, "limit": limit}
    return await (await conn.execute(QUERIES["list_events"], bounded)).fetchall()


def _earliest(*times: datetime | None) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


async def _block_range_times(
    conn: psycopg.AsyncConnection[dict[str, Any]],
    chain_id: int | None,
    from_block: int | None,
    to_block: int | None,
) -> tuple[datetime | None, datetime | None] | None:
    """The time range a chain's block range spans (see block_range_times in events.sql);
    None when no event can be in the block range."""
    params = {"chain_id": chain_id, "from_block": from_block, "to_block": to_block}
    # As an event by id: a block number is no block time, no partition can be skipped, and
    # planning the two lookups in every weekly partition cost ten times the lookups (16 ms
    # against 1 ms at two years of partitions). One plan per pooled connection, kept.
    async with conn.transaction():
        await conn.execute(QUERIES["generic_plans"])
        cursor = await conn.execute(QUERIES["block_range_times"], params, prepare=True)
        row = await cursor.fetchone()
    assert row is not None
    first, last = row["first_time"], row["last_time"]
    if (from_block is not None and first is None) or (to_block is not None and last is None):
        return None
    if first is not None and last is not None and first > last:
        return None
    return first, last


@router.get("/events/{event_id}", responses=error_responses(404))
async def get_event(
    event_id: Annotated[int, Path(ge=1, le=BIGINT_MAX), DIGITS_ONLY], user: CurrentUser, conn: Db
) -> EventOut:
    """One event by its id."""
    # An id is no block time: no partition can be skipped, and planning the lookup in every
    # weekly partition cost more than the lookup itself. The statement's one plan is made
    # once per pooled connection and kept.
    async with conn.transaction():
        await conn.execute(QUERIES["generic_plans"])
        cursor = await conn.execute(QUERIES["event_by_id"], {"event_id": event_id}, prepare=True)
        row = await cursor.fetchone()
    if row is None:
        raise not_found("event")
    return EventOut.model_validate(row)


# --- action results -----------------------------------------------------------------------


def _result(row: dict[str, Any]) -> dict[str, Any]:
    """A joined row as an ActionResultOut's fields: the job_* columns become `job`."""
    fields = {name: value for name, value in row.items() if not name.startswith("job_")}
    fields["job"] = (
        None
        if row["job_id"] is None
        else {name.removeprefix("job_"): value for name, value in row.items()
              if name.startswith("job_")}
    )  # fmt: skip
    return fields


@router.get("/action-results")
async def list_action_results(
    user: CurrentUser,
    conn: Db,
    trigger_id: uuid.UUID | None = None,
    status: ResultStatus | None = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ActionResultPage:
    """The signed-in user's delivery attempts, newest first (by executed_at, then id)."""
    from_time, to_time = as_utc(from_time), as_utc(to_time)
    check_ordered("from_time", from_time, "to_time", to_time)
    before_time, before_id = decode_cursor(cursor, parse_row_id) if cursor else (None, None)
    params = {
        "user_id": user.id,
        "trigger_id": trigger_id,
        "status": status,
        "from_time": from_time,
        "to_time": to_time,
        "before_time": before_time,
        "before_id": before_id,
        "limit": limit + 1,
    }
    rows = await (await conn.execute(QUERIES["list_action_results"], params)).fetchall()
    items = [ActionResultOut.model_validate(_result(row)) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return ActionResultPage(
        items=items, next_cursor=encode_cursor(last.executed_at, last.id) if last else None
    )


@router.get(
    "/action-results/{result_id}",
    responses=error_responses(404, descriptions={404: "No such delivery attempt of yours."}),
)
async def get_action_result(
    result_id: Annotated[int, Path(ge=1, le=BIGINT_MAX), DIGITS_ONLY], user: CurrentUser, conn: Db
) -> ActionResultDetail:
    """One of the signed-in user's delivery attempts, with every attempt of its job."""
    cursor = await conn.execute(
        QUERIES["action_result_by_id"], {"result_id": result_id, "user_id": user.id}
    )
    row = await cursor.fetchone()
    if row is None:
        raise not_found("action result")
    result = ActionResultOut.model_validate(_result(row))
    if row["job_id"] is None:
        attempts = [AttemptOut.model_validate(row)]
    else:
        cursor = await conn.execute(
            QUERIES["job_attempts"], {"job_id": row["job_id"], "user_id": user.id}
        )
        attempts = [AttemptOut.model_validate(attempt) for attempt in await cursor.fetchall()]
    return ActionResultDetail(**dict(result), attempts=attempts)
