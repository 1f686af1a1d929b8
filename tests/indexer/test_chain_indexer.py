"""The indexer against a real devnet: the table must equal the chain's own logs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.events import SPECS
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet import Devnet, start_devnet
from erc8004_backend.indexer.chain_indexer import (
    ChainIndexer,
    ChainLockedError,
    FetchedRange,
    ReorgTooDeepError,
)
from erc8004_backend.indexer.store import BlockHeader, CheckpointMovedError, EventStore
from erc8004_backend.retry import RetryPolicy
from tests.support.chain_truth import assert_table_equals_chain
from tests.support.flaky_rpc import FlakyRpcServer, HttpStatus, TooManyRequests
from tests.support.raw_logs import emit_raw_log, topic_of

pytestmark = [pytest.mark.timeout(120), pytest.mark.devnet]


async def index_to_head(url: str, chain: ChainConfig, rpc: RpcClient | None = None) -> ChainIndexer:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        own_rpc = rpc or RpcClient(chain.rpc_urls, retry=RetryPolicy(backoff_initial=0.05))
        try:
            indexer = ChainIndexer(chain, conn, own_rpc)
            await indexer.prepare()
            await indexer.sync_to_head()
            await indexer.close()
            return indexer
        finally:
            if rpc is None:
                await own_rpc.aclose()


async def test_mixed_activity_is_indexed_exactly_in_small_and_large_ranges(
    migrated_url: str,
) -> None:
    async with start_devnet() as devnet:
        await devnet.activity.run(events=600)  # one transaction per action: many blocks
        await devnet.activity.emit_batch(2_400)  # many events per transaction
        await devnet.activity.give_legacy_feedback()
        chain = devnet.chain_config(max_block_range=2)
        indexer = await index_to_head(migrated_url, chain)
        count = await assert_table_equals_chain_at(migrated_url, devnet, chain)
    assert count >= 3_000
    assert indexer.stats.events == count
    assert indexer.stats.skipped["MetadataUpdate"] > 0  # ERC-4906 noise is counted, not stored
    assert not indexer.stats.unknown_topics
    assert indexer.stats.decode_errors == 0
    assert indexer.stats.ranges >= 5
    # Ranges fetched while another was written joined it: fewer transactions than ranges.
    assert indexer.stats.ranges > indexer.stats.batches


def fetched_range(from_block: int, to_block: int, parent_of_first: str) -> FetchedRange:
    headers = {
        n: BlockHeader(n, f"0x{n:064x}", parent_of_first if n == from_block else f"0x{n - 1:064x}",
                       datetime(2026, 1, 1, tzinfo=UTC))
        for n in range(from_block, to_block + 1)
    }  # fmt: skip
    return FetchedRange(from_block, to_block, 100, 0, headers, [], [], [], Counter(a=1))


def test_a_range_joins_only_the_range_that_continues_it_on_the_same_chain() -> None:
    first = fetched_range(10, 12, f"0x{9:064x}")
    following = fetched_range(13, 15, f"0x{12:064x}")
    assert first.continued_by(following)
    joined = first.joined(following)
    assert (joined.from_block, joined.to_block, joined.ranges) == (10, 15, 2)
    assert sorted(joined.headers) == list(range(10, 16))
    assert joined.skipped == Counter(a=2)
    assert not first.continued_by(fetched_range(14, 15, f"0x{13:064x}"))  # a gap
    assert not first.continued_by(fetched_range(13, 15, "0x" + "ab" * 32))  # another chain


async def assert_table_equals_chain_at(url: str, devnet: Devnet, chain: ChainConfig) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        count = await assert_table_equals_chain(conn, devnet.rpc, chain)
        head = await devnet.rpc.block_number()
        checkpoint = await EventStore(chain.chain_id).checkpoint(conn)
        assert checkpoint.block_number == head
        assert checkpoint.confirmed_block_number == head - chain.confirmations
        cursor = await conn.execute(
            "SELECT count(*) FROM agent_registrations WHERE chain_id = %s", [chain.chain_id]
        )
        row = await cursor.fetchone()
        assert row is not None
        assert row[0] > 0
    return count


async def test_following_the_head_picks_up_new_blocks(migrated_url: str) -> None:
    async with start_devnet() as devnet:
        chain = devnet.chain_config(confirmations=2)
        await devnet.activity.run(events=30)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = await synced_indexer(chain, conn, devnet)
            assert await indexer.step() is True  # nothing new
            await devnet.activity.run(events=40)
            await indexer.sync_to_head()
            await assert_table_equals_chain(conn, devnet.rpc, chain)
            checkpoint = await indexer.store.checkpoint(conn)
            head = await devnet.rpc.block_number()
            assert checkpoint.confirmed_block_number == head - 2


async def test_at_the_head_a_poll_is_one_request_that_still_sees_a_replaced_tip(
    migrated_url: str,
) -> None:
    """The indexer polls at the head (every 10 ms in bench.pipeline): the head's header and
    the checkpoint block's come in one batch request; a new block then costs one more (its
    logs: its header came with the poll); and the checkpoint block's header still finds a
    tip replaced by a block of the same height."""
    async with start_devnet(seed=21) as devnet:
        await devnet.activity.run(events=30)
        async with (
            FlakyRpcServer(upstream=devnet.url) as node,
            RpcClient([node.url]) as rpc,
            await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        ):
            chain = devnet.registries.chain_config([node.url])
            indexer = ChainIndexer(chain, conn, rpc)
            await indexer.prepare()
            await indexer.sync_to_head()
            node.reset_counts()
            for _ in range(3):
                assert await indexer.step() is True  # nothing new
            assert node.http_requests == 3
            assert node.calls["eth_getBlockByNumber"] == 6  # the latest and the checkpoint's
            assert node.calls["eth_blockNumber"] == 0
            await devnet.activity.step()
            node.reset_counts()
            stored = indexer.stats.events
            assert await indexer.step() is True  # the new block, and caught up again
            assert indexer.stats.events > stored
            assert node.http_requests == 2  # the poll (the head's header with it), eth_getLogs

            # The tip replaced by another block of the same height: the next poll rolls back.
            tip = await devnet.rpc.block_number()
            snapshot = await devnet.rpc.call("evm_snapshot")
            await devnet.activity.step()
            await indexer.sync_to_head()
            assert await devnet.rpc.call("evm_revert", [snapshot]) is True
            await devnet.activity.resync()
            await devnet.activity.step()
            assert await devnet.rpc.block_number() == tip + 1
            await indexer.sync_to_head()
            assert indexer.stats.reorgs == 1
            await assert_table_equals_chain(conn, devnet.rpc, chain)


async def test_a_head_replaced_between_the_poll_and_its_logs_is_not_stored(
    migrated_url: str,
) -> None:
    """The head's header comes from the poll, before eth_getLogs: when another block of that
    height replaces it in between, the logs name the new block's hash, the range is refused,
    and the next step indexes the block that stayed. Nothing of the replaced one is stored."""
    async with start_devnet(seed=22) as devnet:
        await devnet.activity.run(events=30)
        chain = devnet.chain_config()
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = await synced_indexer(chain, conn, devnet)
            snapshot = await devnet.rpc.call("evm_snapshot")
            await devnet.activity.step()
            replaced = await devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
            get_logs = indexer.rpc.get_logs

            async def logs_after_a_reorg(
                addresses: Sequence[str], from_block: int, to_block: int
            ) -> list[dict[str, Any]]:
                indexer.rpc.get_logs = get_logs  # type: ignore[method-assign]
                assert await devnet.rpc.call("evm_revert", [snapshot]) is True
                await devnet.activity.resync()
                await devnet.activity.step()
                return await get_logs(addresses, from_block, to_block)

            indexer.rpc.get_logs = logs_after_a_reorg  # type: ignore[method-assign]
            with capture_logs() as logs:
                assert await indexer.step() is False
            assert [
                entry["reason"] for entry in logs if entry["event"] == "indexer.chain_moved"
            ] == [f"block {int(replaced['number'], 16)} changed between requests"]
            await indexer.sync_to_head()
            stayed = await devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
            assert stayed["number"] == replaced["number"]
            assert stayed["hash"] != replaced["hash"]
            assert indexer.stats.reorgs == 0  # refused before it was stored
            cursor = await conn.execute(
                "SELECT count(*) FROM events WHERE block_hash = %s", (replaced["hash"],)
            )
            assert await cursor.fetchone() == (0,)
            await assert_table_equals_chain(conn, devnet.rpc, chain)


async def test_a_range_ceiling_lowered_once_rises_again(migrated_url: str) -> None:
    """A refusal of a range (a slow query, an endpoint failed over to) lowers the ceiling of
    ranges; it doubles back after RANGES_BEFORE_CEILING_RISES ranges fetched under it, so that
    one refusal does not cap a backfill of years at a range of a few blocks."""
    async with start_devnet(seed=23) as devnet:
        await devnet.activity.run(events=20)
        await devnet.rpc.call("anvil_mine", [hex(600)])
        async with (
            FlakyRpcServer(upstream=devnet.url, max_log_range=2) as node,
            RpcClient([node.url]) as rpc,
            await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        ):
            chain = devnet.registries.chain_config([node.url], max_block_range=64)
            indexer = ChainIndexer(chain, conn, rpc)
            await indexer.prepare()
            while node.max_log_range is not None:
                await indexer.step()
                if indexer.block_range <= 2:
                    node.max_log_range = None  # refused once: the node takes any range now
            await indexer.sync_to_head()
            head = await devnet.rpc.block_number()
            # Capped at 2 blocks, the rest would take some 300 requests.
            assert node.calls["eth_getLogs"] < 150, node.calls["eth_getLogs"]
            assert indexer.block_range > 2
            assert (await indexer.store.checkpoint(conn)).block_number == head
            await assert_table_equals_chain(conn, devnet.rpc, chain)


async def test_one_indexer_per_chain(migrated_url: str) -> None:
    async with start_devnet() as devnet:
        chain = devnet.chain_config()
        async with (
            await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as first,
            await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as second,
        ):
            await ChainIndexer(chain, first, devnet.rpc).prepare()
            with pytest.raises(ChainLockedError, match="already indexing chain devnet"):
                await ChainIndexer(chain, second, devnet.rpc).prepare()
            # Even without the lock, the checkpoint guard refuses a writer whose view is stale.
            await devnet.activity.run(events=10)
            stale = await EventStore(chain.chain_id).checkpoint(first)
            await ChainIndexer(chain, second, devnet.rpc).sync_to_head()
            late = ChainIndexer(chain, first, devnet.rpc)
            head = await devnet.rpc.block_number()
            fetched = await late._fetch(devnet.registries.block_number, head, head)
            with pytest.raises(CheckpointMovedError, match="another indexer"):
                await late._store_range(stale, fetched)
            await assert_table_equals_chain(first, devnet.rpc, chain)  # nothing stored twice


async def test_failing_and_rate_limited_endpoints_fail_over_and_back_off(migrated_url: str) -> None:
    async with start_devnet() as devnet:
        await devnet.activity.run(events=200)
        async with (
            FlakyRpcServer(upstream=devnet.url) as broken,
            FlakyRpcServer(upstream=devnet.url) as limited,
        ):
            broken.fail_always(HttpStatus(503))
            limited.fail_next(3, TooManyRequests(retry_after=1))
            # The broken endpoint comes first: every request must fail over to the next one.
            chain = devnet.registries.chain_config([broken.url, limited.url], max_block_range=50)
            rpc = RpcClient(
                chain.rpc_urls, retry=RetryPolicy(max_attempts=12, backoff_initial=0.05)
            )
            started = time.monotonic()
            async with rpc:
                indexer = await index_to_head(migrated_url, chain, rpc)
            # With both endpoints refusing, the client waited for the Retry-After second.
            assert time.monotonic() - started >= 0.9
            assert broken.faults_served >= 1
            assert limited.faults_served == 3
            assert limited.calls["eth_getLogs"] >= 1
        await assert_table_equals_chain_at(migrated_url, devnet, chain)
        assert indexer.stats.events > 0


async def test_a_node_that_takes_no_batches_is_indexed_all_the_same(migrated_url: str) -> None:
    """Behind a node that takes one call a batch (a gateway that takes no batches; besu,
    erigon and nethermind refuse more than their limit alike), whose refusal would otherwise
    fail every step for good."""
    async with start_devnet() as devnet:
        await devnet.activity.run(events=200)
        async with FlakyRpcServer(upstream=devnet.url, max_batch=1) as single:
            chain = devnet.registries.chain_config([single.url], max_block_range=50)
            async with RpcClient(chain.rpc_urls, retry=RetryPolicy(backoff_initial=0.05)) as rpc:
                await index_to_head(migrated_url, chain, rpc)
                assert rpc.batch_limit == 1
            # Each refusal halves the batch, then one call a request: a few refusals in all.
            assert len(single.batch_sizes) <= 7
            assert single.calls["eth_getBlockByNumber"] > 2
        await assert_table_equals_chain_at(migrated_url, devnet, chain)


@pytest.mark.parametrize(
    ("depth", "new_blocks"),
    [(1, 3), (5, 2), (64, 70)],
    ids=["depth-1", "depth-5-shorter-chain", "depth-64"],
)
async def test_a_reorg_replaces_orphaned_events_that_never_became_ready(
    migrated_url: str, depth: int, new_blocks: int
) -> None:
    async with start_devnet(seed=depth) as devnet:
        await devnet.activity.run(events=150)
        chain = devnet.chain_config(confirmations=64, reorg_window=128)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = await synced_indexer(chain, conn, devnet)
            fork_block = await devnet.rpc.block_number()
            snapshot = await devnet.rpc.call("evm_snapshot")
            highest_ready = -1
            for _ in range(depth):  # one transaction, one block each
                await devnet.activity.step()
                await indexer.sync_to_head()
                confirmed = (await indexer.store.checkpoint(conn)).confirmed_block_number
                highest_ready = max(highest_ready, confirmed if confirmed is not None else -1)
            orphaned = await event_blocks_above(conn, fork_block)
            assert orphaned, "the blocks to be orphaned carry events"

            await replace_blocks(devnet, snapshot, new_blocks)
            await indexer.sync_to_head()

            await assert_table_equals_chain(conn, devnet.rpc, chain)
            assert indexer.stats.reorgs == 1
            assert indexer.stats.deep_reorgs == 0
            # Within the confirmation depth, nothing orphaned was ever handed on as ready.
            assert min(orphaned) > highest_ready
            assert not set(await event_hashes_above(conn, fork_block)) & set(orphaned.values())


async def test_logs_nothing_decodes_are_kept_and_go_with_their_blocks_in_a_reorg(
    migrated_url: str,
) -> None:
    """A topic0 no decoder knows at a registry's address (a future ABI version, say), and a
    known one whose layout does not fit, are kept in unknown_logs with their batch; the
    registries' known non-agent events are only counted."""
    async with start_devnet(seed=5) as devnet:
        await devnet.activity.run(events=40)  # registrations: ERC-4906 MetadataUpdate noise
        identity, reputation = devnet.registries.identity, devnet.registries.reputation
        paused = topic_of("AgentPaused(uint256)")
        response = next(s for s in SPECS if s.name == "ResponseAppended")
        first = await emit_raw_log(devnet, identity, [paused, f"0x{7:064x}"])
        # ResponseAppended's topic0 with none of its indexed values.
        misfit = await emit_raw_log(devnet, reputation, [response.topic0], b"\x01" * 32)
        await devnet.activity.step()
        chain = devnet.chain_config(confirmations=0)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            with capture_logs() as logs:
                indexer = await synced_indexer(chain, conn, devnet)
                fork_block = await devnet.rpc.block_number()
                snapshot = await devnet.rpc.call("evm_snapshot")
                orphan = await emit_raw_log(devnet, identity, [paused])
                await indexer.sync_to_head()
            kept = [
                (first["blockNumber"], "identity", identity, paused, None),
                (misfit["blockNumber"], "reputation", reputation, response.topic0,
                 "ResponseAppended has 3 indexed values, the log 0"),
                (orphan["blockNumber"], "identity", identity, paused, None),
            ]  # fmt: skip
            assert await stored_unknown_logs(conn, chain.chain_id) == kept
            assert indexer.stats.unknown_topics == {paused: 2}
            assert indexer.stats.decode_errors == 1
            assert indexer.stats.skipped["MetadataUpdate"] > 0  # known: counted, not kept
            # Said once per topic0 when it first appears, not once per log.
            noticed = [entry for entry in logs if entry["event"] == "indexer.unknown_event"]
            assert [(e["registry"], e["topic0"], e["block"]) for e in noticed] == [
                ("identity", paused, int(first["blockNumber"], 16))
            ]

            await replace_blocks(devnet, snapshot, 2)
            await indexer.sync_to_head()
            assert indexer.stats.reorgs == 1
            assert await stored_unknown_logs(conn, chain.chain_id) == kept[:2]
            assert int(orphan["blockNumber"], 16) > fork_block
            await assert_table_equals_chain(conn, devnet.rpc, chain)


