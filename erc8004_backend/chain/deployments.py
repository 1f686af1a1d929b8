"""Blocks at which registries are known to have been deployed, by chain id and address.

A chain configured with `start_block = "auto"` starts at the lowest deployment block of its
registries. The indexer takes a registry's block from here first, then from the blocks it
found and remembered itself (`registry_deployments`), and only then searches the chain. A
value here may be a little below the real deployment (a safe start), never above it.

They live in code rather than in a migration's rows so that a value learnt later reaches
every database with the next release, and so that the table holds only what this database's
indexer measured (a restarted devnet forgets those, never these).
"""

from __future__ import annotations

from erc8004_backend.chain.config import MAINNET, TESTNET

ETHEREUM_MAINNET = 1
SEPOLIA = 11_155_111

KNOWN_DEPLOYMENT_BLOCKS: dict[tuple[int, str], int] = {
    (ETHEREUM_MAINNET, MAINNET["identity"].lower()): 24_339_924,
    (ETHEREUM_MAINNET, MAINNET["reputation"].lower()): 24_339_924,
    (SEPOLIA, TESTNET["identity"].lower()): 9_980_000,
    (SEPOLIA, TESTNET["reputation"].lower()): 10_107_135,
}


def known_deployment_block(chain_id: int, address: str) -> int | None:
    return KNOWN_DEPLOYMENT_BLOCKS.get((chain_id, address.lower()))
