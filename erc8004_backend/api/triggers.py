"""/triggers: a user's triggers with their conditions and actions, written whole or not at
all, checked by the trigger engine's own parsers so that what is stored is what runs."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response, status
from psycopg.types.json import Jsonb
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from erc8004_backend.actions.channels import CHANNELS, channel_spec, parse_action_config
from erc8004_backend.actions.configs import ActionConfigError, storable_config_problem
from erc8004_backend.actions.pagerduty import mask_routing_key, seal_routing_key
from erc8004_backend.actions.rest import (
    CredentialError,
    mask_credentials,
    rotate_webhook_secret,
    seal_credentials,
)
from erc8004_backend.api.dependencies import (
    DIGITS_ONLY,
    TRUE_OR_FALSE,
    CurrentUser,
    Db,
    IsoTime,
    State,
)
from erc8004_backend.api.errors import ApiError, error_responses, not_found
from erc8004_backend.api.events import as_utc
from erc8004_backend.api.pages import decode_cursor, encode_cursor
from erc8004_backend.chain.config import explorer_urls, load_chains
from erc8004_backend.chain.events import REGISTRY_OF
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import SecretBox
from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.conditions import (
    CHANGE_CONDITION_TYPES,
    FIELD_CONDITION_TYPES,
    SILENCE_CONDITION_TYPE,
    STATEFUL_CONDITION_TYPES,
    SUMMARY_CONDITION_TYPES,
    ConditionError,
    nest_conditions,
    parse_condition,
    parse_conditions,
)
from erc8004_backend.triggers.fields import format_value
from erc8004_backend.triggers.operators import OPERATORS
from erc8004_backend.triggers.templates import template_problems

QUERIES = load_queries("erc8004_backend.api", "triggers.sql")
router = APIRouter(prefix="/triggers", tags=["triggers"])

Registry = Literal["identity", "reputation", "validation"]
ChainId = Annotated[int, Field(gt=0, lt=2**63)]
# What the trigger engine knows, listed in the schema as enums. Conditions are checked by
# the engine's parser (check_trigger), which names the condition and the problem.
CONDITION_TYPES = (*FIELD_CONDITION_TYPES, *STATEFUL_CONDITION_TYPES, *CHANGE_CONDITION_TYPES,
                   SILENCE_CONDITION_TYPE)  # fmt: skip
if TYPE_CHECKING:
    ActionType = str  # a Literal made at run time is beyond a type checker
else:
    ActionType = Literal[tuple(CHANNELS)]
NOT_FOUND = error_responses(404, descriptions={404: "No such trigger of yours."})


def _storable(config: dict[str, Any]) -> dict[str, Any]:
    problem = storable_config_problem(config)
    if problem:
        raise ValueError(problem)
    return config


# A config as the API stores it: bounded in depth and size, so that it can be served back.
StoredConfig = Annotated[dict[str, Any], AfterValidator(_storable)]


class _Strict(BaseModel):
    # No unknown fields, no coercions (`true` is not 1, nor "5" a number).
    model_config = ConfigDict(extra="forbid", strict=True)


class ConditionIn(_Strict):
    condition_type: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"enum": list(CONDITION_TYPES)})
    ]
    field: Annotated[str, Field(min_length=1, max_length=64)]
    operator: Annotated[
        str, Field(min_length=1, max_length=16, json_schema_extra={"enum": list(OPERATORS)})
    ]
    value: Annotated[str, Field(max_length=10_000)] = ""
    config: StoredConfig = Field(default_factory=dict)

    @field_validator("value", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        # Values are stored as text; a JSON number is taken as its text.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value


# A trigger's conditions are a flat list (all must hold) or a tree of groups; the API's
# paths name a place in the tree as `conditions.any[1].all[0]`.
MAX_CONDITIONS = 50  # in all, wherever they are in the tree
MAX_GROUP_DEPTH = 8  # groups inside groups: a top-level group is at depth 1


def _node_kind(value: Any) -> str:
    """Which model a node of the tree is: a group by its one key, else a condition. The
    tags are pydantic's, not the request's: error locations leave them out."""
    if isinstance(value, dict):
        for kind in ("all", "any", "not"):
            if kind in value:
                return f"<{kind}>"
    for model, kind in ((AllIn, "<all>"), (AnyIn, "<any>"), (NotIn, "<not>")):
        if isinstance(value, model):
            return kind
    return "<condition>"


def _tree_kind(value: Any) -> str | None:
    """A flat list, or a group at the top of a tree (None: neither)."""
    if isinstance(value, list):
        return "<list>"
    kind = _node_kind(value)
    return None if kind == "<condition>" else kind


ConditionNode = Annotated[
    Annotated[ConditionIn, Tag("<condition>")]
    | Annotated["AllIn", Tag("<all>")]
    | Annotated["AnyIn", Tag("<any>")]
    | Annotated["NotIn", Tag("<not>")],
    Discriminator(_node_kind),
]
GroupChildren = Annotated[list[ConditionNode], Field(min_length=1, max_length=MAX_CONDITIONS)]


class AllIn(_Strict):
    """Holds when every condition or group in it holds."""

    all: GroupChildren


class AnyIn(_Strict):
    """Holds when at least one condition or group in it holds."""

    any: GroupChildren


class NotIn(_Strict):
    """Holds when the condition or group in it does not."""

    model_config = ConfigDict(serialize_by_alias=True)
    not_: ConditionNode = Field(alias="not")


ConditionTree = Annotated[
    Annotated[list[ConditionIn], Field(max_length=MAX_CONDITIONS), Tag("<list>")]
    | Annotated[AllIn, Tag("<all>")]
    | Annotated[AnyIn, Tag("<any>")]
    | Annotated[NotIn, Tag("<not>")],
    Discriminator(
        _tree_kind,
        custom_error_type="conditions",
        custom_error_message='must be a list of conditions or a group: {"all": [...]},'
        ' {"any": [...]} or {"not": {...}}',
    ),
    Field(
        description='A list of conditions that must all hold, or a group: `{"all": [...]}`,'
        ' `{"any": [...]}` or `{"not": {...}}`, whose items are conditions or groups'
        f" (at most {MAX_GROUP_DEPTH} groups deep, {MAX_CONDITIONS} conditions in all)."
    ),
]


def condition_leaves(tree: Any) -> list[tuple[str, str, ConditionIn]]:
    """The conditions of a tree (ConditionTree) in order, each with where it is for
    messages ("conditions[2]", "conditions.any[1].all[0]") and its group path ("" in a flat
    list, "any[1].all[0]")."""
    if isinstance(tree, list):
        return [(f"conditions[{index}]", "", leaf) for index, leaf in enumerate(tree)]
    found: list[tuple[str, str, ConditionIn]] = []

    def visit(node: Any, path: str) -> None:
        prefix = f"{path}." if path else ""
        if isinstance(node, NotIn):
            visit(node.not_, f"{prefix}not")
        elif isinstance(node, AllIn | AnyIn):
            kind = "all" if isinstance(node, AllIn) else "any"
            for index, child in enumerate(getattr(node, kind)):
                visit(child, f"{prefix}{kind}[{index}]")
        else:
            found.append((f"conditions.{path}", path, node))

    visit(tree, "")
    return found


def _too_deep(tree: Any) -> str | None:
    """The path of the first group deeper than MAX_GROUP_DEPTH, if any."""

    def visit(node: Any, path: str, depth: int) -> str | None:
        if not isinstance(node, AllIn | AnyIn | NotIn):
            return None
        if depth > MAX_GROUP_DEPTH:
            return path
        if isinstance(node, NotIn):
            return visit(node.not_, f"{path}.not", depth + 1)
        kind = "all" if isinstance(node, AllIn) else "any"
        for index, child in enumerate(getattr(node, kind)):
            found = visit(child, f"{path}.{kind}[{index}]", depth + 1)
            if found:
                return found
        return None

    return None if isinstance(tree, list) else visit(tree, "conditions", 1)


class ActionIn(_Strict):
    id: uuid.UUID | None = Field(
        default=None,
        strict=False,  # JSON has no UUID type: its text
        description="On replace: keep this existing action (and its queued jobs).",
    )
    action_type: ActionType
    priority: Annotated[int, Field(ge=1, le=100)] = 1
    config: StoredConfig = Field(default_factory=dict)


class TriggerIn(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] | None = None
    chain_id: ChainId
    registry: Registry
    enabled: bool = True
    is_stateful: bool = False
    cooldown_seconds: Annotated[int, Field(ge=0, le=366 * 86400)] = 0
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 10
    conditions: ConditionTree = Field(default_factory=list)
    actions: Annotated[list[ActionIn], Field(min_length=1, max_length=10)]


class TriggerPatch(_Strict):
    """Any subset of a trigger's settings; `conditions` or `actions`, when given, replace
    the whole list."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    chain_id: ChainId | None = None
    registry: Registry | None = None
    enabled: bool | None = None
    is_stateful: bool | None = None
    cooldown_seconds: Annotated[int, Field(ge=0, le=366 * 86400)] | None = None
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] | None = None
    conditions: ConditionTree | None = None
    actions: Annotated[list[ActionIn], Field(min_length=1, max_length=10)] | None = None


