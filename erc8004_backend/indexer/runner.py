"""Runs chain indexers (and the registration file resolver) until told to stop.

Each chain gets its own database connection (it holds the chain's advisory lock) and its
own RPC client. A lost database connection or a failing node is logged and retried with
backoff: the checkpoint makes every restart exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg
import structlog

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.rpc import ChainMismatchError, RpcClient
from erc8004_backend.config import Settings
from erc8004_backend.database.connection import RECONNECT_ERRORS, wait_to_retry
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.indexer.chain_indexer import (
    ChainIndexer,
    ChainLockedError,
    ProgressCallback,
    ReorgTooDeepError,
)

log = structlog.get_logger(__name__)


class DatabaseNotMigratedError(Erc8004Error):
    """The indexer's tables are missing."""


async def check_schema(conn: psycopg.AsyncConnection) -> None:
    cursor = await conn.execute("SELECT to_regclass('agent_registrations') IS NOT NULL")
    row = await cursor.fetchone()
    if not row or not row[0]:
        raise DatabaseNotMigratedError(
            "the database lacks the indexer's tables: run `erc8004 db migrate run` first"
        )


async def index_chain(
    url: str,
    chain: ChainConfig,
    stop: asyncio.Event,
    *,
    on_progress: ProgressCallback | None = None,
    once: bool = False,
) -> None:
    """Index one chain until `stop` (or, with `once`, until caught up), reconnecting after
    database failures."""
    failures = 0
    reconnecting = False
    while not stop.is_set():
        try:
            async with (
                await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
                RpcClient(chain.rpc_urls, timeout=chain.rpc_timeout) as rpc,
            ):
                await check_schema(conn)
                indexer = ChainIndexer(chain, conn, rpc, on_progress=on_progress)
                failures = 0
                await indexer.run(stop, once=once)
                return
        except ChainLockedError as error:
            if not reconnecting:
                raise  # another indexer runs this chain: a person must decide
            # After a lost connection the server may keep the old session, and its lock,
            # until it notices the connection is gone.
            failures += 1
            await wait_to_retry(stop, failures, "indexer.lock_still_held", error, chain=chain.name)
        except (ChainMismatchError, ReorgTooDeepError, DatabaseNotMigratedError):
            raise  # these need a person, not a retry
        except RECONNECT_ERRORS as error:
            reconnecting = True
            failures += 1
            await wait_to_retry(
                stop, failures, "indexer.database_unavailable", error, chain=chain.name
            )


async def run_indexers(
    url: str,
    chains: Sequence[ChainConfig],
    stop: asyncio.Event,
    *,
    settings: Settings,
    on_progress: ProgressCallback | None = None,
    resolve_registrations: bool = True,
    once: bool = False,
) -> None:
    """All chains (and the registration resolver) concurrently; the first fatal error stops
    them all and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for chain in chains:
                group.create_task(index_chain(url, chain, stop, on_progress=on_progress, once=once))
            if resolve_registrations and not once:
                group.create_task(_resolve_registrations(url, settings, stop))
    except BaseExceptionGroup as failures:
        # Report the failure itself, as one error, not the group that carried it.
        raise failures.exceptions[0] from None


async def _resolve_registrations(url: str, settings: Settings, stop: asyncio.Event) -> None:
    from erc8004_backend.indexer.registration import RegistrationResolver

    failures = 0
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                failures = 0
                await RegistrationResolver(conn, settings=settings).run(stop)
                return
        except RECONNECT_ERRORS as error:
            failures += 1
            await wait_to_retry(stop, failures, "registrations.database_unavailable", error)
