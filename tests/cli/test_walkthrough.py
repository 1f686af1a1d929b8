"""The README's "A first trigger in five minutes", run as written.

The commands are the README's own: the fenced `bash` blocks of that section, each starting
with `# terminal N`. Each terminal is a bash process in a session of its own (so that a
signal to its process group is what Ctrl-C in a terminal is). Terminals 1 and 2 run until
the end; terminal 3 runs its first block up to the webhook sink, and its second block, in the
same shell, once the sink is stopped with Ctrl-C; terminal 4 causes the events.

The only changes, so that runs in parallel do not collide and leave nothing behind:
- environment variables for every terminal: `DATA_DIR`, a throwaway `DATABASE_URL` instead
  of the embedded server, free ports for the devnet, the API and the sink, an empty chains file;
- the API's and the sink's addresses in the commands (`127.0.0.1:8000`, `127.0.0.1:9000`)
  become those ports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.devnet import require_anvil
from tests.support.waiting import free_port

SECTION = "## A first trigger in five minutes"
API, SINK = "127.0.0.1:8000", "127.0.0.1:9000"


@dataclass(frozen=True)
class Block:
    terminal: int
    script: str


def walkthrough() -> list[Block]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme, f"README.md has no section {SECTION!r}"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = []
    for script in re.findall(r"^```bash\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        first = re.match(r"# terminal (\d+)", script)
        assert first, f"a walkthrough block does not start with '# terminal N':\n{script}"
        blocks.append(Block(int(first.group(1)), script))
    return blocks


class Terminal:
    """A bash running a script in a session of its own, its output in files."""

    def __init__(self, name: str, script: str, env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.stdout_path = directory / f"{name}.out"
        self.stderr_path = directory / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                ["bash", "-c", script], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def tail(self) -> str:
        err = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return f"--- {self.name} stdout:\n{self.stdout[-3000:]}\n--- stderr:\n{err[-3000:]}"

    def wait_until(self, condition: Callable[[], Any], what: str, seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} ended before {what}\n{self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {what} within {seconds} s\n{self.tail()}")

    def ctrl_c(self, seconds: float = 20) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C; the exit status."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop on Ctrl-C\n{self.tail()}") from None


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in reversed(opened):  # whatever a failed test left running
        if terminal.process.poll() is None:
            os.killpg(terminal.process.pid, signal.SIGINT)
            try:
                terminal.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(terminal.process.pid, signal.SIGKILL)
                terminal.process.wait()


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def api_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def json_after(text: str, start: int) -> tuple[Any, int]:
    """The JSON document printed from `start` (indented, ending with a line "}")."""
    end = text.index("\n}", start) + 2
    return json.loads(text[start:end]), end


WEBHOOK_LINE = re.compile(
    r"^\d\d:\d\d:\d\d  POST (?P<path>\S+)  signature (?P<verdict>.+?)"
    r"  Idempotency-Key (?P<key>[0-9a-f]+)$",
    re.MULTILINE,
)


def test_the_readme_walkthrough_delivers_a_signed_webhook_and_runs_again_as_written(
    database_url: str, tmp_path: Path, terminals: list[Terminal]
) -> None:
    """Twice, with the same account and database, as the README says one can: the second run
    must not leave the first run's trigger beside the new one (its webhook would reach the
    sink signed with a secret the sink no longer knows)."""
    require_anvil()
    blocks = walkthrough()
    assert [b.terminal for b in blocks] == [1, 2, 3, 4, 3], "the walkthrough changed shape"
    devnet_port, api_port, sink_port = free_port(), free_port(), free_port()
    no_chains = tmp_path / "no-chains.toml"  # not ./chains.toml, should the checkout have one
    no_chains.write_text("", encoding="utf-8")
    env = {**os.environ, "ERC8004_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url,
           "ERC8004_DEVNET_PORT": str(devnet_port), "ERC8004_API_PORT": str(api_port),
           "ERC8004_WEBHOOK_SINK_PORT": str(sink_port),
           "ERC8004_CHAINS_FILE": str(no_chains)}  # fmt: skip

    def as_run(script: str) -> str:
        return script.replace(API, f"127.0.0.1:{api_port}").replace(SINK, f"127.0.0.1:{sink_port}")

    text = "".join(b.script for b in blocks)
    for address in (API, SINK):
        assert address in text, f"the walkthrough no longer names {address}"

    def open_terminal(name: str, *scripts: str) -> Terminal:
        terminal = Terminal(name, "\n".join(as_run(s) for s in scripts), env, tmp_path)
        terminals.append(terminal)
        return terminal

    first = run_walkthrough(blocks, open_terminal, env, as_run, api_port, sink_port, run=1)
    second = run_walkthrough(blocks, open_terminal, env, as_run, api_port, sink_port, run=2)
    assert second.trigger_id != first.trigger_id
    assert f"deleted trigger {first.trigger_id}" in second.sink_output
    assert "already registered" not in first.sink_output
    assert '"status":409' in second.sink_output  # ada exists; the login still works

    # The sample output in the README reads as the sink prints: the same line, the same keys
    # in the same order.
    sample = readme_sample_output()
    line = WEBHOOK_LINE.search(sample)
    assert line, f"the README's sample webhook line no longer reads as the sink prints:\n{sample}"
    assert len(line["key"]) == 64, "the sink prints the whole key"
    sample_body, _ = json_after(sample, line.end() + 1)
    assert list(sample_body) == list(second.body), "the README's sample body differs in shape"
    # All but the transaction and its block (the devnet mines on a clock too) come out the
    # same every run.
    assert {**sample_body, "tx": None, "block": None} == {**second.body, "tx": None, "block": None}
    print(f"webhook after {first.webhook_seconds:.1f} s; runs {first.seconds:.1f} s"
          f" and {second.seconds:.1f} s")  # fmt: skip


@dataclass(frozen=True)
class Run:
    trigger_id: str
    body: dict[str, Any]
    sink_output: str
    webhook_seconds: float
    seconds: float


def run_walkthrough(
    blocks: list[Block],
    open_terminal: Callable[..., Terminal],
    env: dict[str, str],
    as_run: Callable[[str], str],
    api_port: int,
    sink_port: int,
    run: int,
) -> Run:
    """Terminals 1 to 4 as the README says, then Ctrl-C in each; what the sink showed."""
    started = time.monotonic()
    chain = open_terminal(f"run-{run}-terminal-1", blocks[0].script)
    chain.wait_until(lambda: "chain running" in chain.stdout, "devnet")
    backend = open_terminal(f"run-{run}-terminal-2", blocks[1].script)
    backend.wait_until(lambda: api_ready(api_port), "API")
    # Terminal 3: its first block ends in the sink; its second one runs after Ctrl-C.
    sink = open_terminal(f"run-{run}-terminal-3", blocks[2].script, blocks[4].script)
    sink.wait_until(lambda: accepts_connections(sink_port), "webhook sink")
    events = subprocess.run(
        ["bash", "-c", as_run(blocks[3].script)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert events.returncode == 0, events.stdout + events.stderr

    # What terminal 4 printed: the agent, and the two feedbacks (92 passes, 30 fires).
    agent = re.search(r"^registered agent (\d+) ", events.stdout, re.MULTILINE)
    assert agent, events.stdout
    assert agent.group(1) == "0", "the first agent on a fresh devnet is agent 0"
    feedbacks = re.findall(
        r"^feedback (\S+) from (0x[0-9a-f]{40}) to agent (\d+) .* in block (\d+),"
        r" transaction (0x[0-9a-f]{64})$",
        events.stdout,
        re.MULTILINE,
    )
    assert [(score, agent_id) for score, _, agent_id, _, _ in feedbacks] == [
        ("92", agent.group(1)),
        ("30", agent.group(1)),
    ], events.stdout
    _, client, agent_id, block, transaction = feedbacks[1]

    # Terminal 3: the trigger (with its secret, given to the sink), then the webhook.
    output = sink.wait_until(lambda: WEBHOOK_LINE.search(sink.stdout) and sink.stdout, "webhook")
    trigger, _ = json_after(output, output.index('{\n    "id"'))
    assert trigger["webhook_secret"].startswith("whsec_")
    webhook_seen = time.monotonic() - started
    # A second webhook (from an earlier run's trigger, say) would be on its way at the same
    # moment: wait a little before counting them.
    time.sleep(1.0)
    output = sink.stdout
    (webhook,) = WEBHOOK_LINE.finditer(output)  # one: the score of 92 fired nothing
    assert webhook["path"] == "/hooks/low-score"
    assert webhook["verdict"] == "valid", output  # signed with the trigger's secret, fresh
    body, _ = json_after(output, webhook.end() + 1)
    assert body == {
        "text": f"Agent {agent_id} got 30 from {client}",
        "agent": agent_id,
        "score": "30",
        "tag": "starred",
        "block": block,
        "tx": transaction,
    }

    # Ctrl-C stops the sink; the same shell then asks for the trigger's action results.
    printed = len(sink.stdout)
    assert sink.ctrl_c() == 0, sink.tail()
    results = json.loads(sink.stdout[printed:])
    (result,) = results["items"]
    assert result["trigger_id"] == trigger["id"]
    assert result["status"] == "success"
    sent = result["response_data"].pop("request")  # the request inspector's record
    assert result["response_data"] == {"status": 200, "body": '{"ok": true}'}
    assert (sent["method"], json.loads(sent["body"])) == ("POST", body)
    assert result["job"]["attempts"] == 1

    assert backend.ctrl_c() == 0, backend.tail()
    assert chain.ctrl_c() == 0, chain.tail()
    assert "Traceback" not in backend.tail() + chain.tail() + sink.tail()
    return Run(trigger["id"], body, output, webhook_seen, time.monotonic() - started)


def readme_sample_output() -> str:
    """The README's sample of what terminal 3 shows: the plain block after terminal 4's."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    plain = [text for language, text in fenced if not language]
    assert plain, "the walkthrough shows no sample output"
    return str(plain[0])
