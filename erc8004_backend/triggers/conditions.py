"""Trigger conditions: parsed once from their rows into a typed form, then evaluated.

A condition row is (condition_type, field, operator, value, config), as the seed stores it:
the value is text. Parsing checks everything that can be checked without an event (the
field exists, the operator suits the field's kind, the value parses for that kind, a
stateful condition's config is complete) and names the condition and the problem when
something is wrong, because the API shows these messages to the person who wrote them.
What each operator applies to, reads and tests is its entry in operators.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from erc8004_backend.chain.events import SPECS
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.fields import FIELDS, FieldKind
from erc8004_backend.triggers.operators import (
    COMPARISONS,
    OPERATORS,
    THRESHOLD_OPERATORS,
    comparable,
    parse_number,
)

if TYPE_CHECKING:
    from erc8004_backend.agents.lenses import Lens

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
# Conditions on the agent's summaries in the read model, crossing a threshold: they depend on
# the agent's history, so they are stateful too (the trigger needs is_stateful), but they read
# the model as of each event instead of keeping trigger_state (see triggers/crossings.py).
SUMMARY_CONDITION_TYPES: dict[str, str] = {
    "reputation_threshold": "reputation",  # condition type -> its `field` and its registry
    "validation_threshold": "validation",
}
STATEFUL_CONDITION_TYPES = ("ema_threshold", "rate_limit", *SUMMARY_CONDITION_TYPES)
# Conditions on a change of the agent's identity in the read model (an identity-registry
# event that gives the agent a new owner, agentWallet or URI), with the value just before
# and just after the event (triggers/changes.py): condition type -> its `field`. They keep
# no state: the old value is read from the agent's earlier events (change_reads.py).
CHANGE_CONDITION_TYPES: dict[str, str] = {
    "owner_changed": "owner",
    "wallet_changed": "agent_wallet",
    "uri_changed": "agent_uri",
}
WALLET_CHANGES = ("set", "unset", "any")
# What of a registration file a uri_changed condition may fire on (config.on).
REGISTRATION_ASPECTS = ("services", "active", "x402", "mcp_endpoint")
# Bounds of a summary condition's config: a client or validator list, and a tag.
MAX_SUMMARY_ADDRESSES = 1000
MAX_SUMMARY_TAG = 1000
_REPUTATION_KEYS = ("clients", "tag1", "tag2", "lens", "lens_name")
_VALIDATION_KEYS = ("validators", "tag")

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
EVENT_TYPES = tuple(dict.fromkeys(spec.name for spec in SPECS))
# At most 9 digits: Python refuses to read an int of more than 4,300, and no window needs 9.
_DURATION = re.compile(r"^\s*([0-9]{1,9})\s*(s|m|h|d)\s*$")
# A window keeps the time of every event in it (trigger_state): a year is plenty.
MAX_WINDOW_SECONDS = 366 * 86400
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SCOPES = ("agent", "trigger", "client", "validator")
# A silence condition: no matching event for a duration (its value), per scope; `request` is
# per validation request (request hash). It fires on block time, not on an event.
SILENCE_CONDITION_TYPE = "silence"
SILENCE_SCOPES = (*SCOPES, "request")
# The field of an event that names its scope: what an `=` condition on it fixes.
SCOPE_FIELDS = {"agent": "agent_id", "client": "client_address",
                "validator": "validator_address", "request": "request_hash"}  # fmt: skip
# A silence remembers only its last matching event: it may last longer than a window.
MAX_SILENCE_SECONDS = 10 * 366 * 86400


class ConditionError(Erc8004Error):
    """A condition that cannot be evaluated; the message names it and the problem. `field`,
    when known, is where in the condition the problem is ("config.clients[2]"), for the
    API's error details."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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


# The largest count a rate_limit compares with: it keeps the times of its window's events, as
# many as its threshold and two more (triggers/stateful.py), and every event copies them.
MAX_RATE_THRESHOLD = 10_000


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


@dataclass(frozen=True)
class ReputationThreshold:
    """The agent's reputation crossing a number: the spec's getSummary over `clients` (with
    `tag1`, `tag2`), or the score of `lens`. It holds for an event that moves the value from
    not beyond the threshold (or none) to beyond it."""

    position: int
    operator: str  # one of THRESHOLD_OPERATORS
    value: Decimal
    clients: tuple[str, ...] = ()  # lower case; a client listed twice counts twice
    tag1: str = ""
    tag2: str = ""
    lens: Lens | None = None  # given inline, or the owner's saved lens `lens_name`
    lens_name: str | None = None


