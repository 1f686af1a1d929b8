"""What `erc8004 indexer` imports before it starts (issue 19): its help loads no part of the
indexer, and the indexer in a pipe none of what other commands, progress bars, rate-limit
settings or a keccak hasher need. Each import named here cost tens of milliseconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Runs the command line as the `erc8004` script does, then writes what was imported and
# whether the garbage collector is on (it is off while a command loads: cli/loading.py).
RUN_AND_REPORT = """
import atexit, gc, json, sys
report = sys.argv.pop(1)
def write_report():
    with open(report, "w") as file:
        json.dump({"modules": sorted(sys.modules), "collecting": gc.isenabled()}, file)
atexit.register(write_report)
sys.argv[0] = "erc8004"
from erc8004_backend.__main__ import main
main()
"""

# Not for the indexer at its start: other commands' (the migrator, the embedded server),
# the API's rate limits, the hasher of events' topics (chain/events.py has them worked out),
# and httpx (its JSON-RPC and its registration files go over aiohttp: one HTTP library).
NEVER_AT_START = (
    "erc8004_backend.cli.db",
    "erc8004_backend.database.embedded",
    "limits",
    "eth_hash.auto",
    "Crypto.Hash.keccak",
    "cffi",
    "httpx",
)
# The indexer's own modules: the help needs none of them.
INDEXER = (
    "asyncio",
    "psycopg",
    "aiohttp",
    "structlog",
    "pydantic_settings",
    "erc8004_backend.config",
    "erc8004_backend.chain.config",
    "erc8004_backend.indexer.runner",
)


def command(report: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", RUN_AND_REPORT, str(report), *args]


def read_report(report: Path) -> tuple[set[str], bool]:
    content = json.loads(report.read_text())
    return set(content["modules"]), content["collecting"]


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERC8004_")}
    env["ERC8004_DATA_DIR"] = str(tmp_path / "data")  # no devnet.toml of the user's
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/none"  # nothing listens on 1
    return env


def test_the_indexers_help_imports_none_of_the_indexer(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = subprocess.run(
        command(report, "indexer", "--help"), cwd=ROOT, env=environment(tmp_path),
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--chains-file" in result.stdout
    modules, collecting = read_report(report)
    assert modules & {*INDEXER, *NEVER_AT_START} == set()
    assert collecting


def test_the_indexer_starts_with_its_modules_only(tmp_path: Path) -> None:
    chains = tmp_path / "chains.toml"
    chains.write_text('[chains.devnet]\nenabled = true\nrpc_urls = ["http://127.0.0.1:9"]\n')
    report = tmp_path / "report.json"
    process = subprocess.Popen(
        command(report, "indexer", "--chains-file", str(chains)), cwd=ROOT,
        env=environment(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = json.loads(process.stderr.readline())
        assert first["event"] == "indexer.start"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
    modules, collecting = read_report(report)
    assert set(INDEXER) <= modules
    assert modules & set(NEVER_AT_START) == set()
    assert collecting
