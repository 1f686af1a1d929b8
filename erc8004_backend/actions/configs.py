"""What every action's config shares (each channel's model is in the channel's module), and
the checks the API (which refuses a bad action before writing it) and the worker (which
dead-letters a job whose action no longer parses, saying why) both make."""

from __future__ import annotations

import json
from typing import Annotated, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.templates import render_template

MaxAttempts = Annotated[int, Field(ge=1, le=25)]

# Bounds of the JSON the API stores in a condition's or an action's config. Deeper values
# could not be served back (pydantic's serializer stops at 255 levels) nor sent (orjson's
# encoder at 254); real templates nest a few levels.
MAX_JSON_DEPTH = 32  # arrays and objects within one setting's value
MAX_CONFIG_BYTES = 65_536  # one config, as compact JSON


class ActionConfigError(Erc8004Error):
    """An action's config is not valid for its type; the message names the field."""


class DigestSettings(BaseModel):
    """An action's digest (actions/digest.py): its firings made within one window of
    `window_seconds` (windows start at multiples of it, in Unix time) become one message
    saying how many there were and showing the first `max_items`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_seconds: Annotated[int, Field(ge=1, le=86_400)]
    max_items: Annotated[int, Field(ge=1, le=100)] = 10


class ChannelConfig(BaseModel):
    """What every action's config may say; each channel's model adds its own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Attempts before the job is dead-lettered (the queue's default when absent: 8).
    max_attempts: MaxAttempts | None = None
    # Noise control (actions/noise.py), shared by all workers: at most this many deliveries
    # a minute, and the same message sent once within this many seconds.
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=60_000)] | None = None
    dedup_seconds: Annotated[int, Field(ge=1, le=86_400)] | None = None
    # Firings within a window sent as one message (the channels that can: actions/digest.py).
    digest: DigestSettings | None = None
    # The action's own backoff between attempts (the worker's settings when absent): the
    # first wait, doubling up to the longest (a target's Retry-After still comes first).
    retry_initial_seconds: Annotated[float, Field(ge=0.1, le=3600)] | None = None
    retry_max_seconds: Annotated[float, Field(ge=0.1, le=86_400)] | None = None

    @model_validator(mode="after")
    def _backoff_ordered(self) -> Self:
        first, longest = self.retry_initial_seconds, self.retry_max_seconds
        if first is not None and longest is not None and first > longest:
            raise ValueError("retry_initial_seconds must not exceed retry_max_seconds")
        return self


ChannelConfigT = TypeVar("ChannelConfigT", bound=ChannelConfig)


class RetractableConfig(ChannelConfig):
    # After a delivery, a reorg may remove its event: send a retraction then (see rest.py
    # and telegram.py for what each says).
    notify_retractions: bool = False


def validate_config(
    model: type[ChannelConfigT], action_type: str, config: Any, *, strict: bool = False
) -> ChannelConfigT:
    """`config` as `model`. Raises ActionConfigError naming the field and the problem.

    `strict` (the API's new input): no coercions, so `true` is not 1 nor "5000" a number,
    and checks only new input gets (validation context `new_input`). The worker reads
    stored configs leniently: rows written before the API was strict keep working."""
    try:
        return model.model_validate(config, strict=strict, context={"new_input": strict})
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
