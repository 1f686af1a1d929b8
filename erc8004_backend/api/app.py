"""The FastAPI application: routers under /api/v1, shared state, errors and protection.

app = create_app(settings)               # opens its own pool in the lifespan
app = create_app(settings, pool=pool)    # or uses one the caller opened

create_app is build_app (the routes and middleware, shaped by a few settings) then
attach_state (settings, pool, rate limits, metrics): the tests build an application once per
shape and attach fresh state for each test.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.types import StatelessLifespan

from erc8004_backend.api import (
    accounts,
    agents,
    channels,
    dashboard,
    event_stream,
    events,
    jobs,
    lenses,
    mcp,
    status,
    tokens,
    triggers,
)
from erc8004_backend.api.dashboard import install_dashboard
from erc8004_backend.api.dependencies import ApiState, limit_by_address
from erc8004_backend.api.docs import install_docs
from erc8004_backend.api.errors import install_error_handlers
from erc8004_backend.api.metrics import ApiMetrics, RequestMetrics
from erc8004_backend.api.openapi import dependency_errors, document_errors, install_openapi
from erc8004_backend.api.protection import BodySizeLimit, RateLimits
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox

PREFIX = "/api/v1"
log = structlog.get_logger(__name__)

# Events are listed with optional filters written as `(%(x)s IS NULL OR column = %(x)s)`:
# plans made for the actual values drop the absent filters and use the right index. JIT
# compiles the plans of queries that run in milliseconds and costs more than it saves (an
# agent's feedback page at 1M feedback: p99 32 ms with it, 8 ms without).
POOL_OPTIONS = "-c plan_cache_mode=force_custom_plan -c jit=off"

Pool = AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]


def open_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> Pool:
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row, "options": POOL_OPTIONS},
        name="api",
    )


@dataclass(frozen=True)
class AppShape:
    """The settings that shape the application itself (its middleware); every other setting
    is read from its state at each request."""

    max_body_bytes: int
    cors_origins: tuple[str, ...]

    @classmethod
    def of(cls, settings: Settings) -> AppShape:
        origins = (origin.strip() for origin in settings.cors_origins.split(","))
        return cls(settings.api_max_body_bytes, tuple(origin for origin in origins if origin))


def create_app(settings: Settings, *, pool: Pool | None = None) -> FastAPI:
    if settings.database_url is None and pool is None:
        raise ValueError("create_app needs settings.database_url or a pool")
    own_pool = pool is None
    the_pool: Pool = pool or open_pool(str(settings.database_url))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if own_pool:
            await the_pool.open(wait=False)
        try:
            yield
        finally:
            if own_pool:
                await the_pool.close()

    app = build_app(AppShape.of(settings), lifespan=lifespan)
    attach_state(app, settings, the_pool)
    return app


def attach_state(app: FastAPI, settings: Settings, pool: Pool) -> None:
    """Gives `app` the state of one deployment: its settings and pool, new rate limits and
    new metrics (an application built once can serve one deployment after another)."""
    if settings.jwt_secret is None:
        jwt_secret = secrets.token_urlsafe(32)
        log.warning(
            "api.jwt_secret_not_set",
            hint="set ERC8004_JWT_SECRET; access tokens end with this process",
        )
    else:
        jwt_secret = settings.jwt_secret.get_secret_value()
    app.state.api = ApiState(
        settings=settings,
        pool=pool,
        rate_limits=RateLimits(
            per_user=settings.rate_limit_user,
            per_ip=settings.rate_limit_ip,
            login=settings.rate_limit_login,
            public=settings.rate_limit_public,
        ),
        secret_box=SecretBox.from_spec(settings.token_keys),
        jwt_secret=jwt_secret,
        migrations_dir=settings.migrations_dir,
        event_streams=event_stream.EventStreams(pool),
    )
    app.state.metrics = ApiMetrics()


def build_app(shape: AppShape, *, lifespan: StatelessLifespan[FastAPI] | None = None) -> FastAPI:
    """The routes, error handlers and middleware, without state (see attach_state). Most of
    an application's cost is here: FastAPI builds every route's models."""
    app = FastAPI(
        title="erc8004-backend",
        summary="ERC-8004 registries indexed, triggers over their events, actions delivered.",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        # Served by install_docs from the application's own assets, not from a CDN; the API
        # signs in with bearer tokens, so Swagger UI needs no OAuth2 redirect page.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_docs(app, f"{PREFIX}/docs")

    # Each operation's error responses are found from its route (api/openapi.py).
    install_openapi(app)
    v1 = APIRouter(
        prefix=PREFIX,
        dependencies=[Depends(limit_by_address)],
        responses=dependency_errors(limit_by_address),
    )
    # The event stream before the events: /events/stream is not /events/{event_id}.
    for module in (accounts, dashboard, lenses, triggers, channels, jobs, event_stream, events,
                   agents, tokens, status):  # fmt: skip
        document_errors(module.router)
        v1.include_router(module.router)
    app.include_router(v1)
    # The web dashboard at `/`, calling the routes above from the same origin.
    install_dashboard(app)
    # The MCP server for agents, beside the REST API rather than under its prefix (MCP
    # clients are given the endpoint's URL); not in the OpenAPI document (api/mcp.py).
    app.include_router(mcp.router, dependencies=[Depends(limit_by_address)])

    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=shape.max_body_bytes)
    if shape.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(shape.cors_origins),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
        )
    return app