@dataclass(frozen=True)
class ValidationThreshold:
    """The agent's validation summary (the spec's getSummary over `validators`, none: any,
    with `tag`) crossing a number, as ReputationThreshold does."""

    position: int
    operator: str
    value: Decimal
    validators: tuple[str, ...] = ()  # lower case, distinct
    tag: str = ""


@dataclass(frozen=True)
class ChangeCondition:
    """An identity event that changes the agent's owner (owner_changed: a transfer from a
    previous owner, not the mint), its agentWallet (wallet_changed, `change`: set or changed
    to an address, unset or cleared, or any) or its URI (uri_changed; with `on`, only when the
    registration files differ in one of those aspects)."""

    position: int
    condition_type: str  # one of CHANGE_CONDITION_TYPES
    change: str = "any"  # wallet_changed: one of WALLET_CHANGES
    on: tuple[str, ...] = ()  # uri_changed: REGISTRATION_ASPECTS; empty: any new URI


@dataclass(frozen=True)
class Silence:
    """No matching event (one that meets the trigger's field conditions) for `seconds` of
    block time, per scope, since the last one or since the trigger started, whichever is
    later; with `after` (an event type), since the last such event that no other matching
    event has followed (e.g. a ValidationRequest without a ValidationResponse). It fires once
    per silent period, as the chain's time passes its end (triggers/silence.py)."""

    position: int
    seconds: int
    scope: str  # one of SILENCE_SCOPES
    after: str | None = None


StatefulCondition = EmaThreshold | RateLimit
SummaryCondition = ReputationThreshold | ValidationThreshold
Condition = FieldCondition | StatefulCondition | SummaryCondition | ChangeCondition | Silence


@dataclass(frozen=True)
class AllGroup:
    """Holds when every child holds."""

    children: tuple[ConditionNode, ...]


@dataclass(frozen=True)
class AnyGroup:
    """Holds when at least one child holds."""

    children: tuple[ConditionNode, ...]


@dataclass(frozen=True)
class NotGroup:
    """Holds when its child does not."""

    child: ConditionNode


ConditionNode = Condition | AllGroup | AnyGroup | NotGroup


@dataclass(frozen=True)
class ParsedConditions:
    """A trigger's conditions: `tree` decides whether it fires. `fields` are the field
    conditions of a top-level `all` (a flat list is one): the trigger sees only the events
    that meet them (they choose its candidate events in the index, and only those events move
    its state). `stateful` and `summaries` are those conditions wherever they are in the tree,
    in position order."""

    fields: tuple[FieldCondition, ...] = ()
    stateful: tuple[StatefulCondition, ...] = field(default_factory=tuple)
    summaries: tuple[SummaryCondition, ...] = field(default_factory=tuple)
    tree: ConditionNode | None = None  # None: the all of `fields`, `stateful`, `summaries`
    changes: tuple[ChangeCondition, ...] = field(default_factory=tuple)  # wherever they are
    # A silence trigger's one condition besides `fields` (then there are no others).
    silence: Silence | None = None


# -- groups ---------------------------------------------------------------------------------

# Where a condition sits in a tree of groups, as the API's paths write it: "any[1].all[0]" is
# the first child of the all that is the second child of the top-level any; "not" the child
# of a not. Empty: a condition of a flat list (the all of its conditions).
_GROUP_STEP = re.compile(r"(all|any)\[([0-9]{1,4})\]|(not)")
GROUP_KINDS = ("all", "any", "not")

Leaf = TypeVar("Leaf")


def group_steps(group_path: str) -> list[tuple[str, int | None]] | None:
    """("any", 1), ("all", 0) for "any[1].all[0]"; None when it is not such a path."""
    steps: list[tuple[str, int | None]] = []
    for part in group_path.split("."):
        match = _GROUP_STEP.fullmatch(part)
        if match is None:
            return None
        if match.group(3):
            steps.append(("not", None))
        else:
            steps.append((match.group(1), int(match.group(2))))
    return steps


def group_path(steps: Sequence[tuple[str, int | None]]) -> str:
    return ".".join(kind if index is None else f"{kind}[{index}]" for kind, index in steps)


