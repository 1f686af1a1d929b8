"""/agents/{chain_id}/{agent_id}/mcp-token: set, rotate or delete the token the `mcp` action
sends to an agent's own MCP server. The token is write-only: stored encrypted (bound to its
agent), never returned, never logged.

Who may change it: an operator, or any signed-in user who brings a signature of the agent's
owner. The owner is the address of the agent's latest indexed identity event naming one
(`Registered`, or a `Transfer` after it). The owner signs, with `personal_sign` (EIP-191),
a fixed text the server rebuilds, so a signature covers one action on one agent, one token
(by its SHA-256) and one moment:

    erc8004-backend: set the MCP token of agent {agent_id} on chain {chain_id}
    token sha256: {SHA-256 of the token's UTF-8 bytes, 64 lowercase hex digits}
    issued at: {issued_at, exactly as sent}

    erc8004-backend: delete the MCP token of agent {agent_id} on chain {chain_id}
    issued at: {issued_at, exactly as sent}

Lines end with a single "\\n" and the last has none; agent_id is in decimal as in the path.
issued_at is an ISO 8601 time in UTC ("2025-01-23T12:00:00Z") within 10 minutes of the
server's clock: older signatures are refused, so that one seen once cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Path, Query, Response, status
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from erc8004_backend.api.dependencies import CurrentUser, Db, State, User
from erc8004_backend.api.errors import ApiError
from erc8004_backend.chain.signatures import SignatureError, parse_signature, recover_signer
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import agent_token_context

QUERIES = load_queries("erc8004_backend.api", "tokens.sql")
router = APIRouter(tags=["tokens"])
log = structlog.get_logger(__name__)

SIGNATURE_MAX_AGE = timedelta(minutes=10)
ZERO_ADDRESS = "0x" + "0" * 40
MAX_TOKEN_LENGTH = 4096
BIGINT_MAX = 2**63 - 1
UINT256_LIMIT = 2**256


# -- the signed messages --------------------------------------------------------------------


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def set_token_message(chain_id: int, agent_id: int | str, token: str, issued_at: str) -> str:
    """The text the owner signs to set (or rotate) the agent's token."""
    return (
        f"erc8004-backend: set the MCP token of agent {agent_id} on chain {chain_id}\n"
        f"token sha256: {token_sha256(token)}\n"
        f"issued at: {issued_at}"
    )


def delete_token_message(chain_id: int, agent_id: int | str, issued_at: str) -> str:
    """The text the owner signs to delete the agent's token."""
    return (
        f"erc8004-backend: delete the MCP token of agent {agent_id} on chain {chain_id}\n"
        f"issued at: {issued_at}"
    )


# -- input ------------------------------------------------------------------------------------


_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")


def _agent_id(value: object) -> object:
    """Runs before the path's own pattern, to say what is wrong in words."""
    if isinstance(value, str) and (
        not _DECIMAL.match(value) or len(value) > 78 or int(value) >= UINT256_LIMIT
    ):
        raise PydanticCustomError(
            "agent_id",
            "must be an agent id: a whole number from 0 to 2^256 - 1, in decimal without"
            " leading zeros",
        )
    return value


