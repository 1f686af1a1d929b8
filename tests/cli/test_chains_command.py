"""Which chains the commands index, as a person configures them: chains files named by
option or environment, the devnet beside real chains, and `erc8004 chains`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from erc8004_backend.cli.indexer import configured_chains
from tests.cli.test_db_commands import assert_one_line_error
from tests.conftest import ROOT


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


@pytest.mark.parametrize("command", ["run", "indexer"])
def test_a_missing_chains_file_named_by_the_environment_is_an_error(
    tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "nope.toml"
    result = erc8004(command, cwd=tmp_path, data_dir=tmp_path / "data",
                     ERC8004_CHAINS_FILE=str(missing))  # fmt: skip
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
