"""Start and stop a local anvil node (from the npm package `@foundry-rs/anvil`).

`start_anvil` runs anvil on 127.0.0.1 only, picks a free port when asked for port 0, returns
once the node answers `eth_chainId`, and terminates it on exit (on Linux also when this
process is killed without warning). The binary is found through `$ERC8004_ANVIL`, then the
project's `node_modules` (`npm install`), then `PATH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
import re
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.retry import RetryPolicy

log = structlog.get_logger(__name__)

ANVIL_ENV = "ERC8004_ANVIL"
HOST = "127.0.0.1"
# A block gas limit far above mainnet's, so that the batch functions can emit hundreds of
# events per transaction.
DEFAULT_GAS_LIMIT = 4_000_000_000
DEFAULT_ACCOUNTS = 10
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening on (\S+):(\d+)")
_STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1  # prctl(2)
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class AnvilNotFoundError(Erc8004Error):
    """No anvil binary: the npm packages are not installed."""


class AnvilStartError(Erc8004Error):
    """anvil did not start, or stopped answering while it started."""


def find_anvil(root: Path | None = None) -> Path:
    """The anvil binary: $ERC8004_ANVIL, else node_modules (of `root`, the working directory
    and this project), else PATH. Raises AnvilNotFoundError with what to do."""
    configured = os.environ.get(ANVIL_ENV)
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        found = shutil.which(configured)
        if found:
            return Path(found)
        raise AnvilNotFoundError(f"{ANVIL_ENV}={configured} is not an executable anvil binary")
    roots = [r for r in (root, Path.cwd(), PROJECT_ROOT) if r is not None]
    system = sys.platform  # npm's names: linux, darwin, win32
    arch = _ARCHES.get(platform.machine().lower(), platform.machine().lower())
    for base in dict.fromkeys(r.resolve() for r in roots):
        packages = base / "node_modules" / "@foundry-rs"
        # The native binary of this platform first: node_modules/.bin/anvil is a Node.js
        # wrapper that costs a Node start and stands between us and the process.
        candidates = [packages / f"anvil-{system}-{arch}" / "bin" / "anvil"]
        candidates += sorted(packages.glob("anvil-*/bin/anvil"))
        candidates.append(base / "node_modules" / ".bin" / "anvil")
        for candidate in candidates:
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise AnvilNotFoundError(
        "anvil is not installed: run `npm install` in the project root (it installs"
        f" @foundry-rs/anvil), or set {ANVIL_ENV} to an anvil binary"
    )


@dataclass
class AnvilNode:
    """A running anvil: its URL, and the last lines it printed (for error messages)."""

    url: str
    port: int
    chain_id: int
    binary: Path
    process: asyncio.subprocess.Process = field(repr=False)
    _output: deque[str] = field(default_factory=lambda: deque(maxlen=200), repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def output(self, lines: int = 20) -> str:
        return "\n".join(list(self._output)[-lines:])

    def rpc(self, *, timeout: float = 60.0) -> RpcClient:
        """A JSON-RPC client to this node, which fails fast: a local node is up or it is not."""
        retry = RetryPolicy(max_attempts=3, backoff_initial=0.05, backoff_max=0.2)
        return RpcClient([self.url], timeout=timeout, retry=retry)


@contextlib.asynccontextmanager
async def start_anvil(
    port: int = 0,
    *,
    chain_id: int = DEVNET_CHAIN_ID,
    block_time: float | None = None,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    accounts: int = DEFAULT_ACCOUNTS,
    binary: Path | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 30.0,
) -> AsyncIterator[AnvilNode]:
    """Run anvil on 127.0.0.1:`port` (0: a free port) until the block exits.

    Without `block_time` every transaction is mined at once (automine); with it, a block is
    mined every `block_time` seconds. The accounts are anvil's usual ones (the "test test ...
    junk" mnemonic), unlocked, 10,000 ether each.
    """
    if not 0 <= port <= 65535:
        raise Erc8004Error(f"port {port} is not a TCP port")
    if block_time is not None and block_time <= 0:
        raise Erc8004Error("block_time must be positive (or None for automine)")
    executable = binary or find_anvil()
    args = [
        str(executable),
        "--host",
        HOST,
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--gas-limit",
        str(gas_limit),
        "--accounts",
        str(accounts),
        "--no-request-size-limit",
        "--color",
        "never",
    ]
    if block_time is not None:
        args += ["--block-time", f"{block_time:g}"]
    args += list(extra_args)
    started = time.perf_counter()
    try:
        # A session of its own: Ctrl-C in a terminal reaches only us, and we stop anvil in
        # order, after the activity generator has stopped.
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ending_with(os.getpid()),
        )
    except OSError as error:
        raise AnvilStartError(f"cannot run {executable}: {error}") from error
    output: deque[str] = deque(maxlen=200)
    address: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(_read_output(process, output, address))
    try:
        host, bound = await _wait_listening(process, address, reader, output, startup_timeout)
        node = AnvilNode(f"http://{host}:{bound}", bound, chain_id, executable, process, output)
        await _wait_answering(node, started + startup_timeout)
        log.info(
            "anvil.started",
            url=node.url,
            pid=process.pid,
            chain_id=chain_id,
            block_time=block_time,
            seconds=round(time.perf_counter() - started, 3),
        )
        yield node
    finally:
        await _stop(process)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        log.info("anvil.stopped", pid=process.pid, returncode=process.returncode)


def _ending_with(parent: int) -> Callable[[], None] | None:
    """What the child runs before anvil (Linux): SIGTERM for it when this process ends, even
    killed (SIGKILL, the OOM killer) with no chance to stop it: in a session of its own,
    anvil would otherwise outlive it, holding its port. (Linux sends it when the thread
    that started anvil ends: start_anvil runs on the event loop's thread.)"""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def end_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it ended already, before the call above
            os.kill(os.getpid(), signal.SIGTERM)

    return end_with_parent


async def _read_output(
    process: asyncio.subprocess.Process,
    output: deque[str],
    address: asyncio.Future[tuple[str, int]],
) -> None:
    """Keep the pipe drained (a full pipe would block anvil) and spot the listening line."""
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        output.append(text)
        match = _LISTENING.search(text)
        if match and not address.done():
            address.set_result((match.group(1), int(match.group(2))))


async def _wait_listening(
    process: asyncio.subprocess.Process,
    address: asyncio.Future[tuple[str, int]],
    reader: asyncio.Task[None],
    output: deque[str],
    timeout: float,
) -> tuple[str, int]:
    """The address anvil listens on; the reader ends when anvil exits (its output complete)."""
    waiters: set[asyncio.Future[Any]] = {address, reader}
    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if address.done():
        return address.result()
    if reader.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
    tail = "\n".join(list(output)[-15:])
    if process.returncode is not None:
        hint = " (is the port in use?)" if "in use" in tail.lower() else ""
        raise AnvilStartError(f"anvil exited with code {process.returncode}{hint}:\n{tail}")
    raise AnvilStartError(f"anvil did not start listening within {timeout:g} s:\n{tail}")


async def _wait_answering(node: AnvilNode, deadline: float) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    last_error = "no answer"
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.perf_counter() < deadline:
            if not node.running:
                raise AnvilStartError(
                    f"anvil exited with code {node.process.returncode}:\n{node.output()}"
                )
            try:
                reply = (await http.post(node.url, json=request)).json()
                if int(reply["result"], 16) == node.chain_id:
                    return
                last_error = f"it serves chain {int(reply['result'], 16)}"
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                last_error = str(error) or type(error).__name__
            await asyncio.sleep(0.02)
    raise AnvilStartError(f"anvil at {node.url} does not answer eth_chainId ({last_error})")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), _STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