async def stored_unknown_logs(
    conn: psycopg.AsyncConnection, chain_id: int
) -> list[tuple[str, str, str, str | None, str | None]]:
    cursor = await conn.execute(
        "SELECT block_number, registry, address, topic0, decode_error FROM unknown_logs"
        " WHERE chain_id = %s ORDER BY block_number, log_index",
        [chain_id],
    )
    return [(hex(number), *rest) for number, *rest in await cursor.fetchall()]


async def synced_indexer(
    chain: ChainConfig, conn: psycopg.AsyncConnection, devnet: Devnet
) -> ChainIndexer:
    indexer = ChainIndexer(chain, conn, devnet.rpc)
    await indexer.prepare()
    await indexer.sync_to_head()
    return indexer


async def replace_blocks(devnet: Devnet, snapshot: str, new_blocks: int) -> None:
    """A reorg: back to the snapshot, then `new_blocks` different blocks of activity."""
    assert await devnet.rpc.call("evm_revert", [snapshot]) is True
    await devnet.activity.resync()
    for _ in range(new_blocks):
        await devnet.activity.step()


async def event_blocks_above(conn: psycopg.AsyncConnection, block: int) -> dict[int, str]:
    cursor = await conn.execute(
        "SELECT DISTINCT block_number, block_hash FROM events WHERE block_number > %s", [block]
    )
    return {number: block_hash for number, block_hash in await cursor.fetchall()}


