"""The MCP server's tools: what each takes (a strict pydantic model, whose JSON schema is the
tool's input schema, with descriptions and bounds) and what it answers (a JSON object).

A tool reads through the same functions as the REST API (agents/read.py, the events
listing of api/events.py); this module only checks arguments and shapes answers. Answers
follow the REST API's conventions: numbers that can pass 2^53 (agent ids, feedback indexes,
feedback values) are exact decimal text, as are decimal numbers (scores); times are ISO 8601;
bytes are 0x-hex.

A call that cannot be answered raises ToolCallError, whose message names the argument at
fault: the server answers it as a tool error (`isError`), which the calling model reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Generic, Literal, TypeVar

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from erc8004_backend.agents import read
from erc8004_backend.agents.lenses import Address, lens_problems, normalized_score
from erc8004_backend.api.dependencies import IsoTime
from erc8004_backend.api.errors import ApiError
from erc8004_backend.api.events import BIGINT_MAX, UINT256_MAX, event_filters, event_page

Connection = psycopg.AsyncConnection[Any]

# Lists an answer holds at most (and by default).
MAX_ITEMS = 500
DEFAULT_ITEMS = 50
MAX_EVENTS = 100
DEFAULT_EVENTS = 20
MAX_FILTER_ADDRESSES = 100


class ToolCallError(Exception):
    """A call the tool cannot answer; the message, for the calling model, names the
    argument at fault and what to do."""


@dataclass(frozen=True)
class Caller:
    """Who calls: the signed-in user over HTTP (their saved lenses are theirs), nobody in
    particular over stdio (user_id None)."""

    user_id: str | None = None


# -- arguments --------------------------------------------------------------------------------


class Arguments(BaseModel):
    """A tool's arguments: no unknown ones, no coercions (`"5"` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


A = TypeVar("A", bound=Arguments)


ChainId = Annotated[
    int,
    Field(
        ge=1,
        le=BIGINT_MAX,
        description="The chain's EIP-155 id (1: Ethereum, 8453: Base, 11155111: Sepolia,"
        " 31337: a local devnet).",
    ),
]
AgentId = Annotated[
    int,
    Field(
        ge=0,
        le=UINT256_MAX,
        description="The agent's id in the chain's identity registry (its ERC-721 token id).",
    ),
]
Addresses = Annotated[list[Address], Field(min_length=1, max_length=MAX_FILTER_ADDRESSES)]
Tag = Annotated[str, Field(max_length=1000)]


class AgentArguments(Arguments):
    chain_id: ChainId
    agent_id: AgentId


class FeedbackArguments(AgentArguments):
    clients: Addresses | None = Field(
        default=None,
        description="Only these clients' feedback, in the order given (any case). Absent:"
        " every client, in the order of its first feedback.",
    )
    tag1: Tag | None = Field(default=None, description="Only feedback with this tag1.")
    tag2: Tag | None = Field(default=None, description="Only feedback with this tag2.")
    include_revoked: bool = Field(default=False, description="Include revoked feedback.")
    limit: int = Field(
        default=DEFAULT_ITEMS, ge=1, le=MAX_ITEMS, description="At most this many feedback."
    )


class ValidationArguments(AgentArguments):
    validators: Addresses | None = Field(
        default=None, description="Only these validators' requests (any case). Absent: any."
    )
    limit: int = Field(
        default=DEFAULT_ITEMS, ge=1, le=MAX_ITEMS, description="At most this many requests."
    )


Registry = Literal["identity", "reputation", "validation"]
EventType = Literal[
    "Registered", "URIUpdated", "MetadataSet", "Transfer",
    "NewFeedback", "FeedbackRevoked", "ResponseAppended",
    "ValidationRequest", "ValidationResponse",
]  # fmt: skip


class EventArguments(Arguments):
    chain_id: ChainId | None = Field(default=None, description="Only this chain's events.")
    agent_id: AgentId | None = Field(
        default=None, description="Only events naming this agent (needs chain_id)."
    )
    registry: Registry | None = Field(default=None, description="Only this registry's events.")
    event_type: EventType | None = Field(default=None, description="Only events of this type.")
    client_address: Address | None = Field(
        default=None, description="Only feedback events of this client (any case)."
    )
    validator_address: Address | None = Field(
        default=None, description="Only validation events of this validator (any case)."
    )
    since: IsoTime | None = Field(
        default=None,
        description="Only events at or after this time (ISO 8601; UTC without a zone).",
        json_schema_extra={"format": "date-time"},
    )
    limit: int = Field(
        default=DEFAULT_EVENTS, ge=1, le=MAX_EVENTS, description="At most this many events."
    )
    cursor: str | None = Field(
        default=None,
        max_length=200,
        description="`next_cursor` of the previous answer, for the events before it.",
    )