class ConditionOut(BaseModel):
    id: uuid.UUID
    condition_type: str
    field: str
    operator: str
    value: str
    config: dict[str, Any]


class AllOut(BaseModel):
    all: list[ConditionNodeOut]


class AnyOut(BaseModel):
    any: list[ConditionNodeOut]


class NotOut(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)
    not_: ConditionNodeOut = Field(alias="not")


ConditionNodeOut = ConditionOut | AllOut | AnyOut | NotOut


class ActionOut(BaseModel):
    id: uuid.UUID
    action_type: str
    priority: int
    config: dict[str, Any]


class TriggerOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    chain_id: int
    registry: str
    enabled: bool
    is_stateful: bool
    cooldown_seconds: int
    failure_threshold: int
    consecutive_failures: int = Field(description="Failed deliveries since the last success.")
    disabled_reason: str | None = Field(description="Why the circuit breaker opened.")
    disabled_at: datetime | None = Field(description="When the circuit breaker opened.")
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime
    has_webhook_secret: bool
    conditions: list[ConditionOut] | AllOut | AnyOut | NotOut = Field(
        description="As given: a list of conditions that must all hold, or a tree of groups."
    )
    actions: list[ActionOut]


class ReplayFrom(_Strict):
    """Where a replay starts: a block, or a block time (exactly one of them); and where it
    ends, if before the processor's cursor: a block or a block time (at most one)."""

    from_block: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    from_time: IsoTime | None = None
    to_block: Annotated[int, Field(ge=0, lt=2**63)] | None = Field(
        default=None, description="The last block it covers (default: where the processor is)."
    )
    to_time: IsoTime | None = Field(
        default=None, description="The latest block time it covers (default: the processor's)."
    )

    @model_validator(mode="after")
    def _a_range(self) -> ReplayFrom:
        if (self.from_block is None) == (self.from_time is None):
            raise ValueError("give exactly one of from_block and from_time")
        if self.to_block is not None and self.to_time is not None:
            raise ValueError("give at most one of to_block and to_time")
        if self.to_block is not None and (self.from_block or 0) > self.to_block:
            raise ValueError(f"from_block {self.from_block} is after to_block {self.to_block}")
        start, end = as_utc(self.from_time), as_utc(self.to_time)
        if start is not None and end is not None and start > end:
            raise ValueError("from_time is after to_time")
        return self


