"""Change conditions, pure: parsing (the messages the API shows), when each holds, and the
registration files' difference."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.triggers.changes import (
    IdentityChange,
    RegistrationDiff,
    change_fields,
    change_holds,
    owner_change,
    registration_diff,
)
from erc8004_backend.triggers.conditions import ChangeCondition, ConditionError, parse_condition
from erc8004_backend.triggers.templates import template_problems

ZERO = "0x" + "0" * 40
A, B = "0x" + "a" * 40, "0x" + "b" * 40


def parse(condition_type: str, field: str, operator: str = "!=", value: str = "",
          **config: Any) -> ChangeCondition:  # fmt: skip
    row = {"condition_type": condition_type, "field": field, "operator": operator,
           "value": value, "config": config}  # fmt: skip
    parsed = parse_condition(1, row)
    assert isinstance(parsed, ChangeCondition)
    return parsed


@pytest.mark.parametrize(
    ("row", "where", "message"),
    [
        (("owner_changed", "owner", "="), "operator", "must be != (the new owner differs"),
        (("wallet_changed", "owner", "!="), "field", "must be 'agent_wallet'"),
        (("uri_changed", "agent_uri", "!=", "ipfs://x"), "value", "must be empty"),
    ],
)
def test_bad_rows_name_the_place_and_the_problem(row: tuple[str, ...], where: str,
                                                 message: str) -> None:  # fmt: skip
    with pytest.raises(ConditionError, match=re.escape(message)) as error:
        parse(*row)
    assert error.value.field == where


@pytest.mark.parametrize(
    ("condition_type", "field", "config", "where"),
    [
        ("wallet_changed", "agent_wallet", {"change": "cleared"}, "config.change"),
        ("wallet_changed", "agent_wallet", {"on": ["services"]}, "config.on"),
        ("uri_changed", "agent_uri", {"on": []}, "config.on"),
        ("uri_changed", "agent_uri", {"on": ["services", "name"]}, "config.on[1]"),
        ("owner_changed", "owner", {"change": "set"}, "config.change"),
    ],
)
def test_bad_configs_name_the_key(condition_type: str, field: str, config: dict[str, Any],
                                  where: str) -> None:  # fmt: skip
    with pytest.raises(ConditionError) as error:
        parse(condition_type, field, **config)
    assert error.value.field == where


def test_owner_changed_holds_for_a_transfer_to_another_owner_only() -> None:
    condition = parse("owner_changed", "owner")
    mint = {"from_address": ZERO, "to_address": A}
    assert not change_holds(condition, owner_change(mint))
    assert change_holds(condition, owner_change({"from_address": A, "to_address": B}))
    assert not change_holds(condition, owner_change({"from_address": A,
                                                     "to_address": A.upper()}))  # fmt: skip
    assert not change_holds(condition, None)
    # Another attribute's change is not this condition's.
    assert not change_holds(condition, IdentityChange("agent_wallet", A, B))


@pytest.mark.parametrize(
    ("before", "after", "holds"),
    [
        (None, A, {"set", "any"}),
        (A, B, {"set", "any"}),
        (A, None, {"unset", "any"}),
        (None, None, set()),
        (A, A.upper(), set()),
    ],
)
def test_wallet_changed_by_kind_of_change(before: str | None, after: str | None,
                                          holds: set[str]) -> None:  # fmt: skip
    for change in ("set", "unset", "any"):
        condition = parse("wallet_changed", "agent_wallet", change=change)
        assert change_holds(condition, IdentityChange("agent_wallet", before, after)) == (
            change in holds
        )


def test_uri_changed_with_on_holds_only_when_those_aspects_differ() -> None:
    flipped = RegistrationDiff(active_before=True, active_after=False)
    any_uri = parse("uri_changed", "agent_uri")
    on_active = parse("uri_changed", "agent_uri", on=["active"])
    on_mcp = parse("uri_changed", "agent_uri", on=["mcp_endpoint", "services"])
    assert change_holds(any_uri, IdentityChange("agent_uri", "u1", "u2", None))
    assert not change_holds(any_uri, IdentityChange("agent_uri", "u1", "u1", flipped))
    assert change_holds(on_active, IdentityChange("agent_uri", "u1", "u2", flipped))
    assert not change_holds(on_mcp, IdentityChange("agent_uri", "u1", "u2", flipped))
    # A file not stored yet: undecided, so a condition on the files does not hold.
    assert not change_holds(on_active, IdentityChange("agent_uri", "u1", "u2", None))
    pending = change_fields(IdentityChange("agent_uri", "u1", "u2", None))
    assert pending == {"old_uri": "u1", "new_uri": "u2", "registration_pending": "true"}


def test_registration_diff_of_services_flags_and_mcp() -> None:
    before = {"active": True, "services": [
        {"name": "MCP", "endpoint": "https://a/mcp", "version": "1"},
        {"name": "web", "endpoint": "https://a"},
    ]}  # fmt: skip
    after = {"active": True, "x402Support": True, "endpoints": [
        {"name": "mcp", "endpoint": "https://a/mcp", "version": "2"},
        {"name": "ENS", "endpoint": "seven.eth"},
    ]}  # fmt: skip
    diff = registration_diff(before, after)
    assert diff.services_added == ("ENS seven.eth",)
    assert diff.services_removed == ("web https://a",)
    assert diff.services_changed == ("mcp https://a/mcp",)
    assert (diff.x402_before, diff.x402_after) == (None, True)
    assert diff.mcp_endpoint_before == diff.mcp_endpoint_after == "https://a/mcp"
    assert diff.aspects == {"services", "x402"}


def test_change_fields_are_template_fields() -> None:
    template = ("{{old_owner|short}} -> {{new_owner}} {{old_wallet}} {{new_wallet}} {{old_uri}}"
                " {{new_uri}} {{services_added}} {{services_removed}} {{services_changed}}"
                " {{active_before}}/{{active_after}} {{x402_before}}/{{x402_after}}"
                " {{mcp_endpoint_before}} {{mcp_endpoint_after}} {{registration_pending}}")  # fmt: skip
    assert template_problems(template) == []


_VALUE = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.integers())
_SERVICE = st.fixed_dictionaries(
    {"name": st.sampled_from(["MCP", "mcp", "A2A", "web", "ENS"]),
     "endpoint": st.sampled_from(["https://a/mcp", "https://b/mcp", "x.eth", ""])},
    optional={"version": st.sampled_from(["1", "2"])},
)  # fmt: skip
_FILE = st.fixed_dictionaries(
    {}, optional={"services": st.lists(_SERVICE, max_size=4), "active": _VALUE,
                  "x402Support": _VALUE, "name": st.text(max_size=3)},
)  # fmt: skip


@given(_FILE)
def test_a_file_differs_from_itself_in_nothing(document: dict[str, Any]) -> None:
    assert registration_diff(document, document).aspects == frozenset()


@given(_FILE, _FILE)
def test_the_diff_both_ways_swaps_added_and_removed(before: dict[str, Any],
                                                    after: dict[str, Any]) -> None:  # fmt: skip
    forth, back = registration_diff(before, after), registration_diff(after, before)
    assert sorted(forth.services_added) == sorted(back.services_removed)
    assert sorted(forth.services_removed) == sorted(back.services_added)
    assert forth.aspects == back.aspects
    assert (forth.active_before, forth.active_after) == (back.active_after, back.active_before)
    assert isinstance(forth.active_before, bool | None)