def nest_conditions(entries: Sequence[tuple[str, Leaf]]) -> list[Leaf] | tuple[str, Any]:
    """Conditions in position order, each with its group path, as a tree: a list when none
    has a path (a flat list), else ("all" | "any", [children]) or ("not", child) with the
    leaves in their places. Raises ConditionError naming the first condition (1-based) whose
    path is malformed or contradicts another's."""
    if all(not path for path, _ in entries):
        return [leaf for _, leaf in entries]
    walks: list[tuple[int, list[tuple[str, int | None]], Leaf]] = []
    for number, (path, leaf) in enumerate(entries, start=1):
        steps = group_steps(path) if path else None
        if steps is None:
            shown = "a flat list's" if not path else repr(path)
            raise ConditionError(f"condition {number}: group path {shown} does not fit the"
                                 ' others; use paths like "any[1].all[0]" or "not"')  # fmt: skip
        walks.append((number, steps, leaf))
    return _nest(walks, [])


def _nest(
    walks: list[tuple[int, list[tuple[str, int | None]], Leaf]],
    above: list[tuple[str, int | None]],
) -> tuple[str, Any]:
    """The group that `walks` (each: condition number, the steps left, the leaf) are in;
    `above` the steps that led here, for messages."""
    kinds = {steps[0][0] for _, steps, _ in walks}
    if len(kinds) != 1:
        number = walks[-1][0]
        where = f" at {group_path(above)!r}" if above else ""
        both = " and ".join(sorted(kinds))
        raise ConditionError(f"condition {number}: its group path contradicts another's: one"
                             f" group{where} cannot be both {both}")  # fmt: skip
    kind = kinds.pop()
    slots: dict[int | None, list[tuple[int, list[tuple[str, int | None]], Leaf]]] = {}
    for number, steps, leaf in walks:
        slots.setdefault(steps[0][1], []).append((number, steps[1:], leaf))
    children: list[Any] = []
    for index in sorted(slots, key=lambda i: -1 if i is None else i):
        here = [*above, (kind, index)]
        inside = slots[index]
        if len(inside) == 1 and not inside[0][1]:
            children.append(inside[0][2])
        elif any(not steps for _, steps, _ in inside):
            number = inside[-1][0]  # the second to claim the place
            raise ConditionError(f"condition {number}: {group_path(here)!r} is given to more"
                                 " than one condition or group")  # fmt: skip
        else:
            children.append(_nest(inside, here))
    return (kind, children[0]) if kind == "not" else (kind, children)


def walk_conditions(tree: list[Leaf] | tuple[str, Any]) -> list[tuple[str, Leaf]]:
    """The leaves of a tree as nest_conditions gives it, in order, each with its group path
    ("" for a flat list's): what nest_conditions takes back."""
    if isinstance(tree, list):
        return [("", leaf) for leaf in tree]
    found: list[tuple[str, Leaf]] = []

    def visit(node: Any, where: str) -> None:
        if isinstance(node, tuple) and node and node[0] in GROUP_KINDS:
            kind, inside = node
            prefix = f"{where}." if where else ""
            if kind == "not":
                visit(inside, f"{prefix}not")
            else:
                for index, child in enumerate(inside):
                    visit(child, f"{prefix}{kind}[{index}]")
        else:
            found.append((where, node))

    visit(tree, "")
    return found


def evaluate_tree(node: ConditionNode, holds: Callable[[Condition], bool]) -> bool:
    """Whether a tree holds, given whether each of its conditions does."""
    if isinstance(node, AllGroup):
        return all(evaluate_tree(child, holds) for child in node.children)
    if isinstance(node, AnyGroup):
        return any(evaluate_tree(child, holds) for child in node.children)
    if isinstance(node, NotGroup):
        return not evaluate_tree(node.child, holds)
    return holds(node)


# -- parsing --------------------------------------------------------------------------------


def parse_conditions(rows: Sequence[Mapping[str, Any]]) -> ParsedConditions:
    """Rows with keys condition_type, field, operator, value and optional config (a dict)
    and group_path (where the condition is in a tree of groups; absent or empty: a flat
    list); their order is their position. Raises ConditionError for the first problem."""
    parsed = [
        parse_condition(position, row, str(row.get("group_path") or "") or None)
        for position, row in enumerate(rows, start=1)
    ]
    stateful = tuple(c for c in parsed if isinstance(c, EmaThreshold | RateLimit))
    summaries = tuple(c for c in parsed if isinstance(c, ReputationThreshold | ValidationThreshold))
    changes = tuple(c for c in parsed if isinstance(c, ChangeCondition))
    silences = [c for c in parsed if isinstance(c, Silence)]
    if silences:
        return _silence_trigger(rows, parsed, silences)
    nested = nest_conditions([(str(row.get("group_path") or ""), condition)
                              for row, condition in zip(rows, parsed, strict=True)])  # fmt: skip
    if isinstance(nested, list):
        fields = tuple(c for c in parsed if isinstance(c, FieldCondition))
        return ParsedConditions(fields, stateful, summaries, changes=changes)
    tree = _tree(nested)
    top = tree.children if isinstance(tree, AllGroup) else ()
    fields = tuple(c for c in top if isinstance(c, FieldCondition))
    return ParsedConditions(fields, stateful, summaries, tree, changes)


