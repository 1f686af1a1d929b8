"""Template filters: each a pure function over a field's value, refused when a trigger is
written if it cannot apply, and never an error when a message is rendered."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.actions.telegram import escape_for
from erc8004_backend.triggers.fields import TEMPLATE_FIELDS, FieldKind, format_value
from erc8004_backend.triggers.templates import (
    FILTERS,
    fixed,
    iso,
    placeholders,
    render_template,
    short,
    template_problems,
)

ADDRESS = "0x8004a169fb4a3325136eb29fa0ceb6d2e539a432"
HASH = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"


# -- fixed:N ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "places", "shown"),
    [
        (Decimal("45.5"), 2, "45.50"),
        ("45.5", 2, "45.50"),  # as a job's payload carries it
        (45, 2, "45.00"),
        (Decimal("45.5"), 0, "46"),
        ("2.345", 2, "2.35"),  # ties away from zero
        ("-2.345", 2, "-2.35"),
        ("2.3449999", 2, "2.34"),
        ("9.995", 2, "10.00"),  # the carry reaches a new digit
        ("-0.001", 2, "0.00"),  # zero has no sign
        ("1E+2", 1, "100.0"),
        ("0.000000000000000001", 18, "0.000000000000000001"),
        (61.234567, 1, "61.2"),  # ema_score is a float: its shortest repr, 61.234567
        (0.1 + 0.2, 18, "0.300000000000000040"),  # that repr is 0.30000000000000004
        # uint256 agent ids and int128 values with 18 decimals, exact.
        (2**256 - 1, 0, str(2**256 - 1)),
        (Decimal(f"{-(2**127)}E-18"), 18, "-170141183460469231731.687303715884105728"),
        (Decimal(f"{2**127 - 1}E-18"), 2, "170141183460469231731.69"),
    ],
)
def test_fixed_shows_exactly_n_decimals(value: Any, places: int, shown: str) -> None:
    assert fixed(value, places) == shown


@pytest.mark.parametrize("value", ["", "n/a", "NaN", "Infinity", "0x12", True, [1]])
def test_fixed_leaves_what_is_not_a_number_as_it_is(value: Any) -> None:
    assert fixed(value, 2) == value


def decimal_reference(number: Decimal, places: int) -> str:
    """Decimal's own quantize, half away from zero (ROUND_HALF_UP), with precision to
    spare; negative zero shown as zero."""
    result = number.quantize(Decimal(10) ** -places, rounding=ROUND_HALF_UP,
                             context=Context(prec=400))  # fmt: skip
    return format(result.copy_abs() if result.is_zero() else result, "f")


def integer_reference(value: int, decimals: int, places: int) -> str:
    """value / 10^decimals to `places` decimals, half away from zero, in integers only."""
    magnitude = abs(value) * 10**places
    quotient, remainder = divmod(magnitude, 10**decimals)
    quotient += 2 * remainder >= 10**decimals
    sign = "-" if value < 0 and quotient else ""
    whole, fraction = divmod(quotient, 10**places)
    return sign + str(whole) + (f".{fraction:0{places}d}" if places else "")


PLACES = st.integers(0, 18)


@given(st.integers(-(2**127), 2**127 - 1), st.integers(0, 18), PLACES)
def test_fixed_of_feedback_values_equals_the_references(
    value: int, decimals: int, places: int
) -> None:
    """A feedback's score is an int128 over 10^valueDecimals; the worker sees it as the text
    the processor wrote (format_value); both give the references' digits."""
    score = Decimal(f"{value}E-{decimals}")
    expected = integer_reference(value, decimals, places)
    assert decimal_reference(score, places) == expected
    assert fixed(score, places) == expected
    assert fixed(format_value(score), places) == expected


def with_point(sign: str, units: int, places: int) -> str:
    """`units` of 10^-places as decimal text."""
    digits = str(units).rjust(places + 1, "0")
    return sign + (f"{digits[:-places]}.{digits[-places:]}" if places else digits)