class TriggerNew(TriggerIn):
    replay_from: ReplayFrom | None = Field(
        default=None,
        description="History on purpose: also queue the trigger's jobs for the stored events"
        " from this block or time on (a replay; see POST /triggers/{id}/replays).",
    )


class ReplayOut(BaseModel):
    id: int
    from_block: int | None
    from_time: datetime | None
    to_block: int | None = Field(description="Its own end, if it was given one.")
    to_time: datetime | None
    end_block: int | None = Field(
        description="The last event it can cover (with end_log_index): the chain's processing"
        " cursor when the processor took it up; null while pending. Later events are the"
        " live processor's."
    )
    end_log_index: int | None
    cursor_block: int = Field(description="Its progress: the last event it evaluated (-1: none).")
    cursor_log_index: int
    status: Literal["pending", "running", "done", "cancelled"] = Field(
        description="pending (waits for the processor, or for its trigger to be on), running,"
        " done or cancelled."
    )
    error: str | None = Field(description="Why the processor cancelled it.")
    events: int = Field(description="Events it evaluated so far.")
    firings: int
    jobs: int = Field(
        description="Jobs it queued: one per action of each firing whose event had none yet."
    )
    created_at: datetime
    finished_at: datetime | None


class TriggerCreated(TriggerOut):
    webhook_secret: str | None = Field(
        description="Signs this trigger's webhooks (see the README): shown this once. Present"
        " when the trigger has a REST action."
    )


class TriggerNewOut(TriggerCreated):
    replay: ReplayOut | None = Field(description="The replay `replay_from` asked for.")


class TriggerPage(BaseModel):
    items: list[TriggerOut]
    next_cursor: str | None


class WebhookSecret(BaseModel):
    webhook_secret: str = Field(description="The new secret, shown this once.")


# A backtest holds its events and every firing's messages in the API's memory, and answers
# them in one body: a user's request reads at most this many (`erc8004 triggers test`, the
# operator's, up to triggers.backtest.MAX_EVENTS).
MAX_API_BACKTEST_EVENTS = 100_000


class BacktestIn(_Strict):
    from_block: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    to_block: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    from_time: IsoTime | None = None
    to_time: IsoTime | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_API_BACKTEST_EVENTS)] = MAX_API_BACKTEST_EVENTS
    replay: bool = Field(
        default=False,
        description="What a replay from from_block or from_time (exactly one), to to_block or"
        " to_time if given (at most one), requested now would cover: the events up to the"
        " processing cursor at most, and for each firing the jobs it would queue (new_jobs).",
    )

    @model_validator(mode="after")
    def check_ordered(self) -> BacktestIn:
        if self.replay and self.to_block is not None and self.to_time is not None:
            raise ValueError("a replay ends at a block or a time: give at most one of them")
        if self.replay and (self.from_block is None) == (self.from_time is None):
            raise ValueError("a replay starts from a block or a time: give one of them")
        if (self.from_block, self.to_block) != (None, None) and (
            (self.from_block or 0) > (self.to_block if self.to_block is not None else 2**63)
        ):
            raise ValueError("from_block is after to_block")
        start, end = as_utc(self.from_time), as_utc(self.to_time)
        if start and end and start > end:
            raise ValueError("from_time is after to_time")
        return self


class MessagePreview(BaseModel):
    action_id: uuid.UUID
    action_type: str
    priority: int
    text: str | None = Field(
        default=None, description="telegram: the message, escaped for its parse_mode."
    )
    body: Any = Field(default=None, description="rest: the JSON body of its body_template.")


class Firing(BaseModel):
    event_id: int | None = Field(
        description="The event it fired for; a silence's: the event that started the silent"
        " period (null: the period ran from the trigger's start)."
    )
    block_number: int
    log_index: int
    block_time: datetime
    event_type: str
    agent_id: str | None
    computed: dict[str, str]
    messages: list[MessagePreview] = Field(
        description="What its Telegram and webhook actions would have sent (links to the"
        " explorers of the shipped chains); MCP calls and webhooks without a body_template"
        " have none."
    )
    new_jobs: int | None = Field(
        default=None,
        description="With replay: the jobs a replay would queue for it (its actions that have"
        " no job for the event yet; 0: delivered already).",
    )


class Position(BaseModel):
    block_number: int
    log_index: int


class BacktestOut(BaseModel):
    trigger_id: uuid.UUID
    events_checked: int
    replay_end: Position | None = Field(
        default=None,
        description="With replay: the processing cursor, the last event a replay requested"
        " now could cover (one with an earlier to_block or to_time ends before it).",
    )
    matched: int = Field(
        description="Events the trigger saw: those that met its field conditions that must all"
        " hold (a list's, or a top-level all's); its stateful conditions took them in."
    )
    fired: list[Firing]


# -- examples shown in the OpenAPI document ------------------------------------------------

