"""What route handlers receive: a database connection from the pool, the signed-in user,
and the application's shared state. Each request borrows one pooled connection (autocommit:
a handler that writes more than one row opens a transaction)."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from pydantic import BeforeValidator, Strict

from erc8004_backend.api.auth import (
    TokenError,
    api_key_hash,
    csrf_token_matches,
    is_api_key,
    password_stamp,
    read_access_token,
)
from erc8004_backend.api.errors import ApiError, raises
from erc8004_backend.api.protection import RateLimits
from erc8004_backend.config import Settings
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import SecretBox

if TYPE_CHECKING:
    from erc8004_backend.api.event_stream import EventStreams

QUERIES = load_queries("erc8004_backend.api", "accounts.sql")

# -- strict input ------------------------------------------------------------------------
# Pydantic's default coercions let `true` be 1, `0` be false, "2.0" or "+1" a whole number
# and a number a Unix time; what a client sends is taken as written or refused instead.
# Bodies use strict models (ConfigDict(strict=True)); query and path values arrive as text,
# so these validators say which texts are numbers and booleans.

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
# A date, optionally with a time: what ISO 8601 writes, not a number of seconds.
_ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _whole_number_text(value: Any) -> Any:
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value):
        raise ValueError("must be a whole number, in decimal digits")
    return value


def _true_or_false_text(value: Any) -> Any:
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value


def _iso_time(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_TIME.match(value)):
        return value
    raise ValueError("must be an ISO 8601 time, like 2026-03-02T12:00:00Z")


# In a query or path parameter's Annotated[int, Query(...), DIGITS_ONLY].
DIGITS_ONLY = BeforeValidator(_whole_number_text)
# In a query parameter's Annotated[bool, TRUE_OR_FALSE].
TRUE_OR_FALSE = BeforeValidator(_true_or_false_text)
# A time in a query or a body (in a strict model too: JSON has no time type, so text is
# what a time is).
IsoTime = Annotated[datetime, BeforeValidator(_iso_time), Strict(False)]


@dataclass
class ApiState:
    settings: Settings
    pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]
    rate_limits: RateLimits
    secret_box: SecretBox
    jwt_secret: str
    migrations_dir: Path
    event_streams: EventStreams

    @property
    def token_lifetime(self) -> timedelta:
        return timedelta(minutes=self.settings.jwt_lifetime_minutes)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]


@contextlib.asynccontextmanager
async def live_connection(
    pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]],
    timeout: float | None = None,
) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    """A pooled connection that has just answered an empty query (one round trip).

    After PostgreSQL restarts every idle connection of the pool is dead. The first dead one
    found makes the pool test all of them at once and replace the dead ones, so a request
    gets a working connection; the pool's own `check` option would instead back off for a
    second or more between dead connections, and time out with a large pool.
    """
    conn = await pool.getconn(timeout)
    try:
        await pool.check_connection(conn)
    except BaseException as error:
        await pool.putconn(conn)  # if broken: closed and replaced
        if not isinstance(error, psycopg.Error):
            raise
        await pool.check()
        conn = await pool.getconn(timeout)
    try:
        async with conn:  # commits or rolls back, as pool.connection() does
            yield conn
    finally:
        await pool.putconn(conn)


@raises(503)
async def connection(state: State) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    async with live_connection(state.pool) as conn:
        yield conn


Db = Annotated[psycopg.AsyncConnection[dict[str, Any]], Depends(connection)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@raises(429)
async def limit_by_address(request: Request, state: State) -> None:
    await state.rate_limits.check("ip", client_address(request))


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /api/v1/auth/login, or an API key (ek_...).",
)


# The dashboard's session (api/dashboard/): an access token in an HttpOnly cookie, and a
# CSRF token derived from it that the page reads from its own cookie and echoes in a header.
SESSION_COOKIE = "erc8004_session"
CSRF_COOKIE = "erc8004_csrf"
CSRF_HEADER = "X-CSRF-Token"
# Methods that change nothing: a cookie-authenticated request of another method must carry
# the CSRF header (a cross-site form can send the cookie, never the header).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


@raises(403)
async def request_credentials(
    request: Request,
    state: State,
    header: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> HTTPAuthorizationCredentials | None:
    """The request's credential: its Authorization header, else the dashboard's session
    cookie, which signs in a state-changing request only with the CSRF header that matches
    it (403 otherwise). None: neither."""
    if header is not None:
        return header
    token = request.cookies.get(SESSION_COOKIE)
    # Only ever an access token (set by POST or PUT /auth/session); an API key planted there
    # signs nothing in.
    if not token or is_api_key(token):
        return None
    if request.method not in SAFE_METHODS and not csrf_token_matches(
        request.headers.get(CSRF_HEADER, ""), token, state.jwt_secret
    ):
        raise ApiError(
            403,
            f"a request signed in by the session cookie must send the {CSRF_HEADER} header"
            f" with the value of the {CSRF_COOKIE} cookie",
        )
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(request_credentials)]


@raises(401, 403, 429)
async def current_user(state: State, conn: Db, credentials: Credentials) -> User:
    """The active user an access token or API key (or the dashboard's session cookie)
    belongs to; 401 otherwise."""
    if credentials is None:
        raise _unauthorized("sign in: send 'Authorization: Bearer <access token or API key>'")
    credential = credentials.credentials
    if is_api_key(credential):
        cursor = await conn.execute(
            QUERIES["user_by_api_key"], {"key_hash": api_key_hash(credential)}
        )
        row = await cursor.fetchone()
        if row is None:
            raise _unauthorized("the API key is not valid (unknown or revoked)")
    else:
        try:
            claims = read_access_token(credential, state.jwt_secret)
            user_id = uuid.UUID(claims.user_id)
        except TokenError as error:
            raise _unauthorized(str(error)) from None
        except ValueError:
            raise _unauthorized("the access token is not valid") from None
        cursor = await conn.execute(QUERIES["user_by_id"], {"user_id": user_id})
        row = await cursor.fetchone()
        if row is None:
            raise _unauthorized("the access token's user no longer exists")
        if claims.password_stamp != password_stamp(row["password_changed_at"]):
            raise _unauthorized(
                "the access token was issued before the password changed; log in again"
            )
    if not row["is_active"]:
        raise ApiError(403, "this account is deactivated")
    user = User(str(row["id"]), row["username"], row["email"], row["role"])
    await state.rate_limits.check("user", user.id)
    return user


CurrentUser = Annotated[User, Depends(current_user)]