@given(st.integers(-(2**127), 2**127 - 1), PLACES, st.integers(0, 20))
def test_fixed_rounds_ties_away_from_zero(whole: int, places: int, zeros: int) -> None:
    """Values exactly halfway between two results (rare among random values, so made on
    purpose): `whole` units of the last place kept, then a 5 and `zeros` zeros."""
    sign = "-" if whole < 0 else ""
    kept = with_point(sign, abs(whole), places)
    tie = kept + ("" if places else ".") + "5" + "0" * zeros
    expected = with_point(sign, abs(whole) + 1, places)
    assert fixed(tie, places) == expected
    assert fixed(Decimal(tie), places) == expected == decimal_reference(Decimal(tie), places)


@given(st.integers(-(2**256), 2**256), PLACES)
def test_fixed_of_big_integers_is_exact(value: int, places: int) -> None:
    assert fixed(value, places) == decimal_reference(Decimal(value), places)
    assert fixed(value, places).split(".")[0].lstrip("-") == str(abs(value))


@given(st.decimals(allow_nan=False, allow_infinity=False), PLACES)
def test_fixed_of_any_decimal_equals_decimal_quantize(number: Decimal, places: int) -> None:
    if number.adjusted() > 300:  # far beyond any value of ours; fixed leaves those alone
        return
    assert fixed(number, places) == decimal_reference(number, places)
    assert fixed(str(number), places) == decimal_reference(number, places)


@given(st.floats(allow_nan=False, allow_infinity=False, width=64), PLACES)
def test_fixed_of_floats_rounds_their_shortest_repr(number: float, places: int) -> None:
    assert fixed(number, places) == decimal_reference(Decimal(repr(number)), places)


# -- short, iso, upper, lower, default -----------------------------------------------------


def test_short_keeps_the_first_and_last_four_hex_digits() -> None:
    assert short(ADDRESS) == "0x8004…a432"
    assert short(HASH) == "0x5c50…2060"
    assert short(b"\x12\x34\x56\x78\x9a\xbc") == "0x1234…9abc"
    assert short("0x12345678") == "0x12345678"  # no shorter shortened
    assert short("0x123456789") == "0x123456789"
    assert short("0x123456789a") == "0x1234…789a"


def test_iso_is_utc_with_z() -> None:
    berlin = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 1, 2, 4, 5, 6, tzinfo=berlin)) == "2026-01-02T03:05:06Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)) == "2026-01-02T03:04:05.123000Z"
    assert iso(datetime(2026, 1, 2)) == "2026-01-02T00:00:00Z"  # no zone: UTC
    # As a job's payload carries the block time (orjson's RFC 3339).
    payload = orjson.loads(orjson.dumps({"t": datetime(2026, 1, 2, 4, tzinfo=berlin)}))
    assert iso(payload["t"]) == "2026-01-02T03:00:00Z"
    assert iso("2026-01-02T03:00:00Z") == "2026-01-02T03:00:00Z"
    assert iso("yesterday") == "yesterday"


@given(st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29),
                    timezones=st.timezones()))  # fmt: skip
def test_iso_names_the_same_instant(when: datetime) -> None:
    shown = iso(when)
    assert shown.endswith("Z")
    # Compared as instants: Python never calls a time in a repeated hour equal to one of
    # another zone.
    assert datetime.fromisoformat(shown).timestamp() == when.timestamp()
    offset = when.utcoffset()
    if offset is not None and offset.seconds % 60 == 0:  # RFC 3339 (orjson) has no seconds
        assert iso(orjson.loads(orjson.dumps(when))) == shown


def test_upper_lower_and_default() -> None:
    values = {"tag1": "Quality", "tag2": "", "event_type": "NewFeedback"}
    assert render_template("{{tag1|upper}} {{tag1|lower}} {{event_type|lower}}", values) == (
        "QUALITY quality newfeedback"
    )
    template = "[{{tag1|default:none}}] [{{tag2|default:none}}] [{{file_uri|default:no file}}]"
    assert render_template(template, values) == "[Quality] [none] [no file]"