def _silence_trigger(
    rows: Sequence[Mapping[str, Any]], parsed: list[Condition], silences: list[Silence]
) -> ParsedConditions:
    """A trigger that fires on silence: its one silence condition and field conditions that
    choose the events that end (or, with `after`, start) a silent period, in a flat list."""
    silence = silences[0]
    label = f"condition {silence.position} (silence)"
    if len(silences) > 1:
        raise ConditionError(f"condition {silences[1].position} (silence): a trigger has at"
                             " most one silence condition")  # fmt: skip
    for row, condition in zip(rows, parsed, strict=True):
        if row.get("group_path"):
            raise ConditionError(f"{label}: a silence trigger's conditions are a flat list"
                                 " (all of them choose the events that end the silence), not"
                                 " groups")  # fmt: skip
        if not isinstance(condition, FieldCondition | Silence):
            raise ConditionError(f"{label}: a silence trigger fires on time alone; condition"
                                 f" {condition.position} keeps state or reads summaries: make"
                                 " it a trigger of its own")  # fmt: skip
    fields = tuple(c for c in parsed if isinstance(c, FieldCondition))
    if silence.after is not None:
        for condition in fields:
            if condition.field == "event_type":
                raise ConditionError(f"condition {condition.position} ({condition.condition_type}):"
                                     " with config.after, the silence needs both the event that"
                                     " starts it and those that end it: leave the event type"
                                     " out")  # fmt: skip
    return ParsedConditions(fields, silence=silence)


def _tree(node: Any) -> ConditionNode:
    if not (isinstance(node, tuple) and node and node[0] in GROUP_KINDS):
        return node  # type: ignore[no-any-return]
    kind, inside = node
    if kind == "not":
        return NotGroup(_tree(inside))
    children = tuple(_tree(child) for child in inside)
    return AllGroup(children) if kind == "all" else AnyGroup(children)


def parse_condition(position: int, row: Mapping[str, Any], where: str | None = None) -> Condition:
    """One condition from its row; `where`, when given, is its place in a tree of groups
    ("any[1].all[0]"), which its messages name instead of its position. A
    reputation_threshold naming a saved lens (config.lens_name) needs the lens's definition
    in `row["saved_lens"]` (None: the owner has no lens by that name)."""
    condition_type = str(row.get("condition_type") or "")
    named = f"conditions.{where}" if where else f"condition {position}"
    label = f"{named} ({condition_type or 'no type'})"

    def problem(message: str, where: str | None = None) -> ConditionError:
        return ConditionError(f"{label}: {where + ': ' if where else ''}{message}", where)

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

    if condition_type == SILENCE_CONDITION_TYPE:
        return _silence(position, field_name, operator, value, config, problem)
    if condition_type in CHANGE_CONDITION_TYPES:
        return _change_condition(condition_type, position, field_name, operator, value, config,
                                 problem)  # fmt: skip
    if condition_type in SUMMARY_CONDITION_TYPES:
        return _summary_condition(condition_type, position, field_name, operator, value,
                                  config, row.get("saved_lens"), problem)  # fmt: skip
    if condition_type in STATEFUL_CONDITION_TYPES:
        if operator not in COMPARISONS:
            raise problem(f"operator {operator} does not compare numbers; use one of "
                          f"{', '.join(COMPARISONS)}")  # fmt: skip
        threshold = parse_number(value, problem)
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
        if abs(threshold) > MAX_RATE_THRESHOLD:
            raise problem(
                f"a rate_limit counts up to {MAX_RATE_THRESHOLD:,} events in its"
                " window: compare with a number no larger (or shorten the window)"
            )
        return RateLimit(position, field_name, operator, threshold,
                         _window(config.get("time_window"), problem), reset, scope)  # fmt: skip

    allowed_fields = FIELD_CONDITION_TYPES.get(condition_type)
    if allowed_fields is None:
        # The seed's shortcuts are each a `field` condition on one field: named last, briefly.
        known = ", ".join([*STATEFUL_CONDITION_TYPES, *CHANGE_CONDITION_TYPES,
                           SILENCE_CONDITION_TYPE])  # fmt: skip
        raise problem(f"unknown condition type; use field (any event field), {known}, or a"
                      " seed type (agent_id_equals, score_threshold, tag_equals, ...)")  # fmt: skip
    if field_name not in FIELDS:
        raise problem(f"unknown field {field_name!r}")
    if field_name not in allowed_fields:
        raise problem(f"field must be {' or '.join(allowed_fields)}, not {field_name!r}")
    kind = FIELDS[field_name]
    entry = OPERATORS[operator]
    if kind not in entry.kinds:
        raise problem(entry.wrong_kind.format(operator=operator, field=field_name, kind=kind.value))
    return FieldCondition(position, condition_type, field_name, operator,
                          entry.parse(operator, kind, value, field_name, problem))  # fmt: skip


