"""Trigger conditions: parsed once from their rows into a typed form, then evaluated.

A condition row is (condition_type, field, operator, value, config), as the seed stores it:
the value is text. Parsing checks everything that can be checked without an event (the
field exists, the operator suits the field's kind, the value parses for that kind, a
stateful condition's config is complete) and names the condition and the problem when
something is wrong, because the API shows these messages to the person who wrote them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.fields import FIELDS, FieldKind

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
OPERATORS = (*COMPARISONS, "IN", "NOT IN", "CONTAINS", "STARTS_WITH", "IS NULL", "IS NOT NULL")
ORDERED_KINDS = {FieldKind.NUMBER, FieldKind.TIME}

# The seed's condition types, each a field comparison on the field it is named after.
FIELD_CONDITION_TYPES: dict[str, tuple[str, ...]] = {
    "agent_id_equals": ("agent_id",),
    "score_threshold": ("score", "value"),
    "tag_equals": ("tag1", "tag2", "tag"),
    "validator_whitelist": ("validator_address",),
    "event_type_equals": ("event_type",),
    "response_threshold": ("response",),
    "file_uri_exists": ("file_uri",),
    "field": tuple(FIELDS),  # any field
}
STATEFUL_CONDITION_TYPES = ("ema_threshold", "rate_limit")

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
# At most 9 digits: Python refuses to read an int of more than 4,300, and no window needs 9.
_DURATION = re.compile(r"^\s*([0-9]{1,9})\s*(s|m|h|d)\s*$")
# A window keeps the time of every event in it (trigger_state): a year is plenty.
MAX_WINDOW_SECONDS = 366 * 86400
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SCOPES = ("agent", "trigger", "client", "validator")


class ConditionError(Erc8004Error):
    """A condition that cannot be evaluated; the message names it and the problem."""


@dataclass(frozen=True)
class FieldCondition:
    """`field operator value` over one event."""

    position: int
    condition_type: str
    field: str
    operator: str
    value: Any  # parsed for the field's kind; a tuple for IN / NOT IN; None for IS [NOT] NULL


@dataclass(frozen=True)
class EmaThreshold:
    """The exponential moving average of a numeric field, compared with a number."""

    position: int
    field: str
    operator: str
    value: Decimal
    alpha: float
    scope: str


@dataclass(frozen=True)
class RateLimit:
    """How many events passed the trigger's other conditions within a sliding window of block
    time, compared with a number."""

    position: int
    field: str  # a label, e.g. "feedback_count"
    operator: str
    value: Decimal
    window_seconds: int
    reset_on_trigger: bool
    scope: str


StatefulCondition = EmaThreshold | RateLimit
Condition = FieldCondition | StatefulCondition


@dataclass(frozen=True)
class ParsedConditions:
    fields: tuple[FieldCondition, ...] = ()
    stateful: tuple[StatefulCondition, ...] = field(default_factory=tuple)


# -- parsing --------------------------------------------------------------------------------


def parse_conditions(rows: Sequence[Mapping[str, Any]]) -> ParsedConditions:
    """Rows with keys condition_type, field, operator, value and optional config (a dict);
    their order is their position. Raises ConditionError for the first problem."""
    fields: list[FieldCondition] = []
    stateful: list[StatefulCondition] = []
    for position, row in enumerate(rows, start=1):
        parsed = parse_condition(position, row)
        if isinstance(parsed, FieldCondition):
            fields.append(parsed)
        else:
            stateful.append(parsed)
    return ParsedConditions(tuple(fields), tuple(stateful))


def parse_condition(position: int, row: Mapping[str, Any]) -> Condition:
    condition_type = str(row.get("condition_type") or "")
    label = f"condition {position} ({condition_type or 'no type'})"

    def problem(message: str) -> ConditionError:
        return ConditionError(f"{label}: {message}")

    field_name = str(row.get("field") or "")
    operator = str(row.get("operator") or "").strip().upper()
    raw_value = row.get("value")
    value = "" if raw_value is None else str(raw_value)
    config = row.get("config") or {}
    if not isinstance(config, Mapping):
        raise problem("config must be a JSON object")
    if operator not in OPERATORS:
        raise problem(
            f"unknown operator {row.get('operator')!r}; use one of {', '.join(OPERATORS)}"
        )

    if condition_type in STATEFUL_CONDITION_TYPES:
        if operator not in COMPARISONS:
            raise problem(f"operator {operator} does not compare numbers; use one of "
                          f"{', '.join(COMPARISONS)}")  # fmt: skip
        threshold = _number(value, problem)
        scope = str(config.get("scope", "agent"))
        if scope not in SCOPES:
            raise problem(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        if condition_type == "ema_threshold":
            if FIELDS.get(field_name) is not FieldKind.NUMBER:
                raise problem(f"field {field_name!r} is not a numeric event field")
            return EmaThreshold(position, field_name, operator, threshold,
                                _alpha(config, problem), scope)  # fmt: skip
        reset = config.get("reset_on_trigger", False)
        if not isinstance(reset, bool):
            raise problem("reset_on_trigger must be true or false")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", field_name):
            raise problem("field must name the count, e.g. feedback_count")
        return RateLimit(position, field_name, operator, threshold,
                         _window(config.get("time_window"), problem), reset, scope)  # fmt: skip

    allowed_fields = FIELD_CONDITION_TYPES.get(condition_type)
    if allowed_fields is None:
        known = ", ".join([*FIELD_CONDITION_TYPES, *STATEFUL_CONDITION_TYPES])
        raise problem(f"unknown condition type; use one of {known}")
    if field_name not in FIELDS:
        raise problem(f"unknown field {field_name!r}")
    if field_name not in allowed_fields:
        raise problem(f"field must be {' or '.join(allowed_fields)}, not {field_name!r}")
    kind = FIELDS[field_name]
    if operator in ("IS NULL", "IS NOT NULL"):
        return FieldCondition(position, condition_type, field_name, operator, None)
    if operator in ("<", "<=", ">", ">=") and kind not in ORDERED_KINDS:
        raise problem(f"{field_name} is {kind.value}, which {operator} cannot order")
    if operator in ("CONTAINS", "STARTS_WITH") and kind is FieldKind.NUMBER:
        raise problem(f"{operator} needs a text field; {field_name} is a number")
    if operator in ("IN", "NOT IN"):
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if not isinstance(items, list) or not items:
            raise problem(f'{operator} needs a non-empty JSON array, e.g. ["a", "b"]')
        parsed = tuple(_parse_value(kind, str(item), field_name, problem) for item in items)
        return FieldCondition(position, condition_type, field_name, operator, parsed)
    if operator in ("CONTAINS", "STARTS_WITH"):
        text = value.lower() if kind is not FieldKind.TEXT else value
        return FieldCondition(position, condition_type, field_name, operator, text)
    return FieldCondition(position, condition_type, field_name, operator,
                          _parse_value(kind, value, field_name, problem))  # fmt: skip


def _parse_value(kind: FieldKind, value: str, field_name: str, problem: Any) -> Any:
    if kind is FieldKind.NUMBER:
        return _number(value, problem)
    if kind is FieldKind.ADDRESS:
        if not _ADDRESS.match(value.strip()):
            raise problem(f"{value!r} is not an address (0x and 40 hex digits) for {field_name}")
        return value.strip().lower()
    if kind is FieldKind.HASH:
        if not _HASH.match(value.strip()):
            raise problem(
                f"{value!r} is not a 32-byte hash (0x and 64 hex digits) for {field_name}"
            )
        return value.strip().lower()
    if kind is FieldKind.BYTES:
        if not _HEX.match(value.strip()):
            raise problem(f"{value!r} is not 0x-hex bytes for {field_name}")
        return value.strip().lower()
    if kind is FieldKind.TIME:
        return _time(value, problem)
    return value


def _number(value: str, problem: Any) -> Decimal:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise problem(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise problem(f"{value!r} is not a finite number")
    return number


def _time(value: str, problem: Any) -> datetime:
    text = value.strip()
    try:
        if re.fullmatch(r"\d+", text):
            return datetime.fromtimestamp(int(text), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise problem(f"{value!r} is not a time (ISO 8601 or Unix seconds)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _alpha(config: Mapping[str, Any], problem: Any) -> float:
    if "alpha" in config and "window_size" in config:
        raise problem("give alpha or window_size, not both")
    if "alpha" in config:
        alpha = config["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise problem("alpha must be a number")
        if not (0 < alpha <= 1) or math.isnan(alpha):
            raise problem("alpha must be greater than 0 and at most 1")
        return float(alpha)
    size = config.get("window_size")
    if size is None:
        raise problem("ema_threshold needs config.alpha or config.window_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise problem("window_size must be a whole number of at least 1")
    return 2 / (size + 1)


def duration_seconds(value: object) -> int | None:
    """The seconds of a duration written like "30s", "15m", "1h" or "1d" (a whole number
    above 0, at most 9 digits, and a unit), or None when `value` is not one. Rate limits'
    time_window and reputation lenses' half_life are written this way."""
    match = _DURATION.match(str(value))
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _window(value: Any, problem: Any) -> int:
    if value is None:
        raise problem('rate_limit needs config.time_window, e.g. "1h" or "15m"')
    seconds = duration_seconds(value)
    if seconds is None:
        shown = repr(value) if len(str(value)) <= 40 else repr(str(value)[:40]) + "..."
        raise problem(f'time_window {shown} is not a duration like "30s", "15m", "1h" or "1d"')
    if seconds > MAX_WINDOW_SECONDS:
        raise problem("time_window may be at most 366 days")
    return seconds