# The seven examples of docs/triggers.md, each as {summary, description, value}.
TRIGGER_EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    resources.files("erc8004_backend.api")
    .joinpath("trigger_examples.json")
    .read_text(encoding="utf-8")
)
AGENT_42 = {
    "condition_type": "agent_id_equals",
    "field": "agent_id",
    "operator": "=",
    "value": "42",
}
NEW_FEEDBACK = {
    "condition_type": "event_type_equals",
    "field": "event_type",
    "operator": "=",
    "value": "NewFeedback",
}
SCORE_BELOW_40 = {
    "condition_type": "score_threshold",
    "field": "score",
    "operator": "<",
    "value": "40",
}
PATCH_EXAMPLES = {
    "quieter": {
        "summary": "At most one firing an hour",
        "value": {"cooldown_seconds": 3600, "description": "Hourly at most"},
    },
    "lower threshold": {
        "summary": "A new list of conditions",
        "value": {"conditions": [AGENT_42, SCORE_BELOW_40]},
    },
    "off": {"summary": "Switch it off", "value": {"enabled": False}},
}
BACKTEST_EXAMPLES = {
    "blocks": {
        "summary": "A range of blocks",
        "value": {"from_block": 24_000_000, "to_block": 24_100_000},
    },
    "week": {
        "summary": "A week, at most 10,000 events",
        "value": {
            "from_time": "2026-03-02T00:00:00Z",
            "to_time": "2026-03-09T00:00:00Z",
            "limit": 10_000,
        },
    },
}
# Beyond the seven: template filters and explorer links (docs/triggers.md#templates shows
# the same body).
TEMPLATE_EXAMPLES: dict[str, dict[str, Any]] = {
    "formatted-messages": {
        "summary": "Formatted values and explorer links",
        "description": "Agent 42's feedback, its score with two decimals, the client shortened,"
        " the block time in UTC, links to the transaction and the client on the explorer.",
        "value": {
            "name": "Feedback for agent 42, formatted",
            "chain_id": 84532,
            "registry": "reputation",
            "conditions": [
                AGENT_42,
                NEW_FEEDBACK,
            ],
            "actions": [
                {
                    "action_type": "telegram",
                    "priority": 1,
                    "config": {
                        "chat_id": "123456789",
                        "message_template": "Agent #{{agent_id}} scored {{score|fixed:2}}"
                        " from {{client_address|short}} at {{timestamp|iso}}"
                        " (tag: {{tag1|default:none}})\nTransaction: {{transaction_url}}"
                        "\nClient: {{address_url}}",
                    },
                },
                {
                    "action_type": "rest",
                    "priority": 2,
                    "config": {
                        "url": "https://api.example.com/agents/{{agent_id}}/feedback",
                        "body_template": {
                            "score": "{{score|fixed:2}}",
                            "client": "{{client_address}}",
                            "client_short": "{{client_address|short}}",
                            "at": "{{timestamp|iso}}",
                            "tag": "{{tag1|upper|default:NONE}}",
                            "transaction": "{{transaction_url}}",
                            "block": "{{block_url}}",
                            "client_page": "{{address_url}}",
                        },
                    },
                },
            ],
        },
    },
}
# Conditions as a tree of groups (docs/triggers.md#groups shows the same body).
GROUP_EXAMPLES: dict[str, dict[str, Any]] = {
    "grouped-conditions": {
        "summary": "Conditions in all / any / not groups",
        "description": "Agent 42's feedback with a low score or a refund tag, except from its"
        " own test client.",
        "value": {
            "name": "Agent 42: low scores or refunds, not from our tester",
            "chain_id": 84532,
            "registry": "reputation",
            "conditions": {
                "all": [
                    AGENT_42,
                    NEW_FEEDBACK,
                    {
                        "any": [
                            SCORE_BELOW_40,
                            {
                                "condition_type": "tag_equals",
                                "field": "tag1",
                                "operator": "=",
                                "value": "refund",
                            },
                        ]
                    },
                    {
                        "not": {
                            "condition_type": "field",
                            "field": "client_address",
                            "operator": "IN",
                            "value": '["0x5b38da6a701c568545dcfcb03fcb875f56beddc4"]',
                        }
                    },
                ]
            },
            "actions": [
                {
                    "action_type": "telegram",
                    "priority": 1,
                    "config": {
                        "chat_id": "123456789",
                        "message_template": "Agent #{{agent_id}}: score {{score}}, tag"
                        " {{tag1|default:none}}, from {{client_address|short}}",
                    },
                }
            ],
        },
    },
}
SILENCE_EXAMPLES: dict[str, dict[str, Any]] = {
    "silence": {
        "summary": "A silence: no feedback for a day",
        "description": "Fires once per silent period of block time: a day after agent 42's"
        " last feedback (or the trigger's start) with none since.",
        "value": {
            "name": "Agent 42 went quiet",
            "chain_id": 8453,
            "registry": "reputation",
            "is_stateful": True,
            "conditions": [
                AGENT_42,
                NEW_FEEDBACK,
                {"condition_type": "silence", "field": "silence", "operator": ">=", "value": "24h"},
            ],
            "actions": [
                {
                    "action_type": "telegram",
                    "priority": 1,
                    "config": {
                        "chat_id": "123456789",
                        "message_template": "Agent {{agent_id}}: no feedback since"
                        " {{silent_since|iso}}",
                    },
                }
            ],
        },
    },
}
DIGEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "digest": {
        "summary": "A digest: feedback to agent 42 every 15 minutes, in one Slack message",
        "description": "Each 15-minute window's firings in one message: how many, and the"
        " first 10, each in the action's text (docs/triggers.md, Digests).",
        "value": {
            "name": "Agent 42 feedback digest",
            "chain_id": 8453,
            "registry": "reputation",
            "conditions": [AGENT_42, NEW_FEEDBACK],
            "actions": [
                {
                    "action_type": "slack",
                    "priority": 1,
                    "config": {
                        "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
                        "text_template": "Agent {{agent_id}}: {{score}} from"
                        " {{client_address|short}}",
                        "digest": {"window_seconds": 900, "max_items": 10},
                    },
                }
            ],
        },
    },
}
TriggerBody = Annotated[
    TriggerIn,
    Body(
        openapi_examples={
            **TRIGGER_EXAMPLES,
            **TEMPLATE_EXAMPLES,
            **GROUP_EXAMPLES,
            **SILENCE_EXAMPLES,
            **DIGEST_EXAMPLES,
        }
    ),
]
REPLAY_EXAMPLES = {
    "block": {"summary": "From a block", "value": {"from_block": 24_000_000}},
    "time": {"summary": "From a time", "value": {"from_time": "2026-03-02T00:00:00Z"}},
    "range": {"summary": "A range of blocks",
              "value": {"from_block": 24_000_000, "to_block": 24_100_000}},
}  # fmt: skip
# The same examples as for PUT (the documentation's); `replay_from` has its own (README).
NewTriggerBody = Annotated[
    TriggerNew,
    Body(
        openapi_examples={
            **TRIGGER_EXAMPLES,
            **TEMPLATE_EXAMPLES,
            **GROUP_EXAMPLES,
            **SILENCE_EXAMPLES,
            **DIGEST_EXAMPLES,
        }
    ),
]