def _change_condition(
    condition_type: str,
    position: int,
    field_name: str,
    operator: str,
    value: str,
    config: Mapping[str, Any],
    problem: Any,
) -> ChangeCondition:
    """An owner_changed, wallet_changed or uri_changed: `field` names what changes and the
    operator is `!=` (the new value differs from the old); the config says which changes."""
    attribute = CHANGE_CONDITION_TYPES[condition_type]
    if field_name != attribute:
        raise problem(f"must be {attribute!r} (what changes), not {field_name!r}", "field")
    if operator != "!=":
        raise problem(f"must be != (the new {attribute} differs from the old), not {operator}",
                      "operator")  # fmt: skip
    if value.strip():
        raise problem("must be empty: the condition compares the new value with the old"
                      " one; to test the new value, add a field condition beside it",
                      "value")  # fmt: skip
    keys = {"owner_changed": (), "wallet_changed": ("change",), "uri_changed": ("on",)}
    for key in config:
        if key not in keys[condition_type]:
            allowed = ", ".join(keys[condition_type]) or "none"
            raise problem(f"unknown key; {condition_type} takes {allowed}", f"config.{key}")
    change = config.get("change", "any")
    if change not in WALLET_CHANGES:
        raise problem(f"must be one of {', '.join(WALLET_CHANGES)}, not {change!r}",
                      "config.change")  # fmt: skip
    on = config.get("on", [])
    if not isinstance(on, list) or ("on" in config and not on):
        raise problem(f"must be a non-empty list of {', '.join(REGISTRATION_ASPECTS)}",
                      "config.on")  # fmt: skip
    for index, aspect in enumerate(on):
        if aspect not in REGISTRATION_ASPECTS:
            raise problem(f"unknown aspect {aspect!r}; use {', '.join(REGISTRATION_ASPECTS)}",
                          f"config.on[{index}]")  # fmt: skip
    return ChangeCondition(position, condition_type, str(change), tuple(dict.fromkeys(on)))


def _silence(
    position: int,
    field_name: str,
    operator: str,
    value: str,
    config: Mapping[str, Any],
    problem: Any,
) -> Silence:
    """`silence >= 24h`: the field is `silence`, the operator >= and the value the duration;
    config.scope (default agent) and config.after (an event type)."""
    if field_name != "silence":
        raise problem(f"must be 'silence', not {field_name!r}", "field")
    if operator != ">=":
        raise problem(f"must be >= (silent for at least the duration), not {operator}",
                      "operator")  # fmt: skip
    seconds = duration_seconds(value)
    if seconds is None:
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
        raise problem(f'{shown} is not a duration like "30s", "15m", "6h" or "1d"', "value")
    if seconds > MAX_SILENCE_SECONDS:
        raise problem("may be at most 3660 days", "value")
    for key in config:
        if key not in ("scope", "after"):
            raise problem("unknown key; silence takes scope and after", f"config.{key}")
    scope = config.get("scope", "agent")
    if scope not in SILENCE_SCOPES:
        raise problem(f"unknown scope {scope!r}; use one of {', '.join(SILENCE_SCOPES)}",
                      "config.scope")  # fmt: skip
    after = config.get("after")
    if after is not None and after not in EVENT_TYPES:
        raise problem(f"must be an event type ({', '.join(EVENT_TYPES)})", "config.after")
    return Silence(position, seconds, str(scope), after)


