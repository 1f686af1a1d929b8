"""Delivery operations: the signed-in user's jobs by state, each with its attempts;
redelivery (one job, or a trigger's dead jobs of a time range) with fresh attempts and the
same idempotency key, so receivers can tell a redelivery from a new event; and a test
delivery of one action, now, for a sample event."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from erc8004_backend.actions.configs import ActionConfigError
from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.queue import redeliver_jobs
from erc8004_backend.actions.sample import deliver_sample, sample_payload
from erc8004_backend.api.dependencies import (
    DIGITS_ONLY,
    TRUE_OR_FALSE,
    CurrentUser,
    Db,
    IsoTime,
    State,
)
from erc8004_backend.api.errors import ApiError, error_responses, not_found
from erc8004_backend.api.events import (
    BIGINT_MAX,
    AttemptOut,
    Cursor,
    FromTime,
    Limit,
    ToTime,
    as_utc,
    check_ordered,
    parse_row_id,
)
from erc8004_backend.api.events import QUERIES as EVENT_QUERIES
from erc8004_backend.api.pages import decode_cursor, encode_cursor
from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.api", "jobs.sql")
router = APIRouter(tags=["deliveries"])

JobState = Literal["queued", "retrying", "running", "delivered", "dead", "cancelled", "digested"]
JobId = Annotated[int, Path(ge=1, le=BIGINT_MAX), DIGITS_ONLY]
NOT_FOUND = error_responses(404, 409, descriptions={404: "No such job of yours.",
                                                    409: "The job is not finished."})  # fmt: skip


class JobSummary(BaseModel):
    id: int
    trigger_id: uuid.UUID
    action_id: uuid.UUID | None = Field(
        description="Null: an alert to the account's alert action (the trigger's breaker opened)."
    )
    action_type: str
    event_id: int | None = Field(description="Null: a silence that ran from its trigger's start.")
    chain_id: int
    state: JobState = Field(description="queued (not tried yet), retrying (tried, due again),"
                            " running, delivered, dead, cancelled (its event was reorged"
                            " out), or digested (sent in the digest digest_job_id).")  # fmt: skip
    attempts: int
    max_attempts: int
    run_at: datetime = Field(description="When it runs (again), if queued or retrying.")
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    retraction: bool
    replay: bool = Field(description="Queued by a replay of the trigger's history (POST"
                         " /triggers/{id}/replays); its deliveries say so.")  # fmt: skip
    idempotency_key: str = Field(description="Sent with every attempt and redelivery; a"
                                 " replay's is the one a live job of its event has.")  # fmt: skip
    digest_job_id: int | None = Field(
        default=None, description="The digest that carried this firing, if it was digested."
    )


class JobDetail(JobSummary):
    payload: Any = Field(description="What its deliveries render: the event and the values.")
    attempts_made: list[AttemptOut] = Field(description="Every attempt, in order.")


class JobPage(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class Redelivered(BaseModel):
    jobs: list[int] = Field(description="The jobs queued again.")


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    from_time: IsoTime | None = Field(default=None, description="Jobs made at or after.")
    to_time: IsoTime | None = Field(default=None, description="Jobs made at or before.")


REDELIVER_EXAMPLES = {
    "all": {"summary": "Every dead job of the trigger", "value": {}},
    "range": {"summary": "Those made in a time range",
              "value": {"from_time": "2026-03-02T00:00:00Z", "to_time": "2026-03-03T00:00:00Z"}},
}  # fmt: skip


@router.get("/jobs")
async def list_jobs(
    user: CurrentUser,
    conn: Db,
    state: JobState | None = None,
    trigger_id: uuid.UUID | None = None,
    action_id: uuid.UUID | None = None,
    replay: Annotated[
        bool | None,
        Query(description="true: only the jobs replays queued; false: only the others."),
        TRUE_OR_FALSE,
    ] = None,
    from_time: FromTime = None,
    to_time: ToTime = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JobPage:
    """The signed-in user's jobs, newest first, by state, trigger, action, origin (a replay's
    or not) and creation time."""
    from_time, to_time = as_utc(from_time), as_utc(to_time)
    check_ordered("from_time", from_time, "to_time", to_time)
    # The cursor holds the last job's creation time and id; the page goes on by id.
    before_id = decode_cursor(cursor, parse_row_id)[1] if cursor else None
    params = {"user_id": user.id, "state": state, "trigger_id": trigger_id,
              "action_id": action_id, "replay": replay, "from_time": from_time,
              "to_time": to_time, "before_id": before_id, "limit": limit + 1}  # fmt: skip
    rows = await (await conn.execute(QUERIES["list_jobs"], params)).fetchall()
    items = [JobSummary.model_validate(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    return JobPage(items=items, next_cursor=next_cursor)


class TriggerDeliveryCounts(BaseModel):
    trigger_id: uuid.UUID
    succeeded: int = Field(description="Attempts that delivered.")
    failed: int = Field(description="Attempts that failed (each retry counts).")


class DeliveryCounts(BaseModel):
    since: datetime
    triggers: list[TriggerDeliveryCounts] = Field(
        description="The triggers with any attempt since then; the others had none."
    )


# Before /jobs/{job_id}, which would take "counts" for a job id.
@router.get("/jobs/counts")
async def delivery_counts(
    user: CurrentUser,
    conn: Db,
    since: Annotated[
        IsoTime | None, Query(description="From this time on; default: the last 24 hours.")
    ] = None,
) -> DeliveryCounts:
    """Per trigger of the signed-in user, its delivery attempts since a time that delivered
    and that failed: the dashboard's trigger list shows those of the last 24 hours."""
    start = as_utc(since) or datetime.now(UTC) - timedelta(hours=24)
    rows = await (await conn.execute(QUERIES["delivery_counts"],
                                     {"user_id": user.id, "since": start})).fetchall()  # fmt: skip
    return DeliveryCounts(
        since=start, triggers=[TriggerDeliveryCounts.model_validate(row) for row in rows]
    )


