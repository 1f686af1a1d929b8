"""Realistic ERC-8004 activity on the devnet: a seeded, deterministic generator.

Several of the node's unlocked accounts act as agent owners, operators, clients and
validators: they register agents (on-chain `data:` registration files listing MCP and A2A
services, `https://` and `ipfs://` URIs), update URIs and metadata, transfer agents, give
feedback (negative, fixed-point, 0-100 scores, empty and unicode tags, extreme int128 values),
revoke it, respond to it, and request and answer validations.

Transactions go out in rounds: every transaction of a round is planned against the state
confirmed by earlier rounds (read back from the receipts' logs), so transactions of different
accounts may be mined in any order; a few locks keep one round's actions independent (an agent
being transferred is used by no other action of the round, and so on). Every receipt must
succeed: a reverted transaction raises `TransactionFailedError`.

What counts as an event is what the indexer stores (`chain.events.SPECS_BY_TOPIC`); other logs
(`MetadataUpdate`, `Approval`, `ApprovalForAll`) appear in the per-type counts only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from eth_hash.auto import keccak

from erc8004_backend.chain.events import SPECS_BY_TOPIC
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet.contracts import (
    IDENTITY,
    REPUTATION,
    VALIDATION,
    Artifact,
    dynamic_bytes,
    event_names,
    event_topic,
    load_artifact,
    topic_address,
    word,
)
from erc8004_backend.devnet.deploy import DeployedRegistries, Transactor, TxRequest
from erc8004_backend.errors import Erc8004Error

log = structlog.get_logger(__name__)

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_HASH = b"\x00" * 32
INT128_MIN, INT128_MAX = -(2**127), 2**127 - 1
REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"

TRANSFER = event_topic("Transfer(address,address,uint256)")
REGISTERED = event_topic("Registered(uint256,string,address)")
URI_UPDATED = event_topic("URIUpdated(uint256,string,address)")
METADATA_SET = event_topic("MetadataSet(uint256,string,string,bytes)")
APPROVAL_FOR_ALL = event_topic("ApprovalForAll(address,address,bool)")
NEW_FEEDBACK = event_topic(
    "NewFeedback(uint256,address,uint64,int128,uint8,string,string,string,string,string,bytes32)"
)
FEEDBACK_REVOKED = event_topic("FeedbackRevoked(uint256,address,uint64)")
VALIDATION_REQUEST = event_topic("ValidationRequest(address,uint256,string,bytes32)")

# The share of each action in `step()` and `run()`, by weight.
STEP_WEIGHTS: dict[str, int] = {
    "register": 10,
    "update_uri": 6,
    "set_metadata": 6,
    "transfer": 2,
    "approve_operator": 1,
    "approve_agent": 1,
    "feedback": 40,
    "revoke": 5,
    "respond": 8,
    "request_validation": 8,
    "respond_validation": 8,
}
# The share of each kind of event in `emit_batch()`; feedback fills the rest.
BATCH_SHARES: dict[str, float] = {
    "register": 0.15,  # 3 events per agent
    "update_uri": 0.05,
    "set_metadata": 0.05,
    "transfer": 0.02,  # 2 events per transfer
    "request_validation": 0.06,
    "respond_validation": 0.05,
    "revoke": 0.05,
    "respond": 0.08,
}

_TAGS1 = [
    "starred",
    "reachable",
    "uptime",
    "successRate",
    "responseTime",
    "revenues",
    "tradingYield",
    "refund",
    "",
    "qualité",
    "信頼性",
    "🚀 rápido",
]
_TAGS2 = ["", "", "day", "week", "month", "mcp", "a2a", "api", "ünïcødé", "✓"]
_VALIDATION_TAGS = [
    "",
    "soft-finality",
    "hard-finality",
    "zkml",
    "tee",
    "re-execution",
    "vérifié ✓",
]
_METADATA_KEYS = [
    "name",
    "description",
    "version",
    "mcp.tools",
    "a2a.skills",
    "x402",
    "category",
    "ключ",
    "🔑",
]
_ADJECTIVES = [
    "Swift",
    "Quiet",
    "Bright",
    "Lucid",
    "Nimble",
    "Stellar",
    "Candid",
    "Ünïque",
    "静かな",
    "Bold",
]
_NOUNS = [
    "Oracle",
    "Scout",
    "Ledger",
    "Courier",
    "Analyst",
    "Sentinel",
    "Broker",
    "Agent",
    "エージェント",
    "Weaver",
]
_LONG_TEXT = "Ünïcødé ✓ データ 🚀 agir ß Ωμέγα — "


_COLUMN_BATCHES = {"setAgentURIBatch", "setMetadataBatch", "revokeFeedbackBatch"}


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


@dataclass
class _Agent:
    agent_id: int
    owner: str
    uri: str = ""
    slug: str | None = None
    # The longest URI it ever had or was planned to have: replacing a URI clears its slots,
    # which the gas given must cover.
    longest_uri: int = 0

    def plan_uri(self, uri: str) -> int:
        """Gas to add for replacing the URI by `uri`."""
        old = self.longest_uri
        self.longest_uri = max(old, len(uri.encode()))
        return 200 * old


@dataclass
class _Feedback:
    agent_id: int
    client: str
    index: int
    revoked: bool = False


@dataclass
class _Request:
    request_hash: bytes
    agent_id: int
    validator: str


@dataclass
class _Round:
    """Locks that keep the actions of one round independent of each other's order."""

    owner_users: dict[int, set[str]] = field(default_factory=dict)  # agent -> acting senders
    transferred: set[int] = field(default_factory=set)
    approvals_changed: set[str] = field(default_factory=set)  # owners
    operators_acting: set[str] = field(default_factory=set)  # owners whose operators act
    revoking: set[tuple[int, str, int]] = field(default_factory=set)


