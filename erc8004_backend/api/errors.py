"""One shape for every error the API returns, and never a stack trace:

{"error": {"status": 422, "code": "invalid_request", "message": "...", "details": [...]}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = structlog.get_logger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class ErrorDetail(BaseModel):
    field: str = Field(
        description="Where: a body field as a path (`conditions[0].operator`), or the name of a"
        " query or path parameter."
    )
    message: str = Field(description="What is wrong with it.")


class ErrorInfo(BaseModel):
    status: int = Field(description="The response's HTTP status.")
    code: str = Field(
        description="Stable, for programs: one per status.",
        json_schema_extra={"enum": list(sorted(set(CODES.values())))},
    )
    message: str = Field(description="For people: names the field or thing and the problem.")
    details: list[ErrorDetail] | None = Field(
        default=None, description="Each field and its problem, when the request names any."
    )


class ErrorBody(BaseModel):
    """The body of every error the API answers with, whatever the status: never a stack
    trace."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "status": 422,
                        "code": "invalid_request",
                        "message": "actions[0].config: telegram action: chat_id: is required",
                        "details": [
                            {
                                "field": "actions[0].config",
                                "message": "telegram action: chat_id: is required",
                            }
                        ],
                    }
                },
                {"error": {"status": 404, "code": "not_found", "message": "trigger not found"}},
            ]
        }
    )

    error: ErrorInfo


_DESCRIPTIONS = {
    400: "The request body cannot be read (not UTF-8, say).",
    401: "Not signed in, or the credential is not valid.",
    403: "Signed in, but not allowed (a deactivated account, a missing owner's signature).",
    404: "No such thing, or it is not yours.",
    409: "Conflicts with what exists.",
    413: "The request body is too large (ERC8004_API_MAX_BODY_BYTES).",
    422: "The request is not valid; `details` names each field and its problem.",
    429: "Too many requests; Retry-After says when to try again.",
    503: "The database is unavailable; Retry-After says when to try again.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
_HEADERS: dict[int, dict[str, Any]] = {429: _RETRY_AFTER, 503: _RETRY_AFTER}


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses a route answers with, beyond those that
    api/openapi.py finds for it (its input's, its dependencies'); `descriptions` says what
    a status means on this route when the general description does not say it well."""
    described: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        described[status] = described_error(status)
        if descriptions and status in descriptions:
            described[status]["description"] = descriptions[status]
    return described


def described_error(status: int) -> dict[str, Any]:
    """The OpenAPI response object of an error status, without its content (ErrorBody,
    which api/openapi.py gives every error response)."""
    response: dict[str, Any] = {"description": _DESCRIPTIONS[status]}
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


Function = TypeVar("Function", bound=Callable[..., Any])
_RAISED_BY: dict[Callable[..., Any], frozenset[int]] = {}


def raises(*statuses: int) -> Callable[[Function], Function]:
    """Declares the error statuses a dependency can answer with: the OpenAPI document lists
    them for every operation that depends on it (api/openapi.py)."""

    def declare(function: Function) -> Function:
        _RAISED_BY[function] = frozenset(statuses)
        return function

    return declare


def raised_by(function: Callable[..., Any] | None) -> frozenset[int]:
    """The statuses `raises` declared for `function`; none if it declared none."""
    return _RAISED_BY.get(function, frozenset()) if function is not None else frozenset()


class ApiError(Exception):
    """An expected failure of a request; its message is written for the API's user."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")
        self.details = list(details)
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def error_body(
    status: int, message: str, code: str | None = None, details: Sequence[Any] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "status": status,
        "code": code or CODES.get(status, "error"),
        "message": message,
    }
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Sequence[Any] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, details), status, headers=headers)


def describe_location(location: Sequence[Any]) -> str:
    """("body", "conditions", 0, "operator") -> "conditions[0].operator". Parts written
    <like this> are the tags by which a model picks one of several shapes (a condition or a
    group), not places in the request, and are left out."""
    text = ""
    for part in location:
        if part in ("body", "query", "path", "header") and not text:
            continue
        if isinstance(part, str) and part.startswith("<") and part.endswith(">"):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    details = []
    for error in errors:
        field = describe_location(error.get("loc", ()))
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        details.append({"field": field, "message": message})
    return details


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path has. Starlette's 405 names only those of the first
    route that matches the path, and a path has one route per method."""
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in request.app.router.routes)
    ]  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(
            error.status, error.message, code=error.code, details=error.details,
            headers=error.headers,
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        details = validation_details(error.errors())
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return error_response(422, message or "invalid request", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if isinstance(error.__cause__, RecursionError):
            # FastAPI's 400 for a body its JSON parser gave up on: invalid input, as any other.
            return error_response(422, "request body: JSON nested too deeply to be read")
        message = error.detail if isinstance(error.detail, str) else CODES.get(error.status_code)
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(error.status_code, message or "error", headers=headers)

    @app.exception_handler(psycopg.DataError)
    @app.exception_handler(UnicodeEncodeError)
    async def _unstorable(request: Request, error: Exception) -> JSONResponse:
        # Input that passed validation but that PostgreSQL cannot hold: a NUL character or
        # an unpaired surrogate in a text. The statement failed, so nothing was written.
        return error_response(
            422, "a text in the request contains a character that cannot be stored"
            " (NUL, or an unpaired UTF-16 surrogate)",
        )  # fmt: skip

    @app.exception_handler(psycopg.OperationalError)
    async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
        # The database is away (restarting, unreachable; the pool's timeout included): the
        # request may succeed again soon, so 503 with a hint, and no traceback in the log.
        log.warning("api.database_unavailable", path=request.url.path, error=str(error))
        return error_response(
            503, "the database is unavailable; try again shortly", headers={"Retry-After": "1"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("api.unexpected_error", path=request.url.path)
        return error_response(500, "internal error; the server log has the details")
