"""Change conditions, pure: what an identity event changes, whether a condition holds for
it, and the difference between two registration files.

An owner_changed, wallet_changed or uri_changed holds for an identity event that gives the
agent a new owner (a Transfer from a previous owner: not the mint), agentWallet (the reserved
metadata key) or URI (URIUpdated), by the value just before the event and just after it.
The caller (change_reads.py) reads the value before from the agent's earlier events and the
registration files from `agent_registrations`; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from erc8004_backend.triggers.conditions import ChangeCondition

ZERO_ADDRESS = "0x" + "0" * 40
AGENT_WALLET_KEY = "agentWallet"
# The event each change condition reads.
CHANGE_EVENTS = {"owner_changed": "Transfer", "wallet_changed": "MetadataSet",
                 "uri_changed": "URIUpdated"}  # fmt: skip


@dataclass(frozen=True)
class RegistrationDiff:
    """What differs between the registration file of the old URI and that of the new one.
    Services are told apart by name (any case); each is shown as `name endpoint`."""

    services_added: tuple[str, ...] = ()
    services_removed: tuple[str, ...] = ()
    services_changed: tuple[str, ...] = ()  # in both files, with another endpoint or entry
    active_before: bool | None = None  # the file's `active`; None: absent or not a boolean
    active_after: bool | None = None
    x402_before: bool | None = None  # the file's `x402Support`
    x402_after: bool | None = None
    mcp_endpoint_before: str | None = None  # the first MCP service's http(s) endpoint
    mcp_endpoint_after: str | None = None

    @property
    def aspects(self) -> frozenset[str]:
        """Which of REGISTRATION_ASPECTS differ."""
        found = set()
        if self.services_added or self.services_removed or self.services_changed:
            found.add("services")
        if self.active_before != self.active_after:
            found.add("active")
        if self.x402_before != self.x402_after:
            found.add("x402")
        if self.mcp_endpoint_before != self.mcp_endpoint_after:
            found.add("mcp_endpoint")
        return frozenset(found)


@dataclass(frozen=True)
class IdentityChange:
    """An identity event's attribute ("owner", "agent_wallet", "agent_uri") just before and
    just after it (None: none; an owner before the mint, a wallet unset or cleared). For a
    URI, `registration` is the files' difference, None while either file is not stored."""

    attribute: str
    before: str | None
    after: str | None
    registration: RegistrationDiff | None = None


def wallet_of(metadata_value: bytes | memoryview | None) -> str | None:
    """The agentWallet a MetadataSet sets: its 20 bytes as an address; anything else (empty:
    unsetAgentWallet or a transfer) clears it, as the read model takes it."""
    if metadata_value is None or len(metadata_value) != 20:
        return None
    return "0x" + bytes(metadata_value).hex()


def change_attribute(event: Mapping[str, Any]) -> str | None:
    """The attribute an identity event sets (owner, agent_wallet, agent_uri), if any."""
    if event.get("registry") != "identity" or event.get("agent_id") is None:
        return None
    event_type = event.get("event_type")
    if event_type == "Transfer":
        return "owner"
    if event_type == "URIUpdated":
        return "agent_uri"
    if event_type == "MetadataSet" and event.get("metadata_key") == AGENT_WALLET_KEY:
        return "agent_wallet"
    return None


def owner_change(event: Mapping[str, Any]) -> IdentityChange:
    """A Transfer's owners: its `from` (None for the mint) and its `to`."""
    before = event.get("from_address")
    return IdentityChange("owner", None if not before or before.lower() == ZERO_ADDRESS
                          else before, event.get("to_address"))  # fmt: skip


def _same(before: str | None, after: str | None, *, fold: bool) -> bool:
    if before is None or after is None:
        return before is after
    return before.lower() == after.lower() if fold else before == after


