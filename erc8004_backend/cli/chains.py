"""`erc8004 chains`: the chains the commands know, and which of them they index."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import typer

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.cli.indexer import ChainsFiles, known_chains

HIDDEN = "***"
# A path segment that is an API key rather than a name: a long run of key characters with
# a digit in it (Infura's and Chainstack's hex, Alchemy's base64url, QuickNode's and Ankr's
# hex, UUIDs), or any very long one. Names like "ethereum-sepolia" or SKALE's
# "jubilant-horrible-ancha" have no digit and stay readable.
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9_-]{16,}")
_COLUMNS = ("NAME", "CHAIN ID", "ENABLED", "START BLOCK", "RPC URLS")


def chains(chains_file: ChainsFiles = None) -> None:
    """List the known chains, enabled ones first, with RPC URL keys hidden.

    The published deployments, the devnet and the chains of your chains files."""
    known = list(known_chains(chains_file).values())
    ordered = [c for c in known if c.enabled] + [c for c in known if not c.enabled]
    rows = [_COLUMNS, *(_row(chain) for chain in ordered)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]))
    enabled = sum(chain.enabled for chain in known)
    typer.echo(f"{len(known)} chains, {enabled} enabled")


def _row(chain: ChainConfig) -> tuple[str, ...]:
    return (
        chain.name,
        str(chain.chain_id),
        "yes" if chain.enabled else "no",
        str(chain.start_block),
        ", ".join(hide_keys(url) for url in chain.rpc_urls),
    )


def hide_keys(url: str) -> str:
    """The URL with what may be a credential replaced by ***: the password of its user
    information (and a user name that is the key itself), every query value, the fragment,
    and path segments that look like API keys (`/v2/<key>`, `/v3/<key>`, `/<token>/`)."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if userinfo:
        user, has_password, _ = userinfo.partition(":")
        if not has_password or _looks_like_key(user):
            hostport = f"{HIDDEN}@{hostport}"
        else:
            hostport = f"{user}:{HIDDEN}@{hostport}"
    path = "/".join(HIDDEN if _looks_like_key(s) else s for s in parts.path.split("/"))
    shown = f"{parts.scheme}://{hostport}{path}"
    if parts.query:
        hidden = (f"{p.partition('=')[0]}={HIDDEN}" if "=" in p else HIDDEN
                  for p in parts.query.split("&"))  # fmt: skip
        shown += "?" + "&".join(hidden)
    if parts.fragment:
        shown += "#" + HIDDEN
    return shown


def _looks_like_key(segment: str) -> bool:
    if not _KEY_CHARACTERS.fullmatch(segment):
        return False
    return len(segment) >= 32 or any(character.isdigit() for character in segment)
