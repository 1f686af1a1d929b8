"""Devnet fixtures: a fresh anvil per test, or anvil with the registries and a generator.

Use them from any test module once registered (``pytest_plugins = ["tests.support.devnet"]``
in the root conftest, or import them in a package's conftest):

    async def test_something(devnet: Devnet) -> None:
        report = await devnet.activity.run(events=50)
        chain = devnet.chain_config()  # for an indexer
        logs = await registry_logs(devnet)

Each test gets its own node on a free port (anvil starts in about 0.1 s), so tests may run
in parallel and never see each other's events. Skipped when anvil is not installed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from erc8004_backend.devnet import (
    ActivityGenerator,
    AnvilNode,
    AnvilNotFoundError,
    Devnet,
    deploy_registries,
    find_anvil,
    start_anvil,
)
from erc8004_backend.devnet.contracts import CONTRACT_NAMES, event_names, load_artifact


def require_anvil() -> None:
    try:
        find_anvil()
    except AnvilNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture
async def anvil_node() -> AsyncIterator[AnvilNode]:
    """A fresh anvil (automine, chain 31337, 10 funded unlocked accounts) on a free port."""
    require_anvil()
    async with start_anvil() as node:
        yield node


@pytest.fixture
async def devnet(anvil_node: AnvilNode) -> AsyncIterator[Devnet]:
    """`anvil_node` with the registries deployed at `chain.config.DEVNET`'s addresses, an
    RpcClient to it and a set-up ActivityGenerator (seed 0)."""
    async with anvil_node.rpc() as rpc:
        registries = await deploy_registries(rpc)
        activity = ActivityGenerator(rpc, registries, seed=0)
        await activity.setup()
        yield Devnet(anvil_node, rpc, registries, activity)


async def registry_logs(net: Devnet, from_block: int = 0) -> list[dict[str, Any]]:
    """Every log of the three registries from `from_block` to the head, in chain order."""
    head = await net.rpc.block_number()
    return await net.rpc.get_logs(list(net.registries.addresses.values()), from_block, head)


def count_by_name(logs: list[dict[str, Any]]) -> Counter[str]:
    """Logs by event name ("NewFeedback(v0)" for the earlier ABI's feedback)."""
    names = event_names()
    return Counter(names.get(entry["topics"][0], "unknown") for entry in logs)


def decode(entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A registry log's event name and values by parameter name (eth-abi, from the ABI)."""
    topic0 = entry["topics"][0]
    for name in CONTRACT_NAMES:
        event = load_artifact(name).events.get(topic0)
        if event is not None:
            return event.name, event.decode(entry)
    raise AssertionError(f"no registry emits an event with topic0 {topic0}")