@router.get("/jobs/{job_id}", responses=error_responses(404))
async def get_job(job_id: JobId, user: CurrentUser, conn: Db) -> JobDetail:
    """One of the user's jobs, with its payload and every attempt."""
    row = await _find_job(conn, job_id, user.id)
    cursor = await conn.execute(EVENT_QUERIES["job_attempts"], {"job_id": job_id,
                                                                "user_id": user.id})  # fmt: skip
    attempts = [AttemptOut.model_validate(attempt) for attempt in await cursor.fetchall()]
    return JobDetail(**row, attempts_made=attempts)


@router.post("/jobs/{job_id}/redeliver", responses=NOT_FOUND)
async def redeliver_job(job_id: JobId, user: CurrentUser, conn: Db) -> Redelivered:
    """Queue a delivered or dead job again, with a fresh set of attempts and its idempotency
    key. A job still queued or running is a 409; a cancelled one (its event was reorged out)
    too."""
    found = await _find_job(conn, job_id, user.id)
    redelivered = await _redeliver(conn, user.id, job_id=job_id,
                                   statuses=["succeeded", "dead"])  # fmt: skip
    if not redelivered:
        digest = f" (it went in digest job {found['digest_job_id']}: redeliver that)" if found.get(
            "digest_job_id") else ""  # fmt: skip
        raise ApiError(409, f"job {job_id} is {found['state']}: only delivered and dead jobs"
                       f" are redelivered{digest}")  # fmt: skip
    return Redelivered(jobs=redelivered)


@router.post("/triggers/{trigger_id}/jobs/redeliver", responses=error_responses(404))
async def redeliver_dead_jobs(
    trigger_id: uuid.UUID,
    user: CurrentUser,
    conn: Db,
    body: Annotated[RedeliverIn | None, Body(openapi_examples=REDELIVER_EXAMPLES)] = None,
) -> Redelivered:
    """Queue every dead job of the trigger (made within the time range, if given) again."""
    body = body or RedeliverIn()
    from_time, to_time = as_utc(body.from_time), as_utc(body.to_time)
    check_ordered("from_time", from_time, "to_time", to_time)
    owned = await conn.execute(QUERIES["trigger_owned"],
                               {"trigger_id": trigger_id, "user_id": user.id})  # fmt: skip
    if await owned.fetchone() is None:
        raise not_found("trigger")
    return Redelivered(jobs=await _redeliver(conn, user.id, trigger_id=trigger_id,
                                             statuses=["dead"], from_time=from_time,
                                             to_time=to_time))  # fmt: skip


