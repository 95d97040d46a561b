"""A TCP proxy of the tests' own, on loopback, that breaks connections on purpose.

It passes bytes both ways and, on the first `times` connections, once `after` bytes have gone
in `direction` (mid IMAP literal, mid SMTP DATA), breaks the connection in one of three ways:

- "cut":   close both sides (FIN), as a server or a middlebox that gives up cleanly;
- "reset": close both sides with an RST (SO_LINGER on, timeout 0), as a crashed peer or a
           firewall that forgot the connection;
- "stall": forward nothing more either way but keep both sides open — a black hole, as a
           hung server or a dropped route — until `stall_for` seconds pass (then a cut), the
           client gives up and closes, or the proxy is closed. Only a timeout gets a client out.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

FAULTS = ("cut", "reset", "stall")
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


@dataclass
class _Link:
    """One proxied connection: its two sockets and what is left before it breaks."""

    client: socket.socket
    server: socket.socket
    budget: int | None  # bytes still to pass in the proxy's direction; None: never break
    stalled: bool = False
    closed: bool = False


class FaultyProxy:
    def __init__(self, target_port: int, *, fault: str, after: int, direction: str,
                 times: int = 1, stall_for: float | None = None) -> None:
        if fault not in FAULTS or direction not in ("to_server", "to_client"):
            raise ValueError(f"fault one of {FAULTS}, direction to_server or to_client")
        self.target = ("127.0.0.1", target_port)
        self.fault = fault
        self.after = after  # bytes passed in `direction` before the fault
        self.direction = direction  # "to_server" (e.g. SMTP DATA) or "to_client" (IMAP FETCH)
        self.stall_for = stall_for  # None: a stall lasts until the client or the proxy closes
        self.faults_left = times
        self.faults_done = 0
        self.connections = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting and close every connection still open (stalled ones too)."""
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            self._close(link)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                self.connections += 1
                breaks = self.faults_left > 0
                self.faults_left -= 1 if breaks else 0
            link = _Link(client, socket.create_connection(self.target),
                         self.after if breaks else None)
            with self._lock:
                self._links.append(link)
            for src, dst, way in ((client, link.server, "to_server"),
                                  (link.server, client, "to_client")):
                threading.Thread(target=self._pump, args=(link, src, dst, way),
                                 daemon=True).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while data := src.recv(65536):
                if link.stalled:
                    continue  # the black hole: read (so a close is noticed), pass nothing
                if way == self.direction and link.budget is not None:
                    if len(data) >= link.budget:
                        dst.sendall(data[: link.budget])
                        link.budget = None
                        self._break(link)  # after a cut or a reset, the next recv() fails
                        continue
                    link.budget -= len(data)
                dst.sendall(data)
        except OSError:
            pass  # the other pump or a fault closed the sockets
        self._close(link)

    def _break(self, link: _Link) -> None:
        with self._lock:
            self.faults_done += 1
        if self.fault == "stall":
            link.stalled = True
            if self.stall_for is not None:
                timer = threading.Timer(self.stall_for, self._close, (link,))
                timer.daemon = True
                timer.start()
        else:
            self._close(link, rst=self.fault == "reset")

    def _close(self, link: _Link, *, rst: bool = False) -> None:
        with self._lock:
            if link.closed:
                return
            link.closed = True
        for sock in (link.client, link.server):
            try:
                if rst:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                # Wakes the other pump, blocked in recv() on this socket: until it returns,
                # close() would not release the socket. SHUT_RD sends nothing to the peer.
                sock.shutdown(socket.SHUT_RD if rst else socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
