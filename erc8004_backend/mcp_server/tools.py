"""The MCP server's tools: what each takes (a strict pydantic model, whose JSON schema is the
tool's input schema, with descriptions and bounds) and what it answers (a JSON object).

A tool asks what the REST API asks: agents/service.py for everything about agents, and the
events listing of api/events.py for recent events. This module only checks arguments and
shapes answers, following the REST API's conventions: numbers that can pass 2^53 (agent
ids, feedback indexes, feedback and summary values) are exact decimal text, as are decimal
numbers (scores, weights); times are ISO 8601; bytes are 0x-hex.

A call that cannot be answered raises ToolCallError, whose message names the argument at
fault: the server answers it as a tool error (`isError`), which the calling model reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Generic, Literal, TypeVar

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from erc8004_backend.agents import service
from erc8004_backend.agents.lenses import Address, Lens, lens_problems, normalized_score
from erc8004_backend.agents.read import Feedback
from erc8004_backend.api import lenses as saved_lenses
from erc8004_backend.api.dependencies import IsoTime
from erc8004_backend.api.errors import ApiError
from erc8004_backend.api.events import BIGINT_MAX, UINT256_MAX, event_filters, event_page

Connection = psycopg.AsyncConnection[Any]

# Items an answer lists at most, and by default.
MAX_ITEMS = 200
DEFAULT_ITEMS = 20
MAX_FILTER_ADDRESSES = 100
MAX_TEXT = 200


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
Limit = Annotated[int, Field(ge=1, le=MAX_ITEMS, description="At most this many items.")]
Cursor = Annotated[
    str | None,
    Field(max_length=500, description="`next_cursor` of the previous answer, for what follows."),
]
LENS = Field(
    default=None,
    description="A reputation lens: which clients count (allowlist, minimum history), one"
    " vote per client or per feedback, recency decay, tags. Every field is optional.",
)
LENS_NAME = Field(
    default=None,
    description="The name of a lens the signed-in user saved (/api/v1/me/lenses), instead"
    " of `lens`. Over HTTP only: over stdio nobody is signed in.",
)


class AgentArguments(Arguments):
    chain_id: ChainId
    agent_id: AgentId


class SearchArguments(Arguments):
    text: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        description="Words in the agent's name or description (its registration file), any case.",
    )
    chain_id: ChainId | None = Field(default=None, description="Only agents of this chain.")
    owner: Address | None = Field(default=None, description="Only agents this address owns.")
    wallet: Address | None = Field(
        default=None, description="Only agents whose agentWallet is this address."
    )
    has_mcp: bool | None = Field(
        default=None, description="Only agents whose registration file names an MCP endpoint"
        " (true), or names none (false).",
    )  # fmt: skip
    has_a2a: bool | None = Field(default=None, description="The same for an A2A endpoint.")
    active: bool | None = Field(
        default=None, description="Only agents whose registration file says active: this."
    )
    x402: bool | None = Field(
        default=None, description="Only agents whose registration file says x402Support: this."
    )
    min_feedback: int | None = Field(
        default=None, ge=0, le=BIGINT_MAX,
        description="Only agents with at least this many feedback (not revoked).",
    )  # fmt: skip
    sort: service.AgentSort = Field(
        default="newest",
        description="newest (registered last first), last_activity, feedback_count (most"
        " first), or lens (best score through `lens` or `lens_name` first, among the agents"
        " with the most feedback).",
    )
    lens: Lens | None = LENS
    lens_name: saved_lenses.LensName | None = LENS_NAME
    limit: Limit = DEFAULT_ITEMS
    cursor: Cursor = None


class ReputationArguments(AgentArguments):
    clients: Addresses | None = Field(
        default=None,
        description="The spec's getSummary over these clients' feedback (any case; a client"
        " listed twice counts twice, as in the contract). The spec requires them: a summary"
        " over every client is open to Sybil feedback.",
    )
    tag1: Tag = Field(default="", description="getSummary's tag1 filter (empty: any).")
    tag2: Tag = Field(default="", description="getSummary's tag2 filter (empty: any).")
    lens: Lens | None = LENS
    lens_name: saved_lenses.LensName | None = LENS_NAME
    validators: Addresses | None = Field(
        default=None,
        description="The validation summary over these validators' answers (absent: any).",
    )
    validation_tag: Tag = Field(
        default="", description="The validation summary's tag filter (empty: any)."
    )


class FeedbackArguments(AgentArguments):
    clients: Addresses | None = Field(
        default=None,
        description="Only these clients' feedback, in the order given (any case). Absent:"
        " every client, in the order of its first feedback.",
    )
    tag1: Tag = Field(default="", description="Only feedback with this tag1 (empty: any).")
    tag2: Tag = Field(default="", description="Only feedback with this tag2 (empty: any).")
    include_revoked: bool = Field(default=False, description="Include revoked feedback.")
    limit: Limit = DEFAULT_ITEMS
    cursor: Cursor = None


class ValidationArguments(AgentArguments):
    validators: Addresses | None = Field(
        default=None, description="Only these validators' requests (any case). Absent: any."
    )
    tag: Tag = Field(
        default="",
        description="Only requests whose latest response has this tag (empty: any; a tag"
        " leaves out requests not answered yet).",
    )
    limit: Limit = DEFAULT_ITEMS
    cursor: Cursor = None


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
    limit: Limit = DEFAULT_ITEMS
    cursor: Cursor = None


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
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return "0x" + bytes(value).hex()
    raise TypeError(f"no JSON form for {type(value).__name__}")


def feedback_json(item: Feedback) -> dict[str, Any]:
    """A feedback, with its score: value / 10^value_decimals."""
    return {**jsonable(item), "score": jsonable(normalized_score(item.value, item.value_decimals))}


def lens_report_json(report: service.LensReport, lens_name: str | None) -> dict[str, Any]:
    """A lens report without the list of every counted feedback (`explain` says how many
    counted, and which clients weigh most)."""
    result = report.result
    return {
        "lens": jsonable(result.lens),
        "lens_name": lens_name,
        "as_of": jsonable(result.as_of),
        "score": jsonable(result.score),
        "explain": jsonable(result.explain),
        "distribution": jsonable(report.distribution),
        "trend": jsonable(report.trend),
        "trend_width_seconds": report.trend_width.total_seconds(),
        "activity": jsonable(report.activity),
    }


def spec_summary_json(summary: service.SpecSummary) -> dict[str, Any]:
    return {
        "clients": list(summary.clients),
        "tag1": summary.tag1,
        "tag2": summary.tag2,
        "count": summary.count,
        "value": str(summary.value),
        "decimals": summary.decimals,
        "average": jsonable(summary.value_decimal),
    }


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
        args = parse_arguments(self.arguments, arguments)
        try:
            return await self.run(conn, args, caller)
        except service.AgentNotFoundError as error:
            raise ToolCallError(
                f"agent_id: no agent {error.agent_id} on chain {error.chain_id} (no indexed"
                " event names it; search_agents finds agents)"
            ) from None
        except service.AgentQueryError as error:
            raise ToolCallError(f"invalid arguments: {error.field}: {error.problem}") from None


async def chosen_lens(
    conn: Connection, lens: Lens | None, lens_name: str | None, caller: Caller
) -> Lens | None:
    """The lens given, or the caller's saved lens of that name; None if neither."""
    if lens_name is None:
        return lens
    if lens is not None:
        raise ToolCallError("invalid arguments: lens_name: give lens or lens_name, not both")
    if caller.user_id is None:
        raise ToolCallError(
            "lens_name: saved lenses belong to a signed-in user, and nobody signs in over"
            " stdio: pass the definition itself as `lens`"
        )
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            saved_lenses.QUERIES["get_lens"], {"user_id": caller.user_id, "name": lens_name}
        )
        row = await cursor.fetchone()
    if row is None:
        raise ToolCallError(f"lens_name: you have no lens named {lens_name!r} (/api/v1/me/lenses)")
    return Lens.model_validate(row["definition"])


