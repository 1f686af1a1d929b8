"""The channels the worker delivers through, by action type: the one list that the worker,
the API's schema and checks, and the backtests' previews read. A new channel is a module
(see actions/channel.py) and its line here."""

from __future__ import annotations

from typing import Any

from erc8004_backend.actions import discord, email, mcp, pagerduty, rest, slack, telegram
from erc8004_backend.actions.channel import ChannelSpec
from erc8004_backend.actions.configs import ActionConfigError, ChannelConfig, validate_config

CHANNELS: dict[str, ChannelSpec] = {
    spec.action_type: spec
    for spec in (
        telegram.CHANNEL,
        rest.CHANNEL,
        mcp.CHANNEL,
        slack.CHANNEL,
        discord.CHANNEL,
        email.CHANNEL,
        pagerduty.CHANNEL,
    )
}


def channel_spec(action_type: str) -> ChannelSpec:
    """The channel of an action type; ActionConfigError naming the known ones if none."""
    spec = CHANNELS.get(action_type)
    if spec is None:
        known = ", ".join(CHANNELS)
        raise ActionConfigError(f"unknown action type {action_type!r} (known: {known})")
    return spec


def parse_action_config(action_type: str, config: Any, *, strict: bool = False) -> ChannelConfig:
    """The typed config of an action. Raises ActionConfigError naming the field and problem
    (`strict`: the API's new input, no coercions; see configs.validate_config)."""
    spec = channel_spec(action_type)
    parsed = validate_config(spec.config_model, action_type, config, strict=strict)
    if parsed.digest is not None and not spec.digests:
        raise ActionConfigError(digest_refusal(action_type))
    return parsed


def digest_refusal(action_type: str) -> str:
    can = ", ".join(name for name, spec in CHANNELS.items() if spec.digests)
    return (
        f"{action_type} action: digest: {action_type} actions cannot send digests"
        f" (those that can: {can})"
    )