def _utc_time(value: str) -> str:
    """An ISO 8601 time with a UTC offset of zero, kept as sent (it is part of the message)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() != timedelta(0):
        raise PydanticCustomError(
            "utc_time", "must be an ISO 8601 time in UTC, such as 2025-01-23T12:00:00Z"
        )
    return value


def _well_formed_signature(value: str) -> str:
    try:
        parse_signature(value)
    except SignatureError as error:
        raise PydanticCustomError("signature", "{problem}", {"problem": str(error)}) from None
    return value


def _sendable_token(value: str) -> str:
    """The token must be usable as an HTTP header value, as the `mcp` action sends it."""
    if value != value.strip() or not all(
        " " <= char <= "~" or "\xa0" <= char <= "\xff" for char in value
    ):
        raise PydanticCustomError(
            "header_value",
            "must be sendable in an HTTP header: no surrounding spaces, no control characters,"
            " Latin-1 characters only",
        )
    return value


ChainId = Annotated[
    int, Path(gt=0, le=BIGINT_MAX, description="The chain's EIP-155 id.", examples=[8453])
]
AgentId = Annotated[
    str,
    Path(
        pattern=r"^(0|[1-9][0-9]*)$",
        max_length=78,
        description="The agent's id (its ERC-721 token id) in decimal, without leading zeros.",
        examples=["42"],
    ),
    BeforeValidator(_agent_id),
]
IssuedAt = Annotated[str, Field(max_length=64), AfterValidator(_utc_time)]
HexSignature = Annotated[str, Field(max_length=200), AfterValidator(_well_formed_signature)]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_TOKEN_LENGTH,
            description="The token the agent's MCP server expects. Write-only.",
        ),
        AfterValidator(_sendable_token),
    ]
    signature: HexSignature | None = Field(
        default=None,
        description="The owner's personal_sign signature of the set message (0x + 130 hex"
        " digits); not needed by operators.",
    )
    issued_at: IssuedAt | None = Field(
        default=None,
        description="The time in the signed message, ISO 8601 in UTC; required with a signature.",
    )


class TokenOut(BaseModel):
    chain_id: int
    agent_id: str
    updated_at: datetime
    created: bool = Field(description="True when the agent had no token before.")


# -- who may change the token ---------------------------------------------------------------


async def _owner(conn: Db, chain_id: int, agent_id: int) -> str:
    cursor = await conn.execute(
        QUERIES["agent_owner"], {"chain_id": chain_id, "agent_id": agent_id}
    )
    row = await cursor.fetchone()
    if row is None:
        raise ApiError(404, f"agent {agent_id} is not indexed on chain {chain_id}")
    owner: str = row["owner"].lower()
    return owner


def _signature_problem(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", details=[{"field": field, "message": message}])


async def authorize(
    conn: Db,
    user: User,
    chain_id: int,
    agent_id: int,
    action: str,
    message_for: Callable[[str], str],
    signature: str | None,
    issued_at: str | None,
) -> str:
    """Passes when `user` may `action` the agent's token: an operator, or a signature of the
    owner over message_for(issued_at) made within SIGNATURE_MAX_AGE. A signature sent is always
    checked, an operator's too. Returns who authorized it ("owner" or "operator")."""
    owner = await _owner(conn, chain_id, agent_id)
    agent = f"agent {agent_id} on chain {chain_id}"
    if signature is None:
        if user.is_operator:
            return "operator"
        if owner == ZERO_ADDRESS:
            raise ApiError(
                403,
                f"{agent} was burned (transferred to the zero address): it has no owner to sign;"
                " only an operator can change its token",
            )
        template = json.dumps(message_for(issued_at or "<issued_at>"), ensure_ascii=False)
        raise ApiError(
            403,
            f"to {action} the MCP token of {agent}, a signature from its owner {owner} is"
            f" required (operators need none): the owner signs with personal_sign (EIP-191)"
            f" the text {template}, and the request sends it as signature, with issued_at (the"
            " current time, ISO 8601 in UTC, as in the text)",
        )
    if issued_at is None:
        raise _signature_problem(
            "issued_at",
            "required with a signature: the time in the signed text, ISO 8601 in UTC",
        )
    now = datetime.now(UTC)
    moment = datetime.fromisoformat(issued_at)
    if abs(now - moment) > SIGNATURE_MAX_AGE:
        minutes = int(SIGNATURE_MAX_AGE.total_seconds() // 60)
        raise ApiError(
            403,
            f"the signature is stale: issued_at {issued_at} is more than {minutes} minutes from"
            f" the server's time {now:%Y-%m-%dT%H:%M:%SZ}; signatures are accepted for"
            f" {minutes} minutes only, so that they cannot be replayed: sign the text again with"
            " the current time",
        )
    message = message_for(issued_at)
    try:
        signer = await asyncio.to_thread(recover_signer, message, signature)
    except SignatureError as error:
        raise _signature_problem("signature", str(error)) from None
    if signer != owner:
        raise ApiError(
            403,
            f"the signature is from {signer}, not the agent's owner {owner}: the owner signs"
            f" with personal_sign (EIP-191) exactly the text"
            f" {json.dumps(message, ensure_ascii=False)}",
        )
    return "owner"


# -- the routes -----------------------------------------------------------------------------


@router.put(
    "/agents/{chain_id}/{agent_id}/mcp-token",
    responses={201: {"model": TokenOut, "description": "The agent had no token: it has now."}},
)
async def set_mcp_token(
    chain_id: ChainId,
    agent_id: AgentId,
    body: TokenIn,
    user: CurrentUser,
    conn: Db,
    state: State,
    response: Response,
) -> TokenOut:
    """Set or rotate the agent's MCP token (200 when replaced, 201 when new). The response
    never contains the token; nothing can read it back.

    An operator needs no signature. Anyone else sends the owner's personal_sign (EIP-191)
    signature of this text, with issued_at exactly as in the text (ISO 8601 UTC, within
    10 minutes of now):

        erc8004-backend: set the MCP token of agent {agent_id} on chain {chain_id}
        token sha256: {hex SHA-256 of the token's UTF-8 bytes}
        issued at: {issued_at}

    403 when the signature is missing, stale or not the owner's; 404 when the agent is not
    indexed on that chain."""
    agent = int(agent_id)
    token = body.token
    by = await authorize(
        conn, user, chain_id, agent, "set",
        lambda issued_at: set_token_message(chain_id, agent_id, token, issued_at),
        body.signature, body.issued_at,
    )  # fmt: skip
    sealed = state.secret_box.seal(token, agent_token_context(chain_id, agent))
    cursor = await conn.execute(
        QUERIES["set_token"],
        {
            "chain_id": chain_id,
            "agent_id": agent,
            "ciphertext": sealed.ciphertext,
            "key_id": sealed.key_id,
            "user_id": user.id,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    created = bool(row["created"])
    if created:
        response.status_code = status.HTTP_201_CREATED
    log.info(
        "api.mcp_token_set", chain_id=chain_id, agent_id=agent_id, user_id=user.id,
        authorized_by=by, created=created, key_id=sealed.key_id,
    )  # fmt: skip
    return TokenOut(
        chain_id=chain_id, agent_id=agent_id, updated_at=row["updated_at"], created=created
    )


@router.delete("/agents/{chain_id}/{agent_id}/mcp-token", status_code=status.HTTP_204_NO_CONTENT)
async def delete_mcp_token(
    chain_id: ChainId,
    agent_id: AgentId,
    user: CurrentUser,
    conn: Db,
    signature: Annotated[
        HexSignature | None,
        Query(description="The owner's personal_sign signature of the delete text."),
    ] = None,
    issued_at: Annotated[
        IssuedAt | None,
        Query(description="The time in the signed text, ISO 8601 in UTC."),
    ] = None,
) -> None:
    """Delete the agent's MCP token (204; 404 when it has none). `mcp` actions for the agent
    fail until a token is set again.

    The signature and issued_at travel as query parameters (a DELETE has no body):
    `?signature=0x...&issued_at=2025-01-23T12:00:00Z` (percent-encode a "+" of a "+00:00"
    offset as %2B, or use "Z"). An operator needs neither. Anyone else sends the owner's
    personal_sign (EIP-191) signature of this text (issued_at within 10 minutes of now):

        erc8004-backend: delete the MCP token of agent {agent_id} on chain {chain_id}
        issued at: {issued_at}
    """
    agent = int(agent_id)
    by = await authorize(
        conn, user, chain_id, agent, "delete",
        lambda moment: delete_token_message(chain_id, agent_id, moment),
        signature, issued_at,
    )  # fmt: skip
    cursor = await conn.execute(QUERIES["delete_token"], {"chain_id": chain_id, "agent_id": agent})
    if await cursor.fetchone() is None:
        raise ApiError(404, f"agent {agent_id} on chain {chain_id} has no MCP token")
    log.info(
        "api.mcp_token_deleted", chain_id=chain_id, agent_id=agent_id, user_id=user.id,
        authorized_by=by,
    )  # fmt: skip