# -- evaluating -----------------------------------------------------------------------------


def evaluate_field_condition(condition: FieldCondition, fields: Mapping[str, Any]) -> bool:
    """Whether an event (its fields, as `event_fields` gives them) meets the condition. A
    missing value meets only IS NULL, != and NOT IN. For IS [NOT] NULL an empty text is
    missing too: the registries store "" for an optional URI or tag that was not given, and
    `file_uri_exists` means a file was named."""
    operator = condition.operator
    actual = fields.get(condition.field)
    if operator == "IS NULL":
        return actual is None or actual == ""
    if operator == "IS NOT NULL":
        return actual is not None and actual != ""
    if actual is None:
        return operator in ("!=", "NOT IN")
    kind = FIELDS[condition.field]
    actual = _comparable(kind, actual)
    expected = condition.value
    if operator == "=":
        return bool(actual == expected)
    if operator == "!=":
        return bool(actual != expected)
    if operator == "IN":
        return actual in expected
    if operator == "NOT IN":
        return actual not in expected
    if operator == "CONTAINS":
        return str(expected) in str(actual)
    if operator == "STARTS_WITH":
        return str(actual).startswith(str(expected))
    return compare(actual, operator, expected)


def compare(actual: Any, operator: str, expected: Any) -> bool:
    if operator == "<":
        return bool(actual < expected)
    if operator == "<=":
        return bool(actual <= expected)
    if operator == ">":
        return bool(actual > expected)
    if operator == ">=":
        return bool(actual >= expected)
    if operator == "=":
        return bool(actual == expected)
    return bool(actual != expected)


def _comparable(kind: FieldKind, value: Any) -> Any:
    if kind is FieldKind.NUMBER:
        return value if isinstance(value, Decimal) else Decimal(value)
    if kind in (FieldKind.ADDRESS, FieldKind.HASH, FieldKind.BYTES):
        return str(value).lower()
    return value
