"""Chains files: defaults, key-by-key overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from erc8004_backend.chain.config import (
    DEVNET,
    ChainConfigError,
    load_chains,
    render_chain_table,
    select_chains,
)
from erc8004_backend.chain.deployments import known_deployment_block


def test_defaults_ship_the_real_deployments_disabled_and_the_devnet_enabled() -> None:
    chains = load_chains([])
    assert [c.name for c in select_chains(chains, [])] == ["devnet"]
    assert chains["base-sepolia"].chain_id == 84532
    assert chains["base-sepolia"].identity == "0x8004a818bfb912233c491871b3d84c89a494bd9e"
    assert chains["ethereum"].reputation == "0x8004baa17c55a88189ae136b182e5fda19de9b63"
    assert chains["devnet"].identity == DEVNET["identity"].lower()
    assert chains["devnet"].registry_addresses[chains["devnet"].validation] == "validation"


def test_a_file_overrides_key_by_key_and_adds_chains(tmp_path: Path) -> None:
    path = tmp_path / "chains.toml"
    path.write_text(
        '[chains.base-sepolia]\nenabled = true\nrpc_urls = ["http://node.internal:8545"]\n'
        '[chains.mine]\nchain_id = 999\nrpc_urls = ["http://127.0.0.1:9"]\n'
        f'identity = "{DEVNET["identity"]}"\nreputation = "{DEVNET["reputation"]}"\n'
        f'validation = "{DEVNET["validation"]}"\n'
    )
    chains = load_chains([tmp_path / "missing.toml", path])
    assert chains["base-sepolia"].enabled
    assert chains["base-sepolia"].rpc_urls == ["http://node.internal:8545"]
    assert chains["base-sepolia"].confirmations == 3  # kept from the default
    assert {c.name for c in select_chains(chains, [])} == {"devnet", "base-sepolia"}
    assert select_chains(chains, ["999"])[0].name == "mine"


def test_written_tables_read_back_the_same(tmp_path: Path) -> None:
    chain = load_chains([])["polygon-amoy"]
    path = tmp_path / "chains.toml"
    path.write_text(render_chain_table(chain))
    assert load_chains([path])["polygon-amoy"] == chain


START_BLOCK_MESSAGE = 'start_block must be a block number (0 or more) or "auto", '


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[chains.devnet]\nconfirmations = -1\n", "chain 'devnet' is misconfigured: confirmations"),
        ('[chains.devnet]\nidentity = "0x12"\n', "identity: String should match pattern"),
        ('[chains.devnet]\ncolour = "blue"\n', "colour: Extra inputs are not permitted"),
        ("[chains.devnet]\nconfirmations = 200\n", "reorg_window must be at least confirmations"),
        ("[chains.devnet]\nstart_block = -1\n", START_BLOCK_MESSAGE + "not -1"),
        ('[chains.devnet]\nstart_block = "soon"\n', START_BLOCK_MESSAGE + "not 'soon'"),
        ("[chains.devnet]\nstart_block = true\n", START_BLOCK_MESSAGE + "not True"),
        ("[chains.base]\nchain_id = 31337\n", "several chains share chain id 31337"),
        ("[chains.devnet\n", "cannot read chains file"),
        ("chains = 3\n", "[chains] must be a table"),
    ],
)
def test_bad_files_are_refused_with_a_message_naming_the_problem(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "chains.toml"
    path.write_text(toml)
    with pytest.raises(ChainConfigError) as caught:
        load_chains([path])
    assert message in str(caught.value)


def test_shipped_chains_start_at_their_registries_deployment_unless_a_block_is_given(
    tmp_path: Path,
) -> None:
    chains = load_chains([])
    # A backfill from genesis through public endpoints would take days: by default the
    # indexer finds the block that deployed the registries.
    assert {chain.start_block for chain in chains.values()} == {"auto"}
    path = tmp_path / "chains.toml"
    path.write_text('[chains.base-sepolia]\nstart_block = 37000000\n'
                    '[chains.sepolia]\nstart_block = "auto"\n')  # fmt: skip
    chains = load_chains([path])
    assert chains["base-sepolia"].start_block == 37_000_000
    assert chains["sepolia"].start_block == "auto"
    assert load_chains([path]) == chains
    path.write_text(render_chain_table(chains["sepolia"]))
    assert 'start_block = "auto"' in path.read_text()
    assert load_chains([path])["sepolia"] == chains["sepolia"]


def test_known_deployment_blocks_are_those_of_the_shipped_addresses() -> None:
    chains = load_chains([])
    ethereum, sepolia = chains["ethereum"], chains["sepolia"]
    assert known_deployment_block(1, ethereum.identity) == 24_339_924
    assert known_deployment_block(1, ethereum.reputation) == 24_339_924
    assert known_deployment_block(11155111, sepolia.identity) == 9_980_000
    assert known_deployment_block(11155111, sepolia.reputation) == 10_107_135
    # By chain and address: the same address elsewhere, or another address, is not known.
    assert known_deployment_block(84532, sepolia.identity) is None
    assert known_deployment_block(1, ethereum.identity.upper().replace("0X", "0x")) == 24_339_924
    assert known_deployment_block(1, "0x" + "00" * 20) is None


def test_an_unknown_chain_is_named_with_the_known_ones() -> None:
    with pytest.raises(ChainConfigError, match=r"unknown chain 'moon' \(known: arbitrum, base"):
        select_chains(load_chains([]), ["moon"])
