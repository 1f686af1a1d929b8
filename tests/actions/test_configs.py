"""Action configs: what each action type accepts, the messages for what it refuses, and JSON
body templates."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.actions.channels import parse_action_config
from erc8004_backend.actions.configs import ActionConfigError, render_json_template
from erc8004_backend.actions.mcp import McpConfig
from erc8004_backend.actions.rest import RestConfig
from erc8004_backend.actions.telegram import TelegramConfig

# The actions' configs of the trigger examples (docs/triggers.md), as written there.
EXAMPLE_1_TELEGRAM: dict[str, Any] = {
    "chat_id": "123456789",
    "parse_mode": "MarkdownV2",
    "message_template": "Agent #{{agent_id}} received a low score: {{score}}\nFrom: {{client_address}}\nTags: {{tag1}}, {{tag2}}\nBlock: {{block_number}}",
}
EXAMPLE_3_REST: dict[str, Any] = {
    "method": "POST",
    "url": "https://api.example.com/refund-alerts",
    "headers": {"Authorization": "Bearer EXAMPLE"},
    "timeout_ms": 10000,
    "body_template": {
        "agent_id": "{{agent_id}}",
        "score": "{{score}}",
        "client": "{{client_address}}",
        "file_uri": "{{file_uri}}",
    },
}
EXAMPLE_7_MCP: dict[str, Any] = {"tool_name": "agent.receiveFeedback", "verify_file_hash": True}

REST_URL = "https://api.example.com/hook"


def refusal(action_type: str, config: Any) -> str:
    with pytest.raises(ActionConfigError) as caught:
        parse_action_config(action_type, config)
    return str(caught.value)


# -- telegram ----------------------------------------------------------------------------


def test_example_1_telegram() -> None:
    config = parse_action_config("telegram", EXAMPLE_1_TELEGRAM)

    assert config == TelegramConfig(
        chat_id="123456789",
        parse_mode="MarkdownV2",
        message_template=EXAMPLE_1_TELEGRAM["message_template"],
        disable_notification=False,
        max_attempts=None,
    )


@pytest.mark.parametrize("chat_id", [123456789, "123456789"])
def test_a_telegram_chat_id_may_be_a_number_or_text(chat_id: int | str) -> None:
    config = parse_action_config("telegram", {**EXAMPLE_1_TELEGRAM, "chat_id": chat_id})
    assert isinstance(config, TelegramConfig)
    assert config.chat_id == "123456789"


def test_telegram_channel_usernames_and_negative_group_ids() -> None:
    for chat_id, text in [(-1001234567890, "-1001234567890"), ("@channel", "@channel")]:
        config = parse_action_config("telegram", {**EXAMPLE_1_TELEGRAM, "chat_id": chat_id})
        assert isinstance(config, TelegramConfig)
        assert config.chat_id == text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"message_template": "hi"}, "telegram action: chat_id: is required"),
        ({"chat_id": "1"}, "telegram action: message_template: is required"),
        (
            {},
            "telegram action: chat_id: is required; message_template: is required",
        ),
        (
            {"chat_id": "1", "message_template": "hi", "colour": "red"},
            "telegram action: colour: is not a known setting",
        ),
        (
            {"chat_id": True, "message_template": "hi"},
            "telegram action: chat_id: Input should be a valid string",
        ),
        (
            {"chat_id": "", "message_template": "hi"},
            "telegram action: chat_id: String should have at least 1 character",
        ),
        (
            {"chat_id": "1", "message_template": "hi", "parse_mode": "markdown"},
            "telegram action: parse_mode: Input should be 'MarkdownV2', 'Markdown' or 'HTML'",
        ),
        (
            {"chat_id": "1", "message_template": "x" * 4097},
            "telegram action: message_template: String should have at most 4096 characters",
        ),
        (
            {"chat_id": "1", "message_template": "hi", "max_attempts": 26},
            "telegram action: max_attempts: Input should be less than or equal to 25",
        ),
        (
            ["chat_id", "1"],
            "telegram action: config: Input should be a valid dictionary or instance of TelegramConfig",
        ),
    ],
)
def test_telegram_refusals_name_the_field(config: Any, message: str) -> None:
    assert refusal("telegram", config) == message


def test_an_unknown_action_type_lists_the_known_ones() -> None:
    assert refusal("sms", {}) == (
        "unknown action type 'sms' (known: telegram, rest, mcp, slack, discord, email, pagerduty)"
    )


# -- rest --------------------------------------------------------------------------------


def test_example_3_rest() -> None:
    config = parse_action_config("rest", EXAMPLE_3_REST)

    assert config == RestConfig(
        method="POST",
        url="https://api.example.com/refund-alerts",
        headers={"Authorization": "Bearer EXAMPLE"},
        timeout_ms=10_000,
        body_template=EXAMPLE_3_REST["body_template"],
    )


def test_rest_defaults() -> None:
    config = parse_action_config("rest", {"url": REST_URL})
    assert config == RestConfig(
        method="POST", url=REST_URL, headers={}, body_template=None, timeout_ms=10_000
    )


@pytest.mark.parametrize("method", ["get", "Put", "patch", "DELETE"])
def test_rest_methods_are_read_in_any_case(method: str) -> None:
    config = parse_action_config("rest", {"url": REST_URL, "method": method})
    assert isinstance(config, RestConfig)
    assert config.method == method.upper()


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/hook",
        "https://api.example.com:8443/agents/{{agent_id}}?score={{score}}",
        "https://api.example.com/{{ agent_id }}/feedback#{{tag1}}",
        "https://api.example.com/{{score|fixed:2}}?c={{client_address|short}}&t={{tag1|default:a b}}",
        "https://10.1.2.3/hook",  # private addresses are judged when sending, not here
    ],
)
def test_rest_urls_may_use_placeholders_in_the_path_and_query(url: str) -> None:
    config = parse_action_config("rest", {"url": url})
    assert isinstance(config, RestConfig)
    assert config.url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://api.example.com/hook", "must be an http(s) URL with a host"),
        ("https:///hook", "must be an http(s) URL with a host"),
        ("api.example.com/hook", "must be an http(s) URL with a host"),
        ("{{endpoint}}", "must be an http(s) URL with a host"),
        ("https://{{agent_id}}.example.com/hook", "placeholders may not be used in the host"),
        ("https://api.example.com:{{port}}/hook", "placeholders may not be used in the host"),
        ("https://{{endpoint}}/hook", "placeholders may not be used in the host"),
        ("https://[::1/hook", "not a valid URL: Invalid IPv6 URL"),
    ],
)
def test_rest_refuses_bad_urls(url: str, problem: str) -> None:
    assert refusal("rest", {"url": url}) == f"rest action: url: {problem}"


@pytest.mark.parametrize(
    "name",
    [
        "Idempotency-Key",
        "idempotency-key",
        "X-ERC8004-Signature",
        "x-erc8004-timestamp",
        "X-ERC8004-Anything",
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
    ],
)
def test_rest_refuses_headers_the_worker_sets(name: str) -> None:
    assert refusal("rest", {"url": REST_URL, "headers": {name: "x"}}) == (
        f"rest action: headers: header {name!r} is set by the worker and cannot be configured"
    )


@pytest.mark.parametrize("name", ["Bad Name", "X-A:b", "", "X\x01", "X\x7f", "X\tY"])
def test_rest_refuses_malformed_header_names(name: str) -> None:
    assert refusal("rest", {"url": REST_URL, "headers": {name: "x"}}) == (
        f"rest action: headers: header {name!r} is not a valid header name"
    )


@pytest.mark.parametrize(
    "value", ["a\r\nB: c", "a\nb", "nul\x00", "bell\x07", "esc\x1b[0m", "del\x7f"]
)
def test_rest_refuses_header_values_with_control_characters(value: str) -> None:
    # aiohttp refuses to send any of them: accepted, they would never be delivered.
    assert refusal("rest", {"url": REST_URL, "headers": {"X-Note": value}}) == (
        "rest action: headers: the value of header 'X-Note' has a control character"
        " (tab is the only one allowed)"
    )


def test_rest_header_values_may_hold_tabs_and_any_printable_text() -> None:
    headers = {"X-Note": "a\tb", "X-Name": "Zoë ✓", "X-Blank": ""}
    config = parse_action_config("rest", {"url": REST_URL, "headers": headers})
    assert isinstance(config, RestConfig)
    assert config.headers == headers


@pytest.mark.parametrize(
    ("timeout_ms", "message"),
    [
        (99, "timeout_ms: Input should be greater than or equal to 100"),
        (60_001, "timeout_ms: Input should be less than or equal to 60000"),
    ],
)
def test_rest_timeouts_stay_within_bounds(timeout_ms: int, message: str) -> None:
    assert refusal("rest", {"url": REST_URL, "timeout_ms": timeout_ms}) == f"rest action: {message}"
    for edge in (100, 60_000):
        config = parse_action_config("rest", {"url": REST_URL, "timeout_ms": edge})
        assert isinstance(config, RestConfig)
        assert config.timeout_ms == edge


def test_rest_refuses_unknown_methods_and_settings_together() -> None:
    assert refusal("rest", {"url": REST_URL, "method": "TRACE", "retries": 3}) == (
        "rest action: method: Input should be 'POST', 'PUT', 'PATCH', 'DELETE' or 'GET';"
        " retries: is not a known setting"
    )


# -- mcp ---------------------------------------------------------------------------------


def test_example_7_mcp_and_its_defaults() -> None:
    assert parse_action_config("mcp", EXAMPLE_7_MCP) == McpConfig(
        tool_name="agent.receiveFeedback", verify_file_hash=True, timeout_ms=30_000
    )
    assert parse_action_config("mcp", {}) == McpConfig(
        tool_name="agent.receiveFeedback", verify_file_hash=False, timeout_ms=30_000
    )


def test_mcp_refusals() -> None:
    assert refusal("mcp", {"timeout_ms": 120_001}) == (
        "mcp action: timeout_ms: Input should be less than or equal to 120000"
    )
    assert refusal("mcp", {"tool_name": ""}) == (
        "mcp action: tool_name: String should have at least 1 character"
    )
    assert refusal("mcp", {"url": "https://mcp.example/"}) == (
        "mcp action: url: is not a known setting"
    )


# -- JSON body templates -----------------------------------------------------------------


def test_render_json_template_renders_strings_only() -> None:
    template = {
        "{{agent_id}}": "agent {{agent_id}}",  # keys stay as written
        "n": 7,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "nested": [{"score": "{{score}}", "tags": ["{{tag1}}", "{{tag2}}"]}, 3],
    }
    values = {"agent_id": "42", "score": Decimal("4.50"), "tag1": "refund", "tag2": None}

    assert render_json_template(template, values) == {
        "{{agent_id}}": "agent 42",
        "n": 7,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "nested": [{"score": "4.5", "tags": ["refund", ""]}, 3],
    }
    assert render_json_template("{{unknown}}", values) == ""
    assert render_json_template(12, values) == 12


def test_render_json_template_does_not_render_values_again() -> None:
    assert render_json_template({"a": "{{tag1}}"}, {"tag1": "{{score}}", "score": "9"}) == {
        "a": "{{score}}"
    }


def test_render_json_template_of_example_3() -> None:
    values = {"agent_id": "42", "score": "45", "client_address": "0x" + "cc" * 20}
    rendered = render_json_template(EXAMPLE_3_REST["body_template"], {**values, "file_uri": None})

    assert rendered == {
        "agent_id": "42",
        "score": "45",
        "client": "0x" + "cc" * 20,
        "file_uri": "",
    }


@given(value=st.text(), other=st.text(alphabet="\"\\\n\r\t\x00\u2028{}<>&'é€🙂", max_size=20))
def test_rendered_templates_are_valid_json_whatever_the_values(value: str, other: str) -> None:
    template = {"text": "<{{tag1}}>", "list": ["{{tag1}}{{tag2}}", 1], "raw": '"{{tag2}}"'}

    rendered = render_json_template(template, {"tag1": value, "tag2": other})
    parsed = json.loads(orjson.dumps(rendered))

    assert parsed == {
        "text": f"<{value}>",
        "list": [value + other, 1],
        "raw": f'"{other}"',
    }


def test_rest_refuses_an_authorization_header_with_credentials_in_the_url() -> None:
    config = {"url": "https://user:pass@api.example.com/", "headers": {"authorization": "x"}}
    assert refusal("rest", config) == (
        "rest action: headers: header 'authorization' cannot be sent with a URL that has a"
        " user name or password"
    )


def test_an_actions_backoff_is_checked() -> None:
    config = {"url": "https://hooks.example.com/x", "retry_initial_seconds": 30,
              "retry_max_seconds": 5}  # fmt: skip
    with pytest.raises(ActionConfigError, match="retry_initial_seconds must not exceed"):
        parse_action_config("rest", config)
    with pytest.raises(ActionConfigError, match="retry_max_seconds: Input should be less"):
        parse_action_config("rest", {**config, "retry_initial_seconds": 1,
                                     "retry_max_seconds": 100_000})  # fmt: skip
    parsed = parse_action_config("rest", {**config, "retry_initial_seconds": 1})
    assert (parsed.retry_initial_seconds, parsed.retry_max_seconds) == (1, 5)