async def search_agents(conn: Connection, args: SearchArguments, caller: Caller) -> dict[str, Any]:
    lens = await chosen_lens(conn, args.lens, args.lens_name, caller)
    query = service.AgentQuery(
        chain_id=args.chain_id, owner=args.owner, wallet=args.wallet, has_mcp=args.has_mcp,
        has_a2a=args.has_a2a, active=args.active, x402=args.x402, text=args.text,
        min_feedback=args.min_feedback, sort=args.sort, lens=lens, now=datetime.now(UTC),
        limit=args.limit, cursor=args.cursor,
    )  # fmt: skip
    page = await service.search_agents(conn, query)
    answer: dict[str, Any] = {"agents": jsonable(page.items), "next_cursor": page.next_cursor}
    if args.sort == "lens":
        answer["lens_candidates"] = page.lens_candidates
        answer["lens_candidates_complete"] = page.lens_candidates_complete
    else:
        for agent in answer["agents"]:
            del agent["lens_score"]
    return answer


async def get_agent(conn: Connection, args: AgentArguments, caller: Caller) -> dict[str, Any]:
    detail = await service.get_agent(conn, args.chain_id, args.agent_id)
    if detail is None:
        raise service.AgentNotFoundError(args.chain_id, args.agent_id)
    return {"agent": jsonable(detail.profile), "stats": jsonable(detail.stats)}


