"""Logic-less message templates: `{{field}}` placeholders, optionally formatted by filters
(`{{score|fixed:2}}`, `{{client_address|short}}`, `{{timestamp|iso}}`), nothing else.

User text is never evaluated: a placeholder is looked up by name, its value passed through a
fixed table of pure filters, and the resulting text escaped by the caller's function (for
the channel's markup), so no filter can let markup through. The API refuses, when a trigger
is written, a template naming an unknown field or filter, a bad filter argument, or a filter
on a field of a kind it does not format (template_problems); at delivery nothing fails: an
unknown name renders empty, and a filter that cannot format a value leaves it as it is.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from erc8004_backend.triggers.fields import TEMPLATE_FIELDS, FieldKind, format_value

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# `{{ name }}` or `{{ name | filter | filter:argument }}`; an argument is any text without
# `|`, `{` or `}`, trimmed. Group 1: the name; group 2: the filters, as written.
PLACEHOLDER = re.compile(
    r"\{\{\s*(" + _NAME + r")\s*((?:\|\s*" + _NAME + r"\s*(?::[^|{}]*)?)*)\}\}"
)
# What looks like a placeholder with filters (`{{score|fixed:2}}`, or `{{score:2}}`): one
# that PLACEHOLDER does not match is a mistake, refused rather than sent as written.
_FILTERED_LOOKALIKE = re.compile(r"\{\{\s*" + _NAME + r"\s*[|:][^{}]*\}\}")
KNOWN_NAMES = frozenset(TEMPLATE_FIELDS)
# Names people reach for that are spelled otherwise here (block explorers' `tx`, the events
# API's `block_time`), for the hint of an unknown field.
_ALIASES = {"tx_url": "transaction_url", "block_time": "timestamp", "tx_hash": "transaction_hash"}
MAX_FIXED_PLACES = 18


def placeholders(template: str) -> list[str]:
    """The names a template uses, in order of first use."""
    return list(dict.fromkeys(match.group(1) for match in PLACEHOLDER.finditer(template)))


def unknown_placeholders(template: str) -> list[str]:
    return [name for name in placeholders(template) if name not in KNOWN_NAMES]


def suggestion(name: str) -> str | None:
    """The known name an unknown one was probably meant to be."""
    if name in _ALIASES:
        return _ALIASES[name]
    close = difflib.get_close_matches(name, KNOWN_NAMES, n=1, cutoff=0.75)
    return close[0] if close else None


# -- filters ------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or value == ""


def _decimal(value: Any) -> Decimal | None:
    """A value as an exact Decimal (payloads carry numbers as exact text; a float, such as
    ema_score, by its shortest repr); None when it is no finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def fixed(value: Any, places: int) -> Any:
    """The number with exactly `places` decimals, rounded half away from zero (Decimal's
    ROUND_HALF_UP: 2.345 -> 2.35, -2.345 -> -2.35), exact at any size (no float); a result
    of zero has no sign. Not a number: unchanged."""
    number = _decimal(value)
    if number is None or number.adjusted() > 1000:  # no sane value; left as it is
        return value
    # Enough digits for every digit of the result, and one for a carry (9.995 -> 10.00).
    context = Context(prec=max(number.adjusted() + 1, 1) + places + 1, rounding=ROUND_HALF_UP)
    try:
        result = number.quantize(Decimal(1).scaleb(-places), context=context)
    except InvalidOperation:  # beyond the context's exponents: no value of ours
        return value
    return format(result.copy_abs() if result.is_zero() else result, "f")


def short(value: Any) -> Any:
    """An address or hash as `0x1234…abcd`: its first 4 and last 4 hex digits."""
    text = format_value(value)
    return text if len(text) <= 11 else f"{text[:6]}…{text[-4:]}"


def iso(value: Any) -> Any:
    """A time in ISO 8601, in UTC, with `Z`: 2026-01-02T03:04:05Z (a time without a zone
    is taken as UTC). Not a time: unchanged."""
    when = value
    if not isinstance(when, datetime):
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return value
    try:
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999
        return value
    return when.replace(tzinfo=None).isoformat() + "Z"


def _upper(value: Any) -> Any:
    return format_value(value).upper()


def _lower(value: Any) -> Any:
    return format_value(value).lower()


def _places(argument: str) -> int:
    if not (argument.isascii() and argument.isdigit()) or int(argument) > MAX_FIXED_PLACES:
        raise ValueError(
            f"takes a number of decimal places from 0 to {MAX_FIXED_PLACES}, not {argument!r}"
        )
    return int(argument)


@dataclasses.dataclass(frozen=True)
class Filter:
    """One formatting step: `apply(value, argument)` over a present value (a missing one
    stays missing, except for `default`), for fields of the kinds in `accepts` (None: any).
    Every filter gives text, so one that needs a kind cannot follow another."""

    apply: Callable[[Any, Any], Any]
    accepts: frozenset[FieldKind] | None
    # What the argument is (for messages), None when the filter takes none; `parse` turns
    # it into what `apply` gets, raising ValueError saying what is wrong.
    argument: str | None = None
    parse: Callable[[str], Any] = str
    on_missing: bool = False  # applied to a missing value too


