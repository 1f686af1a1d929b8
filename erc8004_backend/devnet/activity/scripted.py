"""Scripted activity: one chosen action at a time (the demo's scene, end-to-end tests, the
`erc8004 devnet register` and `feedback` commands), each returning what it created (the agent
id, the feedback index, the request hash) and where it was mined, read from its receipt:
registrations, feedback, revocations and responses, validation requests and responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from erc8004_backend.devnet.activity.content import ZERO_HASH
from erc8004_backend.devnet.activity.context import ActivityContext
from erc8004_backend.devnet.activity.planner import RandomPlanner
from erc8004_backend.devnet.activity.state import NEW_FEEDBACK, TRANSFER
from erc8004_backend.devnet.activity.transactions import (
    Action,
    ActivityError,
    ActivityReport,
    feedback_gas,
    gas_bound,
)
from erc8004_backend.devnet.contracts import (
    IDENTITY,
    REPUTATION,
    VALIDATION,
    topic_address,
    word,
)


@dataclass(frozen=True, kw_only=True)
class ScriptedTransaction:
    """The one transaction of a scripted action: its hash, its block, and what it emitted."""

    transaction_hash: str
    block_number: int
    report: ActivityReport


class _Mined(TypedDict):
    """The fields of `ScriptedTransaction`, from a receipt."""

    transaction_hash: str
    block_number: int
    report: ActivityReport


@dataclass(frozen=True, kw_only=True)
class RegisteredAgent(ScriptedTransaction):
    agent_id: int
    owner: str
    uri: str


@dataclass(frozen=True, kw_only=True)
class GivenFeedback(ScriptedTransaction):
    agent_id: int
    client: str
    feedback_index: int  # 1-based, per agent and client


@dataclass(frozen=True, kw_only=True)
class RevokedFeedback(ScriptedTransaction):
    agent_id: int
    client: str
    feedback_index: int


@dataclass(frozen=True, kw_only=True)
class AppendedResponse(ScriptedTransaction):
    agent_id: int
    client: str
    feedback_index: int
    responder: str


@dataclass(frozen=True, kw_only=True)
class GivenLegacyFeedback(ScriptedTransaction):
    agent_id: int
    client: str
    score: int


@dataclass(frozen=True, kw_only=True)
class RequestedValidation(ScriptedTransaction):
    request_hash: bytes
    agent_id: int
    validator: str
    requester: str  # the agent's owner


@dataclass(frozen=True, kw_only=True)
class AnsweredValidation(ScriptedTransaction):
    request_hash: bytes
    agent_id: int
    validator: str
    response: int


class ScriptedActions:
    """Scripted actions on the context's devnet, sent by its accounts (or the ones named)."""

    def __init__(self, context: ActivityContext) -> None:
        self.context = context

    async def register_agent(self, uri: str, *, owner: str | None = None) -> RegisteredAgent:
        """Register one agent with this URI, owned by `owner` (default: a random account)."""
        context = self.context
        await context.ensure_ready()
        sender = (owner or context.rng.choice(context.accounts)).lower()
        action = context.contracts.action(
            IDENTITY,
            sender,
            "register(string)",
            (uri,),
            gas=gas_bound(250_000, uri, stored=True),
            label="register(uri)",
            events=3,
        )
        receipt, mined = await self._send(action)
        (minted,) = _logs(receipt, TRANSFER)
        return RegisteredAgent(
            **mined, agent_id=int(minted["topics"][3], 16), owner=sender, uri=uri
        )

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
    ) -> GivenFeedback:
        """One feedback with these values, from a client that is not the agent's owner unless
        `client` says otherwise."""
        context = self.context
        await context.ensure_ready()
        if agent_id not in context.state.agents:
            raise ActivityError(f"agent {agent_id} does not exist on the devnet")
        sender = client.lower() if client else context.client_for(agent_id)
        args = (agent_id, value, decimals, tag1, tag2, endpoint, file_uri, file_hash)
        action = context.contracts.action(
            REPUTATION,
            sender,
            "giveFeedback",
            args,
            gas=feedback_gas(args) + 50_000,
            label=f"giveFeedback({agent_id})",
            events=1,
        )
        receipt, mined = await self._send(action)
        (given,) = _logs(receipt, NEW_FEEDBACK)
        return GivenFeedback(
            **mined,
            agent_id=agent_id,
            client=topic_address(given["topics"][2]),
            feedback_index=word(bytes.fromhex(given["data"][2:]), 0),
        )

    async def revoke_feedback(
        self, agent_id: int, client: str, feedback_index: int
    ) -> RevokedFeedback:
        """The client takes back its feedback (only a feedback's own client can)."""
        context = self.context
        await context.ensure_ready()
        client = client.lower()
        feedback = context.state.feedback_at.get((agent_id, client, feedback_index))
        if feedback is None:
            raise ActivityError(
                f"no feedback {feedback_index} of {client} to agent {agent_id} on the devnet"
            )
        action = context.contracts.action(
            REPUTATION,
            client,
            "revokeFeedback",
            (agent_id, feedback_index),
            gas=100_000,
            label=f"revokeFeedback({agent_id}, {feedback_index})",
            events=1,
        )
        _, mined = await self._send(action)
        return RevokedFeedback(
            **mined, agent_id=agent_id, client=client, feedback_index=feedback_index
        )

    async def append_response(
        self,
        agent_id: int,
        client: str,
        feedback_index: int,
        *,
        responder: str | None = None,
        response_uri: str = "",
        response_hash: bytes = ZERO_HASH,
    ) -> AppendedResponse:
        """A response to a feedback, by `responder` (default: the agent's owner, answering
        its client; anyone may respond)."""
        context = self.context
        await context.ensure_ready()
        client = client.lower()
        if (agent_id, client, feedback_index) not in context.state.feedback_at:
            raise ActivityError(
                f"no feedback {feedback_index} of {client} to agent {agent_id} on the devnet"
            )
        sender = (responder or context.state.agents[agent_id].owner).lower()
        action = context.contracts.action(
            REPUTATION,
            sender,
            "appendResponse",
            (agent_id, client, feedback_index, response_uri, response_hash),
            gas=gas_bound(100_000, response_uri),
            label=f"appendResponse({agent_id}, {feedback_index})",
            events=1,
        )
        _, mined = await self._send(action)
        return AppendedResponse(**mined, agent_id=agent_id, client=client,
                                feedback_index=feedback_index, responder=sender)  # fmt: skip

    async def request_validation(
        self,
        agent_id: int,
        validator: str,
        *,
        request_uri: str = "",
        request_hash: bytes | None = None,
    ) -> RequestedValidation:
        """One validation request for the agent, sent by its owner, to `validator`, with a new
        request hash unless one is given."""
        context = self.context
        await context.ensure_ready()
        if agent_id not in context.state.agents:
            raise ActivityError(f"agent {agent_id} does not exist on the devnet")
        if request_hash is None:
            request_hash = context.content.scripted_request_hash()
        if len(request_hash) != 32:
            raise ActivityError("a request hash is 32 bytes")
        owner = context.state.agents[agent_id].owner
        action = context.contracts.action(
            VALIDATION,
            owner,
            "validationRequest",
            (validator.lower(), agent_id, request_uri, request_hash),
            gas=gas_bound(200_000, request_uri),
            label=f"validationRequest({agent_id})",
            events=1,
        )
        _, mined = await self._send(action)
        return RequestedValidation(
            **mined,
            request_hash=request_hash,
            agent_id=agent_id,
            validator=validator.lower(),
            requester=owner,
        )

    async def respond_validation(
        self,
        request_hash: bytes,
        response: int,
        *,
        response_uri: str = "",
        response_hash: bytes = ZERO_HASH,
        tag: str = "",
    ) -> AnsweredValidation:
        """The requested validator's response (0-100) to a validation request; a request may
        be answered more than once."""
        context = self.context
        await context.ensure_ready()
        request = context.state.requests.get(request_hash)
        if request is None:
            raise ActivityError(f"no validation request 0x{request_hash.hex()} on the devnet")
        if not 0 <= response <= 100:
            raise ActivityError("a validation response is from 0 to 100")
        action = context.contracts.action(
            VALIDATION,
            request.validator,
            "validationResponse",
            (request_hash, response, response_uri, response_hash, tag),
            gas=gas_bound(150_000, response_uri, tag, stored=True),
            label=f"validationResponse({request.agent_id})",
            events=1,
        )
        _, mined = await self._send(action)
        return AnsweredValidation(
            **mined,
            request_hash=request_hash,
            agent_id=request.agent_id,
            validator=request.validator,
            response=response,
        )

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
    ) -> GivenLegacyFeedback:
        """Feedback in the earlier testnet ABI (event `NewFeedback(v0)`), for its decoder; to
        a random agent unless `agent_id` is given (a new one when there is none)."""
        context = self.context
        await context.ensure_ready()
        if agent_id is None:
            if not context.state.agent_ids:
                await context.execute(RandomPlanner(context).plan_round(1, 3, only="register"))
            agent_id = context.rng.choice(context.state.agent_ids)
        if sender is not None:
            client = sender
        elif agent_id in context.state.agents:
            client = context.client_for(agent_id)
        else:
            client = context.rng.choice(context.accounts)
        score = context.rng.randint(0, 100) if score is None else score
        action = context.contracts.action(
            REPUTATION,
            client,
            "giveLegacyFeedback",
            (
                agent_id,
                score,
                tag1.ljust(32, b"\x00")[:32],
                tag2.ljust(32, b"\x00")[:32],
                file_uri,
                file_hash,
            ),
            gas=gas_bound(100_000, file_uri),
            label=f"giveLegacyFeedback({agent_id})",
            events=1,
        )
        _, mined = await self._send(action)
        return GivenLegacyFeedback(**mined, agent_id=agent_id, client=client.lower(), score=score)

    async def _send(self, action: Action) -> tuple[dict[str, Any], _Mined]:
        """Send one action: its receipt, and where it was mined."""
        report, (receipt,) = await self.context.sender.execute_with_receipts([action])
        mined = _Mined(
            transaction_hash=str(receipt["transactionHash"]).lower(),
            block_number=int(receipt["blockNumber"], 16),
            report=report,
        )
        return receipt, mined


def _logs(receipt: dict[str, Any], topic0: str) -> list[dict[str, Any]]:
    return [entry for entry in receipt["logs"] if entry["topics"] and entry["topics"][0] == topic0]
