"""The start block of a chain configured with `start_block = "auto"`: the block that deployed
its registries, found by a binary search on eth_getCode once and remembered."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet import Devnet, deploy_registries, start_anvil, start_devnet
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from erc8004_backend.indexer.start_block import (
    RegistriesNotDeployedError,
    StartBlockError,
    first_block_with_code,
)
from erc8004_backend.retry import RetryPolicy
from tests.support.chain_truth import assert_table_equals_chain
from tests.support.flaky_rpc import FlakyRpcServer, RpcFault
from tests.support.waiting import eventually

FAST = RetryPolicy(max_attempts=4, backoff_initial=0.05, backoff_max=0.1)

# -- the search itself, over a predicate ------------------------------------------------------


def deployed_at(block: int | None) -> tuple[Callable[[int], Awaitable[bool]], list[int]]:
    """A chain whose contract was deployed at `block` (None: never): its has-code predicate
    and the blocks it was asked about."""
    asked: list[int] = []

    async def has_code(number: int) -> bool:
        asked.append(number)
        return block is not None and number >= block

    return has_code, asked


def most_calls(head: int) -> int:
    return 1 + math.ceil(math.log2(head + 1))


@pytest.mark.parametrize(
    ("head", "deployed", "expected"),
    [
        (0, 0, 0),  # a chain of one block
        (0, None, None),
        (1, 0, 0),
        (1, 1, 1),
        (1_000, 0, 0),  # deployed in the genesis block
        (1_000, 1_000, 1_000),  # deployed in the head block
        (1_000, 1, 1),
        (1_000, 999, 999),
        (1_000, None, None),  # never: one call, at the head
        (24_500_000, 24_339_924, 24_339_924),  # Ethereum mainnet
    ],
)
async def test_the_first_block_with_code_is_found(
    head: int, deployed: int | None, expected: int | None
) -> None:
    has_code, asked = deployed_at(deployed)
    assert await first_block_with_code(has_code, head) == expected
    assert asked[0] == head  # the head first: without code there, nothing to search
    if deployed is None:
        assert asked == [head]
    assert len(asked) <= most_calls(head)
    assert all(0 <= block <= head for block in asked)


async def test_about_25_calls_find_a_mainnet_deployment() -> None:
    has_code, asked = deployed_at(24_339_924)
    await first_block_with_code(has_code, 24_500_000)
    assert len(asked) == 26  # the head, then 25 halvings of 24.5 million blocks


@given(
    head=st.integers(min_value=0, max_value=2**40),
    fraction=st.one_of(st.none(), st.floats(min_value=0, max_value=1)),
)
async def test_any_deployment_block_is_found_in_logarithmic_calls(
    head: int, fraction: float | None
) -> None:
    deployed = None if fraction is None else min(head, int(fraction * head))
    has_code, asked = deployed_at(deployed)
    assert await first_block_with_code(has_code, head) == deployed
    assert len(asked) <= most_calls(head)


# -- on a devnet ----------------------------------------------------------------------------

AUTO: dict[str, Any] = {"start_block": "auto", "restartable": False}


class RecordingRpc(RpcClient):
    """Records the block ranges the indexer asks eth_getLogs for."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(urls, retry=FAST)
        self.log_ranges: list[tuple[int, int]] = []

    async def get_logs(
        self, addresses: Any, from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        self.log_ranges.append((from_block, to_block))
        return await super().get_logs(addresses, from_block, to_block)


async def index(url: str, chain: ChainConfig) -> tuple[ChainIndexer, RecordingRpc]:
    """Index the chain to its head with a new indexer, as a new process would."""
    rpc = RecordingRpc(chain.rpc_urls)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn, rpc:
        indexer = ChainIndexer(chain, conn, rpc)
        await indexer.prepare()
        try:
            await indexer.sync_to_head()
        finally:
            await indexer.close()
        return indexer, rpc


async def deployment_blocks(devnet: Devnet) -> dict[str, int]:
    """Each registry's address -> the block of its deployment transaction."""
    blocks = {}
    for tx in devnet.registries.transaction_hashes:
        receipt = await devnet.rpc.call("eth_getTransactionReceipt", [tx])
        blocks[receipt["contractAddress"].lower()] = int(receipt["blockNumber"], 16)
    return blocks


async def remembered(url: str) -> dict[tuple[int, str], int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT chain_id, address, block_number FROM registry_deployments"
        )
        return {(chain_id, address): block for chain_id, address, block in await cursor.fetchall()}


@pytest.mark.devnet
async def test_auto_starts_at_the_first_deployment_searched_once_then_remembered(
    migrated_url: str,
) -> None:
    async with start_devnet(empty_blocks=300) as devnet:
        await devnet.activity.run(events=40)
        deployments = await deployment_blocks(devnet)
        first = min(deployments.values())
        assert first == devnet.registries.block_number > 300
        async with FlakyRpcServer(upstream=devnet.url) as proxy:
            chain = devnet.registries.chain_config([proxy.url], **AUTO)
            indexer, rpc = await index(migrated_url, chain)
            # The backfill started at the first registry's deployment, not at block 0.
            assert rpc.log_ranges[0][0] == first
            assert indexer.start_block == first
            # The first registry was searched (the head, then a halving per call); for each of
            # the others, deployed no earlier, one question at the block before settled it.
            head = await devnet.rpc.block_number()
            assert 4 < proxy.calls["eth_getCode"] <= most_calls(head) + 2 * 2
            assert await remembered(migrated_url) == {(chain.chain_id, chain.identity): first}
            async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
                # Every event from block 0 on: nothing before the start block was missed.
                assert await assert_table_equals_chain(conn, devnet.rpc, chain) >= 40

            # A resumed chain does not search.
            await devnet.activity.run(events=10)
            proxy.reset_counts()
            indexer, rpc = await index(migrated_url, chain)
            assert proxy.calls["eth_getCode"] == 0
            assert indexer.start_block == first  # for the progress display
            assert rpc.log_ranges[0][0] > first

            # Indexed afresh (the operator deleted the chain's rows), the remembered block
            # serves without a search: two questions for each of the others.
            async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
                await conn.execute("DELETE FROM events")
                await conn.execute("DELETE FROM checkpoints")
            proxy.reset_counts()
            indexer, rpc = await index(migrated_url, chain)
            assert proxy.calls["eth_getCode"] == 2 * 2
            assert rpc.log_ranges[0][0] == first
            async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
                assert await assert_table_equals_chain(conn, devnet.rpc, chain) >= 50


@pytest.mark.devnet
@pytest.mark.parametrize("others_later_by", [0, 5], ids=["deployed-after", "deployed-before"])
async def test_with_the_others_blocks_known_only_an_earlier_deployment_is_searched(
    migrated_url: str, others_later_by: int
) -> None:
    """The identity and reputation blocks are known (remembered here; built in for the
    mainnets); the validation registry's is not. One question at the block before the
    others' settles it when it came after them; otherwise the search covers only the blocks
    before them."""
    async with start_devnet(empty_blocks=200) as devnet:
        deployments = await deployment_blocks(devnet)
        chain = devnet.registries.chain_config([devnet.url], **AUTO)
        others = {chain.identity, chain.reputation}
        bound = max(deployments[address] for address in others) + others_later_by
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            for address in others:
                await conn.execute(
                    "INSERT INTO registry_deployments (chain_id, address, block_number)"
                    " VALUES (%s, %s, %s)", [chain.chain_id, address, bound],
                )  # fmt: skip
        async with FlakyRpcServer(upstream=devnet.url) as proxy:
            proxied = chain.model_copy(update={"rpc_urls": [proxy.url]})
            indexer, _ = await index(migrated_url, proxied)
        validation = deployments[chain.validation]
        if others_later_by == 0:  # deployed in the same block as the others, or after
            assert validation >= bound
            assert indexer.start_block == bound
            assert proxy.calls["eth_getCode"] == 2  # at the head, and at the block before
            assert (chain.chain_id, chain.validation) not in await remembered(migrated_url)
        else:
            assert indexer.start_block == validation < bound
            assert 2 < proxy.calls["eth_getCode"] <= 2 + most_calls(bound - 1)
            assert (await remembered(migrated_url))[(chain.chain_id, chain.validation)] == (
                validation
            )


@pytest.mark.devnet
async def test_a_configured_start_block_is_used_as_it_is(migrated_url: str) -> None:
    async with start_devnet(empty_blocks=50) as devnet:
        await devnet.activity.run(events=20)
        start = devnet.registries.block_number + 2  # "auto" would start 2 blocks earlier
        async with FlakyRpcServer(upstream=devnet.url) as proxy:
            chain = devnet.registries.chain_config([proxy.url], start_block=start)
            indexer, rpc = await index(migrated_url, chain)
        assert proxy.calls["eth_getCode"] == 0
        assert rpc.log_ranges[0][0] == start
        assert indexer.start_block == start
        assert await remembered(migrated_url) == {}


@pytest.mark.devnet
async def test_blocks_remembered_for_other_addresses_are_not_used(migrated_url: str) -> None:
    async with start_devnet(empty_blocks=50) as devnet:
        chain = devnet.chain_config(**AUTO)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            # Another deployment on the same chain (a chains file with other addresses), and
            # the same addresses on another chain.
            await conn.execute(
                "INSERT INTO registry_deployments (chain_id, address, block_number)"
                " VALUES (%s, %s, 0), (%s, %s, 0)",
                [chain.chain_id, "0x" + "11" * 20, 1, chain.identity],
            )
        indexer, rpc = await index(migrated_url, chain)
        assert rpc.log_ranges[0][0] == indexer.start_block == devnet.registries.block_number


@pytest.mark.devnet
async def test_known_blocks_need_no_search_and_a_registry_without_code_is_left_out(
    migrated_url: str,
) -> None:
    """Sepolia's identity and reputation registries were deployed at known blocks (9980000 and
    10107135): those are used without a call. Its validation registry is not known; without
    code at the head it is left out."""
    sepolia = ChainConfig(
        name="sepolia", chain_id=11155111, rpc_urls=["http://127.0.0.1:9"],
        identity="0x8004A818BFB912233c491871b3d84c89A494BD9e",
        reputation="0x8004B663056A597Dffe9eCcC1965A193B7388713",
        validation="0x8004Cb1BF31DAf7788923b405b754f57acEB4272",
    )  # fmt: skip
    async with (
        start_anvil(chain_id=sepolia.chain_id) as node,
        FlakyRpcServer(upstream=node.url) as proxy,
    ):
        chain = sepolia.model_copy(update={"rpc_urls": [proxy.url]})
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = ChainIndexer(chain, conn, RpcClient(chain.rpc_urls, retry=FAST))
            await indexer.prepare()
            assert await indexer.step() is True  # block 9980000 is not mined yet: nothing to do
            await indexer.rpc.aclose()
        assert indexer.start_block == 9_980_000
        assert proxy.calls["eth_getCode"] == 1  # the validation registry, at the head
        assert await remembered(migrated_url) == {}  # known blocks are not copied


@pytest.mark.devnet
async def test_no_registry_with_code_is_an_error_naming_the_chain_and_addresses(
    migrated_url: str,
) -> None:
    async with start_anvil() as node:
        await node_mine(node.url, 20)
        chain = ChainConfig(
            name="mychain", chain_id=31337, rpc_urls=[node.url], identity="0x" + "11" * 20,
            reputation="0x" + "22" * 20, validation="0x" + "33" * 20,
        )  # fmt: skip
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = ChainIndexer(chain, conn, RpcClient(chain.rpc_urls, retry=FAST))
            # Not retried: the indexer stops with the error, as for a node of another chain.
            with pytest.raises(RegistriesNotDeployedError) as raised:
                await asyncio.wait_for(indexer.run(asyncio.Event()), 20)
            await indexer.rpc.aclose()
    message = str(raised.value)
    assert "mychain (chain 31337)" in message
    for address in chain.registry_addresses:
        assert address in message
    assert "start_block" in message


async def node_mine(url: str, blocks: int) -> None:
    async with RpcClient([url], retry=FAST) as rpc:
        await rpc.call("anvil_mine", [hex(blocks)])


@pytest.mark.devnet
async def test_a_restartable_chain_waits_for_its_registries(migrated_url: str) -> None:
    """A devnet may be up before its registries are deployed: the indexer waits for them."""
    async with start_anvil() as node, node.rpc() as rpc:
        await rpc.call("anvil_mine", [hex(30)])
        chain = ChainConfig(
            name="devnet", chain_id=31337, rpc_urls=[node.url], start_block="auto",
            restartable=True, poll_interval=0.1, confirmations=0,
            identity="0x5FbDB2315678afecb367f032d93F642f64180aa3",
            reputation="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            validation="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        )  # fmt: skip
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = ChainIndexer(chain, conn, RpcClient(chain.rpc_urls, retry=FAST))
            stop = asyncio.Event()
            running = asyncio.create_task(indexer.run(stop))
            await asyncio.sleep(1.5)
            assert not running.done()
            registries = await deploy_registries(rpc)
            assert registries.block_number == 31

            async def started() -> bool:
                return indexer.start_block is not None

            await eventually(started, 20, what="the indexer finding the registries")
            stop.set()
            await running
            await indexer.rpc.aclose()
        assert indexer.start_block == 31


@pytest.mark.devnet
async def test_endpoints_without_old_state_stop_the_indexer_with_what_to_do(
    migrated_url: str,
) -> None:
    async with start_devnet(empty_blocks=200) as devnet:
        head = await devnet.rpc.block_number()

        def old(method: str, params: list[Any]) -> bool:
            return params[1] != "latest" and int(params[1], 16) < head - 64

        async with (
            FlakyRpcServer(upstream=devnet.url) as pruned,
            FlakyRpcServer(upstream=devnet.url) as also_pruned,
        ):
            for proxy in (pruned, also_pruned):
                proxy.fail_always(
                    RpcFault(-32000, "missing trie node 8c1f (path ) <nil>"),
                    method="eth_getCode",
                    when=old,
                )
            chain = devnet.registries.chain_config([pruned.url, also_pruned.url], **AUTO)
            async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
                indexer = ChainIndexer(chain, conn, RpcClient(chain.rpc_urls, retry=FAST))
                with pytest.raises(StartBlockError) as raised:
                    await asyncio.wait_for(indexer.run(asyncio.Event()), 20)
                await indexer.rpc.aclose()
            # Both endpoints were asked once for the old block, then the search gave up.
            assert pruned.calls["eth_getCode"] + also_pruned.calls["eth_getCode"] <= 4
        message = str(raised.value)
        assert "devnet (chain 31337)" in message
        assert "archive" in message
        assert "missing trie node" in message
        assert "set start_block" in message

        # With an archive node among the endpoints, the search goes through it.
        async with FlakyRpcServer(upstream=devnet.url) as pruned:
            pruned.fail_always(RpcFault(-32000, "header not found"), method="eth_getCode", when=old)
            chain = devnet.registries.chain_config([pruned.url, devnet.url], **AUTO)
            indexer, rpc = await index(migrated_url, chain)
            assert rpc.log_ranges[0][0] == devnet.registries.block_number


@pytest.mark.devnet
async def test_a_restarted_devnet_forgets_its_start_block_and_searches_again(
    migrated_url: str,
) -> None:
    """A devnet started again deploys at another block: the block remembered for the first
    one would miss the second one's events below it."""
    overrides: dict[str, Any] = {"start_block": "auto", "restartable": True, "reorg_window": 4}
    async with start_devnet(empty_blocks=120, seed=1) as first:
        await first.activity.run(events=20)
        chain = first.chain_config(**overrides)
        await index(migrated_url, chain)
        first_head = await first.rpc.block_number()
        assert (await remembered(migrated_url))[(chain.chain_id, chain.identity)] > 120
    async with start_devnet(seed=2) as second:
        await second.activity.run(events=30)
        await second.rpc.call("anvil_mine", [hex(first_head + 20)])  # longer than the first
        deployments = await deployment_blocks(second)
        assert max(deployments.values()) < 120
        chain = second.chain_config(**overrides)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            indexer = ChainIndexer(chain, conn, RpcClient(chain.rpc_urls, retry=FAST))
            await indexer.prepare()
            await indexer.sync_to_head()
            await indexer.rpc.aclose()
            assert indexer.start_block == min(deployments.values())
            assert await assert_table_equals_chain(conn, second.rpc, chain) >= 30
        # The first registry's block, searched; the others came no earlier (one call each
        # told), so the start is settled without their exact blocks.
        earliest = min(deployments.values())
        assert await remembered(migrated_url) == {(chain.chain_id, chain.identity): earliest}
