"""/agents: every agent the indexer knows, its profile, feedback, reputation (the spec's
getSummary, or a lens with its explanation), validations and history.

Public chain data: any signed-in user reads every agent; with ERC8004_PUBLIC_READS=true
anyone may, without signing in, under a rate limit of their own per client address
(ERC8004_RATE_LIMIT_PUBLIC). The answers come from agents/service.py, which the MCP server
and the trigger engine ask too. Numbers that can pass 2^53 (agent ids, feedback indexes and
values) are exact decimal text, as in /events. Lists are keyset pages: a response's
`next_cursor` is passed back as `cursor`.

A lens is named (`lens=trusted-recent`: one of the signed-in user's saved lenses) or written
inline as JSON (`lens={"min_agents":2,"vote":"latest"}`, URL-encoded); a saved lens's name
never starts with `{`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, StringConstraints

from erc8004_backend.agents import service
from erc8004_backend.agents.lenses import (
    Activity,
    Lens,
    LensError,
    ScoreBucket,
    TrendBucket,
    parse_lens,
)
from erc8004_backend.agents.read import Feedback, Response, ValidationRequest
from erc8004_backend.api.dependencies import (
    DIGITS_ONLY,
    TRUE_OR_FALSE,
    Credentials,
    Db,
    State,
    User,
    client_address,
    current_user,
)
from erc8004_backend.api.errors import ApiError, error_responses, raises
from erc8004_backend.api.events import ADDRESS, Decimal_, Hex, Int, Uint, invalid
from erc8004_backend.api.lenses import NAME_PATTERN, NAME_RULE
from erc8004_backend.api.tokens import AgentId, ChainId
from erc8004_backend.database.queries import load_queries
from erc8004_backend.triggers.conditions import duration_seconds

router = APIRouter(prefix="/agents", tags=["agents"])
_LENS_QUERIES = load_queries("erc8004_backend.api", "lenses.sql")

BIGINT_MAX = 2**63 - 1
MAX_AGENTS_PAGE = 100
MAX_PAGE = 200
MAX_ADDRESSES = 200  # clients or validators named in one request
MAX_TAG_LENGTH = 1000
MAX_TEXT_LENGTH = 200
MAX_INLINE_LENS = 8000  # characters of a lens written inline (a long allowlist: save it)
DEFAULT_TREND = "7d"
MAX_TREND_DAYS = 3650  # a bucket wider than ten years holds all of a chain's feedback anyway
_DURATION_PATTERN = r"^[0-9]{1,9}[smhd]$"

NOT_FOUND = error_responses(404, descriptions={404: "No event of the chain names the agent."})


# -- who may read ------------------------------------------------------------------------------


@raises(401, 403, 429)
async def reader(
    request: Request,
    state: State,
    conn: Db,
    credentials: Credentials,
) -> User | None:
    """The signed-in user, or None for a reader without credentials when public reads are
    on (counted against the public rate limit of their address); 401 otherwise."""
    if credentials is None and state.settings.public_reads:
        await state.rate_limits.check("public", client_address(request))
        return None
    return await current_user(state, conn, credentials)


Reader = Annotated[User | None, Depends(reader)]


# -- parameters ------------------------------------------------------------------------------

AddressText = Annotated[str, StringConstraints(pattern=ADDRESS)]
Tag = Annotated[str, Query(max_length=MAX_TAG_LENGTH, description="Empty or absent: any.")]
Cursor = Annotated[
    str | None, Query(max_length=1000, description="`next_cursor` of the previous page.")
]
LensParameter = Annotated[
    str | None,
    Query(
        max_length=MAX_INLINE_LENS,
        description="A lens: the name of one of your saved lenses (signed in), or a lens"
        ' written inline as a JSON object, e.g. {"min_agents": 2, "vote": "latest"}.',
    ),
]
Trend = Annotated[
    str,
    Query(
        pattern=_DURATION_PATTERN,
        description='The width of the trend\'s time buckets: "7d", "12h", "30m", "45s".',
    ),
]


AgentsLimit = Annotated[
    int, Query(ge=1, le=MAX_AGENTS_PAGE, description="Items per page."), DIGITS_ONLY
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page."), DIGITS_ONLY]


_REPEAT = f" Repeat the parameter for each (at most {MAX_ADDRESSES}); any case."
Clients = Annotated[
    list[AddressText] | None,
    Query(max_length=MAX_ADDRESSES,
          description="Only these clients' feedback, in this order." + _REPEAT),
]  # fmt: skip
SummaryClients = Annotated[
    list[AddressText] | None,
    Query(max_length=MAX_ADDRESSES,
          description="getSummary over these clients' feedback (the spec requires them)."
          + _REPEAT),
]  # fmt: skip
Validators = Annotated[
    list[AddressText] | None,
    Query(max_length=MAX_ADDRESSES, description="Only these validators' requests." + _REPEAT),
]


async def resolve_lens(
    text: str, conn: Db, user: User | None, *, field: str = "lens"
) -> tuple[Lens, str | None]:
    """The lens `text` names or writes out, and its name if it is a saved one; 422 naming
    `field` when it is neither, 401 for a saved lens without signing in, 404 for a name the
    user has not saved."""
    if text.lstrip().startswith("{"):
        try:
            definition = json.loads(text)
        except (ValueError, RecursionError):
            raise invalid(field, "is not a JSON object (nor a saved lens's name)") from None
        try:
            return parse_lens(definition, field), None
        except LensError as error:
            raise ApiError(422, str(error), details=error.details) from None
    if not _is_lens_name(text):
        raise invalid(field, f"must be a saved lens's name ({NAME_RULE}) or a JSON object")
    if user is None:
        raise ApiError(
            401,
            f"{field}: a saved lens is a signed-in user's: sign in, or write the lens inline",
            headers={"WWW-Authenticate": "Bearer"},
        )
    cursor = await conn.execute(_LENS_QUERIES["get_lens"], {"user_id": user.id, "name": text})
    row = await cursor.fetchone()
    if row is None:
        raise ApiError(404, f"lens {text!r} not found")
    return Lens.model_validate(row["definition"]), text


def _is_lens_name(text: str) -> bool:
    return re.match(NAME_PATTERN, text) is not None


def _service_error(error: service.AgentQueryError) -> ApiError:
    return invalid(error.field, error.problem)


def _not_found(error: service.AgentNotFoundError) -> ApiError:
    return ApiError(404, str(error))


# -- models -----------------------------------------------------------------------------------


class AgentOut(BaseModel):
    """An agent as the listing shows it: the model's agent, its registration file (read from
    its current URI; null fields when not read, or not of the spec's type) and counts."""

    chain_id: int
    agent_id: Uint
    owner: Hex | None
    agent_wallet: Hex | None = Field(description="The reserved agentWallet; null: unset.")
    agent_uri: str | None
    registered_at: datetime | None
    first_at: datetime = Field(description="The first event that names the agent.")
    last_at: datetime = Field(description="The latest event that names the agent.")
    registration_status: str | None = Field(
        description="pending, fetched or failed: the registration file at the current URI;"
        " null when the indexer has not seen the URI yet."
    )
    name: str | None
    description: str | None
    image: str | None
    mcp_endpoint: str | None
    a2a_endpoint: str | None
    active: bool | None
    x402_support: bool | None
    feedback_count: int = Field(description="Feedback not revoked.")
    revoked_count: int
    client_count: int = Field(description="Distinct clients that gave feedback.")
    lens_score: Decimal_ | None = Field(
        default=None, description="sort=lens only: the score through the lens; null when"
        " nothing counted."
    )  # fmt: skip


