"""The read model the indexer keeps: equal to a rebuild from `events` after any history."""

from __future__ import annotations

import random

import psycopg
import pytest

from erc8004_backend.devnet import Devnet, start_devnet
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from tests.support.read_model import assert_model_equals_rebuild, assert_model_matches_chain

pytestmark = [pytest.mark.timeout(120), pytest.mark.devnet]


async def test_the_model_after_indexing_mixed_activity_equals_a_rebuild(
    migrated_url: str,
) -> None:
    async with start_devnet(seed=3) as devnet:
        await devnet.activity.run(events=400)
        await devnet.activity.emit_batch(1_500)
        await devnet.activity.give_legacy_feedback()
        chain = devnet.chain_config(max_block_range=3)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            # One range a transaction: the model applied batch after batch, many times.
            indexer = ChainIndexer(chain, conn, devnet.rpc, events_per_write=1)
            await indexer.prepare()
            await indexer.sync_to_head()
            model = await assert_model_equals_rebuild(conn, chain.chain_id)
            await assert_model_matches_chain(conn, devnet)
    assert indexer.stats.batches > 5
    for table, rows in model.items():
        print(table, len(rows))


async def add_blocks(devnet: Devnet, rng: random.Random, blocks: int) -> None:
    """`blocks` more blocks of activity: single actions and busy blocks of many."""
    target = await devnet.rpc.block_number() + blocks
    while await devnet.rpc.block_number() < target:
        if rng.random() < 0.5:
            await devnet.activity.step()
        else:
            await devnet.activity.run(events=rng.randint(5, 60))


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_after_reorgs_of_1_to_20_blocks_during_activity_the_model_equals_a_rebuild(
    migrated_url: str, seed: int
) -> None:
    """Random reorgs while activity goes on, each indexed partly before the chain moves:
    after each one the model equals a rebuild from the events and the registries' state."""
    rng = random.Random(seed)
    async with start_devnet(seed=seed) as devnet:
        await devnet.activity.run(events=300)
        chain = devnet.chain_config(confirmations=0, reorg_window=64,
                                    max_block_range=rng.choice([1, 4, 100]))  # fmt: skip
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = ChainIndexer(chain, conn, devnet.rpc)
            await indexer.prepare()
            await indexer.sync_to_head()
            for reorg in range(1, 5):
                depth = rng.randint(1, 20)
                snapshot = await devnet.rpc.call("evm_snapshot")
                for _ in range(depth):  # indexed as they come, or a few at a time
                    await add_blocks(devnet, rng, 1)
                    if rng.random() < 0.6:
                        await indexer.sync_to_head()
                await indexer.sync_to_head()
                assert await devnet.rpc.call("evm_revert", [snapshot]) is True
                await devnet.activity.resync()
                await add_blocks(devnet, rng, rng.randint(1, depth + 3))
                await indexer.sync_to_head()
                assert indexer.stats.reorgs == reorg
                await assert_model_equals_rebuild(conn, chain.chain_id)
                await assert_model_matches_chain(conn, devnet)