async def _find_job(conn: Db, job_id: int, user_id: str) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["job_by_id"], {"job_id": job_id, "user_id": user_id})
    row = await cursor.fetchone()
    if row is None:
        raise not_found("job")
    return dict(row)


async def _redeliver(
    conn: Db, user_id: str, *, statuses: list[str], job_id: int | None = None, **filters: Any
) -> list[int]:
    async with conn.transaction():
        return await redeliver_jobs(conn, statuses=statuses, user_id=user_id,
                                    job_ids=None if job_id is None else [job_id],
                                    **filters)  # fmt: skip


class TestDeliveryOut(BaseModel):
    result_id: int = Field(description="Its attempt in /action-results.")
    status: Literal["success", "failed"]
    duration_ms: int
    error: str | None = Field(description="Why it failed, as a job's attempt would say.")
    retryable: bool | None = Field(description="Whether a job would try again after it.")
    response: Any = Field(description="What the target answered (an excerpt), if kept.")


@router.post("/triggers/{trigger_id}/actions/{action_id}/test",
             responses=error_responses(404, 422))  # fmt: skip
async def test_action(
    trigger_id: uuid.UUID, action_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> TestDeliveryOut:
    """Send the action's message for a sample event of the trigger's registry now (its
    payload says `"test": true`; agent 1, tag "test"), as the worker would, and return the
    attempt's outcome, which is also recorded with the user's delivery attempts. An `mcp`
    action calls the event's own agent: test it with a real event instead."""
    params = {"trigger_id": trigger_id, "action_id": action_id, "user_id": user.id}
    row = await (await conn.execute(QUERIES["action_for_test"], params)).fetchone()
    if row is None:
        raise not_found("action")
    if row["action_type"] == "mcp":
        raise ApiError(422, "an mcp action calls the MCP server of the event's agent: a"
                       " sample event has none; a backtest (POST /triggers/{id}/test) shows"
                       " its calls")  # fmt: skip
    payload = sample_payload(row["registry"], row["chain_id"], row["trigger_id"],
                             row["trigger_name"])  # fmt: skip
    job = Job(id=0, trigger_id=row["trigger_id"], trigger_name=row["trigger_name"],
              user_id=str(user.id), action_id=row["action_id"], action_type=row["action_type"],
              config=row["config"], event_id=None, chain_id=row["chain_id"], attempt=1,
              max_attempts=1, idempotency_key=f"test-{uuid.uuid4().hex}", payload=payload,
              webhook_secret=bytes(row["webhook_secret"]) if row["webhook_secret"] else None,
              webhook_secret_key_id=row["webhook_secret_key_id"])  # fmt: skip
    started = time.perf_counter()
    response: Any = None
    error: str | None = None
    retryable: bool | None = None
    try:
        response = await deliver_sample(job, settings=state.settings, box=state.secret_box,
                                        pool=state.pool)  # fmt: skip
    except DeliveryFailed as failure:
        error, retryable, response = str(failure), failure.retryable, failure.response
    except ActionConfigError as failure:
        error, retryable = str(failure), False
    duration = round((time.perf_counter() - started) * 1000)
    status: Literal["success", "failed"] = "failed" if error else "success"
    recorded = await conn.execute(QUERIES["record_test"], {
        **params, "chain_id": row["chain_id"], "action_type": row["action_type"],
        "status": status, "duration_ms": duration, "error": error,
        "response": Jsonb({"test": True, "response": response}),
    })  # fmt: skip
    result = await recorded.fetchone()
    assert result is not None
    return TestDeliveryOut(result_id=result["id"], status=status, duration_ms=duration,
                           error=error, retryable=retryable, response=response)  # fmt: skip