def test_missing_values_stay_empty_through_filters() -> None:
    template = "[{{score|fixed:2}}] [{{client_address|short}}] [{{timestamp|iso}}] [{{tag2|upper}}]"
    assert render_template(template, {"tag2": None}) == "[] [] [] []"
    assert render_template("{{ema_score|fixed:1|default:-}}", {}) == "-"


def test_filters_chain_left_to_right() -> None:
    values = {"tag1": "refund"}
    assert render_template("{{ tag1 | default : x | upper }}", values) == "REFUND"
    assert render_template("{{tag1|default:x|upper}}", {}) == "X"
    assert render_template("{{score|fixed:3|default:n/a}}", {"score": "4.5"}) == "4.500"


# -- placeholders -------------------------------------------------------------------------


def test_placeholders_are_named_with_or_without_filters() -> None:
    template = "{{ score | fixed : 2 }} {{client_address|short}} {{score}} {{ agent_id }}"
    assert placeholders(template) == ["score", "client_address", "agent_id"]
    assert render_template(template, {"score": "7", "client_address": ADDRESS,
                                      "agent_id": "0"}) == "7.00 0x8004…a432 7 0"  # fmt: skip


def test_values_are_escaped_after_filtering() -> None:
    """A filter's text is a value like any other: escaped for the channel, so not even
    `default`'s own text can be markup."""
    values = {"score": "4.5", "tag1": ""}
    markdown = escape_for("MarkdownV2")
    assert render_template("*{{score|fixed:2}}*", values, markdown) == r"*4\.50*"
    assert render_template("{{tag1|default:*bold* [x](y)}}", values, markdown) == (
        r"\*bold\* \[x\]\(y\)"
    )
    html = escape_for("HTML")
    assert render_template("{{tag1|default:<b>none</b>}}", values, html) == (
        "&lt;b&gt;none&lt;/b&gt;"
    )


@given(st.text(), st.sampled_from(["upper", "lower", "default:x*y_z", "upper|default:[a]"]))
def test_escaped_filtered_text_shows_as_written(text: str, filters: str) -> None:
    template = "{{tag1|" + filters + "}}"
    plain = render_template(template, {"tag1": text})
    escaped = render_template(template, {"tag1": text}, escape_for("MarkdownV2"))
    assert re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL) == plain
    assert not re.search(r"(?<!\\)[_*\[\]()~`>#+\-=|{}.!]", escaped.replace("\\\\", ""))


# -- what the API refuses -----------------------------------------------------------------

VALID = (
    "{{score|fixed:2}} {{value|fixed:0}} {{ema_score|fixed:18}} {{reputation_after|fixed:1}}"
    " {{client_address|short}} {{transaction_hash|short}} {{metadata_value|short}}"
    " {{timestamp|iso}} {{tag1|upper}} {{trigger_name|lower}} {{tag2|default:none}}"
    " {{score|fixed:2|default:n/a}} {{client_address|short|upper}} {{ score | fixed : 2 }}"
    " {{transaction_url}} {{block_url}} {{address_url}} {{address_url|default:no account}}"
)


