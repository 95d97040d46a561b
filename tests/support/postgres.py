"""A throwaway PostgreSQL server for tests that stop and restart it.

The shared server (tests/support/db.py) serves every other test, so a drill that restarts
PostgreSQL gets a cluster of its own: initdb into a temporary directory, the server on a
free loopback port, its socket and log in that directory, removed afterwards. PostgreSQL
refuses to run as root; as root the cluster belongs to the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

HOST = "127.0.0.1"
SERVICE_USER = "postgres"
# Debian and Ubuntu keep the server binaries out of PATH, one directory per major version.
_DEBIAN_BINS = "/usr/lib/postgresql/*/bin"


def find_bin_dir() -> Path | None:
    """The directory of initdb and pg_ctl: the newest Debian-style one, else the one on PATH."""
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    for candidate in sorted(glob.glob(_DEBIAN_BINS), key=version, reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def require_bin_dir() -> Path:
    """The server binaries; skips the test without them, or fails it when CI=true."""
    found = find_bin_dir()
    missing = None if found else "PostgreSQL server binaries (initdb, pg_ctl) not found"
    if found and os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            missing = f"running as root, but there is no {SERVICE_USER!r} user to own a cluster"
    if missing is None:
        assert found is not None
        return found
    reason = f"{missing} (apt-get install -y postgresql)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class PostgresError(RuntimeError):
    """The throwaway server did not do what a test needed; the message ends with its log."""


class PostgresServer:
    """One cluster in `root` (data/, postgres.log, the socket), driven through pg_ctl."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = 0

    @classmethod
    def start_new(cls, bin_dir: Path) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="ticketd-pg-"))
        server = cls(bin_dir, root)
        if os.geteuid() == 0:
            shutil.chown(root, SERVICE_USER, SERVICE_USER)
        server._pg("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust",
                   "--no-sync", "--encoding=UTF8", "--locale=C", "--no-instructions")
        for _ in range(3):  # a probed free port can be taken before the server binds it
            server.port = _free_port()
            if server._try_start():
                return server
        raise server._error("PostgreSQL did not start")

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """An empty database; its URL."""
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart: "fast" ends sessions cleanly, "immediate" stops as a crash would
        (the start that follows runs crash recovery). Returns once the server accepts again."""
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-m", mode,
                 "-w", "-t", "30", "restart")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server ("immediate": as a crash would); it can be started again."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def start(self) -> None:
        if not self._try_start():
            raise self._error("PostgreSQL did not start again")

    def shut_down(self) -> None:
        """Teardown: stop it if it runs, never raise."""
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                     check=False)

    def remove_directory(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _try_start(self) -> bool:
        options = (f"-c listen_addresses={HOST} -p {self.port} "
                   f"-c unix_socket_directories={self.root} -c max_connections=60")
        done = self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                        "-w", "-t", "30", "start", check=False)
        return done.returncode == 0

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        as_owner = {"user": SERVICE_USER, "group": SERVICE_USER, "extra_groups": []} \
            if os.geteuid() == 0 else {}
        done = subprocess.run([str(self.bin_dir / tool), *args], cwd=self.root, text=True,
                              capture_output=True, timeout=60, **as_owner)
        if check and done.returncode != 0:
            raise self._error(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def _error(self, message: str) -> PostgresError:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-10:]
        except OSError:
            tail = []
        return PostgresError("\n".join([f"{message} (log: {self.log_path})", *tail]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, free to restart; its postgres.log is kept
    when a test failed."""
    server = PostgresServer.start_new(require_bin_dir())
    request.node.add_report_section("setup", "postgres",
                                    f"{server.url()}; log: {server.log_path}")
    yield server
    server.shut_down()
    if request.session.testsfailed:
        shutil.rmtree(server.data, ignore_errors=True)  # some 40 MB; the log is what helps
    else:
        server.remove_directory()
