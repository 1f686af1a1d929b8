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
# Shown as they are: words (letters and hyphens), versions (v1, v2) and short numbers.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z-]{0,39}|v[0-9]{1,2}|[0-9]{1,6}")
# A host label of twelve or more letters and digits, digits among them: a key as subdomain.
_KEY_LABEL = re.compile(r"(?=[A-Za-z0-9-]*[0-9])[A-Za-z0-9-]{12,}")
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
    information (and a user name that may be the key itself), host labels that look like
    keys, every query value, the fragment, and every path segment but plain words, versions
    and short numbers (`/v2/<key>`, `/<token>/`, `/key=...` are hidden; `/ext/bc/C/rpc` is not).
    Hiding too much costs a less telling listing; too little, a leaked key."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if "]" not in hostport:  # an IPv6 address is shown as it is
        host, colon, port = hostport.partition(":")
        labels = (HIDDEN if _KEY_LABEL.fullmatch(label) else label for label in host.split("."))
        hostport = ".".join(labels) + colon + port
    if userinfo:
        user, has_password, _ = userinfo.partition(":")
        if not has_password or not _PLAIN.fullmatch(user):
            hostport = f"{HIDDEN}@{hostport}"
        else:
            hostport = f"{user}:{HIDDEN}@{hostport}"
    path = "/".join(s if not s or _PLAIN.fullmatch(s) else HIDDEN for s in parts.path.split("/"))
    shown = f"{parts.scheme}://{hostport}{path}"
    if parts.query:
        hidden = (f"{p.partition('=')[0]}={HIDDEN}" if "=" in p else HIDDEN
                  for p in parts.query.split("&"))  # fmt: skip
        shown += "?" + "&".join(hidden)
    if parts.fragment:
        shown += "#" + HIDDEN
    return shown