class AgentPageOut(BaseModel):
    items: list[AgentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")
    lens_candidates: int | None = Field(
        default=None,
        description="sort=lens: how many agents were ranked (those matching the filters with"
        f" the most feedback: at most {service.LENS_SORT_CANDIDATES}, holding at most"
        f" {service.LENS_SORT_MAX_FEEDBACK} feedback together).",
    )
    lens_candidates_complete: bool | None = Field(
        default=None,
        description="sort=lens: whether they were every agent the filters match (if not,"
        " narrow the filters to rank the others).",
    )


class RegistrationOut(BaseModel):
    status: str | None
    name: str | None
    description: str | None
    image: str | None
    services: list[dict[str, Any]]
    mcp_endpoint: str | None
    a2a_endpoint: str | None
    web_endpoint: str | None
    active: bool | None
    x402_support: bool | None
    supported_trust: list[str]
    error: str | None
    fetched_at: datetime | None


class AgentStatsOut(BaseModel):
    feedback_count: int = Field(description="Feedback not revoked.")
    revoked_count: int
    client_count: int
    validation_count: int


class AgentProfileOut(BaseModel):
    chain_id: int
    agent_id: Uint
    owner: Hex | None
    agent_wallet: Hex | None
    wallet_updated_at: datetime | None
    agent_uri: str | None
    uri_updated_at: datetime | None
    registered_block: int | None
    registered_at: datetime | None
    first_block: int
    first_at: datetime
    last_block: int
    last_at: datetime
    registration: RegistrationOut
    metadata: dict[str, Hex] = Field(description="On-chain metadata but agentWallet, by key.")
    stats: AgentStatsOut


class ResponseOut(BaseModel):
    responder: Hex
    response_uri: str | None
    response_hash: Hex | None
    block_number: int
    log_index: int
    block_time: datetime
    transaction_hash: Hex


class FeedbackOut(BaseModel):
    client_address: Hex
    feedback_index: Uint
    value: Int = Field(description="Fixed point: value / 10^value_decimals.")
    value_decimals: int
    score: Decimal_ = Field(description="value / 10^value_decimals, exactly.")
    tag1: str | None = Field(description="null: only its hash is on chain (an older ABI).")
    tag2: str | None
    endpoint: str | None
    feedback_uri: str | None
    feedback_hash: Hex | None
    abi_version: str
    block_number: int
    log_index: int
    block_time: datetime
    transaction_hash: Hex
    revoked: bool
    revoked_block: int | None
    revoked_at: datetime | None
    response_count: int
    responses: list[ResponseOut] = Field(
        description=f"The first {service.RESPONSES_PER_FEEDBACK} responses, in chain order."
    )


class FeedbackPageOut(BaseModel):
    items: list[FeedbackOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class SpecSummaryOut(BaseModel):
    """ReputationRegistry.getSummary(agentId, clients, tag1, tag2), as the contract answers."""

    clients: list[Hex] = Field(description="As asked (lower case); one listed twice counts twice.")
    tag1: str
    tag2: str
    count: int
    value: Int = Field(description="summaryValue (int128), fixed point.")
    decimals: int = Field(description="summaryValueDecimals.")
    value_decimal: Decimal_ = Field(description="value / 10^decimals, exactly.")


class ContributionOut(BaseModel):
    client: Hex
    feedback_counted: int
    weight: Decimal_
    share: Decimal_
    value: Decimal_
    contribution: Decimal_


class ExplainOut(BaseModel):
    total: int = Field(description="The agent's feedback, revoked included.")
    counted: int
    excluded: dict[str, int] = Field(
        description="Left out, by the first reason that applies: revoked, untrusted_client,"
        " tag_mismatch, superseded."
    )
    excluded_total: int
    clients_counted: int
    untrusted_clients: int
    total_weight: Decimal_
    top_clients: list[ContributionOut]


class BucketOut(BaseModel):
    low: Decimal_ | None = Field(description="Included; null: no lower bound.")
    high: Decimal_ | None = Field(description="Excluded (but 100 is in the last); null: none.")
    count: int


class TrendBucketOut(BaseModel):
    start: datetime
    end: datetime
    count: int
    average: Decimal_


class ActivityOut(BaseModel):
    feedback_count: int
    distinct_clients: int
    revoked_count: int
    responded_count: int
    revocation_rate: Decimal_ | None
    response_rate: Decimal_ | None


class LensReputationOut(BaseModel):
    name: str | None = Field(description="The saved lens's name; null: written inline.")
    lens: Lens = Field(description="The lens, every field present.")
    as_of: datetime = Field(description="When ages were measured from.")
    score: Decimal_ | None = Field(description="null: no feedback counted.")
    explain: ExplainOut
    distribution: list[BucketOut] = Field(description="Of the counted feedback's scores.")
    trend_width: str
    trend: list[TrendBucketOut] = Field(description="Of the counted feedback, oldest first.")
    activity: ActivityOut = Field(description="Of all the agent's feedback.")


class ReputationOut(BaseModel):
    chain_id: int
    agent_id: Uint
    spec: SpecSummaryOut | None = Field(description="With `clients`: getSummary's answer.")
    lens: LensReputationOut | None = Field(description="With `lens`: the lens's reading.")


class ValidationOut(BaseModel):
    request_hash: Hex
    validator_address: Hex
    request_uri: str | None
    block_number: int
    log_index: int
    requested_at: datetime
    transaction_hash: Hex
    response: int | None = Field(description="The latest response, 0-100; null: none yet.")
    response_tag: str | None
    response_uri: str | None
    response_hash: Hex | None
    responded_block: int | None
    responded_at: datetime | None
    response_count: int


class ValidationSummaryOut(BaseModel):
    """ValidationRegistry.getSummary(agentId, validators, tag)."""

    count: int
    average_response: int = Field(description="Of the latest responses, rounded down.")


class ValidationPageOut(BaseModel):
    summary: ValidationSummaryOut = Field(description="Over every request the filters select.")
    items: list[ValidationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class HistoryEntryOut(BaseModel):
    change: Literal["registered", "uri", "owner", "wallet"]
    event_type: str
    block_number: int
    log_index: int
    block_time: datetime
    transaction_hash: Hex
    owner: Hex | None = Field(description="registered, owner: the owner from then on.")
    previous_owner: Hex | None = Field(description="owner: the one before (null: a mint).")
    agent_uri: str | None = Field(description="registered, uri: the URI from then on.")
    updated_by: Hex | None = Field(description="uri: who changed it.")
    agent_wallet: Hex | None = Field(description="wallet: the new wallet; null: cleared.")


class HistoryPageOut(BaseModel):
    items: list[HistoryEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


# -- records to responses ---------------------------------------------------------------------


def _text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def _agent_out(item: service.AgentSummary) -> AgentOut:
    return AgentOut.model_validate(
        {**item.__dict__, "agent_id": str(item.agent_id), "lens_score": _text(item.lens_score)}
    )


def _response_out(response: Response) -> ResponseOut:
    return ResponseOut.model_validate(response.__dict__)


def _feedback_out(item: Feedback, responses: tuple[Response, ...]) -> FeedbackOut:
    score = Decimal(f"{item.value}e-{item.value_decimals}")
    return FeedbackOut.model_validate(
        {
            **item.__dict__,
            "feedback_index": str(item.feedback_index),
            "value": str(item.value),
            "score": f"{score:f}",
            "responses": [_response_out(r) for r in responses],
        }
    )


def _spec_out(summary: service.SpecSummary) -> SpecSummaryOut:
    return SpecSummaryOut(
        clients=list(summary.clients),
        tag1=summary.tag1,
        tag2=summary.tag2,
        count=summary.count,
        value=str(summary.value),
        decimals=summary.decimals,
        value_decimal=f"{summary.value_decimal:f}",
    )


def _bucket_out(bucket: ScoreBucket) -> BucketOut:
    return BucketOut(low=_text(bucket.low), high=_text(bucket.high), count=bucket.count)


def _trend_out(bucket: TrendBucket) -> TrendBucketOut:
    return TrendBucketOut(start=bucket.start, end=bucket.end, count=bucket.count,
                          average=f"{bucket.average:f}")  # fmt: skip


def _activity_out(activity: Activity) -> ActivityOut:
    return ActivityOut(
        feedback_count=activity.feedback_count,
        distinct_clients=activity.distinct_clients,
        revoked_count=activity.revoked_count,
        responded_count=activity.responded_count,
        revocation_rate=_text(activity.revocation_rate),
        response_rate=_text(activity.response_rate),
    )


def _lens_out(report: service.LensReport, name: str | None, trend_width: str) -> LensReputationOut:
    result, explain = report.result, report.result.explain
    return LensReputationOut(
        name=name,
        lens=result.lens,
        as_of=result.as_of,
        score=_text(result.score),
        explain=ExplainOut(
            total=explain.total,
            counted=explain.counted,
            excluded=dict(explain.excluded),
            excluded_total=explain.excluded_total,
            clients_counted=explain.clients_counted,
            untrusted_clients=explain.untrusted_clients,
            total_weight=f"{explain.total_weight:f}",
            top_clients=[
                ContributionOut(
                    client=top.client,
                    feedback_counted=top.feedback_counted,
                    weight=f"{top.weight:f}",
                    share=f"{top.share:f}",
                    value=f"{top.value:f}",
                    contribution=f"{top.contribution:f}",
                )
                for top in explain.top_clients
            ],
        ),
        distribution=[_bucket_out(bucket) for bucket in report.distribution],
        trend_width=trend_width,
        trend=[_trend_out(bucket) for bucket in report.trend],
        activity=_activity_out(report.activity),
    )


def _validation_out(request: ValidationRequest) -> ValidationOut:
    return ValidationOut.model_validate(request.__dict__)


# -- routes -----------------------------------------------------------------------------------

Sort = Literal["newest", "last_activity", "feedback_count", "lens"]


@router.get("", responses=error_responses(404, descriptions={404: "No saved lens by that name."}))
async def search_agents(
    user: Reader,
    conn: Db,
    chain_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX), DIGITS_ONLY] = None,
    owner: Annotated[str | None, Query(pattern=ADDRESS, description="Any case.")] = None,
    wallet: Annotated[
        str | None, Query(pattern=ADDRESS, description="The agentWallet; any case.")
    ] = None,
    has_mcp: Annotated[
        bool | None,
        Query(description="The registration file names an MCP endpoint."),
        TRUE_OR_FALSE,
    ] = None,
    has_a2a: Annotated[
        bool | None,
        Query(description="The registration file names an A2A endpoint."),
        TRUE_OR_FALSE,
    ] = None,
    active: Annotated[
        bool | None,
        Query(description="The file's `active` is this (absent matches neither)."),
        TRUE_OR_FALSE,
    ] = None,
    x402: Annotated[
        bool | None, Query(description="The file's `x402Support` is this."), TRUE_OR_FALSE
    ] = None,
    text: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_TEXT_LENGTH,
            description="In the file's name or description, any case.",
        ),
    ] = None,
    min_feedback: Annotated[
        int | None,
        Query(ge=0, le=BIGINT_MAX, description="At least this many, not revoked."),
        DIGITS_ONLY,
    ] = None,
    sort: Annotated[
        Sort,
        Query(
            description="newest (first event), last_activity, feedback_count, or lens (the"
            " score through `lens`, over the agents with the most feedback: see"
            " lens_candidates)."
        ),
    ] = "newest",
    lens: LensParameter = None,
    limit: AgentsLimit = 20,
    cursor: Cursor = None,
) -> AgentPageOut:
    """Agents matching every filter given, a page at a time, in the order of `sort` (ties by
    chain and agent id, descending)."""
    chosen: Lens | None = None
    if lens is not None:
        if sort != "lens":
            raise invalid("lens", "is only used with sort=lens")
        chosen, _ = await resolve_lens(lens, conn, user)
    elif sort == "lens":
        raise invalid("lens", "sort=lens needs a lens: a saved lens's name or a JSON object")
    query = service.AgentQuery(
        chain_id=chain_id, owner=owner, wallet=wallet, has_mcp=has_mcp, has_a2a=has_a2a,
        active=active, x402=x402, text=text, min_feedback=min_feedback, sort=sort, lens=chosen,
        now=datetime.now(UTC), limit=limit, cursor=cursor,
    )  # fmt: skip
    try:
        page = await service.search_agents(conn, query)
    except service.AgentQueryError as error:
        raise _service_error(error) from None
    return AgentPageOut(
        items=[_agent_out(item) for item in page.items],
        next_cursor=page.next_cursor,
        lens_candidates=page.lens_candidates,
        lens_candidates_complete=page.lens_candidates_complete,
    )


