"""The web dashboard: a page at `/` and its static files under /dashboard/, served by the
API itself (same origin, no second server), and the session routes it signs in with.

The page is plain HTML and ES modules (static/), with Chart.js copied in by
scripts/build-dashboard; nothing is loaded from elsewhere. Every dashboard response carries
a Content-Security-Policy that allows scripts and styles from this origin only (no inline
ones) and no framing. The scripts render every value with DOM text APIs, never as markup:
chain and user values (names, tags, URIs, registration files) are untrusted.

Signing in: POST /api/v1/auth/session checks a username and password as POST /auth/login
does and answers with two cookies instead of a token in the body: the access token, HttpOnly
(the page's scripts never see it), SameSite=Lax, Secure over HTTPS; and a CSRF token derived
from it (auth.csrf_token), readable by the page, which sends it back in an X-CSRF-Token header
with every request that changes something (dependencies.request_credentials checks it). A
request with an Authorization header is signed in by that header, cookies or not.
"""

from __future__ import annotations

import functools
import mimetypes
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from erc8004_backend.api import accounts
from erc8004_backend.api.auth import csrf_token, is_api_key
from erc8004_backend.api.dependencies import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    Db,
    State,
    bearer,
    current_user,
)
from erc8004_backend.api.docs import Asset, add_asset_routes
from erc8004_backend.api.errors import ApiError, raises

STATIC_PACKAGE = "erc8004_backend.api.dashboard"
STATIC_PREFIX = "/dashboard"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Scripts, styles and requests from this origin only; no inline script or style, no plugins,
# no framing (clickjacking), no <base> that would move relative URLs elsewhere.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["accounts"])


class Session(BaseModel):
    username: str
    expires_in: int = Field(description="Seconds until the session cookie expires.")


@functools.cache
def _static_files() -> dict[str, Asset]:
    """Every file under static/, by its path there ("app.js", "vendor/chart.umd.min.js"),
    read once per process (the tests build many applications)."""
    found: dict[str, Asset] = {}

    def walk(directory: Traversable, prefix: str) -> None:
        for entry in directory.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            suffix = PurePath(entry.name).suffix
            media_type = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
            if media_type is not None:
                found[prefix + entry.name] = Asset(entry.read_bytes(), media_type)

    walk(resources.files(STATIC_PACKAGE).joinpath("static"), "")
    return found


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def install_dashboard(app: FastAPI) -> None:
    """Serves the dashboard's page at `/` and its files under /dashboard/, read once."""
    files = dict(_static_files())
    page = files.pop("index.html")

    @app.get("/", include_in_schema=False)
    async def dashboard_page(request: Request) -> Response:
        return _secured(page.response(request))

    add_asset_routes(app, STATIC_PREFIX, files, "dashboard", _secured)


def _set_session(request: Request, response: Response, token: str, state: State) -> int:
    """Sets the session's two cookies for `token`; returns their lifetime in seconds."""
    lifetime = int(state.token_lifetime.total_seconds())
    # Behind a proxy that terminates TLS the request reaches us over HTTP: its
    # X-Forwarded-Proto says how the browser came. Trusting it is safe here: it can only
    # make a cookie stricter (a Secure cookie is not sent back over HTTP).
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    secure = request.url.scheme == "https" or forwarded == "https"
    response.set_cookie(
        SESSION_COOKIE, token, max_age=lifetime, path="/", httponly=True, samesite="lax",
        secure=secure,
    )  # fmt: skip
    response.set_cookie(
        CSRF_COOKIE, csrf_token(token, state.jwt_secret), max_age=lifetime, path="/",
        httponly=False, samesite="lax", secure=secure,
    )  # fmt: skip
    return lifetime


@router.post(
    "/auth/session",
    dependencies=[Depends(accounts.limit_logins)],
    responses=accounts.LOGIN_ERRORS,
)
async def open_session(
    body: Annotated[accounts.Login, Body(openapi_examples=accounts.LOGINS)],
    request: Request,
    response: Response,
    conn: Db,
    state: State,
) -> Session:
    """Sign in for the dashboard: as POST /auth/login, but the access token is set in an
    HttpOnly cookie (`erc8004_session`) with a CSRF token in a cookie the page reads
    (`erc8004_csrf`), which requests that change something send as `X-CSRF-Token`."""
    token = await accounts.login(body, conn, state)
    lifetime = _set_session(request, response, token.access_token, state)
    return Session(username=await _username(conn, token.access_token, state), expires_in=lifetime)


@raises(401)
async def _bearer_access_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The access token of the Authorization header (not an API key: a session is a
    sign-in, and ends with its token)."""
    token = credentials.credentials if credentials else None
    if token is None or is_api_key(token):
        raise ApiError(
            401, "send the access token to sign in with as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return token


@router.put("/auth/session")
async def adopt_session(
    user: CurrentUser,
    token: Annotated[str, Depends(_bearer_access_token)],
    request: Request,
    response: Response,
    state: State,
) -> Session:
    """Make the access token of the Authorization header the dashboard's session (after a
    password change, whose response carries the only token still valid)."""
    lifetime = _set_session(request, response, token, state)
    return Session(username=user.username, expires_in=lifetime)


@router.delete("/auth/session", status_code=status.HTTP_204_NO_CONTENT)
async def close_session(response: Response) -> None:
    """Sign the dashboard out: its cookies are removed. (The access token itself stays valid
    until it expires or the password changes, as every access token does.)"""
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/")


async def _username(conn: Db, token: str, state: State) -> str:
    """The username of the user `token` was just issued to (the login may name the email)."""
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    return (await current_user(state, conn, credentials)).username
