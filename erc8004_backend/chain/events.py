"""The ERC-8004 events we index, as a table keyed by topic0, and the row each becomes.

Adding another ABI version of an event is one more `EventSpec` here: the decoders in
`decode.py` read only this table. Each parameter names the `events` column it fills, or a key
of the row's `data` JSON for values without a column (indexed strings, which a log holds only
as their keccak256 hash, and fields of older ABI versions).

Feedback comes in three versions, each with its own topic0: "v1" (the current contracts,
2.0.0: an int128 value with its decimals), "interim" (testnets in January 2026: a uint8 score,
tag1 indexed) and "v0" (the October 2025 draft: a uint8 score, bytes32 tags). Rows of the
earlier two carry `data["abi_version"]`, and their score is a value with no decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from eth_hash.auto import keccak


class EventRow(NamedTuple):
    """One row of `events`, in the column order that `store.sql` copies."""

    chain_id: int
    registry: str
    event_type: str
    contract_address: str
    block_number: int
    block_hash: str
    block_time: datetime
    transaction_hash: str
    transaction_index: int
    log_index: int
    agent_id: int | None = None
    owner: str | None = None
    token_uri: str | None = None
    metadata_key: str | None = None
    metadata_value: bytes | None = None
    from_address: str | None = None
    to_address: str | None = None
    updated_by: str | None = None
    client_address: str | None = None
    feedback_index: int | None = None
    value: int | None = None
    value_decimals: int | None = None
    score: Decimal | None = None
    tag1: str | None = None
    tag2: str | None = None
    endpoint: str | None = None
    file_uri: str | None = None
    file_hash: str | None = None
    responder: str | None = None
    validator_address: str | None = None
    request_hash: str | None = None
    request_uri: str | None = None
    response: int | None = None
    response_uri: str | None = None
    response_hash: str | None = None
    tag: str | None = None
    data: dict[str, Any] = {}  # noqa: RUF012 (never mutated: decoders pass a fresh dict)


EVENT_COLUMNS: tuple[str, ...] = EventRow._fields
COLUMNS = frozenset(EVENT_COLUMNS)
STATIC_TYPES = {"address", "bool", "bytes32", "uint8", "uint64", "uint256", "int128"}
DYNAMIC_TYPES = {"string", "bytes"}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    indexed: bool
    # An `events` column, or "data.KEY" for the row's JSON.
    target: str


@dataclass(frozen=True)
class EventSpec:
    registry: str
    name: str
    params: tuple[Param, ...]
    version: str = "v1"
    signature: str = field(init=False)
    topic0: str = field(init=False)

    def __post_init__(self) -> None:
        signature = f"{self.name}({','.join(p.type for p in self.params)})"
        object.__setattr__(self, "signature", signature)
        object.__setattr__(self, "topic0", "0x" + keccak(signature.encode()).hex())
        for param in self.params:
            if param.type not in STATIC_TYPES | DYNAMIC_TYPES:
                raise ValueError(f"{signature}: unsupported type {param.type}")
            column = param.target.removeprefix("data.")
            if not param.target.startswith("data.") and column not in COLUMNS:
                raise ValueError(f"{signature}: {param.name} targets unknown column {column}")

    @property
    def topics(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.indexed)

    @property
    def body(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.indexed)


def _p(name: str, type_: str, target: str, *, indexed: bool = False) -> Param:
    return Param(name, type_, indexed, target)


def _i(name: str, type_: str, target: str) -> Param:
    return Param(name, type_, True, target)


SPECS: tuple[EventSpec, ...] = (
    # identity
    EventSpec("identity", "Registered", (
        _i("agentId", "uint256", "agent_id"),
        _p("agentURI", "string", "token_uri"),
        _i("owner", "address", "owner"),
    )),
    EventSpec("identity", "URIUpdated", (
        _i("agentId", "uint256", "agent_id"),
        _p("newURI", "string", "token_uri"),
        _i("updatedBy", "address", "updated_by"),
    )),
    EventSpec("identity", "MetadataSet", (
        _i("agentId", "uint256", "agent_id"),
        _i("indexedMetadataKey", "string", "data.indexed_metadata_key_hash"),
        _p("metadataKey", "string", "metadata_key"),
        _p("metadataValue", "bytes", "metadata_value"),
    )),
    # The ERC-721 transfer of an agent: `owner` is the new owner.
    EventSpec("identity", "Transfer", (
        _i("from", "address", "from_address"),
        _i("to", "address", "to_address"),
        _i("tokenId", "uint256", "agent_id"),
    )),
    # reputation
    EventSpec("reputation", "NewFeedback", (
        _i("agentId", "uint256", "agent_id"),
        _i("clientAddress", "address", "client_address"),
        _p("feedbackIndex", "uint64", "feedback_index"),
        _p("value", "int128", "value"),
        _p("valueDecimals", "uint8", "value_decimals"),
        _i("indexedTag1", "string", "data.indexed_tag1_hash"),
        _p("tag1", "string", "tag1"),
        _p("tag2", "string", "tag2"),
        _p("endpoint", "string", "endpoint"),
        _p("feedbackURI", "string", "file_uri"),
        _p("feedbackHash", "bytes32", "file_hash"),
    )),
    EventSpec("reputation", "FeedbackRevoked", (
        _i("agentId", "uint256", "agent_id"),
        _i("clientAddress", "address", "client_address"),
        _i("feedbackIndex", "uint64", "feedback_index"),
    )),
    EventSpec("reputation", "ResponseAppended", (
        _i("agentId", "uint256", "agent_id"),
        _i("clientAddress", "address", "client_address"),
        _p("feedbackIndex", "uint64", "feedback_index"),
        _i("responder", "address", "responder"),
        _p("responseURI", "string", "response_uri"),
        _p("responseHash", "bytes32", "response_hash"),
    )),
    # The earlier testnet ABI: a 0-100 score and bytes32 tags. Tags become text when they
    # are NUL-padded UTF-8 (as every client wrote them); the raw words stay in `data`.
    EventSpec("reputation", "NewFeedback", (
        _i("agentId", "uint256", "agent_id"),
        _i("clientAddress", "address", "client_address"),
        _p("score", "uint8", "value"),
        _i("tag1", "bytes32", "data.tag1_bytes32"),
        _p("tag2", "bytes32", "data.tag2_bytes32"),
        _p("fileuri", "string", "file_uri"),
        _p("filehash", "bytes32", "file_hash"),
    ), version="v0"),
    # The interim ABI testnets ran in January 2026: a 0-100 score and string tags, tag1
    # indexed. An indexed string is only its keccak256 hash in the log, so tag1 has no text:
    # the column stays NULL and the hash goes where the current ABI's indexedTag1 hash goes.
    EventSpec("reputation", "NewFeedback", (
        _i("agentId", "uint256", "agent_id"),
        _i("clientAddress", "address", "client_address"),
        _p("feedbackIndex", "uint64", "feedback_index"),
        _p("score", "uint8", "value"),
        _i("tag1", "string", "data.indexed_tag1_hash"),
        _p("tag2", "string", "tag2"),
        _p("endpoint", "string", "endpoint"),
        _p("feedbackURI", "string", "file_uri"),
        _p("feedbackHash", "bytes32", "file_hash"),
    ), version="interim"),
    # validation
    EventSpec("validation", "ValidationRequest", (
        _i("validatorAddress", "address", "validator_address"),
        _i("agentId", "uint256", "agent_id"),
        _p("requestURI", "string", "request_uri"),
        _i("requestHash", "bytes32", "request_hash"),
    )),
    EventSpec("validation", "ValidationResponse", (
        _i("validatorAddress", "address", "validator_address"),
        _i("agentId", "uint256", "agent_id"),
        _i("requestHash", "bytes32", "request_hash"),
        _p("response", "uint8", "response"),
        _p("responseURI", "string", "response_uri"),
        _p("responseHash", "bytes32", "response_hash"),
        _p("tag", "string", "tag"),
    )),
)  # fmt: skip

SPECS_BY_TOPIC: dict[str, EventSpec] = {spec.topic0: spec for spec in SPECS}
# Event names are unique across the registries, so a type names its registry too.
REGISTRY_OF: dict[str, str] = {spec.name: spec.registry for spec in SPECS}
if len(SPECS_BY_TOPIC) != len(SPECS):
    raise RuntimeError("two event specs share a topic0")

# Events the registries emit that are not agent activity: counted by name, then skipped. Any
# other log at a registry's address that no spec decodes is kept in `unknown_logs` (see the
# indexer), so that an ABI version we do not know is noticed.
IGNORED_EVENTS: dict[str, str] = {
    "0x" + keccak(signature.encode()).hex(): signature.split("(")[0]
    for signature in (
        "Approval(address,address,uint256)",
        "ApprovalForAll(address,address,bool)",
        "MetadataUpdate(uint256)",
        "BatchMetadataUpdate(uint256,uint256)",
        "Initialized(uint64)",
        "Upgraded(address)",
        "OwnershipTransferred(address,address)",
        "EIP712DomainChanged()",
    )
}
