"""`erc8004 devnet`: a local chain with the ERC-8004 registries and realistic agent activity;
`erc8004 devnet register` and `feedback` act on the running one, to cause events by hand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, TextIO

import httpx
import structlog
import typer

from erc8004_backend.chain.config import (
    ChainConfig,
    ChainConfigError,
    load_chains,
    render_chain_table,
)
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.config import get_settings
from erc8004_backend.devnet import (
    ActivityGenerator,
    ActivityReport,
    DeployedRegistries,
    Devnet,
    start_devnet,
)
from erc8004_backend.devnet.activity.content import INT128_MAX, INT128_MIN
from erc8004_backend.devnet.documents import registration_uri
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.retry import RetryPolicy

log = structlog.get_logger(__name__)

PORT_ENV = "ERC8004_DEVNET_PORT"
START_HINT = "start one in another terminal: scripts/run devnet (or .venv/bin/erc8004 devnet)"
# The accounts `register` and `feedback` act from: anvil impersonates them, so their nonces
# are theirs alone and never race with the activity generator of the running devnet, which
# sends from the node's own accounts.
SCRIPTED_OWNER = "0x00000000000000000000000000000000000a11ce"
SCRIPTED_CLIENT = "0x0000000000000000000000000000000000000b0b"

devnet_app = typer.Typer(add_completion=False, subcommand_metavar="[COMMAND [ARGS]...]")


@devnet_app.callback(invoke_without_command=True)
def devnet(
    ctx: typer.Context,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="PORT",
            min=0,
            max=65535,
            envvar=PORT_ENV,
            help="Port of the JSON-RPC endpoint on 127.0.0.1 (0: any free port).",
        ),
    ] = 8545,
    rate: Annotated[
        float,
        typer.Option(
            "--rate", metavar="RATE", min=0, help="Events per second (0: as fast as possible)."
        ),
    ] = 2.0,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            metavar="N",
            min=0,
            help="Stop after this many events (default: run until Ctrl-C).",
        ),
    ] = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Emit through the batch functions: many events per transaction, for benchmarks.",
        ),
    ] = False,
    no_activity: Annotated[
        bool,
        typer.Option("--no-activity", help="Only run the chain with the registries deployed."),
    ] = False,
    config_out: Annotated[
        Path | None,
        typer.Option(
            "--config-out",
            metavar="FILE",
            help="Where to write the devnet's chain config"
            " (default: <data dir>/devnet.toml, which the indexer reads).",
        ),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="With --events: keep the chain running after the events, until Ctrl-C.",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", metavar="SEED", help="Seed of the activity generator.")
    ] = 0,
    block_time: Annotated[
        float | None,
        typer.Option(
            "--block-time",
            metavar="SECONDS",
            min=0.01,
            help="Mine a block every this many seconds (default: mine each transaction at once).",
        ),
    ] = None,
) -> None:
    """Run anvil with our ERC-8004 registries deployed and generate agent activity.

    The commands below act on the devnet running in another terminal."""
    if ctx.invoked_subcommand is not None:
        given = [
            f"--{name.replace('_', '-')}"
            for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
        ]
        if given:
            raise typer.BadParameter(
                f"options of `erc8004 devnet` itself, which starts a devnet, not of"
                f" `erc8004 devnet {ctx.invoked_subcommand}`, which acts on a running one",
                ctx=ctx,
                param_hint=", ".join(given),
            )
        return
    configure_logging()
    path = config_out or get_settings().data_dir / "devnet.toml"
    asyncio.run(
        _run(
            port=port,
            rate=rate or None,
            events=events,
            batch=batch,
            activity=not no_activity,
            config_out=path,
            keep_running=keep_running,
            seed=seed,
            block_time=block_time,
        )
    )


async def _run(
    *,
    port: int,
    rate: float | None,
    events: int | None,
    batch: bool,
    activity: bool,
    config_out: Path,
    keep_running: bool,
    seed: int,
    block_time: float | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_devnet(port, seed=seed, block_time=block_time) as net:
        write_config(net, config_out)
        _announce(net, config_out)
        if activity and not stop.is_set():
            progress = Progress(sys.stderr)
            report = await net.activity.run(
                events, rate=rate, batch=batch, stop=stop, on_progress=progress.update
            )
            progress.finish(report)
        if not activity or (keep_running and not stop.is_set()):
            print("chain running; Ctrl-C to stop", flush=True)
            await stop.wait()
    print("devnet stopped", flush=True)


def write_config(net: Devnet, path: Path) -> None:
    """The devnet's chain table, written atomically (an indexer may be reading it)."""
    header = (
        f"# Written by `erc8004 devnet` at {datetime.now(UTC).isoformat(timespec='seconds')}"
        ": the registries of the local devnet.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(header + render_chain_table(net.chain_config()), encoding="utf-8")
    partial.replace(path)


def _announce(net: Devnet, config_out: Path) -> None:
    registries = net.registries
    lines = [
        f"devnet running: chain {registries.chain_id}",
        f"  rpc         {net.url}",
        f"  identity    {registries.identity}",
        f"  reputation  {registries.reputation}",
        f"  validation  {registries.validation}",
        f"  from block  {registries.block_number}",
        f"  config      {config_out}",
    ]
    print("\n".join(lines), flush=True)


class Progress:
    """A progress line rewritten in place in a terminal; a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO, every: float | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every if every is not None else (0.25 if self.tty else 5.0)
        self.last = 0.0
        self.width = 0

    def update(self, report: ActivityReport) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            line = report.line()
            columns = _columns()
            if len(line) > columns - 1:
                line = line[: columns - 2] + "…"
            self.stream.write("\r" + line.ljust(self.width))
            self.stream.flush()
            self.width = len(line)
        else:
            log.info(
                "devnet.progress",
                events=report.events,
                transactions=report.transactions,
                block=report.last_block,
                counts=dict(report.counts),
            )

    def finish(self, report: ActivityReport) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
        print(f"emitted {report.line()}", flush=True)


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 120


# -- acting on a running devnet -----------------------------------------------------------------

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="The running devnet's chain config (default: <data dir>/devnet.toml, which"
        " `erc8004 devnet` writes when it starts).",
    ),
]


@devnet_app.command("register")
def register(
    uri: Annotated[
        str | None,
        typer.Argument(
            metavar="URI",
            help="The agent's URI (agentURI). Default: an on-chain data: registration file"
            " named --name.",
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option("--name", metavar="NAME", help="The name in the default registration file."),
    ] = "Devnet agent",
    owner: Annotated[
        str | None,
        typer.Option(
            "--owner",
            metavar="ADDRESS",
            help=f"The address that registers it (default {SCRIPTED_OWNER}).",
        ),
    ] = None,
    config: ConfigFile = None,
) -> None:
    """Register an agent on the running devnet and print its id."""
    configure_logging(level="warning")
    agent_uri = (
        uri
        if uri is not None
        else registration_uri(name, description=f"{name}: registered by hand on the devnet.")
    )
    sender = _address(owner, "--owner") if owner else SCRIPTED_OWNER

    async def act() -> None:
        async with running_devnet(config) as generator:
            await _impersonate(generator.rpc, sender)
            agent = await generator.register_agent(agent_uri, owner=sender)
        print(f"registered agent {agent.agent_id} (owner {agent.owner}) in block"
              f" {agent.block_number}, transaction {agent.transaction_hash}",
              flush=True)  # fmt: skip

    asyncio.run(act())


@devnet_app.command(
    "feedback",
    context_settings={"ignore_unknown_options": True},  # a negative SCORE
)
def feedback(
    agent_id: Annotated[int, typer.Argument(metavar="AGENT_ID", min=0, help="The agent's id.")],
    score: Annotated[
        str,
        typer.Argument(
            metavar="SCORE",
            help="The feedback's value: a decimal number such as 87, 99.5 or -3 (stored as"
            " value and valueDecimals).",
        ),
    ],
    tag1: Annotated[
        str, typer.Option("--tag1", metavar="TAG", help="First tag (e.g. starred, uptime).")
    ] = "",
    tag2: Annotated[str, typer.Option("--tag2", metavar="TAG", help="Second tag.")] = "",
    endpoint: Annotated[
        str, typer.Option("--endpoint", metavar="URL", help="The endpoint rated.")
    ] = "",
    feedback_uri: Annotated[
        str,
        typer.Option("--feedback-uri", metavar="URI", help="A file with the feedback's details."),
    ] = "",
    client: Annotated[
        str | None,
        typer.Option(
            "--client",
            metavar="ADDRESS",
            help=f"The address giving it (default {SCRIPTED_CLIENT}, or {SCRIPTED_OWNER} when"
            " that one owns the agent).",
        ),
    ] = None,
    config: ConfigFile = None,
) -> None:
    """Give an agent feedback on the running devnet; print the transaction and its block."""
    configure_logging(level="warning")
    value, decimals = parse_score(score)
    sender = _address(client, "--client") if client else None

    async def act() -> None:
        async with running_devnet(config) as generator:
            if agent_id not in generator.agent_ids:
                known = generator.agent_ids
                listed = (f"agents 0 to {max(known)}" if known == list(range(len(known)))
                          else f"{len(known)} agents") if known else "no agent yet"  # fmt: skip
                raise Erc8004Error(
                    f"agent {agent_id} does not exist on the devnet ({listed}); register one:"
                    " erc8004 devnet register"
                )
            giver = sender or (
                SCRIPTED_CLIENT if generator.owner_of(agent_id) != SCRIPTED_CLIENT
                else SCRIPTED_OWNER
            )  # fmt: skip
            await _impersonate(generator.rpc, giver)
            given = await generator.give_feedback(
                agent_id, value, decimals=decimals, tag1=tag1, tag2=tag2, endpoint=endpoint,
                file_uri=feedback_uri, client=giver,
            )  # fmt: skip
        print(f"feedback {score} from {given.client} to agent {agent_id} (feedback index"
              f" {given.feedback_index}) in block {given.block_number}, transaction"
              f" {given.transaction_hash}", flush=True)  # fmt: skip

    asyncio.run(act())


def parse_score(text: str) -> tuple[int, int]:
    """A decimal number as the contract's (int128 value, valueDecimals <= 18)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r} is not a number", param_hint="SCORE") from None
    if not number.is_finite():
        raise typer.BadParameter(f"{text!r} is not a finite number", param_hint="SCORE")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    decimals = max(0, -exponent)
    if decimals > 18:
        raise typer.BadParameter("at most 18 decimals", param_hint="SCORE")
    value = int(number.scaleb(decimals))
    if not INT128_MIN <= value <= INT128_MAX:
        raise typer.BadParameter("out of the int128 range of feedback values", param_hint="SCORE")
    return value, decimals


@contextlib.asynccontextmanager
async def running_devnet(config: Path | None) -> AsyncIterator[ActivityGenerator]:
    """A generator acting on the devnet that `erc8004 devnet` runs, found through its config;
    clear errors when there is none."""
    path = config or get_settings().data_dir / "devnet.toml"
    chain = _devnet_chain(path)
    url = chain.rpc_urls[0]
    await _probe(url, path)
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.05, backoff_max=0.2)
    async with RpcClient(chain.rpc_urls, timeout=60, retry=retry) as rpc:
        for registry, address in (("identity", chain.identity), ("reputation", chain.reputation)):
            if await rpc.call("eth_getCode", [address, "latest"]) in ("0x", "0x0", None):
                raise Erc8004Error(
                    f"the node at {url} has no {registry} registry at {address}: it is not the"
                    f" devnet that wrote {path} (restart `erc8004 devnet`)"
                )
        registries = DeployedRegistries(
            chain_id=chain.chain_id, deployer="", identity=chain.identity,
            reputation=chain.reputation, validation=chain.validation,
            # "auto" (a file edited by hand): the generator reads the logs from block 0.
            block_number=chain.start_block if isinstance(chain.start_block, int) else 0,
            transaction_hashes=(),
        )  # fmt: skip
        for account in (SCRIPTED_OWNER, SCRIPTED_CLIENT):
            await _impersonate(rpc, account)
        generator = ActivityGenerator(rpc, registries, accounts=[SCRIPTED_OWNER, SCRIPTED_CLIENT])
        await generator.setup()
        yield generator


