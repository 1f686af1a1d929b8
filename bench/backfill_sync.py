"""One sync of a devnet chain, from its deployment block to its head, into a freshly migrated
database, by the indexer of whichever tree comes first on the module path: `bench.backfill
--against REV` runs this file with each commit's tree first (PYTHONPATH), in turn, against
one chain. Prints one JSON line: the events stored, the checkpoint, the seconds of the sync
(time.perf_counter, in-process, from the start of the sync as bench.backfill times it), this
process's CPU seconds and the PostgreSQL server's (its processes on this machine, /proc), and
the batches written.

    python bench/backfill_sync.py CHAIN_JSON
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import throwaway_database
from bench.pipeline import cpu_seconds
from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.indexer.chain_indexer import ChainIndexer


def postgres_cpu_seconds() -> float | None:
    """The CPU time of this machine's PostgreSQL processes so far (None without /proc)."""
    try:
        pids = [int(pid) for pid in os.listdir("/proc") if pid.isdigit()]
    except OSError:
        return None
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if Path(f"/proc/{pid}/comm").read_text().startswith(("postgres", "postmaster")):
                # One at a time: a process gone meanwhile leaves out only its own time.
                total += cpu_seconds({"server": pid}).get("server", 0.0)
    return total


async def sync(fields: dict[str, Any]) -> dict[str, Any]:
    # The chain entry as this tree's ChainConfig knows it (an older one may lack a field).
    chain = ChainConfig(**{key: value for key, value in fields.items()
                           if key in ChainConfig.model_fields})  # fmt: skip
    with throwaway_database() as url:
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            RpcClient(chain.rpc_urls) as rpc,
        ):
            indexer = ChainIndexer(chain, conn, rpc)
            await indexer.prepare()
            gc.freeze()  # as `erc8004` does once its command is imported
            server_before, cpu_before = postgres_cpu_seconds(), time.process_time()
            started = time.perf_counter()
            checkpoint = await indexer.sync_to_head()
            seconds = time.perf_counter() - started
            cpu, server_after = time.process_time() - cpu_before, postgres_cpu_seconds()
            await indexer.close()
            cursor = await conn.execute("SELECT count(*) FROM events")
            stored = (await cursor.fetchone() or (0,))[0]
    server = None if server_before is None or server_after is None else server_after - server_before
    return {"events": stored, "checkpoint": checkpoint, "seconds": seconds,
            "python_cpu_seconds": cpu, "postgres_cpu_seconds": server,
            "batches": indexer.stats.batches}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(sync(json.loads(Path(sys.argv[1]).read_text())))))
