"""/auth and /me: registration, login (JWT access tokens), the signed-in user, its password,
its API keys, its alert action (told when a trigger's circuit breaker opens), and deleting
it.

Usernames and emails are stored NFKC-normalized (fullwidth letters as plain ones) and are
unique, and matched at login, in the form the database's account_key() gives them: NFKC
then lower case (migration 16).
"""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from erc8004_backend.actions.alerts import ALERT_DEFAULTS, ALERT_FIELDS, alert_config
from erc8004_backend.actions.alerts import QUERIES as ALERT_QUERIES
from erc8004_backend.actions.configs import ActionConfigError, storable_config_problem
from erc8004_backend.actions.rest import CredentialError
from erc8004_backend.api.auth import (
    BCRYPT_MAX_BYTES,
    api_key_hash,
    api_key_prefix,
    hash_password,
    issue_access_token,
    new_api_key,
    password_problem,
    unknown_user_hash,
    verify_password,
)
from erc8004_backend.api.dependencies import QUERIES, CurrentUser, Db, State, client_address
from erc8004_backend.api.errors import ApiError, error_responses, not_found, raises
from erc8004_backend.api.triggers import CREDENTIAL_MASKS, CREDENTIAL_SEALERS
from erc8004_backend.encryption import SecretBox

router = APIRouter(tags=["accounts"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _nfkc(value: object) -> object:
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


def _fit_for_a_password(password: str) -> str:
    if problem := password_problem(password):
        raise ValueError(problem)
    return password


NewPassword = Annotated[
    str,
    Field(
        max_length=BCRYPT_MAX_BYTES,
        description="At least 8 characters other than spaces, at most 72 bytes in UTF-8.",
    ),
    AfterValidator(_fit_for_a_password),
]
# A password to check against the stored one: any length a login would accept.
GivenPassword = Annotated[str, Field(min_length=1, max_length=1024)]


class Registration(_Strict):
    username: Annotated[str, BeforeValidator(_nfkc), Field(pattern=r"^[A-Za-z0-9_.-]{3,64}$")]
    email: Annotated[
        str, BeforeValidator(_nfkc), Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    ]
    password: NewPassword


class Login(_Strict):
    username: Annotated[str, Field(min_length=1, max_length=254, description="Or the email.")]
    password: GivenPassword


class PasswordChange(_Strict):
    old_password: GivenPassword
    new_password: NewPassword
    keep_api_keys: bool = Field(
        default=False,
        strict=True,
        description="Keep the API keys working; by default every key is revoked.",
    )


class AccountDeletion(_Strict):
    password: GivenPassword


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str
    role: str
    last_login_at: datetime | None
    created_at: datetime


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth 2 token type, not a secret)
    expires_at: datetime
    expires_in: int = Field(description="Seconds until the token expires.")


class ApiKeyIn(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, never again.")


class AlertActionIn(_Strict):
    action_type: Annotated[
        str, Field(description="The channel: " + ", ".join(ALERT_DEFAULTS) + ".",
                   json_schema_extra={"enum": list(ALERT_DEFAULTS)})
    ]  # fmt: skip
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="The channel's settings, as a trigger action's; templates left out are"
        " the default alert text, and may name " + ", ".join(ALERT_FIELDS) + ".",
    )


class AlertActionOut(BaseModel):
    id: uuid.UUID
    action_type: str
    config: dict[str, Any] = Field(description="As stored: credentials masked.")
    updated_at: datetime


class PasswordChanged(AccessToken):
    api_keys_revoked: int = Field(description="How many API keys the change revoked.")


# -- examples shown in the OpenAPI document (each works as written, in order) --------------

PASSWORD = "a long password"  # noqa: S105 (an example's)
REGISTRATIONS = {
    "ada": {
        "summary": "An account",
        "value": {"username": "ada", "email": "ada@example.com", "password": PASSWORD},
    }
}
LOGINS = {
    "by username": {
        "summary": "By username",
        "value": {"username": "ada", "password": PASSWORD},
    },
    "by email": {
        "summary": "By email",
        "value": {"username": "ada@example.com", "password": PASSWORD},
    },
}
PASSWORD_CHANGES = {
    "revoking API keys": {
        "summary": "A new password; every API key revoked",
        "value": {"old_password": PASSWORD, "new_password": "a longer password still"},
    }
}
DELETIONS = {"ada": {"summary": "Delete the account", "value": {"password": PASSWORD}}}
API_KEYS = {"script": {"summary": "A key for a script", "value": {"name": "grafana dashboard"}}}


ALERT_ACTIONS = {
    "email": {
        "summary": "An email to the owner (default subject and text)",
        "value": {"action_type": "email", "config": {"to": ["ops@example.com"]}},
    },
    "slack": {
        "summary": "A Slack message with its own text",
        "value": {
            "action_type": "slack",
            "config": {
                "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
                "text_template": "Trigger {{trigger_name}} is off: {{disabled_reason}}."
                " {{reset_instructions}}",
            },
        },
    },
}


@raises(429)
async def limit_logins(request: Request, state: State) -> None:
    await state.rate_limits.check("login", client_address(request))


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(limit_logins)],
    responses=error_responses(409, descriptions={409: "The username or email is taken."}),
)
async def register(
    body: Annotated[Registration, Body(openapi_examples=REGISTRATIONS)], conn: Db, state: State
) -> UserOut:
    """Create an account (role `user`)."""
    password_hash = await asyncio.to_thread(
        hash_password, body.password, state.settings.bcrypt_rounds
    )
    cursor = await conn.execute(
        QUERIES["create_user"],
        {"username": body.username, "email": body.email, "password_hash": password_hash},
    )
    row = await cursor.fetchone()
    if row is None:
        raise ApiError(409, "that username or email is already registered")
    return UserOut.model_validate(row)


