"""/agents/{chain_id}/{agent_id}/mcp-token: set, rotate or delete the token the `mcp` action
sends to an agent's own MCP server. The token is write-only: stored encrypted (bound to its
agent), never returned, never logged.

Who may change it: an operator, or any signed-in user who brings a signature of the agent's
owner. The owner is the address of the agent's latest indexed identity event naming one
(`Registered`, or a `Transfer` after it). The user first asks for a challenge
(`POST .../mcp-token/challenge` with the action, and for `set` the token's SHA-256); the API
answers with a nonce and the exact text for the owner to sign with `personal_sign`
(EIP-191), an EIP-4361 ("Sign-In with Ethereum") message:

    {instance name} wants you to sign in with your Ethereum account:
    {the owner's address, EIP-55}

    Set the MCP token of agent {agent_id} on chain {chain_id} to the token with SHA-256 {hex}.

    URI: {scheme}://{instance name}/api/v1/agents/{chain_id}/{agent_id}/mcp-token
    Version: 1
    Chain ID: {chain_id}
    Nonce: {nonce}
    Issued At: {when the challenge was made}
    Expiration Time: {5 minutes later}

(for a delete, the statement is "Delete the MCP token of agent {agent_id} on chain
{chain_id}."). The PUT or DELETE then sends the signature and the nonce. The text names this
deployment (ERC8004_INSTANCE_NAME, by default the Host the client called), so a signature
made for another deployment is refused; the server writes the times, so no client clock is
trusted; and the nonce is single use, good for 5 minutes, for the user who asked, that
agent and that action: a signature seen once cannot be replayed, by anyone.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from erc8004_backend.api.dependencies import DIGITS_ONLY, CurrentUser, Db, State, User
from erc8004_backend.api.errors import ApiError, error_responses
from erc8004_backend.chain.signatures import (
    SignatureError,
    SignInMessage,
    parse_signature,
    recover_signer,
)
from erc8004_backend.config import INSTANCE_NAME_PATTERN
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import agent_token_context

QUERIES = load_queries("erc8004_backend.api", "tokens.sql")
router = APIRouter(tags=["tokens"])
log = structlog.get_logger(__name__)

CHALLENGE_LIFETIME = timedelta(minutes=5)
ZERO_ADDRESS = "0x" + "0" * 40
MAX_TOKEN_LENGTH = 4096
BIGINT_MAX = 2**63 - 1
UINT256_LIMIT = 2**256
Action = Literal["set", "delete"]


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_statement(action: Action, chain_id: int, agent_id: int, sha256: str | None) -> str:
    """The EIP-4361 statement: what the owner's signature allows, in one line."""
    if action == "set":
        return (
            f"Set the MCP token of agent {agent_id} on chain {chain_id} to the token with"
            f" SHA-256 {sha256}."
        )
    return f"Delete the MCP token of agent {agent_id} on chain {chain_id}."


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
    int,
    Path(gt=0, le=BIGINT_MAX, description="The chain's EIP-155 id.", examples=[8453]),
    DIGITS_ONLY,
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
HexSignature = Annotated[str, Field(max_length=200), AfterValidator(_well_formed_signature)]
Nonce = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="A challenge's nonce.")]


class McpTokenIn(BaseModel):
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
        description="The owner's personal_sign signature of a set challenge's message (0x +"
        " 130 hex digits); not needed by operators.",
    )
    nonce: Nonce | None = Field(
        default=None, description="The nonce of the challenge signed; required with a signature."
    )


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="What the signature will allow.")
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None,
        validate_default=True,
        description="For `set` (only): the SHA-256 of the token's UTF-8 bytes, 64 lowercase"
        " hex digits. The signature is for this token only.",
    )

    @field_validator("token_sha256")
    @classmethod
    def _with_set_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        action = info.data.get("action")
        if action == "set" and value is None:
            raise PydanticCustomError("token_sha256", "required for action 'set'")
        if action == "delete" and value is not None:
            raise PydanticCustomError("token_sha256", "only for action 'set'")
        return value


class ChallengeOut(BaseModel):
    nonce: str
    message: str = Field(description="The exact text for the owner to sign with personal_sign.")
    signer: str = Field(description="Who must sign it: the agent's owner (EIP-55).")
    expires_at: datetime = Field(description="The challenge is good once, until then.")


