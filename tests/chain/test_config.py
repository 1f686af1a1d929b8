"""Chains files: defaults, key-by-key overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from erc8004_backend.chain.config import (
    DEVNET,
    ChainConfig,
    ChainConfigError,
    load_chains,
    render_chain_table,
    select_chains,
)


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
    assert select_chains(chains, ["999"])[0].name == "mine"


def test_the_devnet_is_not_enabled_beside_another_chain(tmp_path: Path) -> None:
    """The devnet is a stand-in for real chains: enabling one turns it off."""
    path = write(tmp_path, "chains.toml", "[chains.base-sepolia]\nenabled = true\n")
    chains = load_chains([path])
    assert [c.name for c in select_chains(chains, [])] == ["base-sepolia"]
    assert not chains["devnet"].enabled
    assert select_chains(chains, ["devnet"])[0].name == "devnet"  # still there by name


def test_the_devnet_a_file_enables_is_enabled_beside_other_chains(tmp_path: Path) -> None:
    """`erc8004 devnet` writes its table with `enabled = true`; a user may write it too."""
    devnet = load_chains([])["devnet"]
    devnet_file = write(tmp_path, "devnet.toml", render_chain_table(devnet))
    mine = write(tmp_path, "chains.toml", "[chains.base-sepolia]\nenabled = true\n")
    assert names(select_chains(load_chains([devnet_file, mine]), [])) == ["base-sepolia", "devnet"]
    explicit = write(tmp_path, "explicit.toml",
                     "[chains.devnet]\nenabled = true\n[chains.base-sepolia]\nenabled = true\n")  # fmt: skip
    assert names(select_chains(load_chains([explicit]), [])) == ["base-sepolia", "devnet"]


def test_the_devnet_stays_off_when_a_file_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "chains.toml", "[chains.devnet]\nenabled = false\n")
    assert select_chains(load_chains([path]), []) == []


def test_another_chain_may_use_the_devnets_chain_id_while_the_devnet_is_off(
    tmp_path: Path,
) -> None:
    local = (
        '[chains.local]\nchain_id = 31337\nenabled = true\nrpc_urls = ["http://10.0.0.5:8545"]\n'
        f'identity = "{DEVNET["identity"]}"\nreputation = "{DEVNET["reputation"]}"\n'
        f'validation = "{DEVNET["validation"]}"\n'
    )
    chains = load_chains([write(tmp_path, "chains.toml", local)])
    assert names(select_chains(chains, [])) == ["local"]
    assert names(select_chains(chains, ["31337"])) == ["local"]  # the enabled one of the two
    both = write(tmp_path, "both.toml", local + "[chains.devnet]\nenabled = true\n")
    with pytest.raises(ChainConfigError, match="enabled chains devnet and local share chain id"):
        load_chains([both])


def test_a_chain_id_two_disabled_chains_share_must_be_named_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "chains.toml",
                 "[chains.devnet]\nenabled = false\n[chains.base]\nchain_id = 31337\n")  # fmt: skip
    chains = load_chains([path])
    with pytest.raises(ChainConfigError, match="chain id 31337 names several chains"):
        select_chains(chains, ["31337"])
    assert names(select_chains(chains, ["base"])) == ["base"]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def names(chains: list[ChainConfig]) -> list[str]:
    return sorted(chain.name for chain in chains)


def test_written_tables_read_back_the_same(tmp_path: Path) -> None:
    chain = load_chains([])["polygon-amoy"]
    path = tmp_path / "chains.toml"
    path.write_text(render_chain_table(chain))
    assert load_chains([path])["polygon-amoy"] == chain


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[chains.devnet]\nconfirmations = -1\n", "chain 'devnet' is misconfigured: confirmations"),
        ('[chains.devnet]\nidentity = "0x12"\n', "identity: String should match pattern"),
        ('[chains.devnet]\ncolour = "blue"\n', "colour: Extra inputs are not permitted"),
        ("[chains.devnet]\nconfirmations = 200\n", "reorg_window must be at least confirmations"),
        (
            "[chains.base]\nenabled = true\n[chains.ethereum]\nenabled = true\nchain_id = 8453\n",
            "enabled chains base and ethereum share chain id 8453",
        ),
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


def test_an_unknown_chain_is_named_with_the_known_ones() -> None:
    with pytest.raises(ChainConfigError, match=r"unknown chain 'moon' \(known: arbitrum, base"):
        select_chains(load_chains([]), ["moon"])
