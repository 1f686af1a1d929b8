"""The seam between the worker and the channels it delivers through (Telegram, webhooks, MCP
calls...): what a channel is, what it is built with, and what the API knows of it.

A channel is one module: its config model (a ChannelConfig), a class whose `deliver` makes
one attempt of a job, and a ChannelSpec that names them; actions/channels.py lists the specs.
The worker builds each channel once, with the dependencies it is given (as an httpx client is
given a transport), and the API, the checks and the previews read the same specs, so a type
that is not listed can be neither stored nor delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from erc8004_backend.actions.configs import ActionConfigError, ChannelConfig, validate_config

if TYPE_CHECKING:
    import aiohttp
    from psycopg_pool import AsyncConnectionPool

    from erc8004_backend.actions.delivery import Job
    from erc8004_backend.config import Settings
    from erc8004_backend.encryption import SecretBox


@dataclass(frozen=True)
class ChannelDependencies:
    """What the worker builds its channels with."""

    settings: Settings
    box: SecretBox  # opens the credentials sealed in configs
    # For the users' URLs: the address guard refuses private and reserved addresses.
    session: aiohttp.ClientSession
    # For the operator's own endpoints (the Telegram API URL): no guard.
    operator_session: aiohttp.ClientSession
    pool: AsyncConnectionPool  # for what a delivery reads (an agent's MCP endpoint)


class Channel(Protocol):
    async def deliver(self, job: Job) -> dict[str, Any]:
        """One attempt: the response to keep (status, body excerpt...), or DeliveryFailed
        (retryable or not); ActionConfigError when the job's config no longer parses."""
        ...


@dataclass(frozen=True)
class Preview:
    """What an action would send, for backtests: a message's text or a request's body."""

    text: str | None = None
    body: Any = None


@dataclass(frozen=True)
class ChannelSpec:
    action_type: str  # as trigger_actions.action_type stores it
    config_model: type[ChannelConfig]
    build: Callable[[ChannelDependencies], Channel]
    # The config's settings whose strings are templates (checked when a trigger is written).
    template_keys: tuple[str, ...] = ()
    # The preview of a stored config for a job's template values; None: the channel has no
    # message of its own to show (or the config no longer parses).
    preview: Callable[[Mapping[str, Any], dict[str, Any]], Preview | None] | None = None
    # Whether `deliver` sends a digest job (job.digest) as one message (actions/digest.py);
    # the API refuses a `digest` setting on the others.
    digests: bool = False


ConfigT = TypeVar("ConfigT", bound=ChannelConfig)
PreviewOf = Callable[[Mapping[str, Any], dict[str, Any]], Preview | None]


def preview_of(
    model: type[ConfigT], action_type: str, render: Callable[[ConfigT, dict[str, Any]], Preview]
) -> PreviewOf:
    """A ChannelSpec's preview: the stored config read as `model` (None when it no longer
    parses), then rendered for the values."""

    def preview(config: Mapping[str, Any], values: dict[str, Any]) -> Preview | None:
        try:
            parsed = validate_config(model, action_type, config)
        except ActionConfigError:
            return None
        return render(parsed, values)

    return preview
