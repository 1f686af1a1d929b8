"""What each action type accepts in `trigger_actions.config`, checked by one parser for the
API (which refuses a bad action before writing it) and the worker (which dead-letters a job
whose action no longer parses, saying why)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from yarl import URL

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.templates import PLACEHOLDER, render_template

DEFAULT_MCP_TOOL = "agent.receiveFeedback"
MaxAttempts = Annotated[int, Field(ge=1, le=25)]

# Bounds of the JSON the API stores in a condition's or an action's config. Deeper values
# could not be served back (pydantic's serializer stops at 255 levels) nor sent (orjson's
# encoder at 254); real templates nest a few levels.
MAX_JSON_DEPTH = 32  # arrays and objects within one setting's value
MAX_CONFIG_BYTES = 65_536  # one config, as compact JSON

# Set by the worker on every request; a config may not replace them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
SIGNATURE_HEADER_PREFIX = "x-erc8004-"


# C0 controls and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ActionConfigError(Erc8004Error):
    """An action's config is not valid for its type; the message names the field."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Attempts before the job is dead-lettered (the queue's default when absent: 8).
    max_attempts: MaxAttempts | None = None


class _Retractable(_Config):
    # After a delivery, a reorg may remove its event: send a retraction then (see rest.py
    # and telegram.py for what each says).
    notify_retractions: bool = False


class TelegramConfig(_Retractable):
    chat_id: Annotated[str, Field(min_length=1, max_length=128)]
    message_template: Annotated[str, Field(min_length=1, max_length=4096)]
    parse_mode: Literal["MarkdownV2", "Markdown", "HTML"] | None = None
    disable_notification: bool = False

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        # Chat ids are numbers in Telegram's API; JSON writers send them either way.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RestConfig(_Retractable):
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = "POST"
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    headers: dict[str, str] = Field(default_factory=dict)
    # Any JSON value; its strings are templates. None: the whole job document is sent.
    body_template: Any = None
    timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 10_000

    @field_validator("method", mode="before")
    @classmethod
    def _method_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """Checked, then percent-encoded (spaces, non-ASCII; the host in IDNA) so that it is
        sent as a valid request target; placeholders may fill the path or query only."""
        originals = [match.group(0) for match in PLACEHOLDER.finditer(value)]
        # Stand-ins that URL encoding leaves alone, swapped back afterwards.
        shape = PLACEHOLDER.sub(lambda match: f"placeholder{match.start()}x", value)
        stand_ins = [f"placeholder{match.start()}x" for match in PLACEHOLDER.finditer(value)]
        try:
            parts = urlsplit(shape)
            netloc, host = parts.netloc, parts.hostname
        except ValueError as error:
            raise ValueError(f"not a valid URL: {error}") from None
        if any(stand_in in netloc for stand_in in stand_ins):
            raise ValueError("placeholders may not be used in the host")
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("must be an http(s) URL with a host")
        try:
            encoded = str(URL(shape))
        except ValueError as error:
            raise ValueError(f"not a valid URL: {error}") from None
        for stand_in, original in zip(stand_ins, originals, strict=True):
            encoded = encoded.replace(stand_in, original, 1)
        return encoded

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, headers: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in RESERVED_HEADERS or lowered.startswith(SIGNATURE_HEADER_PREFIX):
                raise ValueError(f"header {name!r} is set by the worker and cannot be configured")
            # aiohttp sends a URL's user info as Authorization, and refuses to send both.
            if lowered == "authorization" and "@" in urlsplit(info.data.get("url", "")).netloc:
                raise ValueError(
                    f"header {name!r} cannot be sent with a URL that has a user name or password"
                )
            if not name or any(c in name for c in " :") or _CONTROL.search(name):
                raise ValueError(f"header {name!r} is not a valid header name")
            # aiohttp refuses to send any control character but tab (CR and LF would split
            # the header): such a header would fail every delivery.
            if _CONTROL.search(value.replace("\t", "")):
                raise ValueError(
                    f"the value of header {name!r} has a control character"
                    " (tab is the only one allowed)"
                )
        return headers

    @field_validator("body_template")
    @classmethod
    def _deliverable(cls, template: Any) -> Any:
        if json_depth(template) > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            orjson.dumps(template)  # what webhook bodies are encoded with
        except orjson.JSONEncodeError as error:
            raise ValueError(f"cannot be sent as JSON: {error}") from None
        return template


class McpConfig(_Config):
    tool_name: Annotated[str, Field(min_length=1, max_length=128)] = DEFAULT_MCP_TOOL
    verify_file_hash: bool = False
    timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 30_000


ActionConfig = TelegramConfig | RestConfig | McpConfig
CONFIG_TYPES: dict[str, type[ActionConfig]] = {
    "telegram": TelegramConfig,
    "rest": RestConfig,
    "mcp": McpConfig,
}


def parse_action_config(action_type: str, config: Any, *, strict: bool = False) -> ActionConfig:
    """The typed config of an action. Raises ActionConfigError naming the field and problem.

    `strict` (the API's new input): no coercions, so `true` is not 1 nor "5000" a number.
    The worker reads stored configs leniently: rows written before the API was strict
    keep working."""
    model = CONFIG_TYPES.get(action_type)
    if model is None:
        known = ", ".join(CONFIG_TYPES)
        raise ActionConfigError(f"unknown action type {action_type!r} (known: {known})")
    try:
        return model.model_validate(config, strict=strict)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'config'}: {_message(item)}"
            for item in error.errors()
        )
        raise ActionConfigError(f"{action_type} action: {problems}") from None


def _message(item: Any) -> str:
    message = str(item["msg"])
    if item["type"] == "missing":
        return "is required"
    if item["type"] == "extra_forbidden":
        return "is not a known setting"
    return message.removeprefix("Value error, ")


def render_json_template(template: Any, values: dict[str, Any]) -> Any:
    """A JSON value with every string rendered as a template (keys stay as written), so the
    result is valid JSON whatever the values contain."""
    if isinstance(template, str):
        return render_template(template, values)
    if isinstance(template, list):
        return [render_json_template(item, values) for item in template]
    if isinstance(template, dict):
        return {key: render_json_template(item, values) for key, item in template.items()}
    return template


def json_depth(value: Any) -> int:
    """How many arrays and objects deep a JSON value nests (0 for a scalar). Level by
    level, not recursively: the value may nest deeper than Python's recursion limit."""
    depth, level = 0, [value]
    while containers := [item for item in level if isinstance(item, dict | list)]:
        depth += 1
        level = [child for item in containers
                 for child in (item.values() if isinstance(item, dict) else item)]  # fmt: skip
    return depth


def storable_config_problem(config: dict[str, Any]) -> str | None:
    """Why a config is not stored (a setting nested too deeply, the whole too large),
    naming the setting; None when it is fine."""
    for key, value in config.items():
        if json_depth(value) > MAX_JSON_DEPTH:
            return f"{key}: nested more than {MAX_JSON_DEPTH} levels deep"
    # json, not orjson: integers past 64 bits are valid JSON, and jsonb keeps them.
    size = len(json.dumps(config, separators=(",", ":")).encode())
    if size > MAX_CONFIG_BYTES:
        return f"larger than {MAX_CONFIG_BYTES} bytes of JSON ({size})"
    return None
