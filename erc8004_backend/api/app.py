"""The FastAPI application: routers under /api/v1, shared state, errors and protection.

app = create_app(settings)               # opens its own pool in the lifespan
app = create_app(settings, pool=pool)    # or uses one the caller opened (tests, `run`)
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import structlog
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.api import accounts, events, status, tokens, triggers
from erc8004_backend.api.dependencies import ApiState, limit_by_address
from erc8004_backend.api.errors import error_responses, install_error_handlers
from erc8004_backend.api.metrics import ApiMetrics, RequestMetrics
from erc8004_backend.api.protection import BodySizeLimit, RateLimits
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox

PREFIX = "/api/v1"
log = structlog.get_logger(__name__)

# Events are listed with optional filters written as `(%(x)s IS NULL OR column = %(x)s)`:
# plans made for the actual values drop the absent filters and use the right index.
POOL_OPTIONS = "-c plan_cache_mode=force_custom_plan"

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


def create_app(settings: Settings, *, pool: Pool | None = None) -> FastAPI:
    if settings.database_url is None and pool is None:
        raise ValueError("create_app needs settings.database_url or a pool")
    own_pool = pool is None
    the_pool: Pool = pool or open_pool(str(settings.database_url))
    if settings.jwt_secret is None:
        jwt_secret = secrets.token_urlsafe(32)
        log.warning(
            "api.jwt_secret_not_set",
            hint="set ERC8004_JWT_SECRET; access tokens end with this process",
        )
    else:
        jwt_secret = settings.jwt_secret.get_secret_value()
    state = ApiState(
        settings=settings,
        pool=the_pool,
        rate_limits=RateLimits(
            per_user=settings.rate_limit_user,
            per_ip=settings.rate_limit_ip,
            login=settings.rate_limit_login,
        ),
        secret_box=SecretBox.from_spec(settings.token_keys),
        jwt_secret=jwt_secret,
        migrations_dir=settings.migrations_dir,
    )
    metrics = ApiMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if own_pool:
            await the_pool.open(wait=False)
        try:
            yield
        finally:
            if own_pool:
                await the_pool.close()

    app = FastAPI(
        title="erc8004-backend",
        summary="ERC-8004 registries indexed, triggers over their events, actions delivered.",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.api = state
    app.state.metrics = metrics
    install_error_handlers(app)

    v1 = APIRouter(
        prefix=PREFIX,
        dependencies=[Depends(limit_by_address)],
        responses=error_responses(400, 413, 422, 429),
    )
    v1.include_router(accounts.router, responses=error_responses(401, 403, 404, 409))
    for module in (triggers, events, tokens):
        v1.include_router(module.router, responses=error_responses(401, 403, 404))
    v1.include_router(status.router, responses=error_responses(401, 403, 503))
    app.include_router(v1)

    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
        )
    return app
