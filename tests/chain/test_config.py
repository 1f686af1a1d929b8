"""Chains files: defaults, key-by-key overrides, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from erc8004_backend.chain.config import (
    DEVNET,
    DEVNET_CHAIN_ID,
    ChainConfig,
    ChainConfigError,
    explorer_urls,
    known_deployment_block,
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


# The published deployments (the project's design, from the ERC-8004 deployment list).
MAINNET_IDS = {
    1, 8453, 42161, 10, 137, 43114, 56, 143, 534352, 100, 42220, 167000, 59144, 4326, 196, 2741,
    5000, 1868, 2345, 1088, 295, 1187947933, 360,
}  # fmt: skip
TESTNET_IDS = {
    11155111, 84532, 421614, 11155420, 80002, 43113, 97, 10143, 534351, 10200, 11142220, 167013,
    6343, 59141, 1952, 11124, 5003, 1946, 48816, 59902, 296, 324705682, 5042002, 11011,
}  # fmt: skip
MAINNET = ("0x8004a169fb4a3325136eb29fa0ceb6d2e539a432", "0x8004baa17c55a88189ae136b182e5fda19de9b63",
           "0x8004cc8439f36fd5f9f049d9ff86523df6daab58")  # fmt: skip
TESTNET = ("0x8004a818bfb912233c491871b3d84c89a494bd9e", "0x8004b663056a597dffe9eccc1965a193b7388713",
           "0x8004cb1bf31daf7788923b405b754f57aceb4272")  # fmt: skip


def test_every_published_deployment_ships_disabled_with_its_registries_and_explorer() -> None:
    chains = load_chains([])
    published = [chain for chain in chains.values() if chain.name != "devnet"]
    assert len(published) == len(MAINNET_IDS) + len(TESTNET_IDS) == 47
    assert {chain.chain_id for chain in published} == MAINNET_IDS | TESTNET_IDS
    assert not any(chain.enabled for chain in published)
    for chain in published:
        addresses = (chain.identity, chain.reputation, chain.validation)
        assert addresses == (MAINNET if chain.chain_id in MAINNET_IDS else TESTNET), chain.name
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", chain.name), chain.name
        assert chain.explorer_url, chain.name
        assert re.fullmatch(r"https://[^/?#]+(/[^?#]*[^/])?", chain.explorer_url), chain.name
        assert all(url.startswith("https://") for url in chain.rpc_urls), chain.name
        assert 1 <= chain.confirmations <= 32, chain.name
    # The names chains files already use keep working.
    shipped_before = {"ethereum": 1, "base": 8453, "arbitrum": 42161, "optimism": 10,
                      "polygon": 137, "sepolia": 11155111, "base-sepolia": 84532,
                      "linea-sepolia": 59141, "polygon-amoy": 80002}  # fmt: skip
    assert {name: chains[name].chain_id for name in shipped_before} == shipped_before
    assert chains["polygon"].confirmations > chains["base"].confirmations
    assert chains["ethereum"].explorer_url == "https://etherscan.io"
    assert chains["devnet"].explorer_url is None


@pytest.mark.parametrize(
    ("given", "stored"),
    [("https://explorer.example", "https://explorer.example"),
     ("https://explorer.example/", "https://explorer.example"),
     ("https://hashscan.io/mainnet/", "https://hashscan.io/mainnet")],
)  # fmt: skip
def test_an_explorer_url_is_kept_without_its_trailing_slash(
    tmp_path: Path, given: str, stored: str
) -> None:
    path = write(tmp_path, "chains.toml", f'[chains.devnet]\nexplorer_url = "{given}"\n')
    assert load_chains([path])["devnet"].explorer_url == stored


def test_explorers_by_chain_id_for_links_in_messages(tmp_path: Path) -> None:
    chains = load_chains([])
    explorers = explorer_urls(chains.values())
    assert explorers[8453] == "https://basescan.org"
    assert explorers[84532] == "https://sepolia.basescan.org"
    assert DEVNET_CHAIN_ID not in explorers  # the devnet has none
    assert len(explorers) == 47
    # Chains that share an id are one chain: the enabled one's explorer, else the first's.
    path = write(tmp_path, "chains.toml",
                 '[chains.devnet]\nenabled = false\nexplorer_url = "https://devnet.example"\n'
                 '[chains.local]\nchain_id = 31337\nenabled = true\nrpc_urls = ["http://h:1"]\n'
                 f'identity = "{DEVNET["identity"]}"\nreputation = "{DEVNET["reputation"]}"\n'
                 f'validation = "{DEVNET["validation"]}"\nexplorer_url = "https://local.example"\n')  # fmt: skip
    assert explorer_urls(load_chains([path]).values())[DEVNET_CHAIN_ID] == "https://local.example"


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


@pytest.mark.parametrize("name", ["polygon-amoy", "devnet"])  # with and without an explorer
def test_written_tables_read_back_the_same(tmp_path: Path, name: str) -> None:
    chain = load_chains([])[name]
    path = tmp_path / "chains.toml"
    path.write_text(render_chain_table(chain))
    assert load_chains([path])[name] == chain


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
        (
            "[chains.base]\nenabled = true\n[chains.ethereum]\nenabled = true\nchain_id = 8453\n",
            "enabled chains base and ethereum share chain id 8453",
        ),
        (
            '[chains.devnet]\nexplorer_url = "http://explorer.example"\n',
            "explorer_url: Value error, must be an https URL",
        ),
        (
            '[chains.devnet]\nexplorer_url = "https://explorer.example/?q=1"\n',
            "explorer_url: Value error, must be an https URL",
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
    with pytest.raises(
        ChainConfigError, match=r"unknown chain 'moon' \(known: abstract, abstract-"
    ):
        select_chains(load_chains([]), ["moon"])
