"""Schemathesis over the whole OpenAPI schema, signed in, against the real API served by
uvicorn on loopback with a real database: no 5xx, and every response matches the schema
(status codes the operation documents, bodies of the documented shape)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, assume, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from erc8004_backend.api.app import create_app
from erc8004_backend.database.connection import connect
from erc8004_backend.database.migrations import Migrator, load_source
from tests.api.conftest import api_settings
from tests.conftest import MIGRATIONS, create_database, drop_database
from tests.support.waiting import free_port

pytestmark = pytest.mark.slow  # hundreds of requests

LiveApi = tuple[str, dict[str, str]]


@pytest.fixture(scope="module")
def live_api(admin_url: str) -> Iterator[LiveApi]:
    url = create_database(admin_url)
    with connect(url) as connection:
        Migrator(connection, load_source(MIGRATIONS)).run()
    config = uvicorn.Config(create_app(api_settings(url)), host="127.0.0.1", port=free_port(),
                            log_level="warning", access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.025)
        account = {"username": "fuzzer", "email": "fuzzer@example.com", "password": "fuzz-fuzz-1"}
        assert httpx.post(f"{base}/api/v1/auth/register", json=account).status_code == 201
        credentials = {"username": "fuzzer", "password": account["password"]}
        login = httpx.post(f"{base}/api/v1/auth/login", json=credentials)
        token = login.json()["access_token"]
        yield base, {"Authorization": f"Bearer {token}"}
    finally:
        server.should_exit = True
        thread.join(10)
        drop_database(admin_url, url)


# The schema the application publishes (made without a database: nothing connects until
# the app starts); the test sends the cases to the live server. Not the event stream: a
# valid request to it is answered until the client leaves, which a case never does
# (tests/api/test_events_stream.py tests it, its bad input included).
schema = schemathesis.openapi.from_dict(
    create_app(api_settings("postgresql://127.0.0.1/unused")).openapi()
).exclude(path="/api/v1/events/stream")


REQUEST_HEAD_LIMIT = 16 * 1024  # h11's max_incomplete_event_size, uvicorn's default
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])  # fmt: skip
def test_the_whole_api_against_its_schema(case: Any, live_api: LiveApi) -> None:
    base, headers = live_api
    # uvicorn's HTTP parser (h11) refuses a request head over 16 KB before the application
    # sees it: a 400, and the connection closed, which a client still sending its URL sees
    # as a reset. The application's contract starts below that.
    try:
        url = str(httpx.URL(base + case.formatted_path, params=case.query or None))
    except httpx.InvalidURL:  # a query over httpx's own limit (64 KB): longer still
        url = None
    assume(url is not None and len(url) < REQUEST_HEAD_LIMIT - 1_000)
    case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)


# -- explicit examples: what the fuzzer is unlikely to find by itself ----------------------------


def nested(depth: int) -> str:
    """JSON text of an object `depth` levels deep (written out: Python's own encoder stops
    near 1,000 levels)."""
    return '{"a":' * depth + '"{{agent_id}}"' + "}" * depth


def trigger(*, condition_config: str = "{}", body_template: str = "null",
            time_window: str = "1h") -> bytes:  # fmt: skip
    return (
        '{"name":"explicit","chain_id":1,"registry":"reputation","is_stateful":true,'
        '"conditions":[{"condition_type":"rate_limit","field":"feedback_count","operator":">",'
        f'"value":"1","config":{{"time_window":"{time_window}","x":{condition_config}}}}}],'
        '"actions":[{"action_type":"rest","config":{"url":"https://hooks.example.com/",'
        f'"body_template":{body_template}}}}}]}}'
    ).encode()


SOME_TRIGGER = {"trigger_id": "00000000-0000-4000-8000-000000000000"}
EXPLICIT: dict[str, tuple[str, str, dict[str, str], bytes]] = {
    "1,000-level body_template": (
        "/api/v1/triggers", "POST", {}, trigger(body_template=nested(1000))),
    "1,000-level condition config": (
        "/api/v1/triggers", "POST", {}, trigger(condition_config=nested(1000))),
    "300-level body_template": ("/api/v1/triggers", "POST", {}, trigger(body_template=nested(300))),
    "300-level condition config, replacing": (
        "/api/v1/triggers/{trigger_id}", "PUT", SOME_TRIGGER, trigger(condition_config=nested(300))),
    "1,000-level actions, patching": (
        "/api/v1/triggers/{trigger_id}", "PATCH", SOME_TRIGGER,
        b'{"actions":[{"action_type":"rest","config":{"url":"https://hooks.example.com/",'
        b'"body_template":' + nested(1000).encode() + b"}}]}"),
    "a time_window of 5,000 digits": (
        "/api/v1/triggers", "POST", {}, trigger(time_window="9" * 5000 + "m")),
}  # fmt: skip


@pytest.mark.parametrize("name", EXPLICIT)
def test_explicit_examples(name: str, live_api: LiveApi) -> None:
    base, headers = live_api
    path, method, path_parameters, body = EXPLICIT[name]
    case = schema[path][method].Case(
        path_parameters=path_parameters, body=body, media_type="application/json"
    )
    response = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)
    assert response.status_code == 422, response.text[:300]
    assert httpx.get(f"{base}/api/v1/triggers", headers=headers).status_code == 200
