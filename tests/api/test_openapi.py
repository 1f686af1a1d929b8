"""The OpenAPI document says what the API really does: the condition, operator and action
types the trigger engine knows as enums, a working example for every request body, and for
each operation the error responses it can give, in the one error shape."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from erc8004_backend.actions.channels import CHANNELS
from erc8004_backend.api.app import open_pool
from erc8004_backend.api.errors import CODES
from erc8004_backend.triggers.conditions import (
    CHANGE_CONDITION_TYPES,
    FIELD_CONDITION_TYPES,
    SILENCE_CONDITION_TYPE,
    STATEFUL_CONDITION_TYPES,
)
from erc8004_backend.triggers.operators import OPERATORS
from tests.api.conftest import ApiClient, api_settings, app_on, make_account
from tests.api.test_triggers_silence import documented_silence_triggers
from tests.conftest import ROOT
from tests.triggers.test_examples_end_to_end import (
    example_triggers,
    group_example,
    template_example,
)

UNUSED_DATABASE = "postgresql://127.0.0.1/unused"
Document = dict[str, Any]


@pytest.fixture(scope="module")
def document() -> Iterator[Document]:
    """The document the application publishes (made without a database)."""
    with app_on(api_settings(UNUSED_DATABASE), open_pool(UNUSED_DATABASE)) as app:
        yield copy.deepcopy(app.openapi())


def operations(document: Document) -> Iterator[tuple[str, str, Document]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path.removeprefix("/api/v1"), operation


def schema_of(document: Document, name: str) -> Document:
    schema: Document = document["components"]["schemas"][name]
    return schema


# -- enums ----------------------------------------------------------------------------------


def test_condition_and_action_types_and_operators_are_the_engines(document: Document) -> None:
    condition = schema_of(document, "ConditionIn")["properties"]
    action = schema_of(document, "ActionIn")["properties"]
    assert condition["condition_type"]["enum"] == [
        *FIELD_CONDITION_TYPES, *STATEFUL_CONDITION_TYPES, *CHANGE_CONDITION_TYPES,
        SILENCE_CONDITION_TYPE,
    ]  # fmt: skip
    assert condition["operator"]["enum"] == list(OPERATORS)
    assert action["action_type"]["enum"] == list(CHANNELS)


# -- examples -------------------------------------------------------------------------------


def body_examples(operation: Document) -> dict[str, Any]:
    content = operation["requestBody"]["content"]["application/json"]
    examples: dict[str, Any] = content.get("examples", {})
    return {name: example["value"] for name, example in examples.items()}


def body_validator(document: Document, operation: Document) -> jsonschema_rs.Validator:
    """A validator of the operation's request body, its $refs resolved in `document`."""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    wrapped = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document["components"],
        **schema,
    }
    return jsonschema_rs.Draft202012Validator(wrapped, validate_formats=True)


def test_every_request_body_has_examples_that_its_schema_accepts(document: Document) -> None:
    with_bodies = []
    for method, path, operation in operations(document):
        if "requestBody" not in operation:
            continue
        with_bodies.append(f"{method} {path}")
        examples = body_examples(operation)
        assert examples, f"{method} {path}: no example"
        validator = body_validator(document, operation)
        for name, value in examples.items():
            errors = [error.message for error in validator.iter_errors(value)]
            assert errors == [], f"{method} {path}, example {name}: {errors}"
        # The validator does refuse what the schema does not allow.
        assert not validator.is_valid({"not a field of any body": True}), f"{method} {path}"
    assert len(with_bodies) == 17, with_bodies


def documented_digest() -> Any:
    """The request body of docs/triggers.md's section on digests."""
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    section = text.split("\n### Digests\n", 1)[1].split("\n## ", 1)[0]
    return json.loads(section.split("```json", 1)[1].split("```", 1)[0])


def test_the_trigger_examples_are_those_of_the_documentation(document: Document) -> None:
    (create,) = [op for m, p, op in operations(document) if (m, p) == ("POST", "/triggers")]
    (replace,) = [
        op for m, p, op in operations(document) if (m, p) == ("PUT", "/triggers/{trigger_id}")
    ]
    # docs/triggers.md's seven examples, then its template example, its example of groups,
    # its first silence and its digest.
    documented = [*example_triggers(), template_example(), group_example(),
                  documented_silence_triggers()[0], documented_digest()]  # fmt: skip
    assert list(body_examples(create).values()) == documented
    assert list(body_examples(replace).values()) == documented
    summaries = [e["summary"] for e in create["requestBody"]["content"]["application/json"]
                 ["examples"].values()]  # fmt: skip
    assert summaries[0] == "1. Low score alert"


