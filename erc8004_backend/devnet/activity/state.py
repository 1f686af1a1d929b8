"""What the activity generator knows of the registries: agents and their owners, wallets and
operators, feedback and validation requests, kept up to date from confirmed logs.

Every action is planned against this model, so it must only ever hold what the chain
confirmed: `ChainState.apply` is fed each log of each receipt, and `ChainState.load` rebuilds
it from `eth_getLogs` (on setup, and after the chain changed under the generator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_hash.auto import keccak

from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.devnet.contracts import dynamic_bytes, event_topic, topic_address, word
from erc8004_backend.devnet.deploy import DeployedRegistries

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
# MetadataSet's indexed key for the reserved agentWallet key: set to the owner on
# registration, cleared by a transfer to another owner and by unsetAgentWallet.
AGENT_WALLET_TOPIC = "0x" + keccak(b"agentWallet").hex()

_LOG_RANGE = 50_000  # blocks per eth_getLogs call when loading


@dataclass
class Agent:
    agent_id: int
    owner: str
    wallet: str | None = None  # the agentWallet metadata: None when unset
    uri: str = ""
    slug: str | None = None  # the name its generated URIs and endpoints use
    # The longest URI it ever had or was planned to have: replacing a URI clears its slots,
    # which the gas given must cover.
    longest_uri: int = 0

    def plan_uri(self, uri: str) -> int:
        """Gas to add for replacing the URI by `uri`."""
        old = self.longest_uri
        self.longest_uri = max(old, len(uri.encode()))
        return 200 * old


@dataclass
class Feedback:
    agent_id: int
    client: str
    index: int
    revoked: bool = False


@dataclass
class ValidationRequest:
    request_hash: bytes
    agent_id: int
    validator: str


@dataclass
class ChainState:
    """The registries' state as confirmed by logs, in the order the chain confirmed it."""

    agents: dict[int, Agent] = field(default_factory=dict)
    agent_ids: list[int] = field(default_factory=list)
    operators: dict[str, set[str]] = field(default_factory=dict)  # owner -> approved operators
    feedback: list[Feedback] = field(default_factory=list)
    feedback_at: dict[tuple[int, str, int], Feedback] = field(default_factory=dict)
    requests: dict[bytes, ValidationRequest] = field(default_factory=dict)
    request_list: list[ValidationRequest] = field(default_factory=list)
    # Registrations planned but not yet confirmed: URI -> the slug their agent will have.
    # Kept across `load`: a planned registration is still pending.
    pending_slugs: dict[str, str] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget everything confirmed (not the pending slugs)."""
        for container in (
            self.agents,
            self.agent_ids,
            self.operators,
            self.feedback,
            self.feedback_at,
            self.requests,
            self.request_list,
        ):
            container.clear()

    async def load(self, rpc: RpcClient, registries: DeployedRegistries) -> None:
        """Rebuild the state from the registries' logs, from their deployment to the head."""
        self.clear()
        head = await rpc.block_number()
        addresses = list(registries.addresses.values())
        for start in range(registries.block_number, head + 1, _LOG_RANGE):
            for entry in await rpc.get_logs(addresses, start, min(start + _LOG_RANGE - 1, head)):
                self.apply(entry)

    def apply(self, entry: dict[str, Any]) -> None:
        """Update the state from one confirmed log (decoded by hand: this is the hot path)."""
        topics = entry["topics"]
        if not topics:
            return
        topic0 = topics[0]
        data = bytes.fromhex(entry["data"][2:])
        if topic0 == TRANSFER:
            agent_id, new_owner = int(topics[3], 16), topic_address(topics[2])
            if agent_id in self.agents:
                self.agents[agent_id].owner = new_owner
            else:
                self.agents[agent_id] = Agent(agent_id, new_owner)
                self.agent_ids.append(agent_id)
        elif topic0 == REGISTERED:
            agent = self.agents.get(int(topics[1], 16))
            if agent is not None:
                uri = dynamic_bytes(data, 0)
                agent.uri = uri.decode("utf-8", "replace")
                agent.longest_uri = max(agent.longest_uri, len(uri))
                agent.slug = self.pending_slugs.pop(agent.uri, agent.slug)
        elif topic0 == URI_UPDATED:
            agent = self.agents.get(int(topics[1], 16))
            if agent is not None:
                uri = dynamic_bytes(data, 0)
                agent.uri = uri.decode("utf-8", "replace")
                agent.longest_uri = max(agent.longest_uri, len(uri))
        elif topic0 == METADATA_SET and topics[2] == AGENT_WALLET_TOPIC:
            agent = self.agents.get(int(topics[1], 16))
            if agent is not None:
                wallet = dynamic_bytes(data, 1)
                agent.wallet = "0x" + wallet.hex() if wallet else None
        elif topic0 == APPROVAL_FOR_ALL:
            owner, operator = topic_address(topics[1]), topic_address(topics[2])
            if word(data, 0):
                self.operators.setdefault(owner, set()).add(operator)
            else:
                self.operators.get(owner, set()).discard(operator)
        elif topic0 == NEW_FEEDBACK:
            feedback = Feedback(int(topics[1], 16), topic_address(topics[2]), word(data, 0))
            self.feedback.append(feedback)
            self.feedback_at[(feedback.agent_id, feedback.client, feedback.index)] = feedback
        elif topic0 == FEEDBACK_REVOKED:
            key = (int(topics[1], 16), topic_address(topics[2]), int(topics[3], 16))
            if key in self.feedback_at:
                self.feedback_at[key].revoked = True
        elif topic0 == VALIDATION_REQUEST:
            request = ValidationRequest(
                bytes.fromhex(topics[3][2:]), int(topics[2], 16), topic_address(topics[1])
            )
            self.requests[request.request_hash] = request
            self.request_list.append(request)
