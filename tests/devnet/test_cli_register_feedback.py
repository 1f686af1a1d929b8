"""`erc8004 devnet register` and `erc8004 devnet feedback`, in subprocesses, acting on a devnet
found through its config file, as the one `erc8004 devnet` runs."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from pathlib import Path

import pytest

from erc8004_backend.cli.devnet import SCRIPTED_CLIENT, SCRIPTED_OWNER, parse_score, write_config
from erc8004_backend.devnet import Devnet
from tests.devnet.test_cli import ROOT
from tests.support.devnet import decode, registry_logs
from tests.support.waiting import free_port


async def erc8004(*args: str, data_dir: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", *args, cwd=ROOT,
        env={**os.environ, "ERC8004_DATA_DIR": str(data_dir)}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def configured(devnet: Devnet, tmp_path: Path) -> Path:
    """The data directory of a running `erc8004 devnet`: its devnet.toml."""
    write_config(devnet, tmp_path / "devnet.toml")
    return tmp_path


@pytest.mark.subprocess
async def test_register_then_feedback_emit_the_events_they_print(
    devnet: Devnet, tmp_path: Path
) -> None:
    data_dir = configured(devnet, tmp_path)
    code, out, err = await erc8004("devnet", "register", "--name", "Walk ✓", data_dir=data_dir)
    assert code == 0, err
    printed = re.fullmatch(
        r"registered agent (\d+) \(owner (0x[0-9a-f]{40})\) in block (\d+),"
        r" transaction (0x[0-9a-f]{64})\n",
        out,
    )
    assert printed, out
    agent_id, owner, block, transaction = printed.groups()
    assert owner == SCRIPTED_OWNER
    code, out, err = await erc8004("devnet", "feedback", agent_id, "-3.25", "--tag1", "starred",
                                   "--tag2", "week", data_dir=data_dir)  # fmt: skip
    assert code == 0, err
    feedback = re.fullmatch(
        rf"feedback -3.25 from ({SCRIPTED_CLIENT}) to agent {agent_id} \(feedback index 1\)"
        r" in block (\d+), transaction (0x[0-9a-f]{64})\n",
        out,
    )
    assert feedback, out

    events = {}
    for entry in await registry_logs(devnet):
        name, values = decode(entry)
        events[name] = (entry, values)
    entry, registered = events["Registered"]
    assert (str(registered["agentId"]), registered["owner"].lower()) == (agent_id, owner)
    assert (int(entry["blockNumber"], 16), entry["transactionHash"]) == (int(block), transaction)
    document = json.loads(base64.b64decode(registered["agentURI"].split(",", 1)[1]))
    assert document["name"] == "Walk ✓"
    entry, given = events["NewFeedback"]
    assert str(given["agentId"]) == agent_id
    assert given["clientAddress"].lower() == SCRIPTED_CLIENT
    assert (given["value"], given["valueDecimals"]) == (-325, 2)
    assert (given["tag1"], given["tag2"]) == ("starred", "week")
    assert int(entry["blockNumber"], 16) == int(feedback.group(2))
    assert entry["transactionHash"] == feedback.group(3)


@pytest.mark.subprocess
async def test_they_act_beside_the_devnets_own_activity_without_disturbing_it(
    devnet: Devnet, tmp_path: Path
) -> None:
    """They send from accounts anvil impersonates, so the generator's nonces stay right."""
    data_dir = configured(devnet, tmp_path)
    await devnet.activity.run(events=10, rate=None)  # some agents of the node's accounts
    agent = devnet.activity.agent_ids[0]
    stop = asyncio.Event()
    activity = asyncio.create_task(devnet.activity.run(rate=40, stop=stop))
    register = await erc8004("devnet", "register", "https://agents.example/a.json",
                             data_dir=data_dir)  # fmt: skip
    feedback = await erc8004("devnet", "feedback", str(agent), "55", data_dir=data_dir)
    stop.set()
    report = await activity  # raises if one of its transactions failed
    assert report.events > 0
    assert register[0] == 0, register[2]
    assert feedback[0] == 0, feedback[2]
    assert f"to agent {agent} " in feedback[1]


@pytest.mark.subprocess
async def test_feedback_to_an_agent_that_does_not_exist(devnet: Devnet, tmp_path: Path) -> None:
    code, _, err = await erc8004("devnet", "feedback", "99", "50",
                                   data_dir=configured(devnet, tmp_path))  # fmt: skip
    assert code == 1
    assert "agent 99 does not exist on the devnet (no agent yet)" in err
    assert "erc8004 devnet register" in err


@pytest.mark.subprocess
async def test_without_a_running_devnet_they_say_how_to_start_one(tmp_path: Path) -> None:
    code, _, err = await erc8004("devnet", "register", data_dir=tmp_path)
    assert code == 1
    assert f"no devnet is running: {tmp_path / 'devnet.toml'} does not exist" in err
    assert "scripts/run devnet" in err
    # A config left behind by a devnet that stopped.
    port = free_port()
    (tmp_path / "devnet.toml").write_text(
        f'[chains.devnet]\nrpc_urls = ["http://127.0.0.1:{port}"]\n'
    )
    code, _, err = await erc8004("devnet", "feedback", "0", "50", data_dir=tmp_path)
    assert code == 1
    assert f"no devnet answers at http://127.0.0.1:{port}" in err
    assert "scripts/run devnet" in err
    assert "Traceback" not in err


@pytest.mark.subprocess
async def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    cases = [
        (["feedback", "0", "high"], "'high' is not a number"),
        (["feedback", "0", "1e-19"], "at most 18 decimals"),
        (["feedback", "0", "50", "--client", "0x12"], "'0x12' is not an address"),
        (["--port", "9", "register"], "not of `erc8004 devnet register`"),
    ]
    runs = await asyncio.gather(*(erc8004("devnet", *a, data_dir=tmp_path) for a, _ in cases))
    for (args, message), (code, _, err) in zip(cases, runs, strict=True):
        assert code == 2, args
        assert message in " ".join(err.replace("│", "").split()), err


def test_scores_become_the_contracts_fixed_point_values() -> None:
    assert parse_score("87") == (87, 0)
    assert parse_score("99.5") == (995, 1)
    assert parse_score("-3.25") == (-325, 2)
    assert parse_score("1E+2") == (100, 0)
    assert parse_score("0.000000000000000001") == (1, 18)
