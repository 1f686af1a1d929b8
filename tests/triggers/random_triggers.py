"""Hypothesis strategies for random triggers and random reputation histories, shared by the
pure tests of plan_batch (test_plan.py) and the processor-against-backtest test
(test_backtest_equals_processor.py).

A history is a list of events as column values (what ChainEvents writes into `events`); each
is a block of its own, one minute after the last, unless it shares the last one's block.
Revocations and responses name a feedback given before them, as on a chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from erc8004_backend.triggers.conditions import parse_conditions
from erc8004_backend.triggers.index import CompiledTrigger, TriggerAction

CHAIN = 84532
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # ChainEvents' start
AGENTS = (0, 1, 2)
CLIENTS = tuple(f"0x{n:040x}" for n in (1, 2, 3))
TAGS = ("refund", "quality", "")
ORDERING = ("<", "<=", ">", ">=")
COMPARING = (*ORDERING, "=", "!=")
NUMERIC_COLUMNS = frozenset({"agent_id", "feedback_index", "value", "score"})  # numeric in SQL


def _row(condition_type: str, field_name: str, operator: str, value: str,
         config: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"condition_type": condition_type, "field": field_name, "operator": operator,
            "value": value, "config": config or {}}  # fmt: skip


# -- conditions ---------------------------------------------------------------------------------

field_conditions = st.one_of(
    st.builds(lambda agent: _row("agent_id_equals", "agent_id", "=", str(agent)),
              st.sampled_from(AGENTS)),
    st.builds(lambda op, value: _row("score_threshold", "score", op, str(value)),
              st.sampled_from(COMPARING), st.integers(0, 100)),
    st.builds(lambda tag: _row("tag_equals", "tag1", "=", tag), st.sampled_from(TAGS)),
    st.builds(lambda kind: _row("event_type_equals", "event_type", "=", kind),
              st.sampled_from(("NewFeedback", "FeedbackRevoked", "ResponseAppended"))),
    st.builds(lambda clients: _row("field", "client_address", "IN", json.dumps(clients)),
              st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=2)),
    st.just(_row("field", "tag1", "IS NOT NULL", "")),
)  # fmt: skip

scopes = st.sampled_from(("agent", "client", "trigger"))

stateful_conditions = st.one_of(
    st.builds(lambda op, value, size, scope: _row("ema_threshold", "score", op, str(value),
                                                  {"window_size": size, "scope": scope}),
              st.sampled_from(COMPARING), st.integers(0, 100), st.integers(1, 5), scopes),
    st.builds(lambda op, value, minutes, reset, scope: _row(
                  "rate_limit", "feedback_count", op, str(value),
                  {"time_window": f"{minutes}m", "reset_on_trigger": reset, "scope": scope}),
              st.sampled_from(COMPARING), st.integers(1, 4), st.integers(1, 30), st.booleans(),
              scopes),
)  # fmt: skip

# Summary conditions read the read model: only where a database holds one.
summary_conditions = st.builds(
    lambda op, value, clients, tag1: _row("reputation_threshold", "reputation", op, str(value),
                                          {"clients": clients, "tag1": tag1}),
    st.sampled_from(ORDERING), st.integers(0, 100),
    st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=3), st.sampled_from(("", "", "refund")),
)  # fmt: skip


# -- groups -------------------------------------------------------------------------------------


def group_nodes(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An all, any or not group over `children`, as the API writes it."""
    return st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"any": items}),
        children.map(lambda child: {"not": child}),
    )


