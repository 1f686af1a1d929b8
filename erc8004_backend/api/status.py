"""Liveness, readiness, Prometheus metrics and the indexers' progress."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import psycopg
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from erc8004_backend.api.dependencies import CurrentUser, Db, State, live_connection
from erc8004_backend.api.errors import ApiError
from erc8004_backend.api.metrics import ApiMetrics
from erc8004_backend.database.migrations import load_source
from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.api", "status.sql")
router = APIRouter(tags=["status"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migrations: str


class UnknownLogs(BaseModel):
    """Logs at one registry's address with one topic0 that no decoder turned into an event:
    an ABI version or event this version does not know (`decode_error` null), or a known
    topic0 whose topics and data do not fit its layout (`decode_error` says how, for the
    latest). `topic0` is null for logs without topics."""

    registry: str
    topic0: str | None
    logs: int
    first_block: int
    last_block: int
    last_transaction_hash: str
    decode_error: str | None


class ChainStatus(BaseModel):
    chain_id: int
    block_number: int
    confirmed_block_number: int | None
    head_block_number: int | None
    head_lag: int | None
    last_error: str | None
    last_error_at: datetime | None
    updated_at: datetime
    unknown_logs: list[UnknownLogs]


@router.get("/health")
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


def migration_problem(applied: list[dict[str, object]], source_dir: Path) -> str | None:
    """Why the database's migrations differ from the source's, or None when current."""
    source = load_source(source_dir)
    expected = {m.version: m.checksum for m in source.forward}
    recorded = {int(str(row["version"])): row for row in applied}
    failed = [v for v, row in recorded.items() if not row["success"]]
    if failed:
        return f"migration {failed[0]} is partially applied"
    pending = sorted(expected.keys() - recorded.keys())
    if pending:
        return f"{len(pending)} migration(s) pending, from {pending[0]}: run erc8004 db migrate run"
    unknown = sorted(recorded.keys() - expected.keys())
    if unknown:
        return f"migration {unknown[0]} is applied but unknown to this version"
    changed = [v for v, checksum in expected.items() if recorded[v]["checksum"] != checksum]
    if changed:
        return f"migration {changed[0]} was changed after it was applied"
    return None


@router.get("/ready", responses={503: {"description": "Not ready; the message says why."}})
async def ready(state: State) -> Readiness:
    """Readiness: the database answers and its migrations are current."""
    try:
        async with live_connection(state.pool, timeout=5) as conn:
            cursor = await conn.execute(QUERIES["applied_migrations"])
            applied = await cursor.fetchall()
    except (psycopg.Error, TimeoutError) as error:
        raise ApiError(503, f"database unreachable: {type(error).__name__}") from None
    problem = migration_problem(applied, state.migrations_dir)
    if problem:
        raise ApiError(503, problem)
    return Readiness(status="ready", database="ok", migrations=f"{len(applied)} applied")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request, conn: Db) -> Response:
    """Prometheus metrics: API requests and latency, events indexed, jobs by status, queue
    depth, head lag per chain, logs nothing decoded per chain, registry and topic0."""
    api_metrics: ApiMetrics = request.app.state.metrics
    events = await (await conn.execute(QUERIES["events_estimate"])).fetchone()
    jobs = await (await conn.execute(QUERIES["jobs_by_status"])).fetchall()
    depth = await (await conn.execute(QUERIES["queue_depth"])).fetchone()
    chains = await (await conn.execute(QUERIES["indexer_status"])).fetchall()
    unknown = await (await conn.execute(QUERIES["unknown_logs"])).fetchall()
    api_metrics.update_system(
        events=int(events["events"]) if events else 0,
        jobs=jobs,
        queue_depth=int(depth["due"]) if depth else 0,
        chains=chains,
        unknown_logs=unknown,
    )
    return Response(api_metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/indexer/status")
async def indexer_status(user: CurrentUser, conn: Db) -> list[ChainStatus]:
    """Per chain: the last indexed and confirmed blocks, the head, the lag, the last error,
    and the logs at its registries' addresses that no decoder turned into an event, by
    registry and topic0 (a new ABI version shows here)."""
    chains = await (await conn.execute(QUERIES["indexer_status"])).fetchall()
    unknown: dict[int, list[UnknownLogs]] = {}
    for row in await (await conn.execute(QUERIES["unknown_logs"])).fetchall():
        unknown.setdefault(row["chain_id"], []).append(UnknownLogs.model_validate(row))
    return [
        ChainStatus.model_validate({**row, "unknown_logs": unknown.get(row["chain_id"], [])})
        for row in chains
    ]