def _token_for(row: dict[str, Any], state: State) -> AccessToken:
    token = issue_access_token(
        str(row["id"]), state.jwt_secret, state.token_lifetime,
        password_changed_at=row["password_changed_at"],
    )  # fmt: skip
    return AccessToken(
        access_token=token.token,
        expires_at=token.expires_at,
        expires_in=int(state.token_lifetime.total_seconds()),
    )


# The signed-in user's account, deleted since its credential was checked.
ACCOUNT_GONE = error_responses(404, descriptions={404: "The account was deleted meanwhile."})
LOGIN_ERRORS = error_responses(
    401, 403, descriptions={401: "Wrong username or password.", 403: "The account is deactivated."}
)


@router.post("/auth/login", dependencies=[Depends(limit_logins)], responses=LOGIN_ERRORS)
async def login(
    body: Annotated[Login, Body(openapi_examples=LOGINS)], conn: Db, state: State
) -> AccessToken:
    """Exchange a username (or email) and password for an access token."""
    cursor = await conn.execute(QUERIES["user_for_login"], {"login": body.username})
    row = await cursor.fetchone()
    stored = row["password_hash"] if row else unknown_user_hash(state.settings.bcrypt_rounds)
    matches = await asyncio.to_thread(verify_password, body.password, stored)
    if row is None or not matches:
        raise ApiError(401, "wrong username or password")
    if not row["is_active"]:
        raise ApiError(403, "this account is deactivated")
    await conn.execute(QUERIES["note_login"], {"user_id": row["id"]})
    return _token_for(row, state)


async def _check_password(conn: Db, user_id: str, password: str, field: str) -> None:
    """403 unless `password` is the user's."""
    cursor = await conn.execute(QUERIES["password_hash"], {"user_id": user_id})
    row = await cursor.fetchone()
    if row is None or not await asyncio.to_thread(verify_password, password, row["password_hash"]):
        raise ApiError(
            403,
            f"{field}: wrong password",
            details=[{"field": field, "message": "wrong password"}],
        )


@router.get("/me", responses=ACCOUNT_GONE)
async def me(user: CurrentUser, conn: Db) -> UserOut:
    """The signed-in user."""
    cursor = await conn.execute(QUERIES["user_by_id"], {"user_id": user.id})
    row = await cursor.fetchone()
    if row is None:
        raise not_found("user")
    return UserOut.model_validate(row)


