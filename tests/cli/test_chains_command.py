"""Which chains the commands index, as a person configures them: chains files named by
option or environment, the devnet beside real chains, and `erc8004 chains`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from erc8004_backend.cli.chains import hide_keys
from erc8004_backend.cli.indexer import configured_chains
from tests.cli.test_db_commands import assert_one_line_error
from tests.conftest import ROOT

# Never reached: the commands must stop at their chains files, before the database.
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"


def erc8004(*args: str, cwd: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A command run from `cwd` (where ./chains.toml is looked for), with its own data
    directory (where devnet.toml is) and nothing from this environment's chains settings."""
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "ERC8004_CHAINS_FILE", "ERC8004_DATA_DIR"}}  # fmt: skip
    clean.update(PYTHONPATH=str(ROOT), ERC8004_DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "erc8004_backend", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("command", ["run", "indexer", "worker"])
def test_a_missing_chains_file_named_by_the_environment_is_an_error(
    tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "nope.toml"
    result = erc8004(command, cwd=tmp_path, data_dir=tmp_path / "data",
                     ERC8004_CHAINS_FILE=str(missing), DATABASE_URL=UNREACHABLE)  # fmt: skip
    assert result.returncode == 1
    assert_one_line_error(result, f"chains file {missing} (ERC8004_CHAINS_FILE) does not exist")


def test_a_missing_chains_file_named_by_the_option_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = erc8004("run", "--chains-file", str(missing), cwd=tmp_path, data_dir=tmp_path)
    assert result.returncode == 1
    assert_one_line_error(result, f"chains file {missing} does not exist")


def test_run_indexes_the_enabled_chain_without_the_devnet(tmp_path: Path) -> None:
    """What `erc8004 run` and `erc8004 indexer` index with a chains file that enables one
    real chain: that chain, not the devnet beside it."""
    path = tmp_path / "chains.toml"
    path.write_text("[chains.base-sepolia]\nenabled = true\n")
    assert [chain.name for chain in configured_chains(None, [path])] == ["base-sepolia"]
    assert [chain.name for chain in configured_chains(["devnet"], [path])] == ["devnet"]


# -- erc8004 chains ----------------------------------------------------------------------

INFURA_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"
ALCHEMY_KEY = "Ktq1kR7mFZ2X-aQ_3mxfXlJEmZLL4Aa9"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://sepolia.base.org", "https://sepolia.base.org"),
        (f"https://mainnet.infura.io/v3/{INFURA_KEY}", "https://mainnet.infura.io/v3/***"),
        (f"https://base-sepolia.g.alchemy.com/v2/{ALCHEMY_KEY}/",
         "https://base-sepolia.g.alchemy.com/v2/***/"),
        ("https://rpc.ankr.com/eth/" + "ab12" * 16, "https://rpc.ankr.com/eth/***"),
        ("https://x.quiknode.pro/0123456789abcdef0123456789abcdef01234567/",
         "https://x.quiknode.pro/***/"),
        ("https://node.example:8545/rpc?apikey=s3cret&network=base",
         "https://node.example:8545/rpc?apikey=***&network=***"),
        ("https://ada:hunter2@node.example/rpc", "https://ada:***@node.example/rpc"),
        (f"https://{INFURA_KEY}@node.example", "https://***@node.example"),
        ("https://skale-base.skalenodes.com/v1/base", "https://skale-base.skalenodes.com/v1/base"),
        ("https://base-sepolia-testnet.skalenodes.com/v1/jubilant-horrible-ancha",
         "https://base-sepolia-testnet.skalenodes.com/v1/jubilant-horrible-ancha"),
        ("https://api.avax.network/ext/bc/C/rpc", "https://api.avax.network/ext/bc/C/rpc"),
        ("http://[::1]:8545/#" + INFURA_KEY, "http://[::1]:8545/#***"),
        # Shapes that are no plain words: hidden whatever they look like.
        ("https://node.example/v2/YOUR_KEY", "https://node.example/v2/***"),
        ("https://node.example/abc;apikey=0123456789abcdef", "https://node.example/***"),
        ("https://node.example/key=abcdef0123456789abcd", "https://node.example/***"),
        ("https://node.example/sk_live.AbC9xYz123", "https://node.example/***"),
        ("https://abc123def456ghi789.rpc.example.io/", "https://***.rpc.example.io/"),
        ("https://base-mainnet.public.blastapi.io", "https://base-mainnet.public.blastapi.io"),
        ("https://rpc.example/8453", "https://rpc.example/8453"),
    ],
)  # fmt: skip
def test_keys_in_rpc_urls_are_hidden(url: str, shown: str) -> None:
    assert hide_keys(url) == shown