async def event_hashes_above(conn: psycopg.AsyncConnection, block: int) -> list[str]:
    return list((await event_blocks_above(conn, block)).values())


async def test_a_reorg_deeper_than_the_confirmations_rewinds_the_trigger_engine(
    migrated_url: str,
) -> None:
    async with start_devnet(seed=7) as devnet:
        await devnet.activity.run(events=60)
        chain = devnet.chain_config(confirmations=0)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = await synced_indexer(chain, conn, devnet)
            fork_block = await devnet.rpc.block_number()
            snapshot = await devnet.rpc.call("evm_snapshot")
            for _ in range(3):
                await devnet.activity.step()
            await indexer.sync_to_head()
            head = await devnet.rpc.block_number()
            # The trigger engine processed everything it was given, orphans included.
            await conn.execute(
                "INSERT INTO processing_cursors (chain_id, block_number, log_index) VALUES (%s, %s, 0)",
                [chain.chain_id, head],
            )
            await replace_blocks(devnet, snapshot, 4)
            await indexer.sync_to_head()
            await assert_table_equals_chain(conn, devnet.rpc, chain)
            assert indexer.stats.deep_reorgs == 1
            cursor = await conn.execute(
                "SELECT block_number FROM processing_cursors WHERE chain_id = %s", [chain.chain_id]
            )
            assert await cursor.fetchone() == (fork_block,)  # new canonical events get processed


