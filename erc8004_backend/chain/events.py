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

# keccak256 of every signature below, worked out ahead: the hash's first use costs the
# command's start 40 ms (eth_hash loads pycryptodome, which loads cffi and its C parser) and
# the indexer hashes nothing else. tests/chain/test_events.py checks the table.
KNOWN_TOPICS: dict[str, str] = {
    "Registered(uint256,string,address)":
        "0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a",
    "URIUpdated(uint256,string,address)":
        "0x3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb",
    "MetadataSet(uint256,string,string,bytes)":
        "0x2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b",
    "Transfer(address,address,uint256)":
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    "NewFeedback(uint256,address,uint64,int128,uint8,string,string,string,string,string,bytes32)":
        "0x6a4a61743519c9d648a14e6493f47dbe3ff1aa29e7785c96c8326a205e58febc",
    "FeedbackRevoked(uint256,address,uint64)":
        "0x25156fd3288212246d8b008d5921fde376c71ed14ac2e072a506eb06fde6d09d",
    "ResponseAppended(uint256,address,uint64,address,string,bytes32)":
        "0xb1c6be0b5b8aef6539e2fac0fd131a2faa7b49edf8e505b5eb0ad487d56051d4",
    "NewFeedback(uint256,address,uint8,bytes32,bytes32,string,bytes32)":
        "0x54b3254e4cc01969e70376d20390cc2f6af90539d9adaa78a53ebcda17f78154",
    "NewFeedback(uint256,address,uint64,uint8,string,string,string,string,bytes32)":
        "0x801d7d4264128f6f43835850f1fabb91902c3543c3738f1f62fbf7e9fd80531d",
    "ValidationRequest(address,uint256,string,bytes32)":
        "0x530436c3634a98e1e626b0898be2f1e9980cc1bd2a78c07a0aba52d0a48a5059",
    "ValidationResponse(address,uint256,bytes32,uint8,string,bytes32,string)":
        "0xafddf629e874ccc3963b6a888c477bd464a6c8525024fc88759ea3b2326349ae",
    "Approval(address,address,uint256)":
        "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",
    "ApprovalForAll(address,address,bool)":
        "0x17307eab39ab6107e8899845ad3d59bd9653f200f220920489ca2b5937696c31",
    "MetadataUpdate(uint256)":
        "0xf8e1a15aba9398e019f0b49df1a4fde98ee17ae345cb5f6b5e2c27f5033e8ce7",
    "BatchMetadataUpdate(uint256,uint256)":
        "0x6bd5c950a8d8df17f772f5af37cb3655737899cbf903264b9795592da439661c",
    "Initialized(uint64)":
        "0xc7f505b2f371ae2175ee4913f4499e1f2633a7b5936321eed1cdaeb6115181d2",
    "Upgraded(address)":
        "0xbc7cd75a20ee27fd9adebab32041f755214dbc6bffa90cc0225b39da2e5c2d3b",
    "OwnershipTransferred(address,address)":
        "0x8be0079c531659141344cd1fd0a4f28419497f9722a3daafe3b4186f6b6457e0",
    "EIP712DomainChanged()":
        "0x0a6387c9ea3628b88a633bb4f3b151770f70085117a15f9bf3787cda53f13d31",
}  # fmt: skip


def topic0(signature: str) -> str:
    """An event's topic0: the keccak256 of its signature, in hex."""
    known = KNOWN_TOPICS.get(signature)
    if known is not None:
        return known
    from eth_hash.auto import keccak  # a signature added without its line in KNOWN_TOPICS

    return "0x" + keccak(signature.encode()).hex()


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
        object.__setattr__(self, "topic0", topic0(signature))
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
    topic0(signature): signature.split("(")[0]
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
