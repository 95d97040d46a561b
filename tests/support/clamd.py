"""A throwaway ClamAV daemon for tests, with a signature database built here.

`freshclam` cannot reach its mirrors from a test machine, and clamd refuses to start
without signatures, so the fixture writes its own: the EICAR test file as an MD5 signature
(`sigtool --md5`, as `.hdb`) and a body signature (`.ndb`) for a marker string, so that a
test can also hide malware inside other bytes (an archive, a document). clamd listens on a
unix socket and on a loopback TCP port, both in one temporary directory; nothing of the
system's ClamAV configuration is read or changed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
# The EICAR anti-virus test file: every scanner detects it, it does nothing.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# Bytes our body signature finds anywhere in a scanned stream.
MARKER = b"TICKETD-TEST-MALWARE-MARKER-7f3a9c"
MARKER_SIGNATURE = "Ticketd.Test.Marker"


def require_clamd() -> tuple[str, str]:
    """(clamd, sigtool); skips the test without them, or fails it when CI=true."""
    clamd = shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if os.access(p, os.X_OK)), None)
    sigtool = shutil.which("sigtool")
    if clamd and sigtool:
        return clamd, sigtool
    reason = "clamd and sigtool not installed (apt-get install -y clamav-daemon)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class ClamdServer:
    """One clamd in the foreground, its database, sockets and log in one directory."""

    def __init__(self, clamd: str, sigtool: str, root: Path,
                 stream_max: str = "10M") -> None:
        self.clamd = clamd
        self.stream_max = stream_max  # StreamMaxLength: a longer stream is refused
        self.sigtool = sigtool
        self.root = root
        self.socket_path = root / "clamd.sock"
        self.port = free_port()
        self.log_path = root / "clamd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start_new(cls, binaries: tuple[str, str], stream_max: str = "10M") -> ClamdServer:
        root = Path(tempfile.mkdtemp(prefix="ticketd-clamd-"))
        root.chmod(0o755)  # clamd may drop to its own user and must still read the database
        server = cls(*binaries, root, stream_max)
        server._write_database()
        server._write_config()
        server.start()
        return server

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def _write_database(self) -> None:
        database = self.root / "db"
        database.mkdir()
        sample = self.root / "eicar.com"
        sample.write_bytes(EICAR)
        md5 = subprocess.run([self.sigtool, "--md5", str(sample)], check=True,
                             capture_output=True).stdout
        (database / "test.hdb").write_bytes(md5)
        # name:target type (0 = any file):offset (* = anywhere):hex bytes
        (database / "test.ndb").write_text(f"{MARKER_SIGNATURE}:0:*:{MARKER.hex()}\n")

    def _write_config(self) -> None:
        lines = [
            f"DatabaseDirectory {self.root / 'db'}",
            f"LocalSocket {self.socket_path}",
            f"TCPSocket {self.port}",
            f"TCPAddr {HOST}",
            "Foreground yes",
            f"LogFile {self.log_path}",
            f"PidFile {self.root / 'clamd.pid'}",
            f"StreamMaxLength {self.stream_max}",
        ]
        if os.geteuid() == 0:
            lines.append("User root")  # clamd would otherwise drop to a user that may not exist
        (self.root / "clamd.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.clamd, "-c", str(self.root / "clamd.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"clamd exited with {self._process.returncode}; see "
                                   f"{self.log_path}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"clamd did not answer within {START_TIMEOUT}s; see {self.log_path}")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(2)
                conn.connect(str(self.socket_path))
                conn.sendall(b"zPING\0")
                return conn.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def remove_directory(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