async def test_a_reorg_of_the_very_first_blocks_after_the_start_block(migrated_url: str) -> None:
    async with start_devnet(seed=11) as devnet:
        await devnet.activity.run(events=40)
        start = await devnet.rpc.block_number() + 1
        snapshot = await devnet.rpc.call("evm_snapshot")
        for _ in range(3):
            await devnet.activity.step()
        chain = devnet.chain_config(start_block=start)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = await synced_indexer(chain, conn, devnet)
            await replace_blocks(devnet, snapshot, 4)
            await indexer.sync_to_head()  # the fork is the block before the start block
            assert await assert_table_equals_chain(conn, devnet.rpc, chain) > 0
            assert indexer.stats.reorgs == 1


async def test_a_node_that_lags_behind_the_checkpoint_is_waited_for_not_rolled_back(
    migrated_url: str,
) -> None:
    async with start_devnet(seed=12) as devnet:
        await devnet.activity.run(events=100)
        chain = devnet.chain_config(confirmations=1)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = await synced_indexer(chain, conn, devnet)
            checkpoint = await indexer.store.checkpoint(conn)
            assert checkpoint.block_number is not None
            # A load-balanced endpoint answers with a head two blocks older than ours (and
            # without the checkpoint's block).
            lagging_head = checkpoint.block_number - 2
            assert await indexer._rolled_back_at_tip(checkpoint, lagging_head, None) is False
            assert await indexer.store.checkpoint(conn) == checkpoint
            assert indexer.stats.reorgs == 0
            await assert_table_equals_chain(conn, devnet.rpc, chain)


