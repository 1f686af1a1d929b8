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
from hypothesis import HealthCheck, settings
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
# the app starts); the test sends the cases to the live server.
schema = schemathesis.openapi.from_dict(
    create_app(api_settings("postgresql://127.0.0.1/unused")).openapi()
)


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])  # fmt: skip
def test_the_whole_api_against_its_schema(case: Any, live_api: LiveApi) -> None:
    base, headers = live_api
    case.call_and_validate(
        base_url=base,
        headers=headers,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance],
    )  # fmt: skip
