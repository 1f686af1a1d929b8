"""A throwaway TimescaleDB server for tests: PGlite (PostgreSQL in WASM) behind the wire protocol.

Needs Node.js >= 18 and ``npm install`` in the repository root. The server is in-memory and serves
one client connection at a time (others wait until it disconnects); every new connection gets
a freshly reset session. Connect with ``sslmode=disable``; any user and password are accepted.
``current_database()`` is always ``template1`` whatever the URL says, and
``COPY ... FROM STDIN`` crashes the server.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.support.waiting import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = Path(__file__).resolve().with_name("pglite_timescaledb.mjs")
SOCKET_PACKAGE = REPO_ROOT / "node_modules" / "@electric-sql" / "pglite-socket"
_STOP_GRACE_SECONDS = 5.0


def node_modules_ready() -> bool:
    """True when ``node`` is on PATH and the npm packages are installed (``npm install``)."""
    return shutil.which("node") is not None and SOCKET_PACKAGE.is_dir()


def _read_text(stream: IO[bytes]) -> str:
    stream.flush()
    stream.seek(0)
    return stream.read().decode("utf-8", "replace").strip()


def _wait_ready(proc: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float) -> int:
    """Wait for the ``ready <port>`` line; return the port or raise RuntimeError."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"TimescaleDB test server not ready after {timeout:g} s; "
                    f"stderr:\n{_read_text(stderr)}"
                )
            if not selector.select(min(remaining, 0.5)):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # EOF: the server exited
                try:
                    status = f"exited with code {proc.wait(timeout=_STOP_GRACE_SECONDS)}"
                except subprocess.TimeoutExpired:
                    status = "closed its stdout"
                raise RuntimeError(
                    f"TimescaleDB test server {status} before it was ready; "
                    f"stderr:\n{_read_text(stderr)}"
                )
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    word, _, port = line.partition(" ")
    if word != "ready" or not port.isdigit():
        raise RuntimeError(f"unexpected output from TimescaleDB test server: {line!r}")
    return int(port)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the server also exits when its stdin closes
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def timescaledb_server(timeout: float = 60) -> Iterator[str]:
    """Run an in-memory TimescaleDB server; yield its libpq URL; stop it on exit.

    The URL looks like ``postgresql://postgres:postgres@127.0.0.1:PORT/postgres?sslmode=disable``.
    Raises RuntimeError (with the server's stderr) if it exits or is not ready within
    ``timeout`` seconds.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH")
    port = free_port()
    # stderr goes to a file: a pipe nobody reads could fill up and block the server.
    with tempfile.TemporaryFile(prefix="pglite-timescaledb-", suffix=".log") as stderr:
        proc = subprocess.Popen(
            [node, str(SERVER_SCRIPT), str(port)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # held open: the server exits when we go away
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            port = _wait_ready(proc, stderr, timeout)
            yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        finally:
            _stop(proc)