@functools.cache
def shipped_explorers() -> dict[int, str]:
    """Chain id -> block explorer of the shipped chains, for the links of previews."""
    return explorer_urls(load_chains([]).values())


# -- checking ------------------------------------------------------------------------------


def check_trigger(trigger: TriggerIn, saved_lenses: dict[str, Any] | None = None) -> None:
    """Everything the engine would refuse later, refused now: ApiError 422 naming the
    condition or action and the problem. `saved_lenses` holds the definitions of the user's
    saved lenses that conditions name (saved_lenses_named), by name."""
    problems: list[dict[str, str]] = []
    leaves = condition_leaves(trigger.conditions)
    if len(leaves) > MAX_CONDITIONS:
        problems.append({"field": "conditions",
                         "message": f"at most {MAX_CONDITIONS} conditions in all"})  # fmt: skip
    too_deep = _too_deep(trigger.conditions)
    if too_deep:
        problems.append({"field": too_deep,
                         "message": f"groups nest at most {MAX_GROUP_DEPTH} deep"})  # fmt: skip
    for position, (where, path, condition) in enumerate(leaves, start=1):
        named = where if path else f"condition {position}"
        row = condition.model_dump()
        lens_name = condition.config.get("lens_name")
        if isinstance(lens_name, str):
            row["saved_lens"] = (saved_lenses or {}).get(lens_name)
        try:
            parse_condition(position, row, path or None)
        except ConditionError as error:
            field = f"{where}.{error.field}" if error.field else where
            problems.append({"field": field, "message": str(error)})
            continue
        registry = SUMMARY_CONDITION_TYPES.get(condition.condition_type)
        if condition.condition_type in CHANGE_CONDITION_TYPES:
            registry = "identity"  # owner, wallet and URI changes are identity events
        if registry is not None and trigger.registry != registry:
            problems.append({
                "field": f"{where}.condition_type",
                "message": f"{named} ({condition.condition_type}) reads the"
                f" {registry} registry's events: the trigger's registry must be {registry}",
            })  # fmt: skip
        if condition.condition_type == SILENCE_CONDITION_TYPE:
            problems.extend(_silence_problems(trigger, where, named, condition.config))
        if (
            condition.condition_type in (*STATEFUL_CONDITION_TYPES, SILENCE_CONDITION_TYPE)
            and not trigger.is_stateful
        ):
            problems.append({
                "field": where,
                "message": f"{named} ({condition.condition_type}) keeps state:"
                " set is_stateful to true",
            })  # fmt: skip
    if not problems and any(c.condition_type == SILENCE_CONDITION_TYPE for _, _, c in leaves):
        try:  # what a silence asks of the trigger's other conditions
            parse_conditions([{**c.model_dump(), "group_path": path} for _, path, c in leaves])
        except ConditionError as error:
            problems.append({"field": "conditions", "message": str(error)})
    for index, action in enumerate(trigger.actions):
        where = f"actions[{index}].config"
        try:
            parse_action_config(action.action_type, action.config, strict=True)
        except ActionConfigError as error:
            problems.append({"field": where, "message": str(error)})
            continue
        for path, text in _templates(action.action_type, action.config):
            problems.extend(
                {"field": f"{where}.{path}", "message": f"{action.action_type} action: {problem}"}
                for problem in template_problems(text)
            )
    if problems:
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise ApiError(422, message, details=problems)


def _silence_problems(
    trigger: TriggerIn, where: str, named: str, config: dict[str, Any]
) -> list[dict[str, str]]:
    """A silence's scope and `after` event must be of the trigger's registry."""
    problems = []
    scope_registry = {"client": "reputation", "validator": "validation", "request": "validation"}
    for key, registry in (("scope", scope_registry.get(str(config.get("scope")))),
                          ("after", REGISTRY_OF.get(str(config.get("after"))))):  # fmt: skip
        if registry is not None and trigger.registry != registry:
            problems.append({
                "field": f"{where}.config.{key}",
                "message": f"{named} (silence): {config[key]} is of the {registry} registry's"
                f" events; the trigger watches the {trigger.registry} registry",
            })  # fmt: skip
    return problems