@router.post("/me/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: Annotated[ApiKeyIn, Body(openapi_examples=API_KEYS)], user: CurrentUser, conn: Db
) -> NewApiKeyOut:
    """Make an API key for scripts; the response shows it once."""
    key = new_api_key()
    cursor = await conn.execute(
        QUERIES["create_api_key"],
        {
            "user_id": user.id,
            "name": body.name,
            "prefix": api_key_prefix(key),
            "key_hash": api_key_hash(key),
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    return NewApiKeyOut(key=key, **row)


@router.get("/me/api-keys")
async def list_api_keys(user: CurrentUser, conn: Db) -> list[ApiKeyOut]:
    """The signed-in user's API keys (never the keys themselves)."""
    cursor = await conn.execute(QUERIES["list_api_keys"], {"user_id": user.id})
    return [ApiKeyOut.model_validate(row) for row in await cursor.fetchall()]


@router.delete(
    "/me/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, descriptions={404: "No such API key of yours."}),
)
async def revoke_api_key(key_id: uuid.UUID, user: CurrentUser, conn: Db) -> None:
    """Revoke one of the signed-in user's API keys; it stops working at once."""
    cursor = await conn.execute(QUERIES["revoke_api_key"], {"key_id": key_id, "user_id": user.id})
    if await cursor.fetchone() is None:
        raise not_found("API key")


@router.post(
    "/me/password",
    dependencies=[Depends(limit_logins)],
    responses=ACCOUNT_GONE,
)
async def change_password(
    body: Annotated[PasswordChange, Body(openapi_examples=PASSWORD_CHANGES)],
    user: CurrentUser,
    conn: Db,
    state: State,
) -> PasswordChanged:
    """Change the signed-in user's password. Every access token issued before the change
    stops working (the response carries a new one), and so does every API key unless
    `keep_api_keys` is true."""
    await _check_password(conn, user.id, body.old_password, "old_password")
    password_hash = await asyncio.to_thread(
        hash_password, body.new_password, state.settings.bcrypt_rounds
    )
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["change_password"], {"user_id": user.id, "password_hash": password_hash}
        )
        changed = await cursor.fetchone()
        if changed is None:
            raise not_found("user")
        revoked = 0
        if not body.keep_api_keys:
            cursor = await conn.execute(QUERIES["revoke_api_keys"], {"user_id": user.id})
            counted = await cursor.fetchone()
            revoked = counted["revoked"] if counted else 0
    token = _token_for({"id": user.id, **changed}, state)
    return PasswordChanged(**token.model_dump(), api_keys_revoked=revoked)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(limit_logins)],
    responses=ACCOUNT_GONE,
)
async def delete_account(
    body: Annotated[AccountDeletion, Body(openapi_examples=DELETIONS)], user: CurrentUser, conn: Db
) -> None:
    """Delete the signed-in user's account for good, with everything it owns: its triggers
    (their conditions, actions, state and queued jobs), API keys, saved lenses and delivery
    results. Its tokens stop working at once; the username and email become free."""
    await _check_password(conn, user.id, body.password, "password")
    cursor = await conn.execute(QUERIES["delete_user"], {"user_id": user.id})
    if await cursor.fetchone() is None:
        raise not_found("user")


# -- the alert action ------------------------------------------------------------------------

NO_ALERT_ACTION = error_responses(404, descriptions={404: "No alert action is set."})


def _alert_out(row: dict[str, Any], box: SecretBox) -> AlertActionOut:
    config = row["config"]
    if mask := CREDENTIAL_MASKS.get(row["action_type"]):
        config = mask(config, box, row["id"])
    return AlertActionOut(id=row["id"], action_type=row["action_type"], config=config,
                          updated_at=row["updated_at"])  # fmt: skip


@router.get("/me/alert-action", responses=NO_ALERT_ACTION)
async def get_alert_action(user: CurrentUser, conn: Db, state: State) -> AlertActionOut:
    """Where the signed-in user is told when a circuit breaker opens (credentials masked)."""
    cursor = await conn.execute(ALERT_QUERIES["alert_action"], {"user_id": user.id})
    row = await cursor.fetchone()
    if row is None:
        raise not_found("alert action")
    return _alert_out(row, state.secret_box)


@router.put("/me/alert-action")
async def set_alert_action(
    body: Annotated[AlertActionIn, Body(openapi_examples=ALERT_ACTIONS)],
    user: CurrentUser,
    conn: Db,
    state: State,
) -> AlertActionOut:
    """Name the action that tells the signed-in user when one of their triggers' circuit
    breakers opens (the trigger is then disabled): one alert per opening, saying which
    trigger, why, and how to turn it back on. Replaces any alert action set before; a
    credential sent back as the mask shown keeps the value stored."""
    try:
        config = alert_config(body.action_type, body.config)
    except ActionConfigError as error:
        details = [{"field": "config", "message": str(error)}]
        raise ApiError(422, f"config: {error}", details=details) from None
    if problem := storable_config_problem(config):
        raise ApiError(422, f"config: {problem}")
    async with conn.transaction():
        await conn.execute(ALERT_QUERIES["lock_alert_action_owner"], {"user_id": user.id})
        cursor = await conn.execute(ALERT_QUERIES["alert_action"], {"user_id": user.id})
        existing = await cursor.fetchone()
        alert_id = existing["id"] if existing else str(uuid.uuid4())
        if seal := CREDENTIAL_SEALERS.get(body.action_type):
            stored = existing["config"] if existing else None
            try:
                config = seal(config, state.secret_box, alert_id, stored)
            except CredentialError as error:
                raise ApiError(422, f"config: {error}") from None
        cursor = await conn.execute(ALERT_QUERIES["set_alert_action"], {
            "id": alert_id, "user_id": user.id, "action_type": body.action_type,
            "config": Jsonb(config),
        })  # fmt: skip
        row = await cursor.fetchone()
    assert row is not None
    return _alert_out(row, state.secret_box)


@router.delete(
    "/me/alert-action", status_code=status.HTTP_204_NO_CONTENT, responses=NO_ALERT_ACTION
)
async def clear_alert_action(user: CurrentUser, conn: Db) -> None:
    """Stop alerting: no alert is queued any more; the alert jobs of the action, sent or not,
    go with it (they show in GET /jobs no more)."""
    cursor = await conn.execute(ALERT_QUERIES["clear_alert_action"], {"user_id": user.id})
    if await cursor.fetchone() is None:
        raise not_found("alert action")