async def get_reputation(
    conn: Connection, args: ReputationArguments, caller: Caller
) -> dict[str, Any]:
    lens = await chosen_lens(conn, args.lens, args.lens_name, caller)
    answer: dict[str, Any] = {}
    if args.clients:
        summary = await service.agent_reputation(
            conn, args.chain_id, args.agent_id, clients=args.clients, tag1=args.tag1,
            tag2=args.tag2,
        )  # fmt: skip
        answer["spec"] = spec_summary_json(summary)
    if lens is not None or not args.clients:
        # Without clients the spec has no summary to give: the empty lens (every client's
        # non-revoked feedback, once each) is the plain average, and says what it counted.
        report = await service.agent_lens_reputation(
            conn, args.chain_id, args.agent_id, lens or Lens(), datetime.now(UTC),
            counted_feedback=False,
        )  # fmt: skip
        answer["lens"] = lens_report_json(report, args.lens_name)
    validation = await service.validation_summary(
        conn, args.chain_id, args.agent_id, validators=args.validators, tag=args.validation_tag
    )
    answer["validation"] = {
        "validators": args.validators,
        "tag": args.validation_tag,
        "count": validation.counted,
        "average": validation.average,
    }
    return answer


async def list_feedback(
    conn: Connection, args: FeedbackArguments, caller: Caller
) -> dict[str, Any]:
    page = await service.list_feedback(
        conn, args.chain_id, args.agent_id, clients=args.clients, tag1=args.tag1,
        tag2=args.tag2, include_revoked=args.include_revoked,
        page=service.Page(limit=args.limit, cursor=args.cursor),
    )  # fmt: skip
    items = [
        {**feedback_json(item.feedback), "responses": jsonable(item.responses)}
        for item in page.items
    ]
    return {"feedback": items, "next_cursor": page.next_cursor}


async def list_validations(
    conn: Connection, args: ValidationArguments, caller: Caller
) -> dict[str, Any]:
    page = await service.list_validations(
        conn, args.chain_id, args.agent_id, validators=args.validators, tag=args.tag,
        page=service.Page(limit=args.limit, cursor=args.cursor),
    )  # fmt: skip
    return {"validations": jsonable(page.items), "next_cursor": page.next_cursor}


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
        name="search_agents",
        title="Search agents",
        description="Find agents: by words in their name or description, chain, owner or"
        " wallet, whether they offer an MCP or A2A endpoint, are active or take x402"
        " payments, and how much feedback they have; sorted by registration, activity,"
        " feedback count, or a lens's score. Each agent comes with its name, endpoints and"
        " feedback counts; get_agent tells more. Pass `next_cursor` back as `cursor` for the"
        " next page (null: no more).",
        arguments=SearchArguments,
        run=search_agents,
    ),
    Tool(
        name="get_agent",
        title="Agent profile",
        description="One agent's profile: its owner and wallet, its current URI and what"
        " its registration file says (name, description, image, services with their"
        " endpoints such as MCP and A2A, supported trust models, whether it is active), its"
        " on-chain metadata (0x-hex), when it registered and was last active, and how many"
        " feedback, clients and validation requests it has.",
        arguments=AgentArguments,
        run=get_agent,
    ),
    Tool(
        name="get_reputation",
        title="Agent reputation",
        description="An agent's reputation. With `clients`: the spec's getSummary over their"
        " feedback, digit for digit as the reputation registry computes it (count, value"
        " with decimals, average). With `lens` (or a saved `lens_name`), or without"
        " `clients`: the score through the lens (the empty lens: every non-revoked feedback"
        " once) with `explain` (how many feedback counted, how many were left out and why,"
        " the clients that weigh most), the score distribution, a weekly trend and the"
        " revocation and response rates. Always: the validation registry's summary.",
        arguments=ReputationArguments,
        run=get_reputation,
    ),
    Tool(
        name="list_feedback",
        title="Agent feedback",
        description="An agent's feedback in the reputation registry's readAllFeedback order:"
        " each client in the order of its first feedback (or in the order given), then by"
        " feedback index. Each feedback has its exact value with value_decimals and its"
        " score (value / 10^value_decimals), tags, endpoint, file URI and hash, whether it"
        " was revoked, and its responses. Pass `next_cursor` back as `cursor` for more.",
        arguments=FeedbackArguments,
        run=list_feedback,
    ),
    Tool(
        name="list_validations",
        title="Agent validations",
        description="An agent's validation requests, newest first: the validator, the"
        " request URI and hash, and the latest response (0-100; null until answered) with"
        " its tag, URI and time, and how many responses came. Pass `next_cursor` back as"
        " `cursor` for more.",
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
