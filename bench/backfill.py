"""Time to sync N devnet events: empty database to fully indexed, with checkpoints.

    .venv/bin/python -m bench.backfill --events 100000

A fresh devnet gets N events through the registries' batch functions (not timed); then the
indexer backfills them from the deployment block into a freshly migrated database, exactly as
`erc8004 indexer` does (eth_getLogs, block headers, decode, COPY, checkpoint per batch).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import report, throwaway_database
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet import start_devnet
from erc8004_backend.indexer.chain_indexer import ChainIndexer


async def backfill(events: int, max_block_range: int, events_per_block: int) -> dict[str, Any]:
    async with start_devnet(seed=8004) as devnet:
        # About a thousand events per block: real chains spread events over blocks, and
        # eth_getLogs (whose unit is the block) answers fastest at about that many.
        devnet.activity.events_per_block = events_per_block
        generated = time.perf_counter()
        emitted = await devnet.activity.run(events=events, batch=True)
        generated = time.perf_counter() - generated
        head = await devnet.rpc.block_number()
        chain = devnet.chain_config(max_block_range=max_block_range)
        with throwaway_database() as url:
            async with (
                await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
                RpcClient(chain.rpc_urls) as rpc,
            ):
                indexer = ChainIndexer(chain, conn, rpc)
                await indexer.prepare()
                started = time.perf_counter()
                checkpoint = await indexer.sync_to_head()
                elapsed = time.perf_counter() - started
                await indexer.close()
                cursor = await conn.execute("SELECT count(*) FROM events")
                stored = (await cursor.fetchone() or (0,))[0]
    if stored != emitted.events or checkpoint != head:
        raise SystemExit(f"indexed {stored} of {emitted.events} events, to block {checkpoint}"
                         f" of {head}")  # fmt: skip
    return {
        "events": stored,
        "blocks": head - devnet.registries.block_number + 1,
        "logs_including_skipped": emitted.logs,
        "batches": indexer.stats.batches,
        "ranges": indexer.stats.ranges,
        "seconds": elapsed,
        "events_per_second": stored / elapsed,
        "generate_seconds": generated,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--max-block-range", type=int, default=100_000)
    parser.add_argument("--events-per-block", type=int, default=1_000)
    parser.add_argument("--json", type=Path, default=None, help="where to write the result")
    args = parser.parse_args(argv)
    result = asyncio.run(backfill(args.events, args.max_block_range, args.events_per_block))
    report("backfill", [
        ("events", f"{result['events']:,}"),
        ("blocks", f"{result['blocks']:,}"),
        ("eth_getLogs ranges", f"{result['ranges']:,}"),
        ("batches (transactions)", f"{result['batches']:,}"),
        ("sync time", f"{result['seconds']:.2f} s"),
        ("throughput", f"{result['events_per_second']:,.0f} events/s"),
        ("(devnet generation, untimed)", f"{result['generate_seconds']:.1f} s"),
    ], result, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