def parse_arguments(model: type[A], arguments: Mapping[str, Any]) -> A:
    """`arguments` as `model`, or ToolCallError naming each bad argument and its problem."""
    try:
        return model.model_validate(dict(arguments))
    except ValidationError as error:
        problems = lens_problems(error)
        raise ToolCallError(
            "invalid arguments: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        ) from None


# -- answers ----------------------------------------------------------------------------------

# As in the REST API: integers that can pass 2^53 are exact decimal text.
_AS_TEXT = frozenset({"agent_id", "feedback_index", "value"})


def jsonable(value: Any, key: str | None = None) -> Any:
    """A record (dataclasses, pydantic models, mappings, sequences of them) as JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(name): jsonable(item, str(name)) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, key) for item in value]
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return str(value) if key in _AS_TEXT else value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):  # as pydantic writes times: UTC as Z
        text = value.isoformat()
        return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
    if isinstance(value, bytes | memoryview):
        return "0x" + bytes(value).hex()
    raise TypeError(f"no JSON form for {type(value).__name__}")


def feedback_json(item: read.Feedback) -> dict[str, Any]:
    """A feedback, with its score: value / 10^value_decimals."""
    return {**jsonable(item), "score": jsonable(normalized_score(item.value, item.value_decimals))}


def agent_not_found(chain_id: int, agent_id: int) -> ToolCallError:
    return ToolCallError(
        f"agent_id: no agent {agent_id} on chain {chain_id} (no indexed event names it;"
        " search_agents finds agents)"
    )


# -- the tools --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool(Generic[A]):
    name: str
    title: str
    description: str
    arguments: type[A]
    run: Callable[[Connection, A, Caller], Awaitable[dict[str, Any]]]

    @cached_property
    def input_schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema()

    async def call(
        self, conn: Connection, arguments: Mapping[str, Any], caller: Caller
    ) -> dict[str, Any]:
        return await self.run(conn, parse_arguments(self.arguments, arguments), caller)


async def get_agent(conn: Connection, args: AgentArguments, caller: Caller) -> dict[str, Any]:
    profile = await read.get_agent(conn, args.chain_id, args.agent_id)
    if profile is None:
        raise agent_not_found(args.chain_id, args.agent_id)
    return {"agent": jsonable(profile)}


async def list_feedback(
    conn: Connection, args: FeedbackArguments, caller: Caller
) -> dict[str, Any]:
    if await read.get_agent(conn, args.chain_id, args.agent_id) is None:
        raise agent_not_found(args.chain_id, args.agent_id)
    items = await read.read_all_feedback(
        conn, args.chain_id, args.agent_id, clients=args.clients, tag1=args.tag1,
        tag2=args.tag2, include_revoked=args.include_revoked, limit=args.limit + 1,
    )  # fmt: skip
    return {
        "feedback": [feedback_json(item) for item in items[: args.limit]],
        "truncated": len(items) > args.limit,
    }


async def list_validations(
    conn: Connection, args: ValidationArguments, caller: Caller
) -> dict[str, Any]:
    if await read.get_agent(conn, args.chain_id, args.agent_id) is None:
        raise agent_not_found(args.chain_id, args.agent_id)
    items = await read.get_validations(
        conn, args.chain_id, args.agent_id, validators=args.validators, limit=args.limit + 1
    )
    return {
        "validations": [jsonable(item) for item in items[: args.limit]],
        "truncated": len(items) > args.limit,
    }


async def recent_events(conn: Connection, args: EventArguments, caller: Caller) -> dict[str, Any]:
    try:
        filters = await event_filters(
            chain_id=args.chain_id, registry=args.registry, event_type=args.event_type,
            agent_id=args.agent_id, client_address=args.client_address,
            validator_address=args.validator_address, from_time=args.since,
        )  # fmt: skip
        page = await event_page(conn, filters, args.limit, args.cursor)
    except ApiError as error:  # the listing's own checks, naming the argument
        message = error.message.replace("from_time", "since")
        raise ToolCallError(f"invalid arguments: {message}") from None
    return {"events": jsonable(page.items), "next_cursor": page.next_cursor}


TOOLS: tuple[Tool[Any], ...] = (
    Tool(
        name="get_agent",
        title="Agent profile",
        description="One agent's profile: its owner and wallet, its current URI and what"
        " its registration file says (name, description, image, services with their"
        " endpoints such as MCP and A2A, supported trust models, whether it is active), its"
        " on-chain metadata (0x-hex), and when it registered and was last active.",
        arguments=AgentArguments,
        run=get_agent,
    ),
    Tool(
        name="list_feedback",
        title="Agent feedback",
        description="An agent's feedback as the reputation registry's readAllFeedback lists"
        " it: each client in the order of its first feedback (or in the order given), then"
        " by feedback index. Each feedback has its exact value with value_decimals and its"
        " score (value / 10^value_decimals), tags, endpoint, file URI and hash, whether it"
        " was revoked, and how many responses it has. `truncated` says whether more match.",
        arguments=FeedbackArguments,
        run=list_feedback,
    ),
    Tool(
        name="list_validations",
        title="Agent validations",
        description="An agent's validation requests, newest first: the validator, the"
        " request URI and hash, and the latest response (0-100; null until answered) with"
        " its tag, URI and time, and how many responses came. `truncated` says whether more"
        " match.",
        arguments=ValidationArguments,
        run=list_validations,
    ),
    Tool(
        name="recent_events",
        title="Recent registry events",
        description="The latest events of the ERC-8004 registries, newest first:"
        " registrations, URI and metadata changes, transfers, feedback, revocations,"
        " responses, validation requests and responses, filtered by chain, agent, registry,"
        " type, client, validator or time. Pass `next_cursor` back as `cursor` for older"
        " events (null: no more).",
        arguments=EventArguments,
        run=recent_events,
    ),
)
