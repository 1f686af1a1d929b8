"""Decode + store throughput from raw logs into the real `events` table (all its indexes).

    .venv/bin/python -m bench.ingest --events 100000

Raw logs of every ERC-8004 event type, in a realistic mix, are built first (not timed); then
they are decoded and written in batches exactly as the indexer writes them: COPY into
`events`, the read model, block hashes and the checkpoint, one transaction per batch. The
agents are drawn from 5,000 and the clients are random addresses, so that every feedback
comes from a new client: the read model's hard case (a new client row and client count each).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import report, throwaway_database
from erc8004_backend.chain.config import DEVNET
from erc8004_backend.chain.decode import decode_log
from erc8004_backend.chain.encode import encode_log
from erc8004_backend.chain.events import SPECS, EventSpec
from erc8004_backend.indexer.store import BlockHeader, EventStore

CHAIN_ID = 31337
REGISTRY_ADDRESS = {
    "identity": DEVNET["identity"].lower(),
    "reputation": DEVNET["reputation"].lower(),
    "validation": DEVNET["validation"].lower(),
}
# Most activity is feedback; registrations and validations are rarer.
MIX = {"NewFeedback": 55, "ResponseAppended": 8, "FeedbackRevoked": 4, "Registered": 5,
       "Transfer": 6, "MetadataSet": 6, "URIUpdated": 3, "ValidationRequest": 7,
       "ValidationResponse": 6}  # fmt: skip
EVENTS_PER_BLOCK = 100
GENESIS = datetime(2026, 1, 1, tzinfo=UTC)


def sample_values(spec: EventSpec, rng: random.Random) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in spec.params:
        kind = param.type
        if kind == "uint256":
            values[param.name] = rng.randrange(5_000)
        elif kind == "int128":
            values[param.name] = rng.randrange(-10_000, 10_000)
        elif kind.startswith("uint"):
            values[param.name] = rng.randrange(0, 100 if kind == "uint8" else 50)
        elif kind == "address":
            values[param.name] = rng.randbytes(20)
        elif kind == "bytes32":
            values[param.name] = rng.randbytes(32)
        elif kind == "bytes":
            values[param.name] = rng.randbytes(20)
        else:
            values[param.name] = rng.choice(
                ["quality", "refund", "", "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/feedback.json",
                 "https://agent.example.com/.well-known/agent-card.json", "latency-ms", "åäö ✓"]
            )  # fmt: skip
    return values


def build_logs(count: int, seed: int = 8004) -> tuple[list[dict[str, Any]], dict[int, BlockHeader]]:
    rng = random.Random(seed)
    specs = {s.name: s for s in SPECS if s.version == "v1"}
    names = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    logs, headers = [], {}
    for index, name in enumerate(names):
        number = index // EVENTS_PER_BLOCK + 1
        if number not in headers:
            headers[number] = BlockHeader(number, f"0x{number:064x}", f"0x{number - 1:064x}",
                                          GENESIS + timedelta(seconds=2 * number))  # fmt: skip
        spec = specs[name]
        logs.append(encode_log(spec, sample_values(spec, rng),
                               address=REGISTRY_ADDRESS[spec.registry], block_number=number,
                               block_hash=headers[number].hash,
                               transaction_hash=f"0x{index // 4:064x}",
                               transaction_index=(index % EVENTS_PER_BLOCK) // 4,
                               log_index=index % EVENTS_PER_BLOCK))  # fmt: skip
    return logs, headers


async def ingest(url: str, logs: list[dict[str, Any]], headers: dict[int, BlockHeader],
                 batch_size: int) -> dict[str, float]:  # fmt: skip
    registry_of = {address: name for name, address in REGISTRY_ADDRESS.items()}
    store = EventStore(CHAIN_ID)
    decode_seconds = 0.0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await store.lock_chain(conn)  # the indexer's session, settings included
        started = time.perf_counter()
        previous = None
        for start in range(0, len(logs), batch_size):
            batch = logs[start : start + batch_size]
            t0 = time.perf_counter()
            rows = [decode_log(entry, chain_id=CHAIN_ID, registry=registry_of[entry["address"]],
                               block_time=headers[int(entry["blockNumber"], 16)].time)
                    for entry in batch]  # fmt: skip
            decode_seconds += time.perf_counter() - t0
            last = headers[int(batch[-1]["blockNumber"], 16)]
            await store.write_batch(conn, previous=previous, rows=[r for r in rows if r],
                                    blocks=[], checkpoint=last, head=last.number,
                                    confirmed=last.number, keep_blocks_from=0)  # fmt: skip
            previous = last.number
        elapsed = time.perf_counter() - started
        cursor = await conn.execute("SELECT count(*) FROM events")
        stored = (await cursor.fetchone() or (0,))[0]
    if stored != len(logs):
        raise SystemExit(f"stored {stored} events of {len(logs)}")
    return {"seconds": elapsed, "decode_seconds": decode_seconds,
            "events_per_second": len(logs) / elapsed,
            "decode_events_per_second": len(logs) / decode_seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--json", type=Path, default=None, help="where to write the result")
    args = parser.parse_args(argv)
    logs, headers = build_logs(args.events)
    with throwaway_database() as url:
        result = asyncio.run(ingest(url, logs, headers, args.batch_size))
    report("ingest", [
        ("events", f"{args.events:,}"),
        ("batch size", f"{args.batch_size:,}"),
        ("decode only", f"{result['decode_events_per_second']:,.0f} events/s"),
        ("decode + store", f"{result['events_per_second']:,.0f} events/s"),
        ("total time", f"{result['seconds']:.2f} s"),
    ], {"events": args.events, "batch_size": args.batch_size, **result}, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