def _templates(action_type: str, config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every template an action renders, with where it is in the config: its channel's
    template settings (a message, a URL), each string of a JSON one
    (`body_template.items[1].text`)."""
    found: list[tuple[str, str]] = []

    def collect(path: str, value: Any) -> None:
        if isinstance(value, str):
            found.append((path, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(f"{path}.{key}", item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                collect(f"{path}[{index}]", item)

    for key in channel_spec(action_type).template_keys:
        collect(key, config.get(key))
    return found


async def saved_lenses_named(conn: Db, user_id: str, trigger: TriggerIn) -> dict[str, Any]:
    """The definitions of the user's saved lenses that the trigger's conditions name."""
    names = [
        name
        for _, _, condition in condition_leaves(trigger.conditions)
        if isinstance(name := condition.config.get("lens_name"), str)
    ]
    if not names:
        return {}
    cursor = await conn.execute(QUERIES["saved_lenses"], {"user_id": user_id, "names": names})
    return {row["name"]: row["definition"] for row in await cursor.fetchall()}


# -- storing -------------------------------------------------------------------------------


# The action types whose configs hold credentials, stored encrypted and shown masked.
CREDENTIAL_SEALERS = {"rest": seal_credentials, "pagerduty": seal_routing_key}
CREDENTIAL_MASKS = {"rest": mask_credentials, "pagerduty": mask_routing_key}


async def _write_rules(conn: Db, box: SecretBox, trigger_id: uuid.UUID, trigger: TriggerIn) -> None:
    """Replace the trigger's conditions; replace its actions, keeping those named by id."""
    await conn.execute(QUERIES["delete_conditions"], {"trigger_id": trigger_id})
    async with conn.cursor() as cursor:
        await cursor.executemany(
            QUERIES["insert_condition"],
            [
                {"trigger_id": trigger_id, "position": position, **condition.model_dump(),
                 "config": Jsonb(condition.config), "group_path": path}
                for position, (_, path, condition)
                in enumerate(condition_leaves(trigger.conditions))
            ],
        )  # fmt: skip
    existing = {row["id"]: row["config"] for row in await (
        await conn.execute(QUERIES["action_configs"], {"trigger_id": trigger_id})
    ).fetchall()}  # fmt: skip
    kept = [action.id for action in trigger.actions if action.id is not None]
    for index, action in enumerate(trigger.actions):
        if action.id is not None and action.id not in existing:
            raise ApiError(
                422, f"actions[{index}].id: {action.id} is not an action of this trigger"
            )
    if len(set(kept)) != len(kept):
        raise ApiError(422, "actions: the same action id is listed twice")
    await conn.execute(QUERIES["delete_actions_except"], {"trigger_id": trigger_id, "keep": kept})
    for position, action in enumerate(trigger.actions):
        # New actions get their id here: their credentials are encrypted naming it.
        action_id = action.id or uuid.uuid4()
        config = action.config
        if seal := CREDENTIAL_SEALERS.get(action.action_type):
            try:
                config = seal(config, box, str(action_id), existing.get(action_id))
            except CredentialError as error:
                where = f"actions[{position}].config"
                details = [{"field": where, "message": str(error)}]
                raise ApiError(422, f"{where}: {error}", details=details) from None
        values = {"trigger_id": trigger_id, "position": position,
                  "action_type": action.action_type, "priority": action.priority,
                  "config": Jsonb(config), "action_id": action_id}  # fmt: skip
        await conn.execute(QUERIES["update_action" if action.id else "insert_action"], values)


def _settings(trigger: TriggerIn) -> dict[str, Any]:
    return trigger.model_dump(exclude={"conditions", "actions", "replay_from"})


async def _request_replay(
    conn: Db, trigger_id: uuid.UUID, user_id: str, start: ReplayFrom
) -> ReplayOut:
    """A replay of the user's trigger (404 if it is not theirs), as stored."""
    inserted = await (await conn.execute(
        QUERIES["insert_replay"],
        {"trigger_id": trigger_id, "user_id": user_id, "from_block": start.from_block,
         "from_time": start.from_time, "to_block": start.to_block, "to_time": start.to_time},
    )).fetchone()  # fmt: skip
    if inserted is None:
        raise not_found("trigger")
    return (await _replays(conn, trigger_id, user_id, inserted["id"]))[0]


async def _replays(
    conn: Db, trigger_id: uuid.UUID, user_id: str, replay_id: int | None = None
) -> list[ReplayOut]:
    cursor = await conn.execute(
        QUERIES["list_replays"],
        {"trigger_id": trigger_id, "user_id": user_id, "replay_id": replay_id},
    )
    return [ReplayOut.model_validate(row) for row in await cursor.fetchall()]


async def _secret_if_needed(
    conn: Db, state: State, trigger_id: uuid.UUID, trigger: TriggerIn, has_secret: bool
) -> str | None:
    """A webhook secret for a trigger that gains its first REST action (shown once)."""
    if has_secret or not any(action.action_type == "rest" for action in trigger.actions):
        return None
    return await rotate_webhook_secret(conn, str(trigger_id), state.secret_box)


async def _read_many(
    conn: Db, box: SecretBox, trigger_ids: list[uuid.UUID], user_id: str
) -> list[TriggerOut]:
    """The user's triggers among `trigger_ids`, in that order (others' are left out), with
    their webhooks' credentials masked."""
    cursor = await conn.execute(
        QUERIES["get_triggers"], {"trigger_ids": trigger_ids, "user_id": user_id}
    )
    found = {}
    for row in await cursor.fetchall():
        row["actions"] = [
            {**action, "config": mask(action["config"], box, action["id"])}
            if (mask := CREDENTIAL_MASKS.get(action["action_type"])) else action
            for action in row["actions"]
        ]  # fmt: skip
        row["conditions"] = _condition_tree(row["conditions"])
        found[row["id"]] = TriggerOut.model_validate(row)
    return [found[trigger_id] for trigger_id in trigger_ids if trigger_id in found]


def _condition_tree(rows: list[dict[str, Any]]) -> Any:
    """Stored conditions (in position order, with their group paths) as the API shows them:
    the list or tree they were given as."""
    entries = [(row.pop("group_path", ""), row) for row in rows]
    try:
        nested = nest_conditions(entries)
    except ConditionError:
        # Rows written by hand whose paths make no tree (the processor refuses the trigger):
        # shown as a flat list rather than not at all.
        return [row for _, row in entries]

    def as_json(node: Any) -> Any:
        if isinstance(node, tuple):
            kind, inside = node
            return {kind: [as_json(child) for child in inside] if kind != "not"
                    else as_json(inside)}  # fmt: skip
        return node

    return nested if isinstance(nested, list) else as_json(nested)


def _without_ids(tree: Any) -> Any:
    """A tree as TriggerOut dumps it, without the conditions' ids: a TriggerIn's."""
    if isinstance(tree, list):
        return [_without_ids(item) for item in tree]
    if "not" in tree:
        return {"not": _without_ids(tree["not"])}
    for kind in ("all", "any"):
        if kind in tree:
            return {kind: _without_ids(tree[kind])}
    return {key: value for key, value in tree.items() if key != "id"}


async def _read(conn: Db, box: SecretBox, trigger_id: uuid.UUID, user_id: str) -> TriggerOut:
    triggers = await _read_many(conn, box, [trigger_id], user_id)
    if not triggers:
        raise not_found("trigger")
    return triggers[0]


# -- routes --------------------------------------------------------------------------------


def _rendered(model: BaseModel, status_code: int = status.HTTP_200_OK) -> Response:
    """The response body, serialized now. Called inside a change's transaction: if the
    response cannot be made, the change is rolled back, and a 500 leaves nothing written."""
    return Response(model.model_dump_json(), status_code, media_type="application/json")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TriggerNewOut)
