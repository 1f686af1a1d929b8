"""Which chains to index: the shipped defaults, overridden by TOML files.

A chains file is a table per chain, keyed by a short name::

    [chains.base-sepolia]
    enabled = true
    rpc_urls = ["https://my-node.example/base-sepolia"]

Keys left out keep the default's value, so enabling a shipped chain is one line. The real
deployments ship disabled (their public endpoints are rate limited and the user must opt in);
`devnet` ships enabled with the addresses `erc8004 devnet` deploys to, and the file that
command writes (`<data dir>/devnet.toml`) is read after the defaults.

`start_block` is where a chain's backfill begins: a block number, or "auto" (the default),
the block that deployed the chain's registries, which the indexer finds itself the first
time it indexes the chain (see `erc8004_backend.indexer.start_block`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from erc8004_backend.errors import Erc8004Error

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    chain_id: int = Field(gt=0)
    enabled: bool = False
    rpc_urls: list[str] = Field(min_length=1)
    identity: str = Field(pattern=ADDRESS_PATTERN)
    reputation: str = Field(pattern=ADDRESS_PATTERN)
    validation: str = Field(pattern=ADDRESS_PATTERN)
    # The first block to index: a number, or "auto" for the block that deployed the first of
    # the registries (known, remembered, or found by the indexer). Only read while the chain
    # has no checkpoint: a resumed chain continues from its checkpoint.
    start_block: int | Literal["auto"] = "auto"
    confirmations: int = Field(default=2, ge=0, le=1024)
    poll_interval: float = Field(default=2.0, gt=0)
    max_block_range: int = Field(default=10_000, ge=1)
    # How many recent block hashes to keep for reorg detection; a reorg deeper than this
    # cannot be repaired automatically.
    reorg_window: int = Field(default=128, ge=1)
    rpc_timeout: float = Field(default=30.0, gt=0)
    # A local chain that may start again from nothing (a devnet): when it no longer has the
    # blocks indexed, its events are forgotten and it is indexed afresh, instead of stopping
    # for an operator as a reorg deeper than the window does.
    restartable: bool = False

    @model_validator(mode="after")
    def _window_covers_confirmations(self) -> ChainConfig:
        # Blocks below the window are treated as final; unconfirmed ones must stay checkable.
        if self.reorg_window < self.confirmations:
            raise ValueError("reorg_window must be at least confirmations")
        return self

    @field_validator("start_block", mode="before")
    @classmethod
    def _block_or_auto(cls, value: Any) -> Any:
        # One message instead of pydantic's one per member of the union.
        if value == "auto" or (type(value) is int and value >= 0):
            return value
        raise ValueError(f'start_block must be a block number (0 or more) or "auto", not {value!r}')

    @field_validator("identity", "reputation", "validation")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()

    @property
    def registry_addresses(self) -> dict[str, str]:
        """Address -> registry name, lowercase, as logs name them."""
        return {
            self.identity: "identity",
            self.reputation: "reputation",
            self.validation: "validation",
        }


MAINNET = {
    "identity": "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432",
    "reputation": "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63",
    "validation": "0x8004Cc8439f36fd5F9F049D9fF86523Df6dAAB58",
}
TESTNET = {
    "identity": "0x8004A818BFB912233c491871b3d84c89A494BD9e",
    "reputation": "0x8004B663056A597Dffe9eCcC1965A193B7388713",
    "validation": "0x8004Cb1BF31DAf7788923b405b754f57acEB4272",
}
# What anvil's first account deploys with nonces 0, 1 and 2 (`erc8004 devnet` deploys in
# this order), so the devnet works without any file.
DEVNET = {
    "identity": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "reputation": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "validation": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
}
DEVNET_CHAIN_ID = 31337
DEVNET_RPC_URL = "http://127.0.0.1:8545"

_DEFAULTS: list[dict[str, Any]] = [
    {
        "name": "ethereum",
        "chain_id": 1,
        "confirmations": 12,
        "max_block_range": 2_000,
        "rpc_urls": ["https://ethereum-rpc.publicnode.com", "https://eth.llamarpc.com"],
        **MAINNET,
    },
    {
        "name": "base",
        "chain_id": 8453,
        "confirmations": 10,
        "max_block_range": 2_000,
        "rpc_urls": ["https://mainnet.base.org", "https://base-rpc.publicnode.com"],
        **MAINNET,
    },
    {
        "name": "arbitrum",
        "chain_id": 42161,
        "confirmations": 20,
        "max_block_range": 2_000,
        "rpc_urls": ["https://arb1.arbitrum.io/rpc"],
        **MAINNET,
    },
    {
        "name": "optimism",
        "chain_id": 10,
        "confirmations": 10,
        "max_block_range": 2_000,
        "rpc_urls": ["https://mainnet.optimism.io"],
        **MAINNET,
    },
    {
        "name": "polygon",
        "chain_id": 137,
        "confirmations": 32,
        "max_block_range": 2_000,
        "rpc_urls": ["https://polygon-rpc.com"],
        **MAINNET,
    },
    {
        "name": "sepolia",
        "chain_id": 11155111,
        "confirmations": 3,
        "max_block_range": 2_000,
        "rpc_urls": ["https://ethereum-sepolia-rpc.publicnode.com", "https://rpc.sepolia.org"],
        **TESTNET,
    },
    {
        "name": "base-sepolia",
        "chain_id": 84532,
        "confirmations": 3,
        "max_block_range": 2_000,
        "rpc_urls": ["https://sepolia.base.org", "https://base-sepolia-rpc.publicnode.com"],
        **TESTNET,
    },
    {
        "name": "linea-sepolia",
        "chain_id": 59141,
        "confirmations": 3,
        "max_block_range": 2_000,
        "rpc_urls": ["https://rpc.sepolia.linea.build"],
        **TESTNET,
    },
    {
        "name": "polygon-amoy",
        "chain_id": 80002,
        "confirmations": 3,
        "max_block_range": 2_000,
        "rpc_urls": ["https://rpc-amoy.polygon.technology"],
        **TESTNET,
    },
    {
        "name": "devnet",
        "chain_id": DEVNET_CHAIN_ID,
        "enabled": True,
        "confirmations": 0,
        "poll_interval": 0.5,
        "max_block_range": 100_000,
        "restartable": True,
        "rpc_urls": [DEVNET_RPC_URL],
        **DEVNET,
    },
]


class ChainConfigError(Erc8004Error):
    """A chains file is malformed or names an unknown chain."""


def default_chains() -> dict[str, dict[str, Any]]:
    return {entry["name"]: dict(entry) for entry in _DEFAULTS}


def load_chains(paths: Iterable[Path]) -> dict[str, ChainConfig]:
    """The default chains, each overridden key by key by the files that exist, in order."""
    merged = default_chains()
    for path in paths:
        if not path.exists():
            continue
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ChainConfigError(f"cannot read chains file {path}: {error}") from error
        tables = document.get("chains", {})
        if not isinstance(tables, dict):
            raise ChainConfigError(f"{path}: [chains] must be a table of chains")
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ChainConfigError(f"{path}: chains.{name} must be a table")
            merged[name] = {**merged.get(name, {}), **table, "name": name}
    chains: dict[str, ChainConfig] = {}
    for name, fields in merged.items():
        try:
            chains[name] = ChainConfig(**fields)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'chain'}: {e['msg']}"
                for e in error.errors()
            )
            raise ChainConfigError(f"chain {name!r} is misconfigured: {problems}") from error
    ids = [chain.chain_id for chain in chains.values()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ChainConfigError(f"several chains share chain id {duplicates[0]}")
    return chains


def select_chains(chains: dict[str, ChainConfig], wanted: Sequence[str]) -> list[ChainConfig]:
    """Chains named by name or id; with none named, every enabled chain."""
    if not wanted:
        return [chain for chain in chains.values() if chain.enabled]
    selected = []
    for key in wanted:
        match = chains.get(key) or next(
            (c for c in chains.values() if str(c.chain_id) == key), None
        )
        if match is None:
            known = ", ".join(sorted(chains))
            raise ChainConfigError(f"unknown chain {key!r} (known: {known})")
        selected.append(match)
    return selected


def render_chain_table(chain: ChainConfig) -> str:
    """One chain as a TOML table, for files that commands write (devnet)."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, str):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(item, list):
            return "[" + ", ".join(value(i) for i in item) + "]"
        return repr(item)

    fields = chain.model_dump(exclude={"name"})
    lines = [f"[chains.{chain.name}]"] + [f"{key} = {value(v)}" for key, v in fields.items()]
    return "\n".join(lines) + "\n"
