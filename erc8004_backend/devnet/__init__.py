"""The local devnet: anvil, our ERC-8004 registry contracts, and realistic agent activity.

    async with start_devnet() as devnet:
        await devnet.activity.run(events=100)
        chain = devnet.chain_config()  # for the indexer

Contracts: `contracts/*.sol`, compiled by `npm run build:contracts` into `artifacts/`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from erc8004_backend.chain.config import DEVNET_CHAIN_ID, ChainConfig
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet.activity.generator import ActivityGenerator
from erc8004_backend.devnet.activity.transactions import ActivityError, ActivityReport
from erc8004_backend.devnet.anvil import (
    DEFAULT_GAS_LIMIT,
    AnvilNode,
    AnvilNotFoundError,
    AnvilStartError,
    find_anvil,
    start_anvil,
)
from erc8004_backend.devnet.contracts import Artifact, ArtifactError, load_artifact
from erc8004_backend.devnet.deploy import (
    DeployedRegistries,
    TransactionFailedError,
    Transactor,
    TxRequest,
    deploy_registries,
)

__all__ = [
    "DEFAULT_GAS_LIMIT",
    "ActivityError",
    "ActivityGenerator",
    "ActivityReport",
    "AnvilNode",
    "AnvilNotFoundError",
    "AnvilStartError",
    "Artifact",
    "ArtifactError",
    "DeployedRegistries",
    "Devnet",
    "TransactionFailedError",
    "Transactor",
    "TxRequest",
    "deploy_registries",
    "find_anvil",
    "load_artifact",
    "start_anvil",
    "start_devnet",
]


@dataclass
class Devnet:
    """A running devnet: the node, a client to it, the registries, and an activity generator."""

    node: AnvilNode
    rpc: RpcClient
    registries: DeployedRegistries
    activity: ActivityGenerator

    @property
    def url(self) -> str:
        return self.node.url

    def chain_config(self, *, name: str = "devnet", **overrides: Any) -> ChainConfig:
        """The chain entry an indexer of this devnet needs."""
        return self.registries.chain_config([self.node.url], name=name, **overrides)


@contextlib.asynccontextmanager
async def start_devnet(
    port: int = 0,
    *,
    seed: int = 0,
    chain_id: int = DEVNET_CHAIN_ID,
    block_time: float | None = None,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    accounts: int = 10,
    clients: int = 0,
    empty_blocks: int = 0,
    anvil_args: Sequence[str] = (),
) -> AsyncIterator[Devnet]:
    """anvil on 127.0.0.1:`port` (0: free) with the registries deployed; stopped on exit.
    `empty_blocks` are mined before the deployment, so that the registries start at a later
    block, as on a real chain. The generator's activity is the same for the same `seed`;
    `clients` more addresses than the `accounts` give feedback. `anvil_args`: more of anvil's
    options."""
    async with (
        start_anvil(
            port,
            chain_id=chain_id,
            block_time=block_time,
            gas_limit=gas_limit,
            accounts=accounts,
            extra_args=anvil_args,
        ) as node,
        node.rpc() as rpc,
    ):
        if empty_blocks:
            await rpc.call("anvil_mine", [hex(empty_blocks)])
        registries = await deploy_registries(rpc)
        activity = ActivityGenerator(rpc, registries, seed=seed, clients=clients)
        await activity.setup()
        yield Devnet(node, rpc, registries, activity)