def change_holds(condition: ChangeCondition, change: IdentityChange | None) -> bool:
    """Whether the condition holds for an event with this change (None: the event changes
    nothing the condition watches)."""
    if change is None:
        return False
    attribute = {"owner_changed": "owner", "wallet_changed": "agent_wallet",
                 "uri_changed": "agent_uri"}[condition.condition_type]  # fmt: skip
    if change.attribute != attribute:
        return False
    # Addresses compare in any case; URIs exactly.
    if _same(change.before, change.after, fold=attribute != "agent_uri"):
        return False
    if attribute == "owner":
        return change.before is not None  # not the mint
    if attribute == "agent_wallet":
        if condition.change == "set":
            return change.after is not None
        if condition.change == "unset":
            return change.after is None
        return True
    if not condition.on:
        return True
    # Asked about the files: undecided (so not holding) until both are stored.
    if change.registration is None:
        return False
    return bool(change.registration.aspects & set(condition.on))


def _flag(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def change_fields(change: IdentityChange) -> dict[str, Any]:
    """The computed template fields of a change (CHANGE_FIELDS in fields.py)."""
    if change.attribute == "owner":
        return {"old_owner": change.before, "new_owner": change.after}
    if change.attribute == "agent_wallet":
        return {"old_wallet": change.before, "new_wallet": change.after}
    pending = _flag(change.registration is None)
    fields: dict[str, Any] = {"old_uri": change.before, "new_uri": change.after,
                              "registration_pending": pending}  # fmt: skip
    diff = change.registration
    if diff is not None:
        fields.update({
            "services_added": ", ".join(diff.services_added),
            "services_removed": ", ".join(diff.services_removed),
            "services_changed": ", ".join(diff.services_changed),
            "active_before": _flag(diff.active_before),
            "active_after": _flag(diff.active_after),
            "x402_before": _flag(diff.x402_before),
            "x402_after": _flag(diff.x402_after),
            "mcp_endpoint_before": diff.mcp_endpoint_before,
            "mcp_endpoint_after": diff.mcp_endpoint_after,
        })  # fmt: skip
    return fields


# -- registration files -----------------------------------------------------------------


def _services(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The file's service entries that have a text name (`endpoints` in earlier drafts)."""
    entries = document.get("services", document.get("endpoints"))
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, Mapping) and isinstance(e.get("name"), str)]


def _shown(entry: Mapping[str, Any]) -> str:
    endpoint = entry.get("endpoint")
    name = str(entry["name"]).strip()
    return f"{name} {endpoint}" if isinstance(endpoint, str) and endpoint else name


def _by_name(entries: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    named: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        named.setdefault(str(entry["name"]).strip().lower(), []).append(entry)
    return named


def _mcp_endpoint(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """The first MCP service's endpoint that is an http(s) URL, as the indexer reads it."""
    for entry in entries:
        endpoint = entry.get("endpoint")
        if (str(entry["name"]).strip().lower() == "mcp" and isinstance(endpoint, str)
                and endpoint.lower().startswith(("http://", "https://"))):  # fmt: skip
            return endpoint
    return None


def _boolean(document: Mapping[str, Any], key: str) -> bool | None:
    value = document.get(key)
    return value if isinstance(value, bool) else None


def registration_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> RegistrationDiff:
    """The difference between two registration files (parsed JSON objects). A service name
    only in `after` is added, only in `before` removed; in both, changed when its entries
    (endpoint, version, anything) differ. Names are compared in any case."""
    old, new = _services(before), _services(after)
    old_named, new_named = _by_name(old), _by_name(new)
    added = [_shown(e) for name, entries in new_named.items() if name not in old_named
             for e in entries]  # fmt: skip
    removed = [_shown(e) for name, entries in old_named.items() if name not in new_named
               for e in entries]  # fmt: skip
    changed = [", ".join(_shown(e) for e in entries) for name, entries in new_named.items()
               if name in old_named
               and _canonical(old_named[name]) != _canonical(entries)]  # fmt: skip
    return RegistrationDiff(
        services_added=tuple(added),
        services_removed=tuple(removed),
        services_changed=tuple(changed),
        active_before=_boolean(before, "active"),
        active_after=_boolean(after, "active"),
        x402_before=_boolean(before, "x402Support"),
        x402_after=_boolean(after, "x402Support"),
        mcp_endpoint_before=_mcp_endpoint(old),
        mcp_endpoint_after=_mcp_endpoint(new),
    )


def _canonical(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """A service name's entries in an order-free form, to compare two files'."""
    return sorted(repr(sorted((str(k), repr(v)) for k, v in entry.items())) for entry in entries)
