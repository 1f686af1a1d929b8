"""A test delivery: one action's message for a sample event, sent now, as the worker would
send it, so that its owner sees the target answer before a real event comes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.channel import ChannelDependencies
from erc8004_backend.actions.channels import channel_spec
from erc8004_backend.actions.delivery import Job
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from erc8004_backend.outbound import outbound_session

_ZERO_HASH = "0x" + "00" * 32
# Per registry, an event of the kind its triggers watch, with values that say "sample".
SAMPLE_EVENTS: dict[str, dict[str, Any]] = {
    "reputation": {"event_type": "NewFeedback", "agent_id": "1",
                   "client_address": "0x" + "00" * 19 + "01", "feedback_index": "1",
                   "value": "45", "value_decimals": 0, "score": "45", "tag1": "test",
                   "tag2": "sample", "endpoint": "", "file_uri": None, "file_hash": None},
    "validation": {"event_type": "ValidationResponse", "agent_id": "1",
                   "validator_address": "0x" + "00" * 19 + "02", "request_hash": _ZERO_HASH,
                   "response": "100", "response_uri": None, "response_hash": None,
                   "tag": "test"},
    "identity": {"event_type": "Registered", "agent_id": "1",
                 "owner": "0x" + "00" * 19 + "03", "token_uri": "https://example.com/agent.json"},
}  # fmt: skip


def sample_payload(
    registry: str, chain_id: int, trigger_id: str, trigger_name: str
) -> dict[str, Any]:
    """A job's payload for the registry's sample event, marked `"test": true`."""
    event = {"chain_id": chain_id, "registry": registry, "block_number": "0",
             "block_hash": _ZERO_HASH, "transaction_hash": _ZERO_HASH, "log_index": 0,
             "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat(),
             **SAMPLE_EVENTS[registry]}  # fmt: skip
    computed = {"trigger_name": trigger_name, "trigger_id": trigger_id}
    return {"event_id": None, "event": event, "computed": computed, "test": True}


async def deliver_sample(
    job: Job, *, settings: Settings, box: SecretBox, pool: AsyncConnectionPool[Any]
) -> dict[str, Any]:
    """One attempt of `job` through its channel, built for it with its own sessions (the
    address guard as the worker's); the response, or DeliveryFailed."""
    async with (
        outbound_session(allow_private=settings.allow_private_urls,
                         allowed=settings.allowed_ip_networks, max_connections=2) as session,
        outbound_session(allow_private=True, max_connections=2) as operator_session,
    ):  # fmt: skip
        dependencies = ChannelDependencies(settings, box, session, operator_session, pool)
        channel = channel_spec(job.action_type).build(dependencies)
        return await channel.deliver(job)
