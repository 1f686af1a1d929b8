"""The first block to index on a chain configured with `start_block = "auto"`.

That is the block that deployed the first of the chain's registries: none of their events
can come before it. A contract has code from the block that created it on, so eth_getCode at
a block tells on which side of the deployment the block lies, and a binary search between
block 0 and the head finds the deployment in about log2(head) calls (25 on Ethereum mainnet).

Each registry's block comes from, in this order: the blocks known in advance (`deployed` in
`chain/deployments.toml`), those this database's indexer found before (`registry_deployments`,
by chain and address), or a search, whose result is remembered at once. A registry without
code at the head (not deployed on this chain, as the mainnets' validation registry for now)
is left out: should it be deployed later, its events come after the others' start. When
none has code, the chain or its addresses are wrong: an error names them. Once some blocks
are known, only a deployment before them can move the start: a registry without code at the
block before them is settled by that one question (not remembered: its exact block does not
matter), and one with code there is searched among the blocks before.

Only archive nodes keep the state of old blocks. An endpoint without it hands the question
to the others (`RpcClient.get_code`); when none keeps it, the search stops with an error
saying to set `start_block` for the chain, since asking again would not help.

The indexer searches only for a chain without a checkpoint: a resumed chain goes on from it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import psycopg
import structlog

from erc8004_backend.chain.config import ChainConfig, known_deployment_block
from erc8004_backend.chain.rpc import RpcClient, StateUnavailableError
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.indexer.store import EventStore

log = structlog.get_logger(__name__)

HasCode = Callable[[int], Awaitable[bool]]


class StartBlockError(Erc8004Error):
    """The block that deployed a chain's registries cannot be found: the chain needs an
    explicit start_block."""


class RegistriesNotDeployedError(StartBlockError):
    """None of the chain's registries has code at the head."""


async def first_block_with_code(has_code: HasCode, head: int) -> int | None:
    """The first block in [0, head] for which `has_code` holds; None when it does not hold at
    the head. `has_code` must be false before some block and true from it on, as a contract's
    code is from its deployment; it is asked at most 1 + ceil(log2(head + 1)) times."""
    if not await has_code(head):
        return None
    low, high = 0, head  # has_code(high) holds, and it holds for no block below low
    while low < high:
        middle = (low + high) // 2
        if await has_code(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _describe(chain: ChainConfig) -> str:
    return f"{chain.name} (chain {chain.chain_id})"


async def remembered_start_block(
    chain: ChainConfig, conn: psycopg.AsyncConnection, store: EventStore
) -> int | None:
    """Without a request: the lowest block known or found before for the chain's registries
    (None when there is none)."""
    found = await store.deployment_blocks(conn)
    blocks = [_known_or_found(chain, address, found) for address in chain.registry_addresses]
    return min((block for block in blocks if block is not None), default=None)


def _known_or_found(chain: ChainConfig, address: str, found: dict[str, int]) -> int | None:
    known = known_deployment_block(chain.chain_id, address)
    return known if known is not None else found.get(address)


async def find_start_block(
    chain: ChainConfig,
    conn: psycopg.AsyncConnection,
    rpc: RpcClient,
    store: EventStore,
    head: int,
) -> int:
    """The lowest deployment block of the chain's registries that have code at `head`;
    searched for the ones neither known nor found before, and remembered."""
    started = time.perf_counter()
    found = await store.deployment_blocks(conn)
    deployments: dict[str, int] = {}  # registry name -> block
    to_search: list[tuple[str, str]] = []  # (name, address)
    for address, name in chain.registry_addresses.items():
        block = _known_or_found(chain, address, found)
        if block is None:
            to_search.append((name, address))
        else:
            deployments[name] = block
    not_deployed: list[str] = []
    calls = 0
    if to_search:
        log.info("indexer.start_block_search", chain=chain.name, chain_id=chain.chain_id,
                 head=head, registries=[name for name, _ in to_search])  # fmt: skip
    for name, address in to_search:

        async def has_code(block: int, address: str = address, name: str = name) -> bool:
            nonlocal calls
            calls += 1
            # At the head, "latest": an endpoint a block behind the one that told the head
            # still answers it (and code deployed since makes the search end at the head).
            try:
                code = await rpc.get_code(address, "latest" if block == head else block)
            except StateUnavailableError as error:
                raise _no_archive(chain, name, address, block, error, deployments) from error
            return code not in ("0x", "0x0")

        # With the others' blocks known, only a deployment before them can change the start:
        # one question settles most cases (the mainnets' validation registry, deployed after
        # the others, needs no archive node), and a search covers only the blocks before.
        bound = min(deployments.values(), default=head + 1) - 1
        if bound < head:
            if not await has_code(head):
                not_deployed.append(name)
                continue
            try:
                earlier = bound >= 0 and await has_code(bound)
            except StartBlockError as error:
                log.warning("indexer.start_block_assumed", chain=chain.name, registry=name,
                            address=address, start_block=bound + 1, reason=str(error))  # fmt: skip
                continue
            if not earlier:
                continue  # deployed at or after the others' start: it does not move it
        block = await first_block_with_code(has_code, min(bound, head))
        if block is None:
            not_deployed.append(name)
            continue
        deployments[name] = block
        await store.remember_deployment(conn, address, block)
    if not deployments:
        listed = ", ".join(
            f"{address} ({name})" for address, name in chain.registry_addresses.items()
        )
        raise RegistriesNotDeployedError(
            f"none of the registries of {_describe(chain)} has code at block {head}: {listed}."
            " Check the chain's addresses and rpc_urls, or set start_block for the chain"
        )
    start = min(deployments.values())
    log.info(
        "indexer.start_block_found",
        chain=chain.name,
        chain_id=chain.chain_id,
        start_block=start,
        deployments=deployments,
        not_deployed=not_deployed,
        calls=calls,
        seconds=round(time.perf_counter() - started, 3),
    )
    return start


def _no_archive(
    chain: ChainConfig,
    name: str,
    address: str,
    block: int,
    error: StateUnavailableError,
    deployments: dict[str, int],
) -> StartBlockError:
    so_far = "".join(
        f"; the {other} registry was deployed at block {found}"
        for other, found in deployments.items()
    )
    return StartBlockError(
        f"{_describe(chain)}: finding the block that deployed the {name} registry ({address})"
        f" needs the state of block {block}, which no endpoint of the chain keeps"
        f" ({error.rpc_message}): they are not archive nodes. Add an archive node to its"
        f" rpc_urls, or set start_block for the chain in the chains file (the block of the"
        f" registries' deployment, from a block explorer){so_far}"
    )