async def create_trigger(
    body: NewTriggerBody, user: CurrentUser, conn: Db, state: State
) -> Response:
    """Create a trigger with its conditions and actions (all or nothing). A trigger with a
    REST action gets a webhook secret, shown in this response only. With `replay_from`, a
    replay of its history from that block or time is requested too (see `replay`)."""
    check_trigger(body, await saved_lenses_named(conn, user.id, body))
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["insert_trigger"], {"user_id": user.id, **_settings(body)}
        )
        row = await cursor.fetchone()
        assert row is not None
        trigger_id = row["id"]
        await _write_rules(conn, state.secret_box, trigger_id, body)
        secret = await _secret_if_needed(conn, state, trigger_id, body, has_secret=False)
        replay = None
        if body.replay_from is not None:
            replay = await _request_replay(conn, trigger_id, user.id, body.replay_from)
        created = await _read(conn, state.secret_box, trigger_id, user.id)
        return _rendered(
            TriggerNewOut(**created.model_dump(), webhook_secret=secret, replay=replay),
            status.HTTP_201_CREATED,
        )


@router.get("")
async def list_triggers(
    user: CurrentUser,
    conn: Db,
    state: State,
    limit: Annotated[int, Query(ge=1, le=200), DIGITS_ONLY] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    enabled: Annotated[bool | None, TRUE_OR_FALSE] = None,
    chain_id: Annotated[int | None, Query(gt=0, lt=2**63), DIGITS_ONLY] = None,
) -> TriggerPage:
    """The user's triggers, oldest first, a page at a time (pass next_cursor back)."""
    after_time, after_id = decode_cursor(cursor, uuid.UUID) if cursor else (None, None)
    rows = await (await conn.execute(
        QUERIES["list_triggers"],
        {"user_id": user.id, "after_time": after_time, "after_id": after_id,
         "enabled": enabled, "chain_id": chain_id, "limit": limit + 1},
    )).fetchall()  # fmt: skip
    items = await _read_many(conn, state.secret_box, [row["id"] for row in rows[:limit]], user.id)
    more = len(rows) > limit
    last = items[-1] if items and more else None
    return TriggerPage(
        items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None
    )