def _summary_condition(
    condition_type: str,
    position: int,
    field_name: str,
    operator: str,
    value: str,
    config: Mapping[str, Any],
    saved_lens: object,
    problem: Any,
) -> ReputationThreshold | ValidationThreshold:
    """A reputation_threshold or validation_threshold; every problem names its place in the
    condition ("config.clients[1]")."""
    if operator not in THRESHOLD_OPERATORS:
        raise problem(f"{operator} is not a threshold; use one of"
                      f" {', '.join(THRESHOLD_OPERATORS)}", "operator")  # fmt: skip
    summary = SUMMARY_CONDITION_TYPES[condition_type]
    if field_name != summary:
        raise problem(f"must be {summary!r} (the summary compared), not {field_name!r}", "field")
    try:
        threshold = parse_number(value, ConditionError)
    except ConditionError as error:
        raise problem(str(error), "value") from None
    keys = _REPUTATION_KEYS if condition_type == "reputation_threshold" else _VALIDATION_KEYS
    for key in config:
        if key not in keys:
            raise problem(f"unknown key; use {', '.join(keys)}", f"config.{key}")
    if condition_type == "validation_threshold":
        validators = _addresses(config.get("validators", []), "config.validators", problem,
                                empty_allowed=True)  # fmt: skip
        return ValidationThreshold(position, operator, threshold,
                                   tuple(dict.fromkeys(validators)),
                                   _tag(config, "tag", problem))  # fmt: skip
    sources = [key for key in ("clients", "lens", "lens_name") if key in config]
    if len(sources) != 1:
        given = f"not {' and '.join('config.' + key for key in sources)}; " if sources else ""
        raise problem(f"{given}give one of config.clients (the spec's summary over those"
                      " clients), config.lens (a lens definition) or config.lens_name (a"
                      " saved lens of yours)", "config")  # fmt: skip
    if sources == ["clients"]:
        clients = _addresses(config["clients"], "config.clients", problem, empty_allowed=False)
        return ReputationThreshold(position, operator, threshold, tuple(clients),
                                   _tag(config, "tag1", problem),
                                   _tag(config, "tag2", problem))  # fmt: skip
    for key in ("tag1", "tag2"):
        if key in config:
            raise problem(f"goes with config.clients; a lens has its own {key}", f"config.{key}")
    if sources == ["lens"]:
        return ReputationThreshold(position, operator, threshold,
                                   lens=_lens(config["lens"], "config.lens", problem))  # fmt: skip
    name = config["lens_name"]
    if not isinstance(name, str) or not name:
        raise problem("must be the name of one of your saved lenses", "config.lens_name")
    if saved_lens is None:
        raise problem(f"you have no saved lens named {name!r}", "config.lens_name")
    return ReputationThreshold(position, operator, threshold,
                               lens=_lens(saved_lens, "config.lens_name", problem),
                               lens_name=name)  # fmt: skip


def _addresses(value: object, where: str, problem: Any, *, empty_allowed: bool) -> list[str]:
    """A list of addresses, lower case, in the order given."""
    if not isinstance(value, list) or (not value and not empty_allowed):
        kind = "a list" if empty_allowed else "a non-empty list"
        raise problem(f"must be {kind} of addresses (0x and 40 hex digits)", where)
    if len(value) > MAX_SUMMARY_ADDRESSES:
        raise problem(f"at most {MAX_SUMMARY_ADDRESSES} addresses", where)
    addresses = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _ADDRESS.match(item):
            raise problem("is not an address (0x and 40 hex digits)", f"{where}[{index}]")
        addresses.append(item.lower())
    return addresses


def _tag(config: Mapping[str, Any], key: str, problem: Any) -> str:
    tag = config.get(key, "")
    if not isinstance(tag, str) or len(tag) > MAX_SUMMARY_TAG:
        raise problem(f"must be a text of at most {MAX_SUMMARY_TAG} characters (empty: any)",
                      f"config.{key}")  # fmt: skip
    return tag


def _lens(definition: object, where: str, problem: Any) -> Lens:
    # Imported here: agents.lenses imports this module (duration_seconds).
    from erc8004_backend.agents.lenses import LensError, parse_lens

    try:
        return parse_lens(definition, where)
    except LensError as error:
        raise problem(str(error).removeprefix(f"{error.details[0]['field']}: "),
                      error.details[0]["field"]) from None  # fmt: skip


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
    """Whether an event (its fields, as `event_fields` gives them) meets the condition, by its
    operator's entry in the table (operators.py); a field the event does not have meets
    only IS NULL, != and NOT IN."""
    actual = fields.get(condition.field)
    entry = OPERATORS[condition.operator]
    if actual is None:
        return entry.if_missing
    return bool(entry.test(comparable(FIELDS[condition.field], actual), condition.value))