_HEX_KINDS = frozenset({FieldKind.ADDRESS, FieldKind.HASH, FieldKind.BYTES})
FILTERS: dict[str, Filter] = {
    "fixed": Filter(fixed, frozenset({FieldKind.NUMBER}), "decimal places", _places),
    "short": Filter(lambda value, _: short(value), _HEX_KINDS),
    "iso": Filter(lambda value, _: iso(value), frozenset({FieldKind.TIME})),
    "upper": Filter(lambda value, _: _upper(value), frozenset({FieldKind.TEXT})),
    "lower": Filter(lambda value, _: _lower(value), frozenset({FieldKind.TEXT})),
    "default": Filter(
        lambda value, text: text if _missing(value) else value, None, "text", on_missing=True
    ),
}
_KIND_NAMES = {
    FieldKind.NUMBER: "numbers",
    FieldKind.ADDRESS: "addresses",
    FieldKind.HASH: "hashes",
    FieldKind.BYTES: "hex bytes",
    FieldKind.TEXT: "text",
    FieldKind.TIME: "times",
}


@functools.lru_cache(maxsize=1024)
def parse_filters(written: str) -> tuple[tuple[str, str | None], ...]:
    """The (name, argument) of each filter of a placeholder's group 2 (`| fixed : 2`)."""
    steps = []
    for part in written.split("|")[1:]:
        name, colon, argument = part.partition(":")
        steps.append((name.strip(), argument.strip() if colon else None))
    return tuple(steps)


def filter_problem(
    kind: FieldKind, name: str, argument: str | None, after: str | None = None
) -> str | None:
    """Why filter `name` with `argument` cannot format a value of `kind` (given by filter
    `after`, if any); None if it can."""
    spec = FILTERS.get(name)
    if spec is None:
        return f"unknown filter {name!r} (filters: {', '.join(FILTERS)})"
    if spec.argument is None and argument is not None:
        return f"filter {name!r} takes no argument"
    if spec.argument is not None and argument is None:
        return f"filter {name!r} needs an argument ({name}:<{spec.argument}>)"
    if spec.accepts is not None and kind not in spec.accepts:
        *others, last = sorted(_KIND_NAMES[k] for k in spec.accepts)
        accepted = f"{', '.join(others)} and {last}" if others else last
        given = f"the text {after!r} gives" if after else _KIND_NAMES[kind]
        return f"filter {name!r} formats {accepted}, not {given}"
    if argument is not None:
        try:
            spec.parse(argument)
        except ValueError as error:
            return f"filter {name!r} {error}"
    return None


def template_problems(template: str) -> list[str]:
    """What the API refuses in a template, each naming the placeholder: unknown fields (with
    the likely intended name), unknown filters, bad arguments, filters on fields they do not
    format, filters that cannot be read."""
    problems: list[str] = []
    unknown = unknown_placeholders(template)
    if unknown:
        names = []
        for name in unknown:
            meant = suggestion(name)
            hint = f" (did you mean {{{{{meant}}}}}?)" if meant else ""
            names.append(f"{{{{{name}}}}}{hint}")
        problems.append(f"unknown template field(s) {', '.join(names)}")
    for match in _FILTERED_LOOKALIKE.finditer(template):
        written = match.group(0)
        parsed = PLACEHOLDER.fullmatch(written)
        if parsed is None:
            problems.append(
                f"{written}: cannot read its filters (write {{{{field|filter}}}} or"
                " {{field|filter:argument}}, each filter a name)"
            )
            continue
        kind = TEMPLATE_FIELDS.get(parsed.group(1))
        if kind is None:
            continue  # reported above
        after = None
        for name, argument in parse_filters(parsed.group(2)):
            problem = filter_problem(kind, name, argument, after)
            if problem:
                problems.append(f"{written}: {problem}")
                break
            kind, after = FieldKind.TEXT, name  # what every filter gives
    return list(dict.fromkeys(problems))


@functools.lru_cache(maxsize=1024)
def _steps(written: str) -> tuple[tuple[Filter, Any], ...]:
    """The filters of a placeholder's group 2 that apply, each with its parsed argument.
    The API refuses the others; a template stored before it did formats nothing with them."""
    steps = []
    for name, argument in parse_filters(written):
        spec = FILTERS.get(name)
        if spec is None or (spec.argument is None) != (argument is None):
            continue
        try:
            steps.append((spec, spec.parse(argument) if argument is not None else None))
        except ValueError:
            continue
    return tuple(steps)


def _filtered(value: Any, written: str) -> Any:
    for spec, argument in _steps(written):
        if spec.on_missing or not _missing(value):
            value = spec.apply(value, argument)
    return value


def render_template(
    template: str,
    values: Mapping[str, Any],
    escape: Callable[[str], str] = lambda text: text,
) -> str:
    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if match.group(2):
            value = _filtered(value, match.group(2))
        return escape(format_value(value))

    return PLACEHOLDER.sub(replace, template)