def condition_trees(leaves: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """A trigger's conditions as the API takes them: a flat list, or a group of nested
    groups and conditions."""
    return st.one_of(
        st.lists(leaves, max_size=3),
        group_nodes(st.recursive(leaves, group_nodes, max_leaves=6)),
    )


def tree_rows(tree: Any) -> list[dict[str, Any]]:
    """The rows that store a tree: its conditions in order, each with the path of its place
    (`group_path`, "any[1].all[0]"; none for a flat list's)."""
    if isinstance(tree, list):
        return [dict(row) for row in tree]
    rows: list[dict[str, Any]] = []

    def visit(node: dict[str, Any], path: str) -> None:
        prefix = f"{path}." if path else ""
        if "not" in node:
            visit(node["not"], f"{prefix}not")
        elif "all" in node or "any" in node:
            kind = "all" if "all" in node else "any"
            for index, child in enumerate(node[kind]):
                visit(child, f"{prefix}{kind}[{index}]")
        else:
            rows.append({**node, "group_path": path})

    visit(tree, "")
    return rows


@dataclass(frozen=True)
class TriggerSpec:
    """A trigger as rows (its conditions as the API stores them) and its settings."""

    conditions: list[dict[str, Any]]
    cooldown_seconds: int = 0
    # Minutes after T0 from which it fires (None: from before the history); earlier events
    # are history for it.
    fires_from_minute: int | None = None
    actions: int = 1

    @property
    def fires_from(self) -> datetime:
        minutes = -1 if self.fires_from_minute is None else self.fires_from_minute
        return T0 + timedelta(minutes=minutes)

    def compiled(self, trigger_id: str) -> CompiledTrigger:
        return CompiledTrigger(
            trigger_id, f"trigger {trigger_id}", CHAIN, "reputation",
            parse_conditions(self.conditions),
            tuple(TriggerAction(f"{trigger_id}-{n}", "rest", n + 1) for n in range(self.actions)),
            self.cooldown_seconds, self.fires_from,
        )  # fmt: skip


def trigger_specs(
    *, summaries: bool = False, history: bool = True, groups: bool = False
) -> st.SearchStrategy[TriggerSpec]:
    """Triggers of up to two field conditions (each narrows what fires) and up to two
    stateful ones (with `summaries`, summary conditions among them), or, with `groups`, as
    often a tree of all, any and not groups over such conditions; with `history`, some fire
    only from a minute within the history."""
    kinds = [stateful_conditions, summary_conditions] if summaries else [stateful_conditions]
    flat = st.builds(lambda fields, stateful: [*fields, *stateful],
                     st.lists(field_conditions, max_size=2),
                     st.lists(st.one_of(*kinds), max_size=2))  # fmt: skip
    trees = condition_trees(st.one_of(field_conditions, *kinds)).map(tree_rows)
    return st.builds(
        lambda conditions, cooldown, start, actions: TriggerSpec(
            conditions, cooldown, start, actions),
        st.one_of(flat, trees) if groups else flat,
        st.sampled_from((0, 0, 120, 600)),
        st.one_of(st.none(), st.integers(0, 40)) if history else st.none(),
        st.integers(1, 2),
    )  # fmt: skip


# -- histories ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEvent:
    event_type: str
    columns: dict[str, Any]
    same_block: bool = False


@dataclass
class _Ledger:
    """The feedback given so far, to revoke and respond to what exists."""

    last_index: dict[tuple[int, str], int] = field(default_factory=dict)
    revoked: set[tuple[int, str, int]] = field(default_factory=set)


def _history(steps: list[tuple[int, int, int, int, str, bool]]) -> list[HistoryEvent]:
    ledger = _Ledger()
    events = []
    for kind, agent, client_number, value, tag1, same_block in steps:
        client = CLIENTS[client_number]
        given = ledger.last_index.get((agent, client), 0)
        if kind == 1 and given and (agent, client, given) not in ledger.revoked:
            ledger.revoked.add((agent, client, given))
            events.append(HistoryEvent("FeedbackRevoked", {
                "agent_id": agent, "client_address": client, "feedback_index": given,
            }, same_block))  # fmt: skip
        elif kind == 2 and given:
            events.append(HistoryEvent("ResponseAppended", {
                "agent_id": agent, "client_address": client, "feedback_index": given,
                "responder": CLIENTS[0], "response_uri": "ipfs://answer",
                "response_hash": "0x" + "11" * 32,
            }, same_block))  # fmt: skip
        else:
            ledger.last_index[agent, client] = given + 1
            events.append(HistoryEvent("NewFeedback", {
                "agent_id": agent, "client_address": client, "feedback_index": given + 1,
                "value": value, "value_decimals": 0, "score": value, "tag1": tag1, "tag2": "",
                "endpoint": "", "file_uri": "", "file_hash": "0x" + "00" * 32,
            }, same_block))  # fmt: skip
    if events:
        events[0] = HistoryEvent(events[0].event_type, events[0].columns, same_block=False)
    return events


def histories(min_size: int = 1, max_size: int = 40) -> st.SearchStrategy[list[HistoryEvent]]:
    """Feedback (most), revocations and responses of three agents from three clients."""
    step = st.tuples(
        st.sampled_from((0, 0, 0, 1, 2)), st.sampled_from(AGENTS), st.integers(0, 2),
        st.integers(0, 100), st.sampled_from(TAGS), st.booleans(),
    )  # fmt: skip
    return st.builds(_history, st.lists(step, min_size=min_size, max_size=max_size))


def event_rows(history: list[HistoryEvent], chain_id: int = CHAIN) -> list[dict[str, Any]]:
    """The history as rows of `events` (by column name), as ChainEvents would store it:
    numbers as PostgreSQL returns them (Decimal)."""
    rows = []
    block = log_index = 0
    for number, event in enumerate(history, start=1):
        if event.same_block:
            log_index += 1
        else:
            block, log_index = block + 1, 0
        columns = {name: Decimal(value) if name in NUMERIC_COLUMNS else value
                   for name, value in event.columns.items()}  # fmt: skip
        rows.append({
            "id": number, "chain_id": chain_id, "registry": "reputation",
            "event_type": event.event_type, "block_number": block, "log_index": log_index,
            "block_hash": f"0x{block:064x}", "transaction_hash": f"0x{number:064x}",
            "block_time": T0 + timedelta(minutes=block), **columns,
        })  # fmt: skip
    return rows
