"""The owner's alert when a trigger's circuit breaker opens.

A user names one action on their account (`PUT /me/alert-action`): a channel and its
config, checked by the channel registry like a trigger's action, its credentials sealed the
same way (with the alert action's id as their context). When deliveries open a trigger's
breaker, the worker queues one alert job to it in the same transaction that opened the
breaker (`queue_breaker_alerts`), so that a crash can neither lose nor repeat it; the job is
delivered like any other (retries, dead letters, the audit trail), but never feeds a
breaker itself.

Its templates name the alert's fields (ALERT_FIELDS), not an event's; a template the config
leaves out is the channel's default alert text (ALERT_DEFAULTS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from erc8004_backend.actions.channels import channel_spec, parse_action_config
from erc8004_backend.actions.configs import ActionConfigError
from erc8004_backend.database.queries import load_queries
from erc8004_backend.triggers.templates import placeholders

QUERIES = load_queries("erc8004_backend.actions", "alerts.sql")

# What an alert's templates can name.
ALERT_FIELDS = (
    "trigger_id",
    "trigger_name",
    "disabled_reason",
    "disabled_at",
    "consecutive_failures",
    "reset_instructions",
)
# No parentheses or brackets: a Telegram MarkdownV2 template would need them escaped.
_TEXT = (
    "Trigger {{trigger_name}}, id {{trigger_id}}, is disabled: its circuit breaker opened at"
    " {{disabled_at}}.\n{{disabled_reason}}\n{{reset_instructions}}"
)
_SUBJECT = "Trigger {{trigger_name}} is disabled: its circuit breaker opened"
# The channels an alert can go to, with the templates a config may leave out. A webhook's
# default body is the alert's job document (`alert`, `computed` with the fields above).
ALERT_DEFAULTS: dict[str, dict[str, str]] = {
    "email": {"subject_template": _SUBJECT, "text_template": _TEXT},
    "slack": {"text_template": _TEXT},
    "discord": {"content_template": _TEXT},
    "telegram": {"message_template": _TEXT},
    "pagerduty": {
        "summary_template": _SUBJECT,
        "source_template": "erc8004 trigger {{trigger_id}}",
    },
    "rest": {},
}
# Settings that make no sense for one alert per opened breaker.
_REFUSED = ("digest", "rate_limit_per_minute", "dedup_seconds", "notify_retractions")


def alert_config(action_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config to store for an account alert action, its defaults filled in; raises
    ActionConfigError naming the setting and the problem."""
    if action_type not in ALERT_DEFAULTS:
        raise ActionConfigError(
            f"{action_type} actions cannot send alerts (those that can: "
            f"{', '.join(ALERT_DEFAULTS)})"
        )
    for key in _REFUSED:
        if key in config:
            raise ActionConfigError(f"{action_type} action: {key}: is not a setting of alerts")
    filled = {**ALERT_DEFAULTS[action_type], **config}
    parse_action_config(action_type, filled, strict=True)
    for key in channel_spec(action_type).template_keys:
        for text in _strings(filled.get(key)):
            unknown = sorted(set(placeholders(text)) - set(ALERT_FIELDS))
            if unknown:
                names = ", ".join(f"{{{{{name}}}}}" for name in unknown)
                raise ActionConfigError(
                    f"{action_type} action: {key}: unknown alert field(s) {names}"
                    f" (an alert's fields: {', '.join(ALERT_FIELDS)})"
                )
    return filled


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


async def queue_breaker_alerts(
    conn: psycopg.AsyncConnection[Any], trigger_ids: Sequence[str]
) -> list[int]:
    """Alert jobs for the triggers whose breakers just opened, to their owners' alert
    actions (none for an owner who named none); run in the transaction that opened them."""
    if not trigger_ids:
        return []
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(QUERIES["queue_breaker_alerts"], {"trigger_ids": list(trigger_ids)})
    return [row[0] for row in await cursor.fetchall()]