async def test_the_api_accepts_each_example(
    api: ApiClient, document: Document, migrated_url: str
) -> None:
    """Each example, sent where it belongs by a user it fits, does what it says."""
    examples = {(m, p): body_examples(op) for m, p, op in operations(document)
                if "requestBody" in op}  # fmt: skip

    def only(method: str, path: str) -> Any:
        (value,) = examples[(method, path)].values()
        return value

    for registration in examples[("POST", "/auth/register")].values():
        response = await api.post("/auth/register", json=registration)
        assert response.status_code == 201, response.text
    for login in examples[("POST", "/auth/login")].values():
        response = await api.post("/auth/login", json=login)
        assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    for key in examples[("POST", "/me/api-keys")].values():
        response = await api.post("/me/api-keys", json=key, headers=headers)
        assert response.status_code == 201, response.text

    for alert in examples[("PUT", "/me/alert-action")].values():
        response = await api.put("/me/alert-action", json=alert, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["action_type"] == alert["action_type"]

    lens_names = []
    for saved in examples[("POST", "/me/lenses")].values():
        response = await api.post("/me/lenses", json=saved, headers=headers)
        assert response.status_code == 201, response.text
        lens_names.append(saved["name"])
    for replacement in examples[("PUT", "/me/lenses/{lens_name}")].values():
        response = await api.put(f"/me/lenses/{lens_names[0]}", json=replacement, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["lens"] == {**response.json()["lens"], **replacement["lens"]}

    trigger_ids = []
    for trigger in examples[("POST", "/triggers")].values():
        response = await api.post("/triggers", json=trigger, headers=headers)
        assert response.status_code == 201, response.text
        trigger_ids.append(response.json()["id"])
    one = f"/triggers/{trigger_ids[0]}"
    for trigger in examples[("PUT", "/triggers/{trigger_id}")].values():
        response = await api.put(one, json=trigger, headers=headers)
        assert response.status_code == 200, response.text
    for patch in examples[("PATCH", "/triggers/{trigger_id}")].values():
        response = await api.patch(one, json=patch, headers=headers)
        assert response.status_code == 200, response.text
        assert {k: response.json()[k] for k in patch if k not in ("conditions", "actions")} == {
            k: v for k, v in patch.items() if k not in ("conditions", "actions")
        }
    for backtest in examples[("POST", "/triggers/{trigger_id}/test")].values():
        response = await api.post(f"{one}/test", json=backtest, headers=headers)
        assert response.status_code == 200, response.text

    # No agent is indexed here: a body the API takes gets as far as looking the agent up.
    agent = "/agents/84532/42/mcp-token"
    for challenge in examples[("POST", "/agents/{chain_id}/{agent_id}/mcp-token/challenge")].values():  # fmt: skip
        response = await api.post(f"{agent}/challenge", json=challenge, headers=headers)
        assert response.status_code == 404, response.text
        assert "not indexed" in response.json()["error"]["message"]
    for token in examples[("PUT", "/agents/{chain_id}/{agent_id}/mcp-token")].values():
        response = await api.put(agent, json=token, headers=headers)
        assert response.status_code == 404, response.text
        assert "not indexed" in response.json()["error"]["message"]

    change = only("POST", "/me/password")
    response = await api.post("/me/password", json=change, headers=headers)
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    deletion = only("DELETE", "/me")
    response = await api.request(
        "DELETE", "/me", json={**deletion, "password": change["new_password"]}, headers=headers
    )
    assert response.status_code == 204, response.text
    # The example itself, by an account whose password it names.
    other = await make_account(api, "grace")
    await api.post("/me/password", json={"old_password": "grace-password",
                                         "new_password": deletion["password"]},
                   headers=other.headers)  # fmt: skip
    login = await api.post("/auth/login", json={"username": "grace", **deletion})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    response = await api.request(
        "DELETE", "/me", json=deletion, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204, response.text


# -- error responses ------------------------------------------------------------------------

BODY = {400, 413, 422}  # unreadable, too large, invalid
SIGNED_IN = {401, 403}
DATABASE = {503}
LIMITED = {429}
ERRORS: dict[str, set[int]] = {
    "POST /auth/register": BODY | LIMITED | DATABASE | {409},
    "POST /auth/login": BODY | LIMITED | DATABASE | {401, 403},
    "POST /auth/session": BODY | LIMITED | DATABASE | {401, 403},
    "PUT /auth/session": SIGNED_IN | LIMITED | DATABASE,
    "DELETE /auth/session": LIMITED,
    "GET /me": SIGNED_IN | LIMITED | DATABASE | {404},
    "DELETE /me": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /me/api-keys": SIGNED_IN | LIMITED | DATABASE,
    "GET /me/alert-action": SIGNED_IN | LIMITED | DATABASE | {404},
    "PUT /me/alert-action": BODY | SIGNED_IN | LIMITED | DATABASE,
    "DELETE /me/alert-action": SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /me/api-keys": BODY | SIGNED_IN | LIMITED | DATABASE,
    "DELETE /me/api-keys/{key_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /me/password": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /me/lenses": BODY | SIGNED_IN | LIMITED | DATABASE | {409},
    "GET /me/lenses": SIGNED_IN | LIMITED | DATABASE,
    "GET /me/lenses/{lens_name}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "PUT /me/lenses/{lens_name}": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "DELETE /me/lenses/{lens_name}": {422} | SIGNED_IN | LIMITED | DATABASE | {404, 409},
    "POST /triggers": BODY | SIGNED_IN | LIMITED | DATABASE,
    "GET /triggers": {422} | SIGNED_IN | LIMITED | DATABASE,
    "GET /triggers/{trigger_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "PUT /triggers/{trigger_id}": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "PATCH /triggers/{trigger_id}": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "DELETE /triggers/{trigger_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/enable": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/disable": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/circuit-breaker/reset": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/webhook-secret": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/test": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/replays": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /triggers/{trigger_id}/replays": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/replays/{replay_id}/cancel": {422} | SIGNED_IN | LIMITED
    | DATABASE | {404},
    "GET /events": {422} | SIGNED_IN | LIMITED | DATABASE,
    "GET /events/stream": {422} | SIGNED_IN | LIMITED | DATABASE,
    "GET /events/{event_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /jobs": {422} | SIGNED_IN | LIMITED | DATABASE,
    "GET /jobs/counts": {422} | SIGNED_IN | LIMITED | DATABASE,
    "GET /channels": SIGNED_IN | LIMITED | DATABASE,
    "GET /jobs/{job_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /jobs/{job_id}/redeliver": {422} | SIGNED_IN | LIMITED | DATABASE | {404, 409},
    "POST /triggers/{trigger_id}/jobs/redeliver": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /triggers/{trigger_id}/actions/{action_id}/test": {422} | SIGNED_IN | LIMITED
    | DATABASE | {404},
    "GET /action-results": {422} | SIGNED_IN | LIMITED | DATABASE,
    "GET /action-results/{result_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    # Reads of public chain data; 404 on /agents: a saved lens not found.
    "GET /agents": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /agents/{chain_id}/{agent_id}": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /agents/{chain_id}/{agent_id}/feedback": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /agents/{chain_id}/{agent_id}/reputation": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /agents/{chain_id}/{agent_id}/validations": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /agents/{chain_id}/{agent_id}/history": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "POST /agents/{chain_id}/{agent_id}/mcp-token/challenge": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "PUT /agents/{chain_id}/{agent_id}/mcp-token": BODY | SIGNED_IN | LIMITED | DATABASE | {404},
    "DELETE /agents/{chain_id}/{agent_id}/mcp-token": {422} | SIGNED_IN | LIMITED | DATABASE | {404},
    "GET /indexer/status": SIGNED_IN | LIMITED | DATABASE,
    "GET /health": LIMITED,
    "GET /ready": LIMITED | {503},
    "GET /metrics": LIMITED | DATABASE,
}  # fmt: skip


def error_statuses(operation: Document) -> set[int]:
    return {int(status) for status in operation["responses"] if int(status) >= 400}


def test_each_operation_declares_the_errors_it_can_give_and_no_others(
    document: Document,
) -> None:
    declared = {f"{m} {p}": error_statuses(op) for m, p, op in operations(document)}
    assert set(declared) == set(ERRORS), "a new route: say here which errors it can give"
    wrong = {
        route: {"missing": sorted(ERRORS[route] - statuses),
                "not possible": sorted(statuses - ERRORS[route])}
        for route, statuses in declared.items() if statuses != ERRORS[route]
    }  # fmt: skip
    assert wrong == {}


def test_every_error_response_is_the_error_body(document: Document) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            assert response["description"], (method, path, status)
        if "429" in operation["responses"]:
            assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's shape, which the API never sends
    assert "ValidationError" not in schemas
    assert schemas["ErrorBody"]["description"]
    info = schemas["ErrorInfo"]["properties"]
    assert info["code"]["enum"] == sorted(set(CODES.values()))
    assert schemas["ErrorBody"]["examples"]


async def test_only_operations_that_declare_sign_in_answer_401_without_it(
    api: ApiClient, document: Document
) -> None:
    """Each operation called without credentials (and with an example body where it takes
    one): a 401 exactly where the document says sign-in is required, and only documented
    statuses."""
    values = {"trigger_id": "00000000-0000-4000-8000-000000000000", "key_id":
              "00000000-0000-4000-8000-000000000000", "event_id": "1", "result_id": "1",
              "chain_id": "84532", "agent_id": "42", "lens_name": "trusted-recent",
              "replay_id": "1", "job_id": "1",
              "action_id": "00000000-0000-4000-8000-000000000000"}  # fmt: skip
    for method, path, operation in operations(document):
        concrete = path.format(**values)
        body = next(iter(body_examples(operation).values())) if "requestBody" in operation else None
        response = await api.request(method, concrete, json=body)
        documented = {int(status) for status in operation["responses"]}
        assert response.status_code in documented, (method, path, response.text)
        if "security" in operation:
            assert response.status_code == 401, (method, path, response.text)
        else:
            # Only a login with a wrong password (for a token or the dashboard's session) is
            # a 401 without signing in.
            logins = ("/auth/login", "/auth/session")
            assert 401 not in documented or path in logins, (method, path)
            assert response.status_code != 401 or path in logins, (method, path)
