"""The embedded PostgreSQL after crashes and Ctrl-C: a damaged `.handle_pids.json`, a stale
`postmaster.pid`, an orphaned server; errors as one line; Ctrl-C at any moment of start-up.

Every test runs a real embedded server in a directory of its own (in this process, in a
holder process, or under `erc8004`), and its fixture stops any server still running for
that directory, so that no test leaves a postgres behind whatever it asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from erc8004_backend.database.connection import connect
from erc8004_backend.database.embedded import embedded_postgres
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

T = TypeVar("T")

# Starts (or joins) the embedded server of the directory argv[1], says so, and holds it until
# interrupted: another erc8004 process using the same server.
HOLDER = """
import sys, time
from pathlib import Path
from erc8004_backend.database.embedded import embedded_postgres
with embedded_postgres(Path(sys.argv[1])) as url:
    print(url, flush=True)
    time.sleep(120)
"""


def until(condition: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """The condition's first truthy value, polled every 20 ms for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'the condition'} did not hold in {timeout:g} s")
        time.sleep(0.02)
    return value


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """The postgres server processes running on pgdata (the postmaster's command line names
    its data directory; its children's do not)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or ()):
            found.append(process)
    return found


def env_without_database(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ERC8004_DATABASE_URL")}
    return {**env, "ERC8004_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory for the embedded server; no server is left running on it after.
    Not under pytest's tmp_path: run as root, the server runs as the user `embedded_postgres`,
    and every pytest session on the machine makes pytest's directory root's alone again."""
    data = Path(tempfile.mkdtemp(prefix="erc8004-embedded-"))
    try:
        yield data
    finally:
        servers = postmasters(pgdata_of(data))
        for server in servers:
            server.send_signal(signal.SIGINT)  # a fast shutdown, as `pg_ctl stop`
        for server in psutil.wait_procs(servers, timeout=10)[1]:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


def pgdata_of(data_dir: Path) -> Path:
    return (data_dir / "postgres").resolve()


@contextmanager
def process(*args: str, **options: Any) -> Iterator[subprocess.Popen[str]]:
    """A process with its output piped, killed (and waited for) at the end whatever happened."""
    with subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, **options,
    ) as started:  # fmt: skip
        try:
            yield started
        finally:
            started.kill()
            started.communicate(timeout=30)


