"""Which chains to index: the shipped defaults, overridden by TOML files.

The defaults are every published ERC-8004 deployment (deployments.toml, beside this module)
and the local `devnet`.

A chains file is a table per chain, keyed by a short name::

    [chains.base-sepolia]
    enabled = true
    rpc_urls = ["https://my-node.example/base-sepolia"]

Keys left out keep the default's value, so enabling a shipped chain is one line. The real
deployments ship disabled (their public endpoints are rate limited and the user must opt in).
`devnet`, with the addresses `erc8004 devnet` deploys to, is a stand-in for them: it is
enabled while no other chain is, unless a file sets its `enabled` (the file that
`erc8004 devnet` writes, `<data dir>/devnet.toml`, read after the defaults, sets it to true).

`start_block` is where a chain's backfill begins: a block number, or "auto" (the default),
the block that deployed the chain's registries, which the indexer finds itself the first
time it indexes the chain (see `erc8004_backend.indexer.start_block`).
"""

from __future__ import annotations

import copy
import functools
import tomllib
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
    # The block explorer that messages link to (<explorer_url>/tx/<hash>, /block/<number>,
    # /address/<address>):
    # https, kept without a trailing slash. None: the chain has none (the devnet).
    explorer_url: str | None = None

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

    @field_validator("explorer_url")
    @classmethod
    def _explorer_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        base = value.rstrip("/")
        parts = urlsplit(base)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                "must be an https URL without query or fragment, such as https://etherscan.io"
            )
        return base

    @property
    def registry_addresses(self) -> dict[str, str]:
        """Address -> registry name, lowercase, as logs name them."""
        return {
            self.identity: "identity",
            self.reputation: "reputation",
            self.validation: "validation",
        }


# What anvil's first account deploys with nonces 0, 1 and 2 (`erc8004 devnet` deploys in
# this order), so the devnet works without any file.
DEVNET = {
    "identity": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "reputation": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "validation": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
}
DEVNET_CHAIN_ID = 31337
DEVNET_NAME = "devnet"
DEVNET_RPC_URL = "http://127.0.0.1:8545"

_DEVNET_DEFAULT: dict[str, Any] = {
    # Enabled by load_chains while no other chain is, unless a file sets `enabled`.
    "name": DEVNET_NAME,
    "chain_id": DEVNET_CHAIN_ID,
    "confirmations": 0,
    "poll_interval": 0.5,
    "max_block_range": 100_000,
    "restartable": True,
    "rpc_urls": [DEVNET_RPC_URL],
    **DEVNET,
}


@functools.cache
def _published_deployments() -> tuple[tuple[dict[str, Any], ...], dict[tuple[int, str], int]]:
    """deployments.toml (shipped in the package): its chain entries, each with its
    registries' addresses and the file's [defaults] filled in, and the known deployment
    blocks by (chain id, lowercase address)."""
    source = resources.files("erc8004_backend.chain").joinpath("deployments.toml")
    document = tomllib.loads(source.read_text(encoding="utf-8"))
    registries: dict[str, dict[str, str]] = document["registries"]
    entries = []
    deployed: dict[tuple[int, str], int] = {}
    for name, table in document["chains"].items():
        fields = {**document["defaults"], **table}
        addresses = registries[fields.pop("registries")]
        for registry, block in fields.pop("deployed", {}).items():
            deployed[(fields["chain_id"], addresses[registry].lower())] = block
        entries.append({"name": name, **addresses, **fields})
    return tuple(entries), deployed


def known_deployment_block(chain_id: int, address: str) -> int | None:
    """The block at which the registry at `address` is known to have been deployed on the
    chain (deployments.toml's `deployed`), if it is."""
    return _published_deployments()[1].get((chain_id, address.lower()))


class ChainConfigError(Erc8004Error):
    """A chains file is malformed or names an unknown chain."""


def default_chains() -> dict[str, dict[str, Any]]:
    """The published deployments, then the devnet: name -> fields (a fresh copy)."""
    entries = [*_published_deployments()[0], _DEVNET_DEFAULT]
    return {entry["name"]: copy.deepcopy(entry) for entry in entries}


def load_chains(paths: Iterable[Path]) -> dict[str, ChainConfig]:
    """The default chains, each overridden key by key by the files that exist, in order; the
    devnet enabled if a file says so, or else if no other chain is."""
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
    devnet = chains.get(DEVNET_NAME)
    if devnet is not None and "enabled" not in merged[DEVNET_NAME]:
        alone = not any(chain.enabled for chain in chains.values())
        chains[DEVNET_NAME] = devnet.model_copy(update={"enabled": alone})
    enabled = [chain for chain in chains.values() if chain.enabled]
    _refuse_shared_ids(enabled, "enabled chains", "disable all but one")
    return chains


def _refuse_shared_ids(chains: Iterable[ChainConfig], kind: str, remedy: str) -> None:
    """Events, checkpoints and triggers are keyed by chain id: two chains indexed under one
    id would mix their blocks. Chains not indexed may share one (a user's local chain on
    31337 beside the devnet's entry)."""
    by_id: dict[int, list[str]] = {}
    for chain in chains:
        by_id.setdefault(chain.chain_id, []).append(chain.name)
    for chain_id, names in sorted(by_id.items()):
        if len(names) > 1:
            *others, last = sorted(names)
            raise ChainConfigError(
                f"{kind} {', '.join(others)} and {last} share chain id {chain_id}: {remedy}"
            )


def select_chains(chains: dict[str, ChainConfig], wanted: Sequence[str]) -> list[ChainConfig]:
    """Chains named by name or id; with none named, every enabled chain. An id several
    chains have names the enabled one among them."""
    if not wanted:
        return [chain for chain in chains.values() if chain.enabled]
    selected: list[ChainConfig] = []
    for key in wanted:
        match = chains.get(key) or _by_id(chains, key)
        if match is None:
            known = ", ".join(sorted(chains))
            raise ChainConfigError(f"unknown chain {key!r} (known: {known})")
        if match not in selected:
            selected.append(match)
    _refuse_shared_ids(selected, "chains", "index one of them at a time")
    return selected


def _by_id(chains: dict[str, ChainConfig], key: str) -> ChainConfig | None:
    matches = [chain for chain in chains.values() if str(chain.chain_id) == key]
    enabled = [chain for chain in matches if chain.enabled]
    if len(matches) > 1 and len(enabled) != 1:
        names = ", ".join(sorted(chain.name for chain in matches))
        raise ChainConfigError(f"chain id {key} names several chains ({names}): name one")
    return enabled[0] if len(matches) > 1 else next(iter(matches), None)


def explorer_urls(chains: Iterable[ChainConfig]) -> dict[int, str]:
    """Chain id -> block explorer, for links in messages. Chains that share an id are one
    chain reached differently: an enabled one's explorer first, else the first listed."""
    urls: dict[int, str] = {}
    for chain in sorted(chains, key=lambda chain: not chain.enabled):  # stable: keeps order
        if chain.explorer_url:
            urls.setdefault(chain.chain_id, chain.explorer_url)
    return urls


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

    # TOML has no null: a key without a value is left out, which reads back as None.
    fields = chain.model_dump(exclude={"name"}, exclude_none=True)
    lines = [f"[chains.{chain.name}]"] + [f"{key} = {value(v)}" for key, v in fields.items()]
    return "\n".join(lines) + "\n"
