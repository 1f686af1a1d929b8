"""Random activity, one action per transaction: each round's actions are drawn by weight and
planned against the state confirmed by earlier rounds.

Transactions of different accounts may be mined in any order, so a few locks (`RoundLocks`)
keep one round's actions independent: an agent being transferred is used by no other action
of the round, an owner whose operators act does not change its approvals in it, and so on.

The kinds of action cover what an indexer must follow: registrations (with a URI, metadata, or
none), URI and metadata updates, transfers (by the owner or an operator, safe or not, with
data, to oneself), wallets cleared (by a transfer, or unsetAgentWallet), approvals, feedback,
revocations, responses, validation requests and responses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from erc8004_backend.devnet.activity.content import METADATA_KEYS
from erc8004_backend.devnet.activity.context import ActivityContext
from erc8004_backend.devnet.activity.state import Agent, Feedback, ValidationRequest
from erc8004_backend.devnet.activity.transactions import (
    Action,
    ActivityError,
    feedback_gas,
    gas_bound,
)
from erc8004_backend.devnet.contracts import IDENTITY, REPUTATION, VALIDATION

# The share of each action in `step()` and `run()`, by weight (the default of
# `ActivityGenerator(weights=...)`).
STEP_WEIGHTS: dict[str, int] = {
    "register": 10,
    "update_uri": 6,
    "set_metadata": 6,
    "transfer": 2,
    "unset_wallet": 1,
    "approve_operator": 1,
    "approve_agent": 1,
    "feedback": 40,
    "revoke": 5,
    "respond": 8,
    "request_validation": 8,
    "respond_validation": 8,
}


@dataclass
class RoundLocks:
    """What the actions planned so far in a round use, so the next ones stay independent."""

    owner_users: dict[int, set[str]] = field(default_factory=dict)  # agent -> acting senders
    transferred: set[int] = field(default_factory=set)
    approvals_changed: set[str] = field(default_factory=set)  # owners
    operators_acting: set[str] = field(default_factory=set)  # owners whose operators act
    revoking: set[tuple[int, str, int]] = field(default_factory=set)


_TRANSFER_FUNCTIONS = [
    "transferFrom",
    "safeTransferFrom(address,address,uint256)",
    "safeTransferFrom(address,address,uint256,bytes)",
]


Picked = TypeVar("Picked", Feedback, ValidationRequest)

# A planner of one kind of action: None when it cannot plan one now (no agent, a lock, or
# fewer events left than the action emits).
KindPlanner = Callable[[RoundLocks, int | None], Action | None]


class RandomPlanner:
    """Plans rounds of random single-transaction actions."""

    def __init__(self, context: ActivityContext, weights: Mapping[str, int] | None = None) -> None:
        self.context = context
        self.rng = context.rng
        self.state = context.state
        self.content = context.content
        self.contracts = context.contracts
        # The scene's agents: the random activity revokes, answers and validates nothing of
        # theirs either (see ActivityContext.hands_off).
        self.hands_off = context.hands_off
        self.kinds: dict[str, KindPlanner] = {
            "register": self.register,
            "update_uri": self.update_uri,
            "set_metadata": self.set_metadata,
            "transfer": self.transfer,
            "unset_wallet": self.unset_wallet,
            "approve_operator": self.approve_operator,
            "approve_agent": self.approve_agent,
            "feedback": self.feedback,
            "revoke": self.revoke,
            "respond": self.respond,
            "request_validation": self.request_validation,
            "respond_validation": self.respond_validation,
        }
        self.weights = dict(STEP_WEIGHTS if weights is None else weights)
        unknown = sorted(set(self.weights) - set(self.kinds))
        if unknown:
            raise ActivityError(f"unknown kinds of action: {', '.join(map(repr, unknown))}"
                                f" (known: {', '.join(self.kinds)})")  # fmt: skip
        if min(self.weights.values(), default=0) < 0 or not any(self.weights.values()):
            raise ActivityError(
                "weights must not be negative, and at least one kind needs a positive weight"
            )

    def plan_round(self, size: int, budget: int | None, only: str | None = None) -> list[Action]:
        """Up to `size` actions emitting at most `budget` events (None: no limit), of random
        kinds (or `only` this one); a registration first when there is no agent yet, even
        over budget."""
        locks = RoundLocks()
        actions: list[Action] = []
        kinds, weights = list(self.weights), list(self.weights.values())
        for _ in range(size):
            left = None if budget is None else budget - sum(a.events for a in actions)
            if left is not None and left <= 0:
                break
            action = None
            for _attempt in range(8):
                kind = only or self.rng.choices(kinds, weights)[0]
                action = self.kinds[kind](locks, left)
                if action is not None:
                    break
            if action is None:
                action = self.feedback(locks, left)
            if action is None and not actions:  # no agent yet: a registration, even over budget
                action = self.register(locks, None)
            if action is None:
                break
            actions.append(action)
        return actions

    def register(self, locks: RoundLocks, left: int | None) -> Action | None:
        if left is not None and left < 3:
            return None
        owner = self.rng.choice(self.context.accounts)
        roll = self.rng.random()
        if roll < 0.05:
            return self.contracts.action(
                IDENTITY, owner, "register()", (), gas=400_000, label="register()", events=3
            )
        uri = self.content.registration_uri()
        if roll < 0.15 and (left is None or left >= 5):
            entries = [
                (key, self.content.metadata_value(key)) for key in self.rng.sample(METADATA_KEYS, 2)
            ]
            return self.contracts.action(
                IDENTITY,
                owner,
                "register(string,(string,bytes)[])",
                (uri, entries),
                gas=gas_bound(300_000, uri, *(v for _, v in entries), stored=True),
                label="register(uri, metadata)",
                events=3 + len(entries),
            )
        return self.contracts.action(
            IDENTITY,
            owner,
            "register(string)",
            (uri,),
            gas=gas_bound(250_000, uri, stored=True),
            label="register(uri)",
            events=3,
        )

    def _agent_for_owner_action(self, locks: RoundLocks) -> tuple[Agent, str] | None:
        """An agent and who acts for it (its owner, or one of the owner's operators)."""
        candidates = self.context.random_targets()
        for _ in range(8):
            if not candidates:
                return None
            agent = self.state.agents[self.rng.choice(candidates)]
            if agent.agent_id in locks.transferred:
                continue
            operators = sorted(self.state.operators.get(agent.owner, set()))
            actor = agent.owner
            if operators and agent.owner not in locks.approvals_changed and self.rng.random() < 0.3:
                actor = self.rng.choice(operators)
                locks.operators_acting.add(agent.owner)
            locks.owner_users.setdefault(agent.agent_id, set()).add(actor)
            return agent, actor
        return None

    def update_uri(self, locks: RoundLocks, left: int | None) -> Action | None:
        picked = self._agent_for_owner_action(locks)
        if picked is None:
            return None
        agent, actor = picked
        uri = self.content.registration_uri(agent_id=agent.agent_id, slug=agent.slug)
        return self.contracts.action(
            IDENTITY,
            actor,
            "setAgentURI",
            (agent.agent_id, uri),
            gas=gas_bound(120_000, uri, stored=True) + agent.plan_uri(uri),
            label=f"setAgentURI({agent.agent_id})",
            events=1,
        )

    def set_metadata(self, locks: RoundLocks, left: int | None) -> Action | None:
        picked = self._agent_for_owner_action(locks)
        if picked is None:
            return None
        agent, actor = picked
        key = self.rng.choice(METADATA_KEYS)
        value = self.content.metadata_value(key)
        return self.contracts.action(
            IDENTITY,
            actor,
            "setMetadata",
            (agent.agent_id, key, value),
            gas=gas_bound(120_000, key, value, stored=True),
            label=f"setMetadata({agent.agent_id}, {key!r})",
            events=1,
        )

    def transfer(self, locks: RoundLocks, left: int | None) -> Action | None:
        if left is not None and left < 2:
            return None
        candidates = self.context.random_targets()
        for _ in range(8):
            if not candidates:
                return None
            agent = self.state.agents[self.rng.choice(candidates)]
            if agent.agent_id in locks.transferred:
                continue
            operators = sorted(self.state.operators.get(agent.owner, set()))
            by_operator = (
                bool(operators)
                and agent.owner not in locks.approvals_changed
                and self.rng.random() < 0.25
            )
            # The owner's own earlier actions on the agent in this round are mined before its
            # transfer (nonce order); an operator's transfer might be mined before them.
            users = locks.owner_users.get(agent.agent_id, set())
            if not users <= (set() if by_operator else {agent.owner}):
                continue
            sender = agent.owner
            if by_operator:
                sender = self.rng.choice(operators)
                locks.operators_acting.add(agent.owner)
            # To oneself now and then: a Transfer that keeps the agent wallet.
            to_self = self.rng.random() < 0.1
            recipient = (
                agent.owner
                if to_self
                else self.rng.choice([a for a in self.context.accounts if a != agent.owner])
            )
            locks.transferred.add(agent.agent_id)
            function = self.rng.choice(_TRANSFER_FUNCTIONS)
            args: tuple[object, ...] = (agent.owner, recipient, agent.agent_id)
            if function.endswith(",bytes)"):
                args += (self.rng.randbytes(self.rng.randint(0, 64)),)
            return self.contracts.action(
                IDENTITY,
                sender,
                function,
                args,
                gas=200_000,
                label=f"{function.split('(')[0]}({agent.agent_id})",
                events=1 if to_self else 2,
            )
        return None

    def unset_wallet(self, locks: RoundLocks, left: int | None) -> Action | None:
        picked = self._agent_for_owner_action(locks)
        if picked is None:
            return None
        agent, actor = picked
        return self.contracts.action(
            IDENTITY,
            actor,
            "unsetAgentWallet",
            (agent.agent_id,),
            gas=100_000,
            label=f"unsetAgentWallet({agent.agent_id})",
            events=1,
        )

    def approve_operator(self, locks: RoundLocks, left: int | None) -> Action | None:
        owner = self.rng.choice(self.context.accounts)
        if owner in locks.operators_acting or owner in locks.approvals_changed:
            return None
        operator = self.rng.choice([a for a in self.context.accounts if a != owner])
        approved = operator not in self.state.operators.get(owner, set())
        locks.approvals_changed.add(owner)
        return self.contracts.action(
            IDENTITY,
            owner,
            "setApprovalForAll",
            (operator, approved),
            gas=100_000,
            label=f"setApprovalForAll({operator}, {approved})",
            events=0,
        )

    def approve_agent(self, locks: RoundLocks, left: int | None) -> Action | None:
        picked = self._agent_for_owner_action(locks)
        if picked is None:
            return None
        agent, actor = picked
        approved = self.rng.choice([a for a in self.context.accounts if a != agent.owner])
        return self.contracts.action(
            IDENTITY,
            actor,
            "approve",
            (approved, agent.agent_id),
            gas=100_000,
            label=f"approve({agent.agent_id})",
            events=0,
        )

    def feedback(self, locks: RoundLocks, left: int | None) -> Action | None:
        candidates = self.context.random_targets()
        if not candidates:
            return None
        agent_id = self.rng.choice(candidates)
        client = self.context.client_for(agent_id)
        args = self.content.feedback_args(self.state.agents[agent_id])
        return self.contracts.action(
            REPUTATION,
            client,
            "giveFeedback",
            args,
            gas=feedback_gas(args) + 50_000,
            label=f"giveFeedback({agent_id})",
            events=1,
        )

    def revoke(self, locks: RoundLocks, left: int | None) -> Action | None:
        for _ in range(8):
            if not self.state.feedback:
                return None
            feedback = self.rng.choice(self.state.feedback)
            key = (feedback.agent_id, feedback.client, feedback.index)
            if feedback.revoked or key in locks.revoking or feedback.agent_id in self.hands_off:
                continue
            locks.revoking.add(key)
            return self.contracts.action(
                REPUTATION,
                feedback.client,
                "revokeFeedback",
                (feedback.agent_id, feedback.index),
                gas=100_000,
                label=f"revokeFeedback({feedback.agent_id}, {feedback.index})",
                events=1,
            )
        return None

    def respond(self, locks: RoundLocks, left: int | None) -> Action | None:
        feedback = self._pick(self.state.feedback)
        if feedback is None:
            return None
        responder = self.context.responder_for(feedback)
        uri, digest = self.content.document_uri("responses")
        return self.contracts.action(
            REPUTATION,
            responder,
            "appendResponse",
            (feedback.agent_id, feedback.client, feedback.index, uri, digest),
            gas=gas_bound(100_000, uri),
            label=f"appendResponse({feedback.agent_id}, {feedback.index})",
            events=1,
        )

    def request_validation(self, locks: RoundLocks, left: int | None) -> Action | None:
        picked = self._agent_for_owner_action(locks)
        if picked is None:
            return None
        agent, actor = picked
        validator, uri, request_hash = self.content.validation_request(agent, self.context.accounts)
        return self.contracts.action(
            VALIDATION,
            actor,
            "validationRequest",
            (validator, agent.agent_id, uri, request_hash),
            gas=gas_bound(200_000, uri),
            label=f"validationRequest({agent.agent_id})",
            events=1,
        )

    def respond_validation(self, locks: RoundLocks, left: int | None) -> Action | None:
        request = self._pick(self.state.request_list)
        if request is None:
            return None
        args = self.content.validation_response_args(request)
        return self.contracts.action(
            VALIDATION,
            request.validator,
            "validationResponse",
            args,
            gas=gas_bound(150_000, args[2], args[4], stored=True),
            label=f"validationResponse({request.agent_id})",
            events=1,
        )

    def _pick(self, items: Sequence[Picked]) -> Picked | None:
        """A random one of `items` (feedback or validation requests) whose agent is not
        hands-off; None when a few draws found none. Without hands-off agents the first draw
        is taken: the same random stream as ever for a seed."""
        for _ in range(8):
            if not items:
                return None
            item = self.rng.choice(items)
            if item.agent_id not in self.hands_off:
                return item
        return None