@router.get("/{chain_id}/{agent_id}", responses=NOT_FOUND)
async def get_agent(
    chain_id: ChainId, agent_id: AgentId, user: Reader, conn: Db
) -> AgentProfileOut:
    """The agent's profile: owner, wallet, URI and what its registration file says, its
    on-chain metadata and counts."""
    detail = await service.get_agent(conn, chain_id, int(agent_id))
    if detail is None:
        raise ApiError(404, f"agent {agent_id} of chain {chain_id} not found")
    profile = detail.profile
    return AgentProfileOut.model_validate(
        {
            **profile.__dict__,
            "agent_id": str(profile.agent_id),
            "registration": profile.registration.__dict__,
            "metadata": {key: "0x" + value.hex() for key, value in profile.metadata.items()},
            "stats": detail.stats.__dict__,
        }
    )


@router.get("/{chain_id}/{agent_id}/feedback", responses=NOT_FOUND)
async def list_feedback(
    chain_id: ChainId,
    agent_id: AgentId,
    user: Reader,
    conn: Db,
    clients: Clients = None,
    tag1: Tag = "",
    tag2: Tag = "",
    include_revoked: Annotated[bool, TRUE_OR_FALSE] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> FeedbackPageOut:
    """The agent's feedback in readAllFeedback's order (each client by its first feedback,
    or in the order `clients` lists them; then by index), each with its first responses."""
    try:
        page = await service.list_feedback(
            conn, chain_id, int(agent_id), clients=clients, tag1=tag1, tag2=tag2,
            include_revoked=include_revoked, page=service.Page(limit, cursor),
        )  # fmt: skip
    except service.AgentQueryError as error:
        raise _service_error(error) from None
    except service.AgentNotFoundError as error:
        raise _not_found(error) from None
    return FeedbackPageOut(
        items=[_feedback_out(item.feedback, item.responses) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{chain_id}/{agent_id}/reputation",
    responses=error_responses(
        404, descriptions={404: "No event of the chain names the agent, or no saved lens by"
                           " that name."}
    ),
)  # fmt: skip
async def agent_reputation(
    chain_id: ChainId,
    agent_id: AgentId,
    user: Reader,
    conn: Db,
    clients: SummaryClients = None,
    tag1: Tag = "",
    tag2: Tag = "",
    lens: LensParameter = None,
    trend: Trend = DEFAULT_TREND,
) -> ReputationOut:
    """The agent's reputation: with `clients` (and `tag1`, `tag2`), the spec's getSummary,
    digit for digit; with `lens`, the lens's score with its explanation, the distribution and
    trend of the feedback it counted, and the activity of all of it. Either or both."""
    if not clients and lens is None:
        raise invalid(
            "clients",
            "give clients (getSummary needs them: the contract reverts on none) or a lens",
        )
    width = duration_seconds(trend)
    if width is None:
        raise invalid("trend", 'must be a duration like "7d" or "12h"')
    if width > MAX_TREND_DAYS * 86_400:
        raise invalid("trend", f"must be at most {MAX_TREND_DAYS}d")
    agent = int(agent_id)
    spec = lens_out = None
    try:
        if clients:
            spec = _spec_out(await service.agent_reputation(
                conn, chain_id, agent, clients=clients, tag1=tag1, tag2=tag2))  # fmt: skip
        if lens is not None:
            chosen, name = await resolve_lens(lens, conn, user)
            report = await service.agent_lens_reputation(
                conn, chain_id, agent, chosen, datetime.now(UTC),
                trend_width=timedelta(seconds=width), counted_feedback=False,
            )  # fmt: skip
            lens_out = _lens_out(report, name, trend)
    except service.AgentQueryError as error:
        raise _service_error(error) from None
    except service.AgentNotFoundError as error:
        raise _not_found(error) from None
    return ReputationOut(chain_id=chain_id, agent_id=agent_id, spec=spec, lens=lens_out)


@router.get("/{chain_id}/{agent_id}/validations", responses=NOT_FOUND)
async def list_validations(
    chain_id: ChainId,
    agent_id: AgentId,
    user: Reader,
    conn: Db,
    validators: Validators = None,
    tag: Tag = "",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ValidationPageOut:
    """The agent's validation requests, newest first, with the ValidationRegistry's
    getSummary over the same validators and tag (a tag selects requests whose latest
    response has it)."""
    agent = int(agent_id)
    try:
        summary = await service.validation_summary(
            conn, chain_id, agent, validators=validators, tag=tag
        )
        page = await service.list_validations(
            conn, chain_id, agent, validators=validators, tag=tag,
            page=service.Page(limit, cursor),
        )  # fmt: skip
    except service.AgentQueryError as error:
        raise _service_error(error) from None
    except service.AgentNotFoundError as error:
        raise _not_found(error) from None
    return ValidationPageOut(
        summary=ValidationSummaryOut(count=summary.counted, average_response=summary.average),
        items=[_validation_out(item) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{chain_id}/{agent_id}/history", responses=NOT_FOUND)
async def agent_history(
    chain_id: ChainId,
    agent_id: AgentId,
    user: Reader,
    conn: Db,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> HistoryPageOut:
    """The agent's identity changes, oldest first: registration, URI updates, transfers and
    agentWallet changes."""
    try:
        page = await service.agent_history(
            conn, chain_id, int(agent_id), service.Page(limit, cursor)
        )
    except service.AgentQueryError as error:
        raise _service_error(error) from None
    except service.AgentNotFoundError as error:
        raise _not_found(error) from None
    return HistoryPageOut(
        items=[HistoryEntryOut.model_validate(entry.__dict__) for entry in page.items],
        next_cursor=page.next_cursor,
    )
