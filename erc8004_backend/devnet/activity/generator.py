"""The activity generator: realistic ERC-8004 activity on the devnet, deterministic for a
seed. Random activity one transaction per action (`step`, `run`) or many events per
transaction (`emit_batch`, `run(batch=True)`), paced at a rate; and, from `ScriptedActions`,
chosen actions that return what they created."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet.activity.bulk import BulkEmitter
from erc8004_backend.devnet.activity.context import ActivityContext
from erc8004_backend.devnet.activity.planner import RandomPlanner
from erc8004_backend.devnet.activity.scripted import ScriptedActions
from erc8004_backend.devnet.activity.transactions import ActivityError, ActivityReport
from erc8004_backend.devnet.deploy import DeployedRegistries, Transactor

_BATCH_ROUND_EVENTS = 10_000  # events per batch round when running as fast as possible


class ActivityGenerator(ScriptedActions):
    """Drives several anvil accounts through realistic ERC-8004 activity, deterministically
    for a given seed (on a fresh devnet: the same transactions, events and values).

    Several of the node's unlocked accounts act as agent owners, operators, clients and
    validators: they register agents (on-chain `data:` registration files listing MCP and A2A
    services, `https://` and `ipfs://` URIs), update URIs and metadata, transfer agents and
    clear their wallets, give feedback (negative, fixed-point with 0 to 18 decimals, 0-100
    scores, empty and unicode tags, extreme int128 values), revoke it, respond to it, and
    request and answer validations. `clients` more addresses (impersonated: anvil only) give
    and revoke feedback too. `weights` sets the share of each kind of random action
    (`planner.STEP_WEIGHTS`). Every receipt must succeed: a reverted transaction raises
    `TransactionFailedError`.
    """

    def __init__(
        self,
        rpc: RpcClient,
        registries: DeployedRegistries,
        *,
        seed: int = 0,
        accounts: Sequence[str] | None = None,
        clients: int = 0,
        weights: Mapping[str, int] | None = None,
        endpoint_base: str = "https://agents.devnet.example",
        max_round: int = 32,
        items_per_tx: int = 500,
        events_per_block: int = 5_000,
        transactor: Transactor | None = None,
    ) -> None:
        if min(max_round, items_per_tx, events_per_block) < 1:
            raise ActivityError("max_round, items_per_tx and events_per_block must be at least 1")
        if clients < 0:
            raise ActivityError("clients must not be negative")
        super().__init__(
            ActivityContext(
                rpc,
                registries,
                seed=seed,
                accounts=accounts,
                clients=clients,
                endpoint_base=endpoint_base,
                items_per_tx=items_per_tx,
                events_per_block=events_per_block,
                transactor=transactor or Transactor(rpc),
            )
        )
        self.max_round = max_round
        self._planner = RandomPlanner(self.context, weights)
        self._bulk = BulkEmitter(self.context)

    # -- what it acts on, and with -------------------------------------------------------------

    @property
    def rpc(self) -> RpcClient:
        return self.context.rpc

    @property
    def registries(self) -> DeployedRegistries:
        return self.context.registries

    @property
    def seed(self) -> int:
        return self.context.seed

    @property
    def transactor(self) -> Transactor:
        return self.context.sender.transactor

    @property
    def total(self) -> ActivityReport:
        """Everything this generator emitted."""
        return self.context.sender.total

    @property
    def hands_off(self) -> set[int]:
        """Agents the random activity leaves alone (no feedback, validation request, or change
        of URI, metadata or owner): a scripted scene's agent, whose story the script tells."""
        return self.context.hands_off

    @property
    def endpoint_base(self) -> str:
        """Where the generated agents' URIs and endpoints point."""
        return self.context.content.endpoint_base

    @endpoint_base.setter
    def endpoint_base(self, value: str) -> None:
        self.context.content.endpoint_base = value.rstrip("/")

    @property
    def events_per_block(self) -> int:
        return self.context.sender.events_per_block

    @events_per_block.setter
    def events_per_block(self, value: int) -> None:
        self.context.sender.events_per_block = value

    @property
    def items_per_tx(self) -> int:
        return self.context.items_per_tx

    @property
    def accounts(self) -> list[str]:
        return self.context.accounts

    @property
    def clients(self) -> list[str]:
        """The addresses beyond the accounts that give feedback."""
        return list(self.context.clients)

    @property
    def agent_ids(self) -> list[int]:
        """The agents known to exist (registered by anyone before setup, or by this)."""
        return list(self.context.state.agent_ids)

    def owner_of(self, agent_id: int) -> str:
        return self.context.state.agents[agent_id].owner

    def wallet_of(self, agent_id: int) -> str | None:
        """The agent's wallet (agentWallet), None when it is unset."""
        return self.context.state.agents[agent_id].wallet

    async def setup(self) -> None:
        """Read the accounts, the gas limit and the registries' state (done on first use)."""
        await self.context.setup()

    async def resync(self) -> None:
        """Rebuild the model of agents, feedback and requests from the chain's logs, and
        forget the nonces: call it after the chain changed under the generator (a revert)."""
        await self.context.resync()

    # -- random activity -----------------------------------------------------------------------

    async def step(self) -> ActivityReport:
        """One realistic action: one transaction, mined and checked."""
        await self.context.ensure_ready()
        return await self.context.execute(self._planner.plan_round(1, None))

    async def run(
        self,
        events: int | None = None,
        *,
        rate: float | None = None,
        batch: bool = False,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[ActivityReport], None] | None = None,
    ) -> ActivityReport:
        """Emit `events` events (None: until `stop` is set), at `rate` events per second
        (None: as fast as possible). With `batch`, through the batch functions.

        Exactly `events` events, unless the devnet has no agent and fewer than 3 are asked
        (a registration emits 3).
        """
        if events is not None and events < 0:
            raise ActivityError("events must not be negative")
        if rate is not None and rate <= 0:
            raise ActivityError("rate must be positive (or None: as fast as possible)")
        await self.context.ensure_ready()
        report = ActivityReport()
        started = time.monotonic()
        while events is None or report.events < events:
            if stop is not None and stop.is_set():
                break
            remaining = None if events is None else events - report.events
            elapsed = time.monotonic() - started
            if rate is None:
                size = self.max_round if not batch else _BATCH_ROUND_EVENTS
            else:
                due = elapsed * rate - report.events
                if due < 1:
                    if await _sleep((report.events + 1) / rate - elapsed, stop):
                        break
                    continue
                size = max(1, int(due)) if batch else min(self.max_round, max(1, int(due)))
            if batch:
                part = await self.emit_batch(size if remaining is None else min(size, remaining))
            else:
                part = await self.context.execute(self._planner.plan_round(size, remaining))
            part.seconds = 0.0
            report.merge(part)
            report.seconds = time.monotonic() - started
            if on_progress is not None:
                on_progress(report)
        report.seconds = time.monotonic() - started
        return report

    async def emit_batch(self, n_events: int) -> ActivityReport:
        """`n_events` events of every kind, many per transaction, in three rounds:
        registrations; feedback, URI and metadata updates, validation requests; then
        revocations, responses, validation responses and transfers.

        Exactly `n_events`, unless the devnet has no agent and fewer than 3 are asked.
        """
        if n_events < 0:
            raise ActivityError("n_events must not be negative")
        await self.context.ensure_ready()
        return await self._bulk.emit(n_events)


async def _sleep(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep, or less if `stop` is set; True when it is."""
    if stop is None:
        await asyncio.sleep(max(seconds, 0.0))
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
    except TimeoutError:
        return False
    return True