def test_every_documented_form_is_accepted() -> None:
    assert template_problems(VALID) == []


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{agnet_id}}", "unknown template field(s) {{agnet_id}} (did you mean {{agent_id}}?)"),
        ("{{tx_url}}", "unknown template field(s) {{tx_url}} (did you mean {{transaction_url}}?)"),
        ("{{block_time|iso}}",
         "unknown template field(s) {{block_time}} (did you mean {{timestamp}}?)"),
        ("{{score|round:2}}",
         "{{score|round:2}}: unknown filter 'round' (filters: fixed, short, iso, upper, lower,"
         " default)"),
        ("{{score|fixed:19}}",
         "{{score|fixed:19}}: filter 'fixed' takes a number of decimal places from 0 to 18,"
         " not '19'"),
        ("{{score|fixed:-1}}", "not '-1'"),
        ("{{score|fixed:two}}", "not 'two'"),
        ("{{score|fixed:²}}", "not '²'"),
        ("{{score|fixed}}", "{{score|fixed}}: filter 'fixed' needs an argument (fixed:<decimal places>)"),
        ("{{tag1|default}}", "filter 'default' needs an argument (default:<text>)"),
        ("{{timestamp|iso:date}}", "{{timestamp|iso:date}}: filter 'iso' takes no argument"),
        ("{{tag1|fixed:2}}", "{{tag1|fixed:2}}: filter 'fixed' formats numbers, not text"),
        ("{{client_address|fixed:2}}", "filter 'fixed' formats numbers, not addresses"),
        ("{{score|short}}",
         "{{score|short}}: filter 'short' formats addresses, hashes and hex bytes, not numbers"),
        ("{{agent_id|iso}}", "filter 'iso' formats times, not numbers"),
        ("{{client_address|upper}}", "filter 'upper' formats text, not addresses"),
        ("{{transaction_url|short}}", "filter 'short' formats addresses, hashes and hex bytes, not text"),
        ("{{score|default:0|fixed:2}}",
         "{{score|default:0|fixed:2}}: filter 'fixed' formats numbers, not the text 'default'"
         " gives"),
        ("{{score|}}", "{{score|}}: cannot read its filters"),
        ("{{score|fixed 2}}", "{{score|fixed 2}}: cannot read its filters"),
        ("{{score||fixed:2}}", "{{score||fixed:2}}: cannot read its filters"),
        ("{{score:2}}", "{{score:2}}: cannot read its filters"),
    ],
)  # fmt: skip
def test_problems_name_the_placeholder_and_the_filter(template: str, problem: str) -> None:
    problems = template_problems(f"Score: {template}!")
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_text_that_is_no_placeholder_stays_text() -> None:
    """Only `{{name|...}}` lookalikes are read as filters: other braces are the author's."""
    template = "{{#if x}} {x|y} {{ }} {{1|2}}"
    assert template_problems(template) == []
    assert render_template(template, {}) == template


# -- never an error at delivery ------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(), st.text(), st.integers(), st.floats(), st.booleans(),
    st.decimals(), st.datetimes(timezones=st.none() | st.timezones()), st.binary(),
)  # fmt: skip
FILTER_CHAINS = st.lists(
    st.sampled_from(
        [
            "fixed:0",
            "fixed:2",
            "fixed:18",
            "short",
            "iso",
            "upper",
            "lower",
            "default:-",
            "round:2",
            "fixed:x",
            "fixed",
            "iso:3",
        ]
    ),
    min_size=1,
    max_size=3,
)


@given(st.sampled_from(sorted(TEMPLATE_FIELDS)), FILTER_CHAINS, ANY_VALUE)
def test_rendering_never_fails_whatever_the_value_and_filters(
    name: str, chain: list[str], value: Any
) -> None:
    """Stored templates the API would refuse now (written before filters existed) and
    values of any type render: a filter that cannot format a value leaves it as it is."""
    text = render_template("{{" + name + "|" + "|".join(chain) + "}}", {name: value})
    assert isinstance(text, str)


def test_a_filter_the_api_would_refuse_formats_nothing() -> None:
    values = {"score": "4.5", "tag1": "x"}
    assert render_template("{{score|round:2}} {{score|fixed:99}} {{tag1|upper:1}}", values) == (
        "4.5 4.5 x"
    )


def test_each_filter_names_the_kinds_it_formats() -> None:
    """Every kind of field has a filter, and every filter a kind some field has."""
    kinds = set(TEMPLATE_FIELDS.values())
    accepted = set().union(*(spec.accepts or kinds for spec in FILTERS.values()))
    assert accepted == kinds == set(FieldKind)