@dataclass
class _Action:
    request: TxRequest
    events: int  # indexed events it will emit


@dataclass
class _BatchItems:
    """Items of one batch function, grouped by sender, with a gas bound per item."""

    contract: str
    function: str
    by_sender: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)

    def add(self, sender: str, item: Any, gas: int) -> None:
        self.by_sender.setdefault(sender, []).append((item, gas))


class ActivityGenerator:
    """Drives several anvil accounts through realistic ERC-8004 activity, deterministically
    for a given seed (on a fresh devnet: the same transactions, events and values)."""

    def __init__(
        self,
        rpc: RpcClient,
        registries: DeployedRegistries,
        *,
        seed: int = 0,
        accounts: Sequence[str] | None = None,
        endpoint_base: str = "https://agents.devnet.example",
        max_round: int = 32,
        items_per_tx: int = 500,
        events_per_block: int = 5_000,
        transactor: Transactor | None = None,
    ) -> None:
        if min(max_round, items_per_tx, events_per_block) < 1:
            raise ActivityError("max_round, items_per_tx and events_per_block must be at least 1")
        self.rpc = rpc
        self.registries = registries
        self.seed = seed
        self.endpoint_base = endpoint_base.rstrip("/")
        self.max_round = max_round
        self.items_per_tx = items_per_tx
        self.events_per_block = events_per_block
        self.transactor = transactor or Transactor(rpc)
        self.total = ActivityReport()  # everything this generator emitted
        self._rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
        self._accounts = [a.lower() for a in accounts] if accounts is not None else None
        self._ready = False
        self._max_tx_gas = 30_000_000
        self._block_gas = 30_000_000
        self._names = event_names()
        self._identity = load_artifact(IDENTITY)
        self._reputation = load_artifact(REPUTATION)
        self._validation = load_artifact(VALIDATION)
        self._agents: dict[int, _Agent] = {}
        self._agent_ids: list[int] = []
        # Agents the random activity leaves alone (no feedback, validation request, or change of
        # URI, metadata or owner): a scripted scene's agent, whose story the script tells.
        self.hands_off: set[int] = set()
        self._operators: dict[str, set[str]] = {}
        self._feedback: list[_Feedback] = []
        self._feedback_at: dict[tuple[int, str, int], _Feedback] = {}
        self._requests: dict[bytes, _Request] = {}
        self._request_list: list[_Request] = []
        self._slugs: dict[str, str] = {}
        self._counter = 0
        self._salt = b""

    # -- public API ----------------------------------------------------------------------------

    @property
    def accounts(self) -> list[str]:
        if self._accounts is None:
            raise ActivityError("the generator is not set up yet: await setup() first")
        return list(self._accounts)

    @property
    def agent_ids(self) -> list[int]:
        """The agents known to exist (registered by anyone before setup, or by this)."""
        return list(self._agent_ids)

    def owner_of(self, agent_id: int) -> str:
        return self._agents[agent_id].owner

    async def setup(self) -> None:
        """Read the accounts, the gas limit and the registries' state (done on first use)."""
        if self._accounts is None:
            accounts = await self.rpc.call("eth_accounts")
            if not isinstance(accounts, list) or len(accounts) < 2:
                raise ActivityError("the devnet needs at least two unlocked accounts")
            self._accounts = [str(a).lower() for a in accounts]
        latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        self._block_gas = int(latest["gasLimit"], 16) * 9 // 10
        self._max_tx_gas = min(self._block_gas, 500_000_000)
        await self.resync()
        # Request hashes must be new on this chain, and the same for the same seed on a fresh
        # devnet: another generator's earlier requests make the difference.
        self._salt = keccak(f"{self.seed}:{len(self._request_list)}".encode())
        self._ready = True

    async def resync(self) -> None:
        """Rebuild the model of agents, feedback and requests from the chain's logs, and
        forget the nonces: call it after the chain changed under the generator (a revert)."""
        self.transactor.forget_nonces()
        for container in (
            self._agents,
            self._agent_ids,
            self._operators,
            self._feedback,
            self._feedback_at,
            self._requests,
            self._request_list,
        ):
            container.clear()
        head = await self.rpc.block_number()
        addresses = list(self.registries.addresses.values())
        step = 50_000
        for start in range(self.registries.block_number, head + 1, step):
            for entry in await self.rpc.get_logs(addresses, start, min(start + step - 1, head)):
                self._apply(entry)

    async def step(self) -> ActivityReport:
        """One realistic action: one transaction, mined and checked."""
        await self._ensure_ready()
        return await self._execute(self._plan_round(1, None))

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
        await self._ensure_ready()
        report = ActivityReport()
        started = time.monotonic()
        while events is None or report.events < events:
            if stop is not None and stop.is_set():
                break
            remaining = None if events is None else events - report.events
            elapsed = time.monotonic() - started
            if rate is None:
                size = self.max_round if not batch else 10_000
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
                part = await self._execute(self._plan_round(size, remaining))
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
        await self._ensure_ready()
        started = time.monotonic()
        report = ActivityReport()
        plan = self._allocate(n_events)
        # Round 1: registrations.
        registrations = _BatchItems(IDENTITY, "registerBatch")
        for _ in range(plan["register"]):
            owner = self._rng.choice(self.accounts)
            uri = self._new_registration_uri(short=True)
            registrations.add(owner, uri, _gas(180_000, uri, stored=True))
        report.merge(await self._execute(self._batch_actions(registrations, 3)))
        # Round 2: what needs agents.
        feedback = self._plan_feedback_batch(plan["feedback"])
        uris, metadata, requests = self._plan_owner_batches(plan)
        round2 = self._batch_actions(feedback, 1) + self._batch_actions(uris, 1)
        round2 += self._batch_actions(metadata, 1) + self._batch_actions(requests, 1)
        new_requests = [item[0][3] for items in requests.by_sender.values() for item in items]
        report.merge(await self._execute(round2))
        # Round 3: what needs round 2's feedback and requests, and transfers.
        fresh = self._feedback[len(self._feedback) - plan["feedback"] :] if plan["feedback"] else []
        round3 = self._batch_actions(self._plan_revocations(fresh, plan["revoke"]), 1)
        round3 += self._batch_actions(self._plan_responses(fresh, plan["respond"]), 1)
        round3 += self._batch_actions(
            self._plan_validation_responses(new_requests, plan["respond_validation"]), 1
        )
        round3 += self._plan_transfers(plan["transfer"])
        report.merge(await self._execute(round3))
        report.seconds = time.monotonic() - started
        if n_events >= 3 and report.events != n_events:
            log.warning("devnet.batch_count_mismatch", asked=n_events, emitted=report.events)
        return report

    async def register_agent(self, uri: str, *, owner: str | None = None) -> int:
        """Register one agent with this URI (a scripted scene: the demo, end-to-end tests);
        returns its id."""
        await self._ensure_ready()
        sender = (owner or self._rng.choice(self.accounts)).lower()
        data = self._identity.encode_call("register(string)", uri)
        request = TxRequest(sender, self.registries.identity, data,
                            _gas(250_000, uri, stored=True), "register(uri)")  # fmt: skip
        before = set(self._agent_ids)
        await self._execute([_Action(request, 3)])
        (agent_id,) = set(self._agent_ids) - before
        return agent_id

    async def give_feedback(
        self,
        agent_id: int,
        value: int,
        *,
        decimals: int = 0,
        tag1: str = "",
        tag2: str = "",
        endpoint: str = "",
        file_uri: str = "",
        file_hash: bytes = ZERO_HASH,
        client: str | None = None,
    ) -> ActivityReport:
        """One feedback with these values (a scripted scene), from a client that is not the
        agent's owner unless `client` says otherwise."""
        await self._ensure_ready()
        if agent_id not in self._agents:
            raise ActivityError(f"agent {agent_id} does not exist on the devnet")
        sender = client.lower() if client else self._client_for(agent_id)
        args = (agent_id, value, decimals, tag1, tag2, endpoint, file_uri, file_hash)
        data = self._reputation.encode_call("giveFeedback", *args)
        request = TxRequest(sender, self.registries.reputation, data,
                            _feedback_gas(args) + 50_000, f"giveFeedback({agent_id})")  # fmt: skip
        return await self._execute([_Action(request, 1)])

    async def request_validation(
        self,
        agent_id: int,
        validator: str,
        *,
        request_uri: str = "",
        request_hash: bytes | None = None,
    ) -> bytes:
        """One validation request for the agent, sent by its owner, to `validator` (a scripted
        scene); returns the request hash (a new one unless given)."""
        await self._ensure_ready()
        if agent_id not in self._agents:
            raise ActivityError(f"agent {agent_id} does not exist on the devnet")
        if request_hash is None:
            request_hash = keccak(self._salt + b"scripted" + self._next().to_bytes(8, "big"))
        if len(request_hash) != 32:
            raise ActivityError("a request hash is 32 bytes")
        owner = self._agents[agent_id].owner
        data = self._validation.encode_call(
            "validationRequest", validator.lower(), agent_id, request_uri, request_hash
        )
        label = f"validationRequest({agent_id})"
        request = TxRequest(owner, self.registries.validation, data, _gas(200_000, request_uri),
                            label)  # fmt: skip
        await self._execute([_Action(request, 1)])
        return request_hash

    async def respond_validation(
        self,
        request_hash: bytes,
        response: int,
        *,
        response_uri: str = "",
        response_hash: bytes = ZERO_HASH,
        tag: str = "",
    ) -> ActivityReport:
        """The requested validator's response (0-100) to a validation request (a scripted
        scene); a request may be answered more than once."""
        await self._ensure_ready()
        request = self._requests.get(request_hash)
        if request is None:
            raise ActivityError(f"no validation request 0x{request_hash.hex()} on the devnet")
        if not 0 <= response <= 100:
            raise ActivityError("a validation response is from 0 to 100")
        args = (request_hash, response, response_uri, response_hash, tag)
        data = self._validation.encode_call("validationResponse", *args)
        request_tx = TxRequest(
            request.validator,
            self.registries.validation,
            data,
            _gas(150_000, response_uri, tag, stored=True),
            f"validationResponse({request.agent_id})",
        )
        return await self._execute([_Action(request_tx, 1)])

    async def give_legacy_feedback(
        self,
        agent_id: int | None = None,
        *,
        score: int | None = None,
        tag1: bytes = b"starred",
        tag2: bytes = b"",
        file_uri: str = "ipfs://bafkreilegacyfeedback",
        file_hash: bytes = ZERO_HASH,
        sender: str | None = None,
    ) -> ActivityReport:
        """Feedback in the earlier testnet ABI (event `NewFeedback(v0)`), for its decoder."""
        await self._ensure_ready()
        if agent_id is None:
            if not self._agent_ids:
                await self._execute(self._plan_round(1, 3, only="register"))
            agent_id = self._rng.choice(self._agent_ids)
        if sender is not None:
            client = sender
        elif agent_id in self._agents:
            client = self._client_for(agent_id)
        else:
            client = self._rng.choice(self.accounts)
        data = self._reputation.encode_call(
            "giveLegacyFeedback",
            agent_id,
            self._rng.randint(0, 100) if score is None else score,
            tag1.ljust(32, b"\x00")[:32],
            tag2.ljust(32, b"\x00")[:32],
            file_uri,
            file_hash,
        )
        request = TxRequest(
            client,
            self.registries.reputation,
            data,
            _gas(100_000, file_uri),
            f"giveLegacyFeedback({agent_id})",
        )
        return await self._execute([_Action(request, 1)])

    # -- executing -----------------------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        if not self._ready:
            await self.setup()

    async def _execute(self, actions: Sequence[_Action]) -> ActivityReport:
        started = time.monotonic()
        report = ActivityReport()
        if not actions:
            return report
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
                self._apply(entry)
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
        return report

    def _blocks(self, actions: Sequence[_Action]) -> list[list[TxRequest]]:
        """Consecutive actions grouped into blocks of about `events_per_block` events."""
        blocks: list[list[TxRequest]] = [[]]
        events = gas = 0
        for action in actions:
            full = events + action.events > self.events_per_block
            if blocks[-1] and (full or gas + action.request.gas > self._block_gas):
                blocks.append([])
                events = gas = 0
            blocks[-1].append(action.request)
            events += action.events
            gas += action.request.gas
        return blocks

    def _apply(self, entry: dict[str, Any]) -> None:
        """Update the model from one confirmed log (decoded by hand: this is the hot path)."""
        topics = entry["topics"]
        if not topics:
            return
        topic0 = topics[0]
        data = bytes.fromhex(entry["data"][2:])
        if topic0 == TRANSFER:
            agent_id, new_owner = int(topics[3], 16), topic_address(topics[2])
            if agent_id in self._agents:
                self._agents[agent_id].owner = new_owner
            else:
                self._agents[agent_id] = _Agent(agent_id, new_owner)
                self._agent_ids.append(agent_id)
        elif topic0 == REGISTERED:
            agent = self._agents.get(int(topics[1], 16))
            if agent is not None:
                uri = dynamic_bytes(data, 0)
                agent.uri = uri.decode("utf-8", "replace")
                agent.longest_uri = max(agent.longest_uri, len(uri))
                agent.slug = self._slugs.pop(agent.uri, agent.slug)
        elif topic0 == URI_UPDATED:
            agent = self._agents.get(int(topics[1], 16))
            if agent is not None:
                uri = dynamic_bytes(data, 0)
                agent.uri = uri.decode("utf-8", "replace")
                agent.longest_uri = max(agent.longest_uri, len(uri))
        elif topic0 == APPROVAL_FOR_ALL:
            owner, operator = topic_address(topics[1]), topic_address(topics[2])
            if word(data, 0):
                self._operators.setdefault(owner, set()).add(operator)
            else:
                self._operators.get(owner, set()).discard(operator)
        elif topic0 == NEW_FEEDBACK:
            feedback = _Feedback(int(topics[1], 16), topic_address(topics[2]), word(data, 0))
            self._feedback.append(feedback)
            self._feedback_at[(feedback.agent_id, feedback.client, feedback.index)] = feedback
        elif topic0 == FEEDBACK_REVOKED:
            key = (int(topics[1], 16), topic_address(topics[2]), int(topics[3], 16))
            if key in self._feedback_at:
                self._feedback_at[key].revoked = True
        elif topic0 == VALIDATION_REQUEST:
            request = _Request(
                bytes.fromhex(topics[3][2:]), int(topics[2], 16), topic_address(topics[1])
            )
            self._requests[request.request_hash] = request
            self._request_list.append(request)

    # -- planning one action at a time ---------------------------------------------------------

    def _plan_round(self, size: int, budget: int | None, only: str | None = None) -> list[_Action]:
        state = _Round()
        actions: list[_Action] = []
        planners: dict[str, Callable[[_Round, int | None], _Action | None]] = {
            "register": self._plan_register,
            "update_uri": self._plan_update_uri,
            "set_metadata": self._plan_set_metadata,
            "transfer": self._plan_transfer,
            "approve_operator": self._plan_approve_operator,
            "approve_agent": self._plan_approve_agent,
            "feedback": self._plan_feedback,
            "revoke": self._plan_revoke,
            "respond": self._plan_respond,
            "request_validation": self._plan_request_validation,
            "respond_validation": self._plan_respond_validation,
        }
        kinds, weights = list(STEP_WEIGHTS), list(STEP_WEIGHTS.values())
        for _ in range(size):
            left = None if budget is None else budget - sum(a.events for a in actions)
            if left is not None and left <= 0:
                break
            action = None
            for _attempt in range(8):
                kind = only or self._rng.choices(kinds, weights)[0]
                action = planners[kind](state, left)
                if action is not None:
                    break
            if action is None:
                action = self._plan_feedback(state, left)
            if action is None and not actions:  # no agent yet: a registration, even over budget
                action = self._plan_register(state, None)
            if action is None:
                break
            actions.append(action)
        return actions

    def _plan_register(self, state: _Round, left: int | None) -> _Action | None:
        if left is not None and left < 3:
            return None
        owner = self._rng.choice(self.accounts)
        roll = self._rng.random()
        if roll < 0.05:
            data = self._identity.encode_call("register()")
            return _Action(
                TxRequest(owner, self.registries.identity, data, 400_000, "register()"), 3
            )
        uri = self._new_registration_uri()
        if roll < 0.15 and (left is None or left >= 5):
            entries = [
                (key, self._metadata_value(key)) for key in self._rng.sample(_METADATA_KEYS, 2)
            ]
            data = self._identity.encode_call("register(string,(string,bytes)[])", uri, entries)
            gas = _gas(300_000, uri, *(v for _, v in entries), stored=True)
            return _Action(
                TxRequest(owner, self.registries.identity, data, gas, "register(uri, metadata)"),
                3 + len(entries),
            )
        data = self._identity.encode_call("register(string)", uri)
        gas = _gas(250_000, uri, stored=True)
        return _Action(TxRequest(owner, self.registries.identity, data, gas, "register(uri)"), 3)

    def _pick_agent_for_owner_action(self, state: _Round) -> tuple[_Agent, str] | None:
        """An agent and who acts for it (its owner, or one of the owner's operators)."""
        candidates = self._random_targets()
        for _ in range(8):
            if not candidates:
                return None
            agent = self._agents[self._rng.choice(candidates)]
            if agent.agent_id in state.transferred:
                continue
            operators = sorted(self._operators.get(agent.owner, set()))
            actor = agent.owner
            if (
                operators
                and agent.owner not in state.approvals_changed
                and self._rng.random() < 0.3
            ):
                actor = self._rng.choice(operators)
                state.operators_acting.add(agent.owner)
            state.owner_users.setdefault(agent.agent_id, set()).add(actor)
            return agent, actor
        return None

    def _plan_update_uri(self, state: _Round, left: int | None) -> _Action | None:
        picked = self._pick_agent_for_owner_action(state)
        if picked is None:
            return None
        agent, actor = picked
        uri = self._new_registration_uri(agent_id=agent.agent_id, slug=agent.slug)
        data = self._identity.encode_call("setAgentURI", agent.agent_id, uri)
        gas = _gas(120_000, uri, stored=True) + agent.plan_uri(uri)
        return _Action(
            TxRequest(actor, self.registries.identity, data, gas, f"setAgentURI({agent.agent_id})"),
            1,
        )

    def _plan_set_metadata(self, state: _Round, left: int | None) -> _Action | None:
        picked = self._pick_agent_for_owner_action(state)
        if picked is None:
            return None
        agent, actor = picked
        key = self._rng.choice(_METADATA_KEYS)
        value = self._metadata_value(key)
        data = self._identity.encode_call("setMetadata", agent.agent_id, key, value)
        gas = _gas(120_000, key, value, stored=True)
        return _Action(
            TxRequest(
                actor,
                self.registries.identity,
                data,
                gas,
                f"setMetadata({agent.agent_id}, {key!r})",
            ),
            1,
        )

    def _plan_transfer(self, state: _Round, left: int | None) -> _Action | None:
        if left is not None and left < 2:
            return None
        candidates = self._random_targets()
        for _ in range(8):
            if not candidates:
                return None
            agent = self._agents[self._rng.choice(candidates)]
            users = state.owner_users.get(agent.agent_id, set())
            if agent.agent_id in state.transferred or not users <= {agent.owner}:
                continue
            recipient = self._rng.choice([a for a in self.accounts if a != agent.owner])
            state.transferred.add(agent.agent_id)
            function = self._rng.choice(
                ["transferFrom", "safeTransferFrom(address,address,uint256)"]
            )
            data = self._identity.encode_call(function, agent.owner, recipient, agent.agent_id)
            return _Action(
                TxRequest(
                    agent.owner,
                    self.registries.identity,
                    data,
                    200_000,
                    f"{function.split('(')[0]}({agent.agent_id})",
                ),
                2,
            )
        return None

    def _plan_approve_operator(self, state: _Round, left: int | None) -> _Action | None:
        owner = self._rng.choice(self.accounts)
        if owner in state.operators_acting or owner in state.approvals_changed:
            return None
        operator = self._rng.choice([a for a in self.accounts if a != owner])
        approved = operator not in self._operators.get(owner, set())
        state.approvals_changed.add(owner)
        data = self._identity.encode_call("setApprovalForAll", operator, approved)
        return _Action(
            TxRequest(
                owner,
                self.registries.identity,
                data,
                100_000,
                f"setApprovalForAll({operator}, {approved})",
            ),
            0,
        )

    def _plan_approve_agent(self, state: _Round, left: int | None) -> _Action | None:
        picked = self._pick_agent_for_owner_action(state)
        if picked is None:
            return None
        agent, actor = picked
        approved = self._rng.choice([a for a in self.accounts if a != agent.owner])
        data = self._identity.encode_call("approve", approved, agent.agent_id)
        return _Action(
            TxRequest(actor, self.registries.identity, data, 100_000, f"approve({agent.agent_id})"),
            0,
        )

    def _plan_feedback(self, state: _Round, left: int | None) -> _Action | None:
        candidates = self._random_targets()
        if not candidates:
            return None
        agent_id = self._rng.choice(candidates)
        client = self._client_for(agent_id)
        args = self._feedback_args(agent_id)
        data = self._reputation.encode_call("giveFeedback", *args)
        gas = _feedback_gas(args) + 50_000
        return _Action(
            TxRequest(client, self.registries.reputation, data, gas, f"giveFeedback({agent_id})"), 1
        )

    def _plan_revoke(self, state: _Round, left: int | None) -> _Action | None:
        for _ in range(8):
            if not self._feedback:
                return None
            feedback = self._rng.choice(self._feedback)
            key = (feedback.agent_id, feedback.client, feedback.index)
            if feedback.revoked or key in state.revoking:
                continue
            state.revoking.add(key)
            data = self._reputation.encode_call("revokeFeedback", feedback.agent_id, feedback.index)
            return _Action(
                TxRequest(
                    feedback.client,
                    self.registries.reputation,
                    data,
                    100_000,
                    f"revokeFeedback({feedback.agent_id}, {feedback.index})",
                ),
                1,
            )
        return None

    def _plan_respond(self, state: _Round, left: int | None) -> _Action | None:
        if not self._feedback:
            return None
        feedback = self._rng.choice(self._feedback)
        responder = self._responder_for(feedback)
        uri, digest = self._document_uri("responses")
        data = self._reputation.encode_call(
            "appendResponse", feedback.agent_id, feedback.client, feedback.index, uri, digest
        )
        return _Action(
            TxRequest(
                responder,
                self.registries.reputation,
                data,
                _gas(100_000, uri),
                f"appendResponse({feedback.agent_id}, {feedback.index})",
            ),
            1,
        )

    def _plan_request_validation(self, state: _Round, left: int | None) -> _Action | None:
        picked = self._pick_agent_for_owner_action(state)
        if picked is None:
            return None
        agent, actor = picked
        validator, uri, request_hash = self._new_request(agent)
        data = self._validation.encode_call(
            "validationRequest", validator, agent.agent_id, uri, request_hash
        )
        return _Action(
            TxRequest(
                actor,
                self.registries.validation,
                data,
                _gas(200_000, uri),
                f"validationRequest({agent.agent_id})",
            ),
            1,
        )

    def _plan_respond_validation(self, state: _Round, left: int | None) -> _Action | None:
        if not self._request_list:
            return None
        request = self._rng.choice(self._request_list)
        args = self._validation_response_args(request)
        data = self._validation.encode_call("validationResponse", *args)
        return _Action(
            TxRequest(
                request.validator,
                self.registries.validation,
                data,
                _gas(150_000, args[2], args[4], stored=True),
                f"validationResponse({request.agent_id})",
            ),
            1,
        )

    # -- planning batches ----------------------------------------------------------------------

    def _allocate(self, n: int) -> dict[str, int]:
        """How many of each action make exactly n events (registrations emit 3, transfers 2)."""
        counts = {kind: int(n * share) for kind, share in BATCH_SHARES.items()}
        counts["register"] = int(n * BATCH_SHARES["register"] / 3)
        if not self._agent_ids and n > 0:
            counts["register"] = max(counts["register"], 1)
        counts["transfer"] = min(
            int(n * BATCH_SHARES["transfer"] / 2), len(self._agent_ids) + counts["register"]
        )
        costs = {"register": 3, "transfer": 2}
        counts["feedback"] = n - sum(c * costs.get(kind, 1) for kind, c in counts.items())
        if counts["feedback"] < 0:  # a tiny batch: a registration if needed, then feedback
            counts = dict.fromkeys(counts, 0)
            counts["register"] = 0 if self._agent_ids or n == 0 else 1
            counts["feedback"] = max(n - 3 * counts["register"], 0)
        # Revocations and responses need this batch's feedback, validation responses its
        # requests: what cannot be done becomes feedback.
        if counts["feedback"] == 0:
            counts["feedback"], counts["respond"] = counts["respond"], 0
        if counts["revoke"] > counts["feedback"]:
            moved = (counts["revoke"] - counts["feedback"] + 1) // 2
            counts["revoke"] -= moved
            counts["feedback"] += moved
        if counts["request_validation"] == 0:
            counts["feedback"] += counts["respond_validation"]
            counts["respond_validation"] = 0
        return counts

    def _batch_actions(self, items: _BatchItems, events_per_item: int) -> list[_Action]:
        artifact: Artifact = {
            IDENTITY: self._identity,
            REPUTATION: self._reputation,
            VALIDATION: self._validation,
        }[items.contract]
        address = {
            IDENTITY: self.registries.identity,
            REPUTATION: self.registries.reputation,
            VALIDATION: self.registries.validation,
        }[items.contract]
        actions: list[_Action] = []
        for sender, entries in items.by_sender.items():
            for chunk in self._chunks(entries):
                values = [item for item, _ in chunk]
                gas = 150_000 + sum(g for _, g in chunk)
                if items.function in _COLUMN_BATCHES:  # parallel arrays, not an array of structs
                    columns = [list(column) for column in zip(*values, strict=True)]
                    data = artifact.encode_call(items.function, *columns)
                else:
                    data = artifact.encode_call(items.function, values)
                label = f"{items.function}({len(values)} items)"
                request = TxRequest(sender, address, data, min(gas, self._max_tx_gas), label)
                actions.append(_Action(request, events_per_item * len(values)))
        return actions

    def _chunks(self, entries: list[tuple[Any, int]]) -> Iterable[list[tuple[Any, int]]]:
        chunk: list[tuple[Any, int]] = []
        gas = 150_000
        for entry in entries:
            if chunk and (len(chunk) >= self.items_per_tx or gas + entry[1] > self._max_tx_gas):
                yield chunk
                chunk, gas = [], 150_000
            chunk.append(entry)
            gas += entry[1]
        if chunk:
            yield chunk

    def _plan_feedback_batch(self, count: int) -> _BatchItems:
        items = _BatchItems(REPUTATION, "giveFeedbackBatch")
        candidates = self._random_targets()
        for _ in range(count):
            agent_id = self._rng.choice(candidates)
            args = self._feedback_args(agent_id)
            items.add(self._client_for(agent_id), args, _feedback_gas(args))
        return items

    def _plan_owner_batches(
        self, plan: dict[str, int]
    ) -> tuple[_BatchItems, _BatchItems, _BatchItems]:
        candidates = self._random_targets()
        uris = _BatchItems(IDENTITY, "setAgentURIBatch")
        for _ in range(plan["update_uri"]):
            agent = self._agents[self._rng.choice(candidates)]
            uri = self._new_registration_uri(agent_id=agent.agent_id, slug=agent.slug, short=True)
            gas = _gas(70_000, uri, stored=True) + agent.plan_uri(uri)
            uris.add(agent.owner, (agent.agent_id, uri), gas)
        metadata = _BatchItems(IDENTITY, "setMetadataBatch")
        for _ in range(plan["set_metadata"]):
            agent = self._agents[self._rng.choice(candidates)]
            key = self._rng.choice(_METADATA_KEYS)
            value = self._metadata_value(key)
            metadata.add(
                agent.owner, (agent.agent_id, key, value), _gas(70_000, key, value, stored=True)
            )
        requests = _BatchItems(VALIDATION, "validationRequestBatch")
        for _ in range(plan["request_validation"]):
            agent = self._agents[self._rng.choice(candidates)]
            validator, uri, request_hash = self._new_request(agent)
            requests.add(
                agent.owner, (validator, agent.agent_id, uri, request_hash), _gas(90_000, uri)
            )
        return uris, metadata, requests

    def _plan_revocations(self, fresh: list[_Feedback], count: int) -> _BatchItems:
        items = _BatchItems(REPUTATION, "revokeFeedbackBatch")
        for feedback in self._rng.sample(fresh, min(count, len(fresh))):
            items.add(feedback.client, (feedback.agent_id, feedback.index), 30_000)
        return items

    def _plan_responses(self, fresh: list[_Feedback], count: int) -> _BatchItems:
        items = _BatchItems(REPUTATION, "appendResponseBatch")
        for _ in range(count if fresh else 0):
            feedback = self._rng.choice(fresh)
            uri, digest = self._document_uri("responses")
            items.add(
                self._responder_for(feedback),
                (feedback.agent_id, feedback.client, feedback.index, uri, digest),
                _gas(30_000, uri),
            )
        return items

    def _plan_validation_responses(self, request_hashes: list[bytes], count: int) -> _BatchItems:
        items = _BatchItems(VALIDATION, "validationResponseBatch")
        for i in range(count if request_hashes else 0):
            request = self._requests[request_hashes[i % len(request_hashes)]]
            args = self._validation_response_args(request)
            items.add(request.validator, args, _gas(90_000, args[2], args[4], stored=True))
        return items

    def _plan_transfers(self, count: int) -> list[_Action]:
        candidates = self._random_targets()
        chosen = self._rng.sample(candidates, min(count, len(candidates)))
        recipients = {
            owner: self._rng.choice([a for a in self.accounts if a != owner])
            for owner in self.accounts
        }
        by_pair: dict[tuple[str, str], list[tuple[Any, int]]] = {}
        for agent_id in chosen:
            owner = self._agents[agent_id].owner
            by_pair.setdefault((owner, recipients[owner]), []).append((agent_id, 60_000))
        actions = []
        for (owner, recipient), entries in by_pair.items():
            for chunk in self._chunks(entries):
                ids = [agent_id for agent_id, _ in chunk]
                data = self._identity.encode_call("transferFromBatch", owner, recipient, ids)
                gas = min(150_000 + sum(g for _, g in chunk), self._max_tx_gas)
                actions.append(
                    _Action(
                        TxRequest(
                            owner,
                            self.registries.identity,
                            data,
                            gas,
                            f"transferFromBatch({len(ids)} agents)",
                        ),
                        2 * len(ids),
                    )
                )
        return actions

    # -- realistic values ----------------------------------------------------------------------

    def _random_targets(self) -> list[int]:
        """The agents random actions may pick: all but the hands-off ones."""
        if not self.hands_off:
            return self._agent_ids
        return [agent_id for agent_id in self._agent_ids if agent_id not in self.hands_off]

    def _client_for(self, agent_id: int) -> str:
        """A client other than the owner, as the specification wants."""
        owner = self._agents[agent_id].owner
        return self._rng.choice([a for a in self.accounts if a != owner])

    def _responder_for(self, feedback: _Feedback) -> str:
        """Mostly the agent's owner (a refund, a reply); sometimes a third party (spam tags)."""
        if self._rng.random() < 0.7:
            return self._agents[feedback.agent_id].owner
        return self._rng.choice(self.accounts)

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def _new_registration_uri(
        self, *, agent_id: int | None = None, slug: str | None = None, short: bool = False
    ) -> str:
        slug = slug or f"agent-{self.seed}-{self._next()}"
        roll = self._rng.random()
        if roll < (0.1 if short else 0.5):
            document = self._registration_file(slug, agent_id)
            encoded = base64.b64encode(
                json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            ).decode()
            uri = f"data:application/json;base64,{encoded}"
        elif roll < (0.8 if short else 0.88):
            uri = f"{self.endpoint_base}/{slug}/agent.json"
        else:
            uri = f"ipfs://bafkrei{keccak(slug.encode()).hex()[:52]}"
        if agent_id is None:
            self._slugs[uri] = slug
        return uri

    def _registration_file(self, slug: str, agent_id: int | None) -> dict[str, Any]:
        base = f"{self.endpoint_base}/{slug}"
        services: list[dict[str, str]] = []
        roll = self._rng.random()
        if roll < 0.85:
            services.append({"name": "MCP", "endpoint": f"{base}/mcp", "version": "2025-06-18"})
        if roll > 0.2:
            services.append(
                {
                    "name": "A2A",
                    "endpoint": f"{base}/.well-known/agent-card.json",
                    "version": "0.3.0",
                }
            )
        if self._rng.random() < 0.2:
            services.append({"name": "web", "endpoint": f"{base}/"})
        name = (
            f"{self._rng.choice(_ADJECTIVES)} {self._rng.choice(_NOUNS)} {slug.rsplit('-', 1)[-1]}"
        )
        document: dict[str, Any] = {
            "type": REGISTRATION_TYPE,
            "name": name,
            "description": f"{name}: a devnet agent that answers questions about {slug}.",
            "image": f"{base}/avatar.png",
            "services": services,
            "x402Support": self._rng.random() < 0.3,
            "active": self._rng.random() < 0.95,
            "supportedTrust": self._rng.sample(
                ["reputation", "validation", "crypto-economic", "tee-attestation"], 2
            ),
        }
        if agent_id is not None:
            identity = self.registries.identity
            document["registrations"] = [
                {
                    "agentId": agent_id,
                    "agentRegistry": f"eip155:{self.registries.chain_id}:{identity}",
                }
            ]
        return document

    def _metadata_value(self, key: str) -> bytes:
        roll = self._rng.random()
        if roll < 0.5:
            return f"{key} value {self._rng.randint(0, 10_000)} ✓".encode()
        if roll < 0.7:
            return self._rng.randint(0, 2**64).to_bytes(32, "big")
        if roll < 0.9:
            return self._rng.randbytes(self._rng.randint(1, 64))
        return b""

    def _text(self, choices: Sequence[str]) -> str:
        if self._rng.random() < 0.02:  # a long unicode string now and then
            return (_LONG_TEXT * 10)[: self._rng.randint(60, 300)]
        return self._rng.choice(choices)

    def _feedback_args(self, agent_id: int) -> tuple[int, int, int, str, str, str, str, bytes]:
        rng = self._rng
        roll = rng.random()
        tag2 = self._text(_TAGS2)
        if roll < 0.45:
            tag1, value, decimals = "starred", round(rng.triangular(0, 100, 85)), 0
        elif roll < 0.55:
            tag1, value, decimals = "uptime", rng.randint(9000, 10000), 2
            tag2 = rng.choice(["day", "week", "month"])
        elif roll < 0.63:
            tag1, decimals = "successRate", rng.randint(0, 1)
            value = rng.randint(0, 100 * 10**decimals)
        elif roll < 0.70:
            tag1, value, decimals = "responseTime", rng.randint(20, 5000), 0
        elif roll < 0.78:
            tag1, decimals = "tradingYield", rng.randint(1, 4)
            value = rng.randint(-50 * 10**decimals, 150 * 10**decimals)
        elif roll < 0.83:
            tag1, value, decimals = "revenues", rng.randint(0, 10**12), 2
        elif roll < 0.88:
            tag1, value, decimals = "refund", rng.choice([-1, 0, 1, -100]), 0
        elif roll < 0.93:
            tag1, value, decimals = "reachable", rng.randint(0, 1), 0
        elif roll < 0.97:
            tag1, value, decimals = self._text(_TAGS1), rng.randint(-100, 100), rng.randint(0, 4)
        else:
            tag1 = rng.choice(["", self._text(_TAGS1), "x" * 40])
            value = rng.choice([INT128_MIN, INT128_MAX, 0, -1, 1, INT128_MIN + 1])
            decimals = rng.choice([0, 4, 18])
        agent = self._agents[agent_id]
        endpoint = (
            f"{self.endpoint_base}/{agent.slug}/mcp" if agent.slug and rng.random() < 0.7 else ""
        )
        feedback_uri, feedback_hash = self._document_uri("feedback")
        return agent_id, value, decimals, tag1, tag2, endpoint, feedback_uri, feedback_hash

    def _document_uri(self, kind: str) -> tuple[str, bytes]:
        """A file URI and its hash: https with a keccak256, ipfs without, or nothing."""
        roll = self._rng.random()
        number = self._next()
        if roll < 0.45:
            uri = f"https://{kind}.devnet.example/{self.seed}/{number}.json"
            return uri, keccak(uri.encode())
        if roll < 0.8:
            return f"ipfs://bafkrei{keccak(f'{kind}{number}'.encode()).hex()[:52]}", ZERO_HASH
        return "", ZERO_HASH

    def _new_request(self, agent: _Agent) -> tuple[str, str, bytes]:
        validator = self._rng.choice([a for a in self.accounts if a != agent.owner])
        number = self._next()
        request_hash = keccak(self._salt + number.to_bytes(8, "big"))
        uri = f"https://validation.devnet.example/{self.seed}/requests/{number}.json"
        if self._rng.random() < 0.3:
            uri = f"ipfs://bafkrei{request_hash.hex()[:52]}"
        return validator, uri, request_hash

    def _validation_response_args(self, request: _Request) -> tuple[bytes, int, str, bytes, str]:
        roll = self._rng.random()
        response = 100 if roll < 0.5 else 0 if roll < 0.65 else self._rng.randint(1, 99)
        uri, digest = self._document_uri("validation")
        return request.request_hash, response, uri, digest, self._text(_VALIDATION_TAGS)


def _gas(base: int, *payloads: str | bytes, stored: bool = False) -> int:
    """An upper bound of the gas an action uses: storing a byte costs about 700."""
    size = sum(len(p.encode() if isinstance(p, str) else p) for p in payloads)
    return base + size * (800 if stored else 60)


def _feedback_gas(args: tuple[int, int, int, str, str, str, str, bytes]) -> int:
    _, _, _, tag1, tag2, endpoint, uri, _ = args
    return _gas(120_000, tag1, tag2, stored=True) + _gas(0, tag1, endpoint, uri)


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
