"""What route handlers receive: a database connection from the pool, the signed-in user,
and the application's shared state. Each request borrows one pooled connection (autocommit:
a handler that writes more than one row opens a transaction)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.api.auth import (
    TokenError,
    api_key_hash,
    is_api_key,
    password_stamp,
    read_access_token,
)
from erc8004_backend.api.errors import ApiError
from erc8004_backend.api.protection import RateLimits
from erc8004_backend.config import Settings
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import SecretBox

QUERIES = load_queries("erc8004_backend.api", "accounts.sql")


@dataclass
class ApiState:
    settings: Settings
    pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]
    rate_limits: RateLimits
    secret_box: SecretBox
    jwt_secret: str
    migrations_dir: Path

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


async def connection(state: State) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    async with live_connection(state.pool) as conn:
        yield conn


Db = Annotated[psycopg.AsyncConnection[dict[str, Any]], Depends(connection)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


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


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


async def current_user(
    state: State,
    conn: Db,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The active user an access token or API key belongs to; 401 otherwise."""
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