@contextmanager
def holding(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process using the embedded server of data_dir, until it is signalled."""
    with process(sys.executable, "-c", HOLDER, str(data_dir),
                 env=env_without_database(data_dir)) as holder:  # fmt: skip
        assert holder.stdout is not None
        line = holder.stdout.readline()  # the URL, once the server is up
        assert line.startswith("user=postgres"), holder.stderr.read()  # type: ignore[union-attr]
        yield holder


def orphan_a_server(data_dir: Path) -> psutil.Process:
    """What a user's crash or Ctrl-C leaves: a server whose only user died without stopping
    it (SIGKILL: no clean-up at all)."""
    with holding(data_dir) as holder:
        holder.kill()
        holder.wait(30)
    [server] = postmasters(pgdata_of(data_dir))
    return server


def works(url: str) -> bool:
    with connect(url) as connection:
        return connection.execute("SELECT 1").fetchone() == (1,)


def handle_pids(data_dir: Path) -> list[int]:
    pids: list[int] = json.loads((pgdata_of(data_dir) / ".handle_pids.json").read_text())
    return pids


# -- a damaged handle file, a stale postmaster.pid --------------------------------------------


@pytest.mark.subprocess
def test_an_emptied_handle_file_of_an_orphaned_server_is_rebuilt_and_the_server_stopped(
    data_dir: Path,
) -> None:
    """The reported failure: the handle file left empty, the server left running."""
    orphan = orphan_a_server(data_dir)
    (pgdata_of(data_dir) / ".handle_pids.json").write_text("")

    with embedded_postgres(data_dir) as url:
        assert works(url)
        assert postmasters(pgdata_of(data_dir)) == [orphan]  # joined, not started anew
        assert handle_pids(data_dir) == [os.getpid()]

    orphan.wait(10)
    assert postmasters(pgdata_of(data_dir)) == []


@pytest.mark.subprocess
def test_a_handle_file_emptied_under_a_running_user_keeps_the_server_for_that_user(
    data_dir: Path,
) -> None:
    """The other user's pid was lost with the file: it is found again, so the server is not
    stopped under it, and stops when it is done."""
    with holding(data_dir) as holder:
        (pgdata_of(data_dir) / ".handle_pids.json").write_text("")
        with embedded_postgres(data_dir) as url:
            assert works(url)
            assert sorted(handle_pids(data_dir)) == sorted([holder.pid, os.getpid()])
        [server] = postmasters(pgdata_of(data_dir))  # still the holder's
        assert handle_pids(data_dir) == [holder.pid]
        holder.send_signal(signal.SIGINT)
        holder.wait(30)
    server.wait(10)
    assert postmasters(pgdata_of(data_dir)) == []


@pytest.mark.subprocess
def test_a_dead_user_in_the_handle_file_does_not_keep_the_server_running(
    data_dir: Path,
) -> None:
    orphan = orphan_a_server(data_dir)
    [dead] = handle_pids(data_dir)
    assert not psutil.pid_exists(dead)

    with embedded_postgres(data_dir) as url:
        assert works(url)
        assert handle_pids(data_dir) == [os.getpid()]

    orphan.wait(10)
    assert postmasters(pgdata_of(data_dir)) == []


def test_a_corrupt_handle_file_without_a_server_starts_fine(data_dir: Path) -> None:
    with embedded_postgres(data_dir) as url:
        assert works(url)
    assert postmasters(pgdata_of(data_dir)) == []
    (pgdata_of(data_dir) / ".handle_pids.json").write_text('[12, "x"')

    with embedded_postgres(data_dir) as url:
        assert works(url)
        assert handle_pids(data_dir) == [os.getpid()]
    assert postmasters(pgdata_of(data_dir)) == []
    assert handle_pids(data_dir) == []


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def stale_postmaster_pid(data_dir: Path, pid: int) -> None:
    """The postmaster.pid a killed server leaves (its format: pid, data directory, start
    time, port, socket directory, listen address, shared memory key and id, status)."""
    with embedded_postgres(data_dir):
        written = (pgdata_of(data_dir) / "postmaster.pid").read_text().splitlines()
    assert written[1] == str(pgdata_of(data_dir))
    assert not (pgdata_of(data_dir) / "postmaster.pid").exists()  # removed at a clean stop
    lines = [str(pid), *written[1:]]
    (pgdata_of(data_dir) / "postmaster.pid").write_text("\n".join(lines) + "\n")


@pytest.mark.subprocess  # a process whose pid it uses
def test_a_stale_postmaster_pid_of_a_dead_process_starts_fine(data_dir: Path) -> None:
    """PostgreSQL itself replaces a lock file whose process is gone."""
    stale_postmaster_pid(data_dir, dead_pid())

    with embedded_postgres(data_dir) as url:
        assert works(url)
    assert postmasters(pgdata_of(data_dir)) == []


@pytest.mark.subprocess  # a process whose pid it uses
def test_a_stale_postmaster_pid_whose_pid_another_process_got_starts_fine(
    data_dir: Path,
) -> None:
    """After a reboot the pid often belongs to some other program: that is no server."""
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            stale_postmaster_pid(data_dir, other.pid)
            with embedded_postgres(data_dir) as url:
                assert works(url)
            assert postmasters(pgdata_of(data_dir)) == []
            assert other.poll() is None  # not touched
        finally:
            other.kill()


# -- as the command line shows it ---------------------------------------------------------------


def erc8004(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "erc8004_backend", *args],
        cwd=ROOT,
        env=env_without_database(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def assert_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """One error line after the note that the embedded server is used, no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("no DATABASE_URL: using the embedded PostgreSQL")
    assert lines[1].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[1], lines[1]
    return lines[1]


@pytest.mark.subprocess
def test_the_reported_failure_through_the_cli(data_dir: Path) -> None:
    """An orphaned server and an empty handle file: the next command just works, and stops
    the server when done."""
    orphan = orphan_a_server(data_dir)
    (pgdata_of(data_dir) / ".handle_pids.json").write_text("")

    result = erc8004(data_dir, "db", "migrate", "info")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "pending" in result.stdout
    orphan.wait(10)
    assert postmasters(pgdata_of(data_dir)) == []


@pytest.mark.subprocess
def test_a_server_that_does_not_start_is_one_line_with_its_reason(data_dir: Path) -> None:
    """Say, a data directory of another PostgreSQL version: the log's reason, not the
    library's dump of the whole log."""
    with embedded_postgres(data_dir):
        pass
    (pgdata_of(data_dir) / "PG_VERSION").write_text("99\n")

    result = erc8004(data_dir, "db", "migrate", "info")

    assert_error_line(
        result,
        str(pgdata_of(data_dir)),
        "database files are incompatible with server",
        "initialized by PostgreSQL version 99",
        str(pgdata_of(data_dir) / "log"),
    )
    assert postmasters(pgdata_of(data_dir)) == []


@pytest.mark.subprocess
def test_an_unusable_runtime_directory_is_one_line_naming_it(
    data_dir: Path, tmp_path: Path
) -> None:
    """The library keeps its lock in the user's runtime directory: XDG_RUNTIME_DIR, else
    runtime-<uid> in the temporary directory (here a file left in its place)."""
    runtime = tmp_path / f"runtime-{os.getuid()}"
    runtime.write_text("")
    env = {"TMPDIR": str(tmp_path), "XDG_RUNTIME_DIR": ""}

    result = erc8004(data_dir, "db", "migrate", "info", **env)

    assert_error_line(
        result, "cannot load the embedded PostgreSQL", str(runtime), "XDG_RUNTIME_DIR"
    )


# -- Ctrl-C -------------------------------------------------------------------------------------

# Runs the erc8004 entry point argv[2] ("-m" for `python -m erc8004_backend`, else
# "module:function" as the installed `erc8004` script calls it), with an import that takes a
# minute in the middle of loading the command line; touches argv[1] when it gets there.
SLOW_IMPORT = """
import importlib, importlib.abc, runpy, sys, time
from pathlib import Path

marker, entry = Path(sys.argv[1]), sys.argv[2]

class SlowImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "erc8004_backend.cli.db":
            marker.touch()
            time.sleep(60)
        return None

sys.meta_path.insert(0, SlowImport())
sys.argv = ["erc8004", "--help"]
if entry == "-m":
    runpy.run_module("erc8004_backend", run_name="__main__", alter_sys=True)
else:
    module, _, function = entry.partition(":")
    sys.exit(getattr(importlib.import_module(module), function)())
"""


def script_entry_point() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry: str = scripts["erc8004"]
    return entry


@pytest.mark.subprocess
@pytest.mark.parametrize("entry", ["-m", "script"])
def test_ctrl_c_while_the_command_line_loads_is_quiet(tmp_path: Path, entry: str) -> None:
    marker = tmp_path / "importing"
    with process(sys.executable, "-c", SLOW_IMPORT, str(marker),
                 "-m" if entry == "-m" else script_entry_point(),
                 env=env_without_database(tmp_path)) as command:  # fmt: skip
        until(marker.exists, what="the import")
        command.send_signal(signal.SIGINT)
        stdout, stderr = command.communicate(timeout=20)
    assert command.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    assert "Aborted" not in stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("ctrl_cs", [1, 2])
@pytest.mark.parametrize("moment", ["PG_VERSION", "postmaster.pid", ".handle_pids.json"])
def test_ctrl_c_during_start_up_leaves_nothing_broken(
    data_dir: Path, moment: str, ctrl_cs: int
) -> None:
    """As a terminal sends it: SIGINT to the command's whole process group (initdb and pg_ctl
    too), as soon as `moment` appears in the data directory (PG_VERSION: initdb has begun;
    postmaster.pid: its bootstrap backend runs; .handle_pids.json: the server is up), and
    again 50 ms later for two quick Ctrl-Cs. Wherever they land: no traceback, exit 130, the
    next command works, and no server is left behind (after one Ctrl-C, not even by the
    interrupted command itself)."""
    with process(sys.executable, "-m", "erc8004_backend", "db", "migrate", "info",
                 env=env_without_database(data_dir), start_new_session=True) as command:  # fmt: skip
        until((data_dir / "postgres" / moment).exists, what=f"{moment} in the data directory")
        with suppress(ProcessLookupError):  # the group is gone: it was done already
            for _ in range(ctrl_cs):
                os.killpg(command.pid, signal.SIGINT)
                time.sleep(0.05)
        stdout, stderr = command.communicate(timeout=60)
    assert "Traceback" not in stderr + stdout
    assert command.returncode in (130, 0), stderr  # 0: it was done before the signals came
    if ctrl_cs == 1:
        assert postmasters(pgdata_of(data_dir)) == []

    again = erc8004(data_dir, "db", "migrate", "info")

    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert postmasters(pgdata_of(data_dir)) == []


def test_a_user_the_handle_file_names_without_a_record_of_ours_keeps_the_server(
    data_dir: Path,
) -> None:
    """A process of an earlier version (which keeps no record of its own) is listed only in the
    wheel's file: a command of this version that exits must not stop the server under it."""
    pgdata = pgdata_of(data_dir)
    with process("sleep", "60") as earlier_version:
        with embedded_postgres(data_dir):
            handle_file = pgdata / ".handle_pids.json"
            pids = json.loads(handle_file.read_text())
            handle_file.write_text(json.dumps([*pids, earlier_version.pid]))
        assert postmasters(pgdata), "the server was stopped under a process still using it"
        # That process gone, the next command to leave is the last user: it stops the server.
        earlier_version.kill()
        earlier_version.wait()
        with embedded_postgres(data_dir):
            pass
        assert until(lambda: not postmasters(pgdata), what="the server stopped")
