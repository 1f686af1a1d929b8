"""The README's "From the demo to production", its files and commands run as written, as
far as they can run on a test machine (no systemd, no real network)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from erc8004_backend.chain.config import load_chains, select_chains
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from tests.conftest import ROOT

SECTION = "## From the demo to production"
ERC8004 = "/opt/erc8004-backend/.venv/bin/erc8004"

pytestmark = pytest.mark.subprocess


def guide() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme, f"README.md has no section {SECTION!r}"
    return readme.split(SECTION, 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", guide(), re.MULTILINE | re.DOTALL)
    return [text for lang, text in fenced if lang == language]


def erc8004(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "erc8004_backend", *args], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_chains_file_indexes_only_the_network_it_enables_from_its_deployment(
    tmp_path: Path,
) -> None:
    (chains_file,) = blocks("toml")
    path = tmp_path / "chains.toml"
    path.write_text(chains_file, encoding="utf-8")
    enabled = select_chains(load_chains([path]), [])
    assert [chain.name for chain in enabled] == ["base-sepolia"]  # the devnet steps aside
    (chain,) = enabled
    assert chain.start_block == "auto"
    assert chain.rpc_urls[0].endswith("/v2/YOUR_KEY")

    # `erc8004 chains` as the guide runs it, with a key as Alchemy gives them: it never shows.
    key = "Zx81kQ3vT0pLm5nR7sW2yB4cD6eF9gH1"
    path.write_text(chains_file.replace("YOUR_KEY", key), encoding="utf-8")
    env = {**os.environ, "ERC8004_CHAINS_FILE": str(path), "ERC8004_DATA_DIR": str(tmp_path)}
    listed = erc8004("chains", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "base-sepolia" in listed.stdout
    assert key not in listed.stdout + listed.stderr


def test_the_key_commands_make_settings_the_processes_accept(tmp_path: Path) -> None:
    (script,) = [b for b in blocks("bash") if "ERC8004_TOKEN_KEYS" in b]
    env_file = tmp_path / "env"
    completed = subprocess.run(
        ["bash", "-euc", script.replace("/etc/erc8004/env", str(env_file))],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert env_file.stat().st_mode & 0o077 == 0, "the key file is readable by others"
    values = dict(
        line.split("=", 1) for line in env_file.read_text(encoding="utf-8").splitlines() if line
    )
    assert set(values) == {
        "ERC8004_TOKEN_KEYS", "ERC8004_JWT_SECRET", "DATABASE_URL", "ERC8004_CHAINS_FILE",
        "ERC8004_INSTANCE_NAME", "ERC8004_TRUSTED_PROXIES",
    }  # fmt: skip
    settings = Settings(
        token_keys=values["ERC8004_TOKEN_KEYS"],
        jwt_secret=values["ERC8004_JWT_SECRET"],  # type: ignore[arg-type]
        instance_name=values["ERC8004_INSTANCE_NAME"],
        database_url=values["DATABASE_URL"],
        trusted_proxies=values["ERC8004_TRUSTED_PROXIES"],
    )
    assert settings.trusted_proxies == "127.0.0.1"  # the proxy on this machine
    assert not settings.uses_development_key
    box = SecretBox.from_spec(settings.token_keys)
    assert box.open(box.seal("token", "context"), "context") == "token"


def test_every_unit_runs_an_erc8004_command_that_exists() -> None:
    units = blocks("ini")
    assert len(units) == 4, "one unit per part: indexer, processor, worker, api"
    full = units[0]
    for line in ("[Service]", "EnvironmentFile=/etc/erc8004/env",
                 "WorkingDirectory=/opt/erc8004-backend", "Restart=always"):  # fmt: skip
        assert line in full
    commands = [re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE) for unit in units]
    parts = []
    for command in commands:
        assert command, "a unit without ExecStart"
        program, *args = command.group(1).split()
        assert program == ERC8004
        parts.append(args[0])
        # The command and its options parse: --help after them exits 0.
        shown = erc8004(*args, "--help", env=dict(os.environ))
        assert shown.returncode == 0, f"{command.group(1)}: {shown.stderr}"
    assert parts == ["indexer", "processor", "worker", "api"]
    assert "erc8004-indexer erc8004-processor erc8004-worker erc8004-api" in guide()
