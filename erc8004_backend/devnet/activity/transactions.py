"""Actions and how they are sent: an action is one transaction with the number of indexed
events it will emit; a round of actions is sent in blocks, every receipt is checked, its logs
update the chain state, and an `ActivityReport` counts what was emitted.

What counts as an event is what the indexer stores (`chain.events.SPECS_BY_TOPIC`); other logs
(`MetadataUpdate`, `Approval`, `ApprovalForAll`) appear in the per-type counts only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from erc8004_backend.chain.events import SPECS_BY_TOPIC
from erc8004_backend.devnet.activity.content import FeedbackArgs
from erc8004_backend.devnet.activity.state import ChainState
from erc8004_backend.devnet.contracts import (
    IDENTITY,
    REPUTATION,
    VALIDATION,
    Artifact,
    event_names,
    load_artifact,
)
from erc8004_backend.devnet.deploy import DeployedRegistries, Transactor, TxRequest
from erc8004_backend.errors import Erc8004Error

log = structlog.get_logger(__name__)


class ActivityError(Erc8004Error):
    """The generator cannot do what it was asked (no accounts, a bad argument)."""


@dataclass
class ActivityReport:
    """What a call emitted: logs by event name, events (what the indexer stores), txs."""

    counts: Counter[str] = field(default_factory=Counter)
    events: int = 0
    transactions: int = 0
    first_block: int | None = None
    last_block: int | None = None
    seconds: float = 0.0

    @property
    def logs(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: ActivityReport) -> None:
        self.counts.update(other.counts)
        self.events += other.events
        self.transactions += other.transactions
        self.seconds += other.seconds
        blocks = [b for b in (self.first_block, other.first_block) if b is not None]
        self.first_block = min(blocks) if blocks else None
        blocks = [b for b in (self.last_block, other.last_block) if b is not None]
        self.last_block = max(blocks) if blocks else None

    def line(self) -> str:
        """A compact one-line summary, for progress output."""
        kinds = " ".join(f"{name}={count}" for name, count in sorted(self.counts.items()))
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        block = f" · block {self.last_block}" if self.last_block is not None else ""
        return f"{self.events} events ({rate:,.0f}/s) · {self.transactions} txs{block} · {kinds}"


@dataclass(frozen=True)
class Action:
    request: TxRequest
    events: int  # indexed events it will emit


def gas_bound(base: int, *payloads: str | bytes, stored: bool = False) -> int:
    """An upper bound of the gas an action uses: storing a byte costs about 700."""
    size = sum(len(p.encode() if isinstance(p, str) else p) for p in payloads)
    return base + size * (800 if stored else 60)


def feedback_gas(args: FeedbackArgs) -> int:
    _, _, _, tag1, tag2, endpoint, uri, _ = args
    # An agent's first client costs about 151,000 before its tags: the registry keeps the list
    # of clients and their feedback for its read functions.
    return gas_bound(150_000, tag1, tag2, stored=True) + gas_bound(0, tag1, endpoint, uri)


class Contracts:
    """The three registries' artifacts and addresses: calldata and actions for them."""

    def __init__(self, registries: DeployedRegistries) -> None:
        self.artifacts: dict[str, Artifact] = {
            name: load_artifact(name) for name in (IDENTITY, REPUTATION, VALIDATION)
        }
        self.addresses = {
            IDENTITY: registries.identity,
            REPUTATION: registries.reputation,
            VALIDATION: registries.validation,
        }

    def action(
        self,
        contract: str,
        sender: str,
        function: str,
        args: Sequence[Any],
        *,
        gas: int,
        label: str,
        events: int,
    ) -> Action:
        """`sender` calls `function(*args)` of `contract` with this much gas."""
        data = self.artifacts[contract].encode_call(function, *args)
        return Action(TxRequest(sender, self.addresses[contract], data, gas, label), events)


class RoundSender:
    """Sends rounds of actions, in blocks of about `events_per_block` events, and applies
    their receipts' logs to the chain state."""

    def __init__(self, transactor: Transactor, state: ChainState, events_per_block: int) -> None:
        self.transactor = transactor
        self.state = state
        self.events_per_block = events_per_block
        self.block_gas = 30_000_000
        self.total = ActivityReport()  # everything sent through this
        self._names = event_names()

    async def execute(self, actions: Sequence[Action]) -> ActivityReport:
        report, _ = await self.execute_with_receipts(actions)
        return report

    async def execute_with_receipts(
        self, actions: Sequence[Action]
    ) -> tuple[ActivityReport, list[dict[str, Any]]]:
        """Send the actions; their report, and their receipts in the order of `actions`."""
        started = time.monotonic()
        report = ActivityReport()
        if not actions:
            return report, []
        receipts = await self.transactor.send_in_blocks(self._blocks(actions))
        for receipt in receipts:
            block = int(receipt["blockNumber"], 16)
            report.first_block = (
                block if report.first_block is None else min(report.first_block, block)
            )
            report.last_block = (
                block if report.last_block is None else max(report.last_block, block)
            )
            for entry in receipt["logs"]:
                topic0 = entry["topics"][0] if entry["topics"] else ""
                report.counts[self._names.get(topic0, "unknown")] += 1
                if topic0 in SPECS_BY_TOPIC:
                    report.events += 1
                self.state.apply(entry)
        report.transactions = len(receipts)
        report.seconds = time.monotonic() - started
        expected = sum(action.events for action in actions)
        if expected != report.events:
            log.warning("devnet.event_count_mismatch", expected=expected, emitted=report.events)
        self.total.merge(report)
        log.debug(
            "devnet.round",
            transactions=report.transactions,
            events=report.events,
            block=report.last_block,
        )
        return report, receipts

    def _blocks(self, actions: Sequence[Action]) -> list[list[TxRequest]]:
        """Consecutive actions grouped into blocks of about `events_per_block` events."""
        blocks: list[list[TxRequest]] = [[]]
        events = gas = 0
        for action in actions:
            full = events + action.events > self.events_per_block
            if blocks[-1] and (full or gas + action.request.gas > self.block_gas):
                blocks.append([])
                events = gas = 0
            blocks[-1].append(action.request)
            events += action.events
            gas += action.request.gas
        return blocks
