"""Bulk activity: many events per transaction through the registries' `*Batch` functions,
for benchmarks and large backfills.

A batch of n events goes out in three rounds: registrations; feedback, URI and metadata
updates and validation requests (which need agents); then revocations, responses, validation
responses (which need round 2's feedback and requests) and transfers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from erc8004_backend.devnet.activity.content import METADATA_KEYS
from erc8004_backend.devnet.activity.context import ActivityContext
from erc8004_backend.devnet.activity.state import Feedback
from erc8004_backend.devnet.activity.transactions import (
    Action,
    ActivityReport,
    feedback_gas,
    gas_bound,
)
from erc8004_backend.devnet.contracts import IDENTITY, REPUTATION, VALIDATION
from erc8004_backend.devnet.deploy import TxRequest

log = structlog.get_logger(__name__)

# The share of each kind of event in a batch; feedback fills the rest.
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
# Batch functions that take parallel arrays, not an array of structs.
_COLUMN_BATCHES = {"setAgentURIBatch", "setMetadataBatch", "revokeFeedbackBatch"}
_TX_BASE_GAS = 150_000


@dataclass
class BatchItems:
    """Items of one batch function, grouped by sender, with a gas bound per item."""

    contract: str
    function: str
    by_sender: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)

    def add(self, sender: str, item: Any, gas: int) -> None:
        self.by_sender.setdefault(sender, []).append((item, gas))


class BulkEmitter:
    """Emits exact numbers of events of every kind, many per transaction."""

    def __init__(self, context: ActivityContext) -> None:
        self.context = context
        self.rng = context.rng
        self.state = context.state
        self.content = context.content

    async def emit(self, n_events: int) -> ActivityReport:
        """`n_events` events, exactly unless the devnet has no agent and fewer than 3 are
        asked (a registration emits 3)."""
        started = time.monotonic()
        report = ActivityReport()
        plan = self.allocate(n_events)
        # Round 1: registrations.
        registrations = BatchItems(IDENTITY, "registerBatch")
        for _ in range(plan["register"]):
            owner = self.rng.choice(self.context.accounts)
            uri = self.content.registration_uri(short=True)
            registrations.add(owner, uri, gas_bound(180_000, uri, stored=True))
        report.merge(await self.context.execute(self._actions(registrations, 3)))
        # Round 2: what needs agents.
        feedback = self._feedback(plan["feedback"])
        uris, metadata, requests = self._owner_batches(plan)
        round2 = self._actions(feedback, 1) + self._actions(uris, 1)
        round2 += self._actions(metadata, 1) + self._actions(requests, 1)
        new_requests = [item[0][3] for items in requests.by_sender.values() for item in items]
        report.merge(await self.context.execute(round2))
        # Round 3: what needs round 2's feedback and requests, and transfers.
        given = self.state.feedback
        fresh = given[len(given) - plan["feedback"] :] if plan["feedback"] else []
        round3 = self._actions(self._revocations(fresh, plan["revoke"]), 1)
        round3 += self._actions(self._responses(fresh, plan["respond"]), 1)
        round3 += self._actions(
            self._validation_responses(new_requests, plan["respond_validation"]), 1
        )
        round3 += self._transfers(plan["transfer"])
        report.merge(await self.context.execute(round3))
        report.seconds = time.monotonic() - started
        if n_events >= 3 and report.events != n_events:
            log.warning("devnet.batch_count_mismatch", asked=n_events, emitted=report.events)
        return report

    def allocate(self, n: int) -> dict[str, int]:
        """How many of each action make exactly n events (registrations emit 3, transfers 2)."""
        agents = len(self.state.agent_ids)
        counts = {kind: int(n * share) for kind, share in BATCH_SHARES.items()}
        counts["register"] = int(n * BATCH_SHARES["register"] / 3)
        if not agents and n > 0:
            counts["register"] = max(counts["register"], 1)
        counts["transfer"] = min(int(n * BATCH_SHARES["transfer"] / 2), agents + counts["register"])
        costs = {"register": 3, "transfer": 2}
        counts["feedback"] = n - sum(c * costs.get(kind, 1) for kind, c in counts.items())
        if counts["feedback"] < 0:  # a tiny batch: a registration if needed, then feedback
            counts = dict.fromkeys(counts, 0)
            counts["register"] = 0 if agents or n == 0 else 1
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

    def _actions(self, items: BatchItems, events_per_item: int) -> list[Action]:
        artifact = self.context.contracts.artifacts[items.contract]
        address = self.context.contracts.addresses[items.contract]
        actions: list[Action] = []
        for sender, entries in items.by_sender.items():
            for chunk in self._chunks(entries):
                values = [item for item, _ in chunk]
                gas = _TX_BASE_GAS + sum(g for _, g in chunk)
                if items.function in _COLUMN_BATCHES:
                    columns = [list(column) for column in zip(*values, strict=True)]
                    data = artifact.encode_call(items.function, *columns)
                else:
                    data = artifact.encode_call(items.function, values)
                label = f"{items.function}({len(values)} items)"
                request = TxRequest(sender, address, data, min(gas, self.context.max_tx_gas), label)
                actions.append(Action(request, events_per_item * len(values)))
        return actions

    def _chunks(self, entries: list[tuple[Any, int]]) -> Iterable[list[tuple[Any, int]]]:
        """Entries in transactions of at most `items_per_tx` items and the gas a tx may use."""
        chunk: list[tuple[Any, int]] = []
        gas = _TX_BASE_GAS
        for entry in entries:
            if chunk and (
                len(chunk) >= self.context.items_per_tx or gas + entry[1] > self.context.max_tx_gas
            ):
                yield chunk
                chunk, gas = [], _TX_BASE_GAS
            chunk.append(entry)
            gas += entry[1]
        if chunk:
            yield chunk

    def _feedback(self, count: int) -> BatchItems:
        items = BatchItems(REPUTATION, "giveFeedbackBatch")
        candidates = self.context.random_targets()
        for _ in range(count):
            agent_id = self.rng.choice(candidates)
            args = self.content.feedback_args(self.state.agents[agent_id])
            items.add(self.context.client_for(agent_id), args, feedback_gas(args))
        return items

    def _owner_batches(self, plan: dict[str, int]) -> tuple[BatchItems, BatchItems, BatchItems]:
        candidates = self.context.random_targets()
        uris = BatchItems(IDENTITY, "setAgentURIBatch")
        for _ in range(plan["update_uri"]):
            agent = self.state.agents[self.rng.choice(candidates)]
            uri = self.content.registration_uri(
                agent_id=agent.agent_id, slug=agent.slug, short=True
            )
            gas = gas_bound(70_000, uri, stored=True) + agent.plan_uri(uri)
            uris.add(agent.owner, (agent.agent_id, uri), gas)
        metadata = BatchItems(IDENTITY, "setMetadataBatch")
        for _ in range(plan["set_metadata"]):
            agent = self.state.agents[self.rng.choice(candidates)]
            key = self.rng.choice(METADATA_KEYS)
            value = self.content.metadata_value(key)
            gas = gas_bound(70_000, key, value, stored=True)
            metadata.add(agent.owner, (agent.agent_id, key, value), gas)
        requests = BatchItems(VALIDATION, "validationRequestBatch")
        for _ in range(plan["request_validation"]):
            agent = self.state.agents[self.rng.choice(candidates)]
            validator, uri, request_hash = self.content.validation_request(
                agent, self.context.accounts
            )
            requests.add(
                agent.owner, (validator, agent.agent_id, uri, request_hash), gas_bound(90_000, uri)
            )
        return uris, metadata, requests

    def _revocations(self, fresh: list[Feedback], count: int) -> BatchItems:
        items = BatchItems(REPUTATION, "revokeFeedbackBatch")
        for feedback in self.rng.sample(fresh, min(count, len(fresh))):
            items.add(feedback.client, (feedback.agent_id, feedback.index), 30_000)
        return items

    def _responses(self, fresh: list[Feedback], count: int) -> BatchItems:
        items = BatchItems(REPUTATION, "appendResponseBatch")
        for _ in range(count if fresh else 0):
            feedback = self.rng.choice(fresh)
            uri, digest = self.content.document_uri("responses")
            items.add(
                self.context.responder_for(feedback),
                (feedback.agent_id, feedback.client, feedback.index, uri, digest),
                # A first response stores its count (the registry answers getResponseCount).
                gas_bound(60_000, uri),
            )
        return items

    def _validation_responses(self, request_hashes: list[bytes], count: int) -> BatchItems:
        items = BatchItems(VALIDATION, "validationResponseBatch")
        for i in range(count if request_hashes else 0):
            request = self.state.requests[request_hashes[i % len(request_hashes)]]
            args = self.content.validation_response_args(request)
            items.add(request.validator, args, gas_bound(90_000, args[2], args[4], stored=True))
        return items

    def _transfers(self, count: int) -> list[Action]:
        candidates = self.context.random_targets()
        chosen = self.rng.sample(candidates, min(count, len(candidates)))
        accounts = self.context.accounts
        recipients = {
            owner: self.rng.choice([a for a in accounts if a != owner]) for owner in accounts
        }
        by_pair: dict[tuple[str, str], list[tuple[Any, int]]] = {}
        for agent_id in chosen:
            owner = self.state.agents[agent_id].owner
            by_pair.setdefault((owner, recipients[owner]), []).append((agent_id, 60_000))
        actions = []
        for (owner, recipient), entries in by_pair.items():
            for chunk in self._chunks(entries):
                ids = [agent_id for agent_id, _ in chunk]
                actions.append(
                    self.context.contracts.action(
                        IDENTITY,
                        owner,
                        "transferFromBatch",
                        (owner, recipient, ids),
                        gas=min(_TX_BASE_GAS + sum(g for _, g in chunk), self.context.max_tx_gas),
                        label=f"transferFromBatch({len(ids)} agents)",
                        events=2 * len(ids),
                    )
                )
        return actions