class McpTokenOut(BaseModel):
    chain_id: int
    agent_id: str
    updated_at: datetime
    created: bool = Field(description="True when the agent had no token before.")


# -- examples shown in the OpenAPI document ------------------------------------------------

EXAMPLE_TOKEN = "mcp_live_5f1c2e9b7a4d4c0f8e3b6a1d2c9e7f40"  # noqa: S105 (an example's)
CHALLENGE_EXAMPLES = {
    "set": {
        "summary": "To set a token",
        "value": {"action": "set", "token_sha256": token_sha256(EXAMPLE_TOKEN)},
    },
    "delete": {"summary": "To delete the token", "value": {"action": "delete"}},
}
TOKEN_EXAMPLES = {
    "owner": {
        "summary": "Signed by the agent's owner",
        "description": "The signature of the message of a `set` challenge for this token,"
        " and the challenge's nonce.",
        "value": {
            "token": EXAMPLE_TOKEN,
            "signature": "0x126b9830a44fa36e64f691215555b556647b2990521c042e574dc67c68e99c8e"
            "57413a9a31b1d88cb5dd215413793df54d41187bbfcfe0e1319400759f01e4f41b",
            "nonce": "7b918ae93204cc49632aebb34aa8631a",
        },
    },
    "operator": {"summary": "By an operator (no signature)", "value": {"token": EXAMPLE_TOKEN}},
}
NOT_INDEXED = error_responses(404, descriptions={404: "The agent is not indexed on that chain."})
CHALLENGE_ERRORS = error_responses(
    400, 404,
    descriptions={
        400: "The body cannot be read, or the Host header is not a host name to put in the"
        " message (the operator can set ERC8004_INSTANCE_NAME).",
        404: "The agent is not indexed on that chain.",
    },
)  # fmt: skip


# -- who may change the token ---------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The agent's owner as indexed (lowercase), and where the identity event saying so is."""

    address: str
    block_number: int
    log_index: int


@dataclass(frozen=True)
class Authorized:
    """Who authorized a change ("owner" or "operator"), and under which owner event."""

    by: str
    owner: Owner


async def _owner(conn: Db, chain_id: int, agent_id: int) -> Owner:
    cursor = await conn.execute(
        QUERIES["agent_owner"], {"chain_id": chain_id, "agent_id": agent_id}
    )
    row = await cursor.fetchone()
    if row is None:
        raise ApiError(404, f"agent {agent_id} is not indexed on chain {chain_id}")
    return Owner(row["owner"].lower(), row["block_number"], row["log_index"])


