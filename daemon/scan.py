"""ClamAV's clamd over its socket: every attachment is scanned before anything is forwarded.

The INSTREAM command (clamd(8)) sends the bytes in chunks, each prefixed by its length as a
4-byte big-endian number, ended by a zero length; clamd answers one line, "stream: OK",
"stream: <signature> FOUND" or "... ERROR". We talk the protocol ourselves: it is a dozen
lines, and a client library would add a dependency for no more than that.

The answer is handed on as a value (`Scanned`); a clamd that cannot be reached, times out
or answers nonsense raises `ScannerUnavailable`, and the caller's setting decides what that
means. A clamd that refuses this one stream ("... ERROR", such as "INSTREAM size limit
exceeded. ERROR", or the reset it does on a stream past StreamMaxLength while it goes on
answering) gives the verdict "unscannable": trying again would be refused again, so holding
the mail for it would hold it forever.
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_MAX_ANSWER = 4096


class ScannerUnavailable(Exception):
    """clamd could not be reached, or did not give a verdict (its error line is the text)."""


@dataclass(frozen=True)
class Scanned:
    verdict: Literal["clean", "infected", "unscannable"]
    signature: str = ""  # the signature name clamd found, or why it refused the stream


@dataclass(frozen=True)
class ClamdScanner:
    """One clamd: a unix socket path, or (host, port) of its TCP socket."""

    socket_path: Path | None = None
    address: tuple[str, int] | None = None
    timeout: float = 30

    def __post_init__(self) -> None:
        if (self.socket_path is None) == (self.address is None):
            raise ValueError("give exactly one of socket_path and address")

    @property
    def where(self) -> str:
        if self.socket_path is not None:
            return str(self.socket_path)
        assert self.address is not None
        return f"{self.address[0]}:{self.address[1]}"

    def scan(self, payload: bytes) -> Scanned:
        try:
            conn = self._connect()
        except OSError as err:
            raise self._unavailable(err) from err
        with conn:
            try:
                conn.sendall(b"zINSTREAM\0")
                for start in range(0, len(payload), _CHUNK):
                    chunk = payload[start:start + _CHUNK]
                    conn.sendall(struct.pack(">I", len(chunk)) + chunk)
                conn.sendall(struct.pack(">I", 0))
                answer = _read_answer(conn)
            except (BrokenPipeError, ConnectionResetError) as err:
                return self._refused_mid_stream(conn, err)
            except OSError as err:  # a timeout, or worse: clamd may be back later
                raise self._unavailable(err) from err
        return _verdict(answer)

    def _refused_mid_stream(self, conn: socket.socket, err: OSError) -> Scanned:
        """clamd closed the stream while we sent it. Its answer line, when it can still be
        read, says why; without one, a clamd that answers PING right after refused this
        stream (past StreamMaxLength), and one that does not is away."""
        try:
            answer = _read_answer(conn)
        except OSError:
            answer = ""
        if answer:
            return _verdict(answer)
        if self.ping():
            return Scanned("unscannable", f"stream closed by clamd ({type(err).__name__}); "
                                          "longer than its StreamMaxLength?")
        raise self._unavailable(err) from err

    def _unavailable(self, err: OSError) -> ScannerUnavailable:
        return ScannerUnavailable(f"clamd at {self.where}: {type(err).__name__}: {err}")

    def ping(self) -> bool:
        try:
            with self._connect() as conn:
                conn.sendall(b"zPING\0")
                return _read_answer(conn) == "PONG"
        except OSError:
            return False

    def _connect(self) -> socket.socket:
        if self.socket_path is not None:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(self.timeout)
            try:
                conn.connect(str(self.socket_path))
            except BaseException:
                conn.close()
                raise
            return conn
        assert self.address is not None
        return socket.create_connection(self.address, timeout=self.timeout)


def _read_answer(conn: socket.socket) -> str:
    data = b""
    while b"\0" not in data and len(data) < _MAX_ANSWER:
        chunk = conn.recv(_MAX_ANSWER)
        if not chunk:
            break
        data += chunk
    return data.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _verdict(answer: str) -> Scanned:
    """clamd's line, e.g. "stream: Eicar-Signature FOUND", as a value."""
    _, _, result = answer.partition(": ")
    if result == "OK":
        return Scanned("clean")
    if result.endswith(" FOUND"):
        return Scanned("infected", result.removesuffix(" FOUND").strip()[:200])
    if answer.endswith(" ERROR"):  # "INSTREAM size limit exceeded. ERROR": this stream only
        return Scanned("unscannable", answer.removesuffix(" ERROR").strip()[:200])
    raise ScannerUnavailable(f"clamd gave no verdict: {answer[:200]!r}")  # or no answer at all