def _devnet_chain(path: Path) -> ChainConfig:
    if not path.exists():
        raise Erc8004Error(f"no devnet is running: {path} does not exist (`erc8004 devnet`"
                           f" writes it when it starts); {START_HINT}")  # fmt: skip
    try:
        return load_chains([path])["devnet"]
    except ChainConfigError as error:
        raise Erc8004Error(f"{path} is not a devnet config: {error}") from None


async def _probe(url: str, path: Path) -> None:
    """Is anything answering? (Before the RPC client, whose retries log warnings.)"""
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            (await client.post(url, json=request)).raise_for_status()
    except httpx.HTTPError as error:
        reason = type(error).__name__ if isinstance(error, httpx.TransportError) else str(error)
        raise Erc8004Error(
            f"no devnet answers at {url} (from {path}: {reason}); {START_HINT}"
        ) from None


async def _impersonate(rpc: RpcClient, address: str) -> None:
    """Let `address` send transactions on anvil, with ether for gas."""
    await rpc.call("anvil_impersonateAccount", [address])
    await rpc.call("anvil_setBalance", [address, hex(10**21)])


def _address(value: str, option: str) -> str:
    text = value.strip().lower()
    if len(text) != 42 or not text.startswith("0x"):
        raise typer.BadParameter(f"{value!r} is not an address (0x and 40 hex digits)",
                                 param_hint=option)  # fmt: skip
    try:
        int(text, 16)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an address (0x and 40 hex digits)",
                                 param_hint=option) from None  # fmt: skip
    return text
