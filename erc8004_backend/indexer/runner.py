"""Runs chain indexers (and the registration file resolver) until told to stop.

Each chain gets its own database connection (it holds the chain's advisory lock) and its
own RPC client. A lost database connection or a failing node is logged and retried with
backoff: the checkpoint makes every restart exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.config import Settings
from erc8004_backend.database.connection import RECONNECT_ERRORS
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.indexer.chain_indexer import ChainIndexer, ChainLockedError, ProgressCallback
from erc8004_backend.retry import run_reconnecting


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
    database failures. Anything else (another indexer runs the chain, a node of another
    chain, a reorg deeper than the window, a start block that cannot be found, no tables)
    needs a person, not a retry."""

    async def index() -> None:
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            RpcClient(chain.rpc_urls, timeout=chain.rpc_timeout) as rpc,
        ):
            await check_schema(conn)
            await ChainIndexer(chain, conn, rpc, on_progress=on_progress).run(stop, once=once)

    # After a lost connection the server may keep the old session, and its lock on the
    # chain, until it notices the connection is gone: then the lock is worth waiting for.
    await run_reconnecting(
        index,
        stop,
        event="indexer.database_unavailable",
        retry_on=RECONNECT_ERRORS,
        after_a_failure=(ChainLockedError,),
        chain=chain.name,
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

    async def resolve() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await RegistrationResolver(conn, settings=settings).run(stop)

    await run_reconnecting(
        resolve, stop, event="registrations.database_unavailable", retry_on=RECONNECT_ERRORS
    )
