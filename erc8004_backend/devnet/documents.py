"""Documents that devnet agents keep on chain as `data:` URIs: registration files and
feedback files (nothing to host, nothing to fetch over the network)."""

from __future__ import annotations

import base64
import json
from typing import Any

from eth_hash.auto import keccak

from erc8004_backend.devnet.activity.content import REGISTRATION_TYPE


def data_uri(document: dict[str, Any]) -> tuple[str, bytes]:
    """A `data:` URI holding the document as JSON, and the keccak256 of those JSON bytes
    (what a feedback's on-chain hash commits to)."""
    raw = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return f"data:application/json;base64,{base64.b64encode(raw).decode()}", keccak(raw)


def registration_uri(name: str, *, description: str | None = None,
                     mcp_url: str | None = None) -> str:  # fmt: skip
    """An ERC-8004 registration file as a `data:` URI; with `mcp_url`, its MCP service."""
    services = [{"name": "MCP", "endpoint": mcp_url, "version": "2025-06-18"}] if mcp_url else []
    uri, _ = data_uri({
        "type": REGISTRATION_TYPE,
        "name": name,
        "description": description or f"{name}, an agent on the devnet.",
        "services": services,
        "active": True,
        "supportedTrust": ["reputation", "validation"],
    })  # fmt: skip
    return uri