def test_chains_lists_every_known_chain_with_keys_hidden(tmp_path: Path) -> None:
    (tmp_path / "chains.toml").write_text(
        "[chains.base-sepolia]\nenabled = true\nrpc_urls = ["
        f'"https://base-sepolia.g.alchemy.com/v2/{ALCHEMY_KEY}", "https://sepolia.base.org"]\n'
        f'[chains.sepolia]\nrpc_urls = ["https://ada:hunter2@node.example/rpc?key={INFURA_KEY}"]\n'
    )
    result = erc8004("chains", cwd=tmp_path, data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert ALCHEMY_KEY not in result.stdout
    assert INFURA_KEY not in result.stdout
    assert "hunter2" not in result.stdout
    rows = table(result.stdout)
    assert rows[0] == ["NAME", "CHAIN ID", "ENABLED", "START BLOCK", "RPC URLS"]
    chains = {row[0]: row for row in rows[1:]}
    assert len(chains) >= 48  # the 47 published deployments and the devnet
    assert chains["base-sepolia"][1:] == [
        "84532", "yes", "auto",
        "https://base-sepolia.g.alchemy.com/v2/***, https://sepolia.base.org",
    ]  # fmt: skip
    assert chains["sepolia"][1:] == [
        "11155111", "no", "auto", "https://ada:***@node.example/rpc?key=***"
    ]  # fmt: skip
    assert chains["devnet"][1:3] == ["31337", "no"]  # beside an enabled chain
    assert chains["hedera-testnet"][1:3] == ["296", "no"]
    assert [name for name, row in chains.items() if row[2] == "yes"] == ["base-sepolia"]
    assert result.stdout.splitlines()[-1] == f"{len(chains)} chains, 1 enabled"


def test_chains_shows_the_devnet_enabled_alone_or_while_erc8004_devnet_runs(
    tmp_path: Path,
) -> None:
    alone = table(erc8004("chains", cwd=tmp_path, data_dir=tmp_path / "data").stdout)
    assert [row[0] for row in alone if row[2] == "yes"] == ["devnet"]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "devnet.toml").write_text(  # as `erc8004 devnet` writes it
        '[chains.devnet]\nenabled = true\nrpc_urls = ["http://127.0.0.1:8545"]\n'
    )
    (tmp_path / "chains.toml").write_text("[chains.base-sepolia]\nenabled = true\n")
    both = table(erc8004("chains", cwd=tmp_path, data_dir=data_dir).stdout)
    assert sorted(row[0] for row in both if row[2] == "yes") == ["base-sepolia", "devnet"]


def test_chains_names_a_missing_chains_file(tmp_path: Path) -> None:
    result = erc8004("chains", "--chains-file", str(tmp_path / "nope.toml"), cwd=tmp_path,
                     data_dir=tmp_path)  # fmt: skip
    assert_one_line_error(result, f"chains file {tmp_path / 'nope.toml'} does not exist")


def table(stdout: str) -> list[list[str]]:
    """The rows of the output's table (columns are separated by two spaces or more)."""
    lines = [line for line in stdout.splitlines() if line.strip()][:-1]  # without the count
    return [re.split(r"\s{2,}", line.strip()) for line in lines]