@router.get("/{trigger_id}", responses=NOT_FOUND)
async def get_trigger(
    trigger_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> TriggerOut:
    """One trigger with its conditions, actions and circuit-breaker state."""
    return await _read(conn, state.secret_box, trigger_id, user.id)


@router.put("/{trigger_id}", response_model=TriggerCreated, responses=NOT_FOUND)
async def replace_trigger(
    trigger_id: uuid.UUID, body: TriggerBody, user: CurrentUser, conn: Db, state: State
) -> Response:
    """Replace a trigger whole. Actions listed with their `id` are kept (with their queued
    jobs); actions left out are removed, and their queued jobs with them."""
    return await _replace(conn, state, user.id, trigger_id, lambda current: body)


@router.patch("/{trigger_id}", response_model=TriggerCreated, responses=NOT_FOUND)
async def update_trigger(
    trigger_id: uuid.UUID,
    body: Annotated[TriggerPatch, Body(openapi_examples=PATCH_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
    state: State,
) -> Response:
    """Change some of a trigger's settings; `conditions` or `actions`, when given, replace
    the whole list (as in PUT)."""
    changes = body.model_dump(exclude_unset=True)
    nulls = [key for key, value in changes.items() if value is None and key != "description"]
    if nulls:
        raise ApiError(422, f"{nulls[0]}: may not be null")

    def merged(current: TriggerOut) -> TriggerIn:
        base = current.model_dump(include=set(TriggerIn.model_fields))
        base["conditions"] = _without_ids(current.model_dump()["conditions"])
        base["actions"] = [a.model_dump() for a in current.actions]
        return TriggerIn.model_validate({**base, **changes})

    return await _replace(conn, state, user.id, trigger_id, merged)


async def _replace(
    conn: Db,
    state: State,
    user_id: str,
    trigger_id: uuid.UUID,
    make: Callable[[TriggerOut], TriggerIn],
) -> Response:
    async with conn.transaction():
        locked = await (await conn.execute(
            QUERIES["lock_own_trigger"], {"trigger_id": trigger_id, "user_id": user_id}
        )).fetchone()  # fmt: skip
        if locked is None:
            raise not_found("trigger")
        current = await _read(conn, state.secret_box, trigger_id, user_id)
        trigger: TriggerIn = make(current)
        check_trigger(trigger, await saved_lenses_named(conn, user_id, trigger))
        await conn.execute(
            QUERIES["update_trigger"],
            {"trigger_id": trigger_id, "user_id": user_id, **_settings(trigger)},
        )
        await _write_rules(conn, state.secret_box, trigger_id, trigger)
        secret = await _secret_if_needed(
            conn, state, trigger_id, trigger, has_secret=current.has_webhook_secret
        )
        updated = await _read(conn, state.secret_box, trigger_id, user_id)
        return _rendered(TriggerCreated(**updated.model_dump(), webhook_secret=secret))


@router.delete("/{trigger_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_trigger(trigger_id: uuid.UUID, user: CurrentUser, conn: Db) -> None:
    """Delete a trigger, its queued jobs and its state; its action results stay (unlinked)."""
    cursor = await conn.execute(
        QUERIES["delete_trigger"], {"trigger_id": trigger_id, "user_id": user.id}
    )
    if await cursor.fetchone() is None:
        raise not_found("trigger")


async def _switch(
    conn: Db, state: State, user_id: str, trigger_id: uuid.UUID, query: str, **values: Any
) -> Response:
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES[query], {"trigger_id": trigger_id, "user_id": user_id, **values}
        )
        if await cursor.fetchone() is None:
            raise not_found("trigger")
        return _rendered(await _read(conn, state.secret_box, trigger_id, user_id))


@router.post("/{trigger_id}/enable", response_model=TriggerOut, responses=NOT_FOUND)
async def enable_trigger(
    trigger_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> Response:
    """Turn the trigger on (and close its circuit breaker if it had opened)."""
    return await _switch(conn, state, user.id, trigger_id, "set_enabled", enabled=True)


@router.post("/{trigger_id}/disable", response_model=TriggerOut, responses=NOT_FOUND)
async def disable_trigger(
    trigger_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> Response:
    """Turn the trigger off; jobs already queued are still delivered."""
    return await _switch(conn, state, user.id, trigger_id, "set_enabled", enabled=False)


@router.post("/{trigger_id}/circuit-breaker/reset", response_model=TriggerOut, responses=NOT_FOUND)
async def reset_circuit_breaker(
    trigger_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> Response:
    """Forget the failed deliveries and close the breaker; the trigger fires again if it
    is enabled."""
    return await _switch(conn, state, user.id, trigger_id, "reset_circuit_breaker")


@router.post("/{trigger_id}/webhook-secret", responses=NOT_FOUND)
async def rotate_secret(
    trigger_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> WebhookSecret:
    """A new webhook secret for the trigger, shown once; the old one stops at once."""
    async with conn.transaction():
        locked = await (await conn.execute(
            QUERIES["lock_own_trigger"], {"trigger_id": trigger_id, "user_id": user.id}
        )).fetchone()  # fmt: skip
        if locked is None:
            raise not_found("trigger")
        secret = await rotate_webhook_secret(conn, str(trigger_id), state.secret_box)
    assert secret is not None
    return WebhookSecret(webhook_secret=secret)


@router.post("/{trigger_id}/test", responses=NOT_FOUND)
async def test_trigger(
    trigger_id: uuid.UUID,
    body: Annotated[BacktestIn, Body(openapi_examples=BACKTEST_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
    state: State,
) -> BacktestOut:
    """What the trigger would have fired for stored events in a block or time range
    (a backtest from empty state; nothing is written or sent)."""
    await _read(conn, state.secret_box, trigger_id, user.id)  # 404 unless it is the user's
    result = await backtest(conn, str(trigger_id), from_block=body.from_block,
                            to_block=body.to_block, from_time=body.from_time,
                            to_time=body.to_time, limit=body.limit,
                            explorers=shipped_explorers(), replay=body.replay)  # fmt: skip
    end = result.replay_end
    return BacktestOut(
        trigger_id=trigger_id,
        events_checked=result.events_checked,
        replay_end=Position(block_number=end[0], log_index=end[1]) if end else None,
        matched=result.matched,
        fired=[
            Firing(event_id=f.event_id, block_number=f.block_number, log_index=f.log_index,
                   block_time=f.block_time, event_type=f.event_type,
                   agent_id=None if f.agent_id is None else str(f.agent_id),
                   computed={k: format_value(v) for k, v in f.computed.items()},
                   messages=[MessagePreview(action_id=uuid.UUID(m.action_id),
                                            action_type=m.action_type, priority=m.priority,
                                            text=m.text, body=m.body)
                             for m in f.messages],
                   new_jobs=f.new_jobs)
            for f in result.fired
        ],
    )  # fmt: skip


@router.post(
    "/{trigger_id}/replays",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, descriptions={404: "No such trigger of yours."}),
)
async def replay_trigger(
    trigger_id: uuid.UUID,
    body: Annotated[ReplayFrom, Body(openapi_examples=REPLAY_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
) -> ReplayOut:
    """Ask for the trigger's history on purpose: its jobs for the stored events from a block
    or a time up to where the processor is when it takes the replay up (or up to `to_block`
    or `to_time`, if before), marked `replay`, through the same
    exactly-once jobs as live ones (an event that has its job already gets none). A replay of
    a trigger that is off waits until it is on. `POST /triggers/{id}/test` with `replay`
    shows what it would cover."""
    async with conn.transaction():
        return await _request_replay(conn, trigger_id, user.id, body)


@router.get("/{trigger_id}/replays", responses=NOT_FOUND)
async def list_replays(
    trigger_id: uuid.UUID, user: CurrentUser, conn: Db, state: State
) -> list[ReplayOut]:
    """The trigger's replays with their progress, newest first (the last 100)."""
    await _read(conn, state.secret_box, trigger_id, user.id)  # 404 unless it is the user's
    return await _replays(conn, trigger_id, user.id)


@router.post(
    "/{trigger_id}/replays/{replay_id}/cancel",
    responses=error_responses(404, descriptions={404: "No such replay of yours."}),
)
async def cancel_replay(
    trigger_id: uuid.UUID,
    replay_id: Annotated[int, Path(ge=1, lt=2**63)],
    user: CurrentUser,
    conn: Db,
) -> ReplayOut:
    """Stop a pending or running replay (the jobs it queued stay); one that has finished is
    left as it is."""
    async with conn.transaction():
        await conn.execute(QUERIES["cancel_replay"],
                           {"trigger_id": trigger_id, "replay_id": replay_id,
                            "user_id": user.id})  # fmt: skip
        replays = await _replays(conn, trigger_id, user.id, replay_id)
    if not replays:
        raise not_found("replay")
    return replays[0]