def _signature_problem(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", details=[{"field": field, "message": message}])


async def authorize(
    conn: Db,
    user: User,
    chain_id: int,
    agent_id: int,
    action: Action,
    signature: str | None,
    nonce: str | None,
    token: str | None = None,
) -> Authorized:
    """Passes when `user` may `action` the agent's token: an operator, or a signature of the
    owner over the message of a challenge of this user, for this agent and action (and
    token), consumed now. A signature sent is always checked, an operator's too. Returns who
    authorized it, and the owner event it was authorized under."""
    found = await _owner(conn, chain_id, agent_id)
    owner = found.address
    agent = f"agent {agent_id} on chain {chain_id}"
    if signature is None and nonce is None:
        if user.is_operator:
            return Authorized("operator", found)
        _require_an_owner(owner, agent)
        raise ApiError(
            403,
            f"to {action} the MCP token of {agent}, a signature from its owner {owner} is"
            " required (operators need none): ask POST"
            f" /api/v1/agents/{chain_id}/{agent_id}/mcp-token/challenge for the text to sign,"
            " have the owner sign it with personal_sign (EIP-191), and send the signature with"
            " the challenge's nonce",
        )
    if nonce is None:
        raise _signature_problem("nonce", "required with a signature: the challenge's nonce")
    if signature is None:
        raise _signature_problem("signature", "required with a nonce: the owner's signature")
    challenge = await _consume_challenge(conn, user, chain_id, agent_id, nonce)
    if challenge["action"] != action:
        raise ApiError(
            403,
            f"the challenge {nonce} is for the {challenge['action']} action, not {action}:"
            " ask for a challenge for this one",
        )
    if challenge["expires_at"] <= datetime.now(UTC):
        raise ApiError(
            403,
            f"the challenge {nonce} expired at {challenge['expires_at']:%Y-%m-%dT%H:%M:%SZ}:"
            f" challenges are good for {CHALLENGE_LIFETIME.seconds // 60} minutes; ask for a"
            " new one",
        )
    if token is not None and challenge["token_sha256"] != token_sha256(token):
        raise ApiError(
            403,
            f"the challenge {nonce} is for the token with SHA-256 {challenge['token_sha256']},"
            f" not this one (SHA-256 {token_sha256(token)}): ask for a challenge for this token",
        )
    if challenge["signer"] != owner:
        raise ApiError(
            403,
            f"{agent} changed owners since the challenge (now {owner}): ask for a new one",
        )
    try:
        signer = await asyncio.to_thread(recover_signer, challenge["message"], signature)
    except SignatureError as error:
        raise _signature_problem("signature", str(error)) from None
    if signer != owner:
        raise ApiError(
            403,
            f"the signature is from {signer}, not the agent's owner {owner}: the owner signs"
            f" the challenge's message with personal_sign (EIP-191)",
        )
    return Authorized("owner", found)


def _require_an_owner(owner: str, agent: str) -> None:
    if owner == ZERO_ADDRESS:
        raise ApiError(
            403,
            f"{agent} was burned (transferred to the zero address): it has no owner to sign;"
            " only an operator can change its token",
        )


async def _consume_challenge(
    conn: Db, user: User, chain_id: int, agent_id: int, nonce: str
) -> dict[str, Any]:
    cursor = await conn.execute(
        QUERIES["consume_challenge"],
        {"nonce": nonce, "user_id": user.id, "chain_id": chain_id, "agent_id": agent_id},
    )
    row = await cursor.fetchone()
    if row is None:
        raise ApiError(
            403,
            f"the challenge {nonce} was used already, or is not one of yours for agent"
            f" {agent_id} on chain {chain_id}: a signed challenge authorizes one request, by"
            " the user who asked for it; ask for a new one",
        )
    return row


def _instance_name(request: Request, state: State) -> str:
    """The deployment's name in the messages: ERC8004_INSTANCE_NAME, else the Host the
    client called."""
    name = state.settings.instance_name or request.headers.get("host", "")
    if not re.fullmatch(INSTANCE_NAME_PATTERN, name):
        raise ApiError(
            400,
            f"the Host header {name!r} is not a host name to put in a message to sign; the"
            " operator can set ERC8004_INSTANCE_NAME",
        )
    return name


# -- the routes -----------------------------------------------------------------------------


@router.post(
    "/agents/{chain_id}/{agent_id}/mcp-token/challenge",
    status_code=status.HTTP_201_CREATED,
    responses=CHALLENGE_ERRORS,
)
async def make_challenge(
    chain_id: ChainId,
    agent_id: AgentId,
    body: Annotated[ChallengeIn, Body(openapi_examples=CHALLENGE_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
    state: State,
    request: Request,
) -> ChallengeOut:
    """A challenge for the owner's signature of a change of the agent's MCP token: a nonce and
    the exact text (EIP-4361) for the owner to sign with personal_sign (EIP-191). Send the
    signature and the nonce with the PUT (`set`) or DELETE (`delete`) within 5 minutes; each
    challenge authorizes one request, by the user who asked for it.

    For `set`, give the SHA-256 of the token (64 lowercase hex digits): the signature is for
    that token only. 404 when the agent is not indexed on that chain; 403 when it was burned
    (it has no owner to sign)."""
    agent = int(agent_id)
    owner = (await _owner(conn, chain_id, agent)).address
    _require_an_owner(owner, f"agent {agent_id} on chain {chain_id}")
    domain = _instance_name(request, state)
    issued_at = datetime.now(UTC).replace(microsecond=0)
    nonce = secrets.token_hex(16)
    message = SignInMessage(
        domain=domain,
        address=owner,
        statement=token_statement(body.action, chain_id, agent, body.token_sha256),
        uri=f"{request.url.scheme}://{domain}{request.url.path.removesuffix('/challenge')}",
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=issued_at + CHALLENGE_LIFETIME,
    )
    await conn.execute(
        QUERIES["create_challenge"],
        {
            "nonce": nonce, "user_id": user.id, "chain_id": chain_id, "agent_id": agent,
            "action": body.action, "token_sha256": body.token_sha256, "signer": owner,
            "message": message.text(), "expires_at": message.expiration_time,
        },
    )  # fmt: skip
    return ChallengeOut(
        nonce=nonce,
        message=message.text(),
        signer=to_checksum_address(owner),
        expires_at=message.expiration_time,
    )


@router.put(
    "/agents/{chain_id}/{agent_id}/mcp-token",
    responses={
        201: {"model": McpTokenOut, "description": "The agent had no token: it has now."},
        **NOT_INDEXED,
    },
)
async def set_mcp_token(
    chain_id: ChainId,
    agent_id: AgentId,
    body: Annotated[McpTokenIn, Body(openapi_examples=TOKEN_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
    state: State,
    response: Response,
) -> McpTokenOut:
    """Set or rotate the agent's MCP token (200 when replaced, 201 when new). The response
    never contains the token; nothing can read it back.

    An operator needs no signature. Anyone else first asks
    `POST /agents/{chain_id}/{agent_id}/mcp-token/challenge` with `{"action": "set",
    "token_sha256": ...}`, has the owner sign the challenge's message with personal_sign
    (EIP-191), and sends `{"token", "signature", "nonce"}` within 5 minutes. A challenge is
    good once: a replayed signature is refused.

    403 when the signature is missing, not the owner's, or its challenge is used, expired or
    for another user, agent, action or token; 404 when the agent is not indexed on that
    chain."""
    agent = int(agent_id)
    token = body.token
    authorized = await authorize(
        conn, user, chain_id, agent, "set", body.signature, body.nonce, token=token
    )
    sealed = state.secret_box.seal(token, agent_token_context(chain_id, agent))
    cursor = await conn.execute(
        QUERIES["set_token"],
        {
            "chain_id": chain_id,
            "agent_id": agent,
            "ciphertext": sealed.ciphertext,
            "key_id": sealed.key_id,
            "user_id": user.id,
            "owner_block": authorized.owner.block_number,
            "owner_log_index": authorized.owner.log_index,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    created = bool(row["created"])
    if created:
        response.status_code = status.HTTP_201_CREATED
    log.info(
        "api.mcp_token_set", chain_id=chain_id, agent_id=agent_id, user_id=user.id,
        authorized_by=authorized.by, created=created, key_id=sealed.key_id,
    )  # fmt: skip
    return McpTokenOut(
        chain_id=chain_id, agent_id=agent_id, updated_at=row["updated_at"], created=created
    )


@router.delete(
    "/agents/{chain_id}/{agent_id}/mcp-token",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        404, descriptions={404: "The agent is not indexed on that chain, or has no MCP token."}
    ),
)
async def delete_mcp_token(
    chain_id: ChainId,
    agent_id: AgentId,
    user: CurrentUser,
    conn: Db,
    signature: Annotated[
        HexSignature | None,
        Query(description="The owner's personal_sign signature of a delete challenge."),
    ] = None,
    nonce: Annotated[Nonce | None, Query(description="The challenge's nonce.")] = None,
) -> None:
    """Delete the agent's MCP token (204; 404 when it has none). `mcp` actions for the agent
    fail until a token is set again.

    An operator needs no signature. Anyone else asks
    `POST /agents/{chain_id}/{agent_id}/mcp-token/challenge` with `{"action": "delete"}`,
    has the owner sign the challenge's message with personal_sign (EIP-191), and sends
    `?signature=0x...&nonce=...` (a DELETE has no body) within 5 minutes, once."""
    agent = int(agent_id)
    by = (await authorize(conn, user, chain_id, agent, "delete", signature, nonce)).by
    cursor = await conn.execute(QUERIES["delete_token"], {"chain_id": chain_id, "agent_id": agent})
    if await cursor.fetchone() is None:
        raise ApiError(404, f"agent {agent_id} on chain {chain_id} has no MCP token")
    log.info(
        "api.mcp_token_deleted", chain_id=chain_id, agent_id=agent_id, user_id=user.id,
        authorized_by=by,
    )  # fmt: skip
