"""The chain's own account of its ERC-8004 events, to compare the `events` table with.

The truth is read independently of the indexer: every log of the registry contracts from
block 0 to the head in one `eth_getLogs`, decoded with the eth-abi reference decoder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.decode import DecodeError, decode_log_reference
from erc8004_backend.chain.events import EVENT_COLUMNS, EventRow
from erc8004_backend.chain.rpc import RpcClient

Key = tuple[str, int]  # (block_hash, log_index)


def comparable(value: Any) -> Any:
    # Numbers compare equal across int and Decimal; only bytea needs a nudge.
    return bytes(value) if isinstance(value, memoryview) else value


def as_record(row: EventRow | tuple[Any, ...]) -> dict[str, Any]:
    return {column: comparable(value) for column, value in zip(EVENT_COLUMNS, row, strict=True)}


async def chain_events(rpc: RpcClient, chain: ChainConfig) -> dict[Key, dict[str, Any]]:
    head = await rpc.block_number()
    # From "auto": from block 0, which also shows that nothing before the start was missed.
    start = chain.start_block if isinstance(chain.start_block, int) else 0
    logs = await rpc.get_logs(list(chain.registry_addresses), start, head)
    numbers = sorted({int(entry["blockNumber"], 16) for entry in logs})
    headers = await rpc.get_block_headers(numbers) if numbers else []
    times = {int(h["number"], 16): datetime.fromtimestamp(int(h["timestamp"], 16), UTC)
             for h in headers}  # fmt: skip
    truth: dict[Key, dict[str, Any]] = {}
    for entry in logs:
        registry = chain.registry_addresses[entry["address"].lower()]
        try:
            row = decode_log_reference(entry, chain_id=chain.chain_id, registry=registry,
                                       block_time=times[int(entry["blockNumber"], 16)])  # fmt: skip
        except DecodeError:
            continue  # a known topic0 in a layout of its own: no event (the indexer keeps it
            # in unknown_logs)
        if row is not None:
            truth[(row.block_hash, row.log_index)] = as_record(row)
    return truth


async def stored_events(conn: psycopg.AsyncConnection, chain_id: int) -> list[dict[str, Any]]:
    columns = ", ".join(EVENT_COLUMNS)
    cursor = await conn.execute(
        f"SELECT {columns} FROM events WHERE chain_id = %s ORDER BY block_number, log_index",
        [chain_id],
    )
    return [as_record(row) for row in await cursor.fetchall()]


async def assert_table_equals_chain(
    conn: psycopg.AsyncConnection, rpc: RpcClient, chain: ChainConfig
) -> int:
    """Equal sets, field by field, and no duplicates. Returns the number of events."""
    truth = await chain_events(rpc, chain)
    stored = await stored_events(conn, chain.chain_id)
    keys = [(record["block_hash"], record["log_index"]) for record in stored]
    assert len(keys) == len(set(keys)), "the table holds an event twice"
    table = dict(zip(keys, stored, strict=True))
    missing = truth.keys() - table.keys()
    extra = table.keys() - truth.keys()
    assert not missing, (
        f"{len(missing)} chain events are not in the table, e.g. {sorted(missing)[:3]}"
    )
    assert not extra, f"{len(extra)} table events are not on the chain, e.g. {sorted(extra)[:3]}"
    for key, record in truth.items():
        differing = {
            c: (record[c], table[key][c]) for c in EVENT_COLUMNS if record[c] != table[key][c]
        }
        assert not differing, f"event {key} differs: {differing}"
    return len(truth)