@pytest.mark.parametrize(
    ("restartable", "length", "from_genesis"),
    [(True, -5, False), (True, 20, False), (False, 20, False), (True, -5, True), (True, 20, True)],
    ids=["shorter", "longer", "not-restartable", "shorter-from-block-0", "longer-from-block-0"],
)
async def test_a_chain_that_agrees_with_no_stored_block(
    migrated_url: str, restartable: bool, length: int, from_genesis: bool
) -> None:
    """The devnet started again is a new chain with the same id: it is indexed afresh, whether
    it is shorter (`length` blocks) or longer than the old one by now, and from block 0 too.
    A chain that is not restartable stops: a reorg deeper than the window needs an operator."""
    # A short window: the indexer keeps only the last blocks' hashes, none of which the
    # second chain has.
    overrides: dict[str, Any] = {"reorg_window": 4, "restartable": restartable}
    if from_genesis:
        overrides["start_block"] = 0
    async with start_devnet(seed=1) as first:
        await first.activity.run(events=30)
        await first.rpc.call("anvil_mine", [hex(60)])
        await index_to_head(migrated_url, first.chain_config(**overrides))
        first_head = await first.rpc.block_number()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        # The trigger engine had processed the first chain's events.
        await conn.execute(
            "INSERT INTO processing_cursors (chain_id, block_number, log_index) VALUES (%s, %s, 0)",
            [first.registries.chain_id, first_head],
        )
    async with start_devnet(seed=2) as second:
        await second.activity.run(events=40)
        missing = first_head + length - await second.rpc.block_number()
        assert missing > 0
        await second.rpc.call("anvil_mine", [hex(missing)])
        chain = second.chain_config(**overrides)
        if not restartable:
            with pytest.raises(ReorgTooDeepError, match="agrees with none of the last"):
                await index_to_head(migrated_url, chain)
            return
        await index_to_head(migrated_url, chain)
        assert await assert_table_equals_chain_at(migrated_url, second, chain) >= 40
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT block_number FROM processing_cursors")
        # ... and processes the new chain's from its beginning: nothing of the old one stays.
        assert await cursor.fetchall() == [(-1,)]
