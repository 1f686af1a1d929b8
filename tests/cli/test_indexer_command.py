"""`erc8004 indexer` as a person runs it: one line per problem, structured logs without a TTY."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import psycopg

from erc8004_backend.chain.config import render_chain_table
from erc8004_backend.devnet import Devnet
from tests.cli.test_db_commands import erc8004
from tests.conftest import ROOT
from tests.support.flaky_rpc import FlakyRpcServer, Hang, static_handler


def test_an_unknown_chain_is_one_clear_line(migrated_url: str, tmp_path: Path) -> None:
    result = erc8004("indexer", "--chain", "moon", "--chains-file", str(write(tmp_path, "")),
                     database_url=migrated_url)  # fmt: skip
    assert result.returncode == 1
    assert "unknown chain 'moon'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_chains_file_is_named(migrated_url: str, tmp_path: Path) -> None:
    result = erc8004("indexer", "--chains-file", str(tmp_path / "nope.toml"),
                     database_url=migrated_url)  # fmt: skip
    assert result.returncode == 1
    assert f"chains file {tmp_path / 'nope.toml'} does not exist" in result.stderr


def test_an_unmigrated_database_is_refused(database_url: str, tmp_path: Path) -> None:
    chains = write(tmp_path, '[chains.devnet]\nrpc_urls = ["http://127.0.0.1:9"]\n')
    result = erc8004("indexer", "--once", "--chains-file", str(chains), database_url=database_url)
    assert result.returncode == 1
    assert "run `erc8004 db migrate run` first" in result.stderr
    assert "Traceback" not in result.stderr


async def test_once_indexes_the_devnet_and_logs_json_lines(
    devnet: Devnet, migrated_url: str, tmp_path: Path
) -> None:
    report = await devnet.activity.run(events=120)
    chains = write(tmp_path, render_chain_table(devnet.chain_config()))
    result = erc8004("indexer", "--once", "--chains-file", str(chains), database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "indexer.start" and e["chain"] == "devnet" for e in lines)
    assert any(e["event"] == "indexer.progress" and e["caught_up"] for e in lines)
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (report.events,)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chains.toml"
    path.write_text(text)
    return path


async def test_ctrl_c_stops_at_once_even_while_a_node_hangs(
    migrated_url: str, tmp_path: Path
) -> None:
    async with FlakyRpcServer(static_handler({"eth_chainId": hex(31337)})) as node:
        node.fail_always(Hang(60), method="eth_blockNumber")
        chains = write(tmp_path, f'[chains.devnet]\nrpc_urls = ["{node.url}"]\n')
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "erc8004_backend", "indexer", "--chains-file", str(chains),
            "--database-url", migrated_url, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        while node.calls["eth_blockNumber"] == 0:  # the indexer is inside a step now
            await asyncio.sleep(0.05)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, stderr.decode()
        assert time.monotonic() - started < 5
        assert b"indexer.stopping" in stderr


async def test_following_the_devnet_also_resolves_registration_files(
    devnet: Devnet, migrated_url: str, tmp_path: Path
) -> None:
    await devnet.activity.run(events=150)
    chains = write(tmp_path, render_chain_table(devnet.chain_config()))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "indexer", "--chains-file", str(chains),
        "--database-url", migrated_url, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    fetched: list[tuple[str, str | None]] = []
    try:
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            for _ in range(200):  # the agents' data: URIs need no network
                cursor = await conn.execute(
                    "SELECT agent_uri, mcp_endpoint FROM agent_registrations"
                    " WHERE status = 'fetched'"
                )
                fetched = await cursor.fetchall()
                if fetched:
                    break
                await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, stderr.decode()
    assert fetched, "no registration file was fetched"
    assert all(uri.startswith("data:") for uri, _ in fetched)
    assert any(endpoint and endpoint.startswith("https://") for _, endpoint in fetched)
