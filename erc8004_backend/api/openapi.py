"""The error responses of the OpenAPI document: each operation lists those it can really
give, every one in the API's error shape (errors.ErrorBody).

They are found from what a route is made of, so that they stay true as routes change:
- its input: 422 when it takes any parameter or a body; 400 (unreadable) and 413 (too
  large) when it takes a body;
- what it depends on, as each dependency declares with `errors.raises`: signing in (401,
  403), the database (503), rate limits (429);
- what its handler answers itself, declared on the route (`responses=error_responses(404)`).
A router that adds a dependency to the routes it includes declares that dependency's
statuses itself (`dependency_errors`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from erc8004_backend.api.errors import ErrorBody, described_error, raised_by

SCHEMAS = "#/components/schemas/"
BODY_ERRORS = frozenset({400, 413, 422})
PARAMETER_ERRORS = frozenset({422})
# FastAPI's own validation error schemas: the API never sends them.
FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """`dependant` and every dependency under it."""
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def error_statuses(route: APIRoute) -> frozenset[int]:
    """The error statuses `route` can answer with, found from its input and dependencies
    (its handler's own are declared in its responses)."""
    statuses: set[int] = set()
    for part in _dependants(route.dependant):
        statuses |= raised_by(part.call)
        if part.path_params or part.query_params or part.header_params or part.cookie_params:
            statuses |= PARAMETER_ERRORS
    if route.body_field is not None:
        statuses |= BODY_ERRORS
    return frozenset(statuses)


def document_errors(router: APIRouter) -> None:
    """Adds to each route of `router` the error responses of error_statuses (before the
    router is included anywhere: an including router takes the routes' responses)."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            for status in error_statuses(route):
                route.responses.setdefault(status, described_error(status))


def dependency_errors(*dependencies: Callable[..., Any]) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a router that adds `dependencies` to the routes it includes."""
    statuses = sorted({status for call in dependencies for status in raised_by(call)})
    return {status: described_error(status) for status in statuses}


def _with_error_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """Every error response of `document` with ErrorBody as its content, FastAPI's own
    validation error schemas dropped, the operations' responses in order of status."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {
                        "application/json": {"schema": {"$ref": f"{SCHEMAS}ErrorBody"}}
                    }
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _, error_schemas = models_json_schema(
        [(ErrorBody, "serialization")], ref_template=SCHEMAS + "{model}"
    )
    schemas.update(error_schemas["$defs"])
    text = json.dumps(document)
    for name in FASTAPI_ERROR_SCHEMAS:
        if f'"{SCHEMAS}{name}"' not in text:
            schemas.pop(name, None)
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document


def install_openapi(app: FastAPI) -> None:
    """Makes `app` publish its document with every error response's content ErrorBody."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_error_bodies(FastAPI.openapi(app))  # made once
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
