"""A TCP proxy of the tests' own, on loopback, that breaks connections on purpose: it passes
bytes both ways and, on the connections it is told to, cuts both sides once a given number
of bytes has gone one way — in the middle of an IMAP literal or of SMTP DATA."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    def __init__(self, target_port: int, *, cut_after: int, direction: str, cuts: int = 1) -> None:
        self.target = ("127.0.0.1", target_port)
        self.cut_after = cut_after  # bytes passed in `direction` before the cut
        self.direction = direction  # "to_server" (e.g. SMTP DATA) or "to_client" (IMAP FETCH)
        self.cuts_left = cuts
        self.cuts_done = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cut = self.cuts_left > 0
                self.cuts_left -= 1 if cut else 0
            server = socket.create_connection(self.target)
            budget = [self.cut_after if cut else None]
            for src, dst, way in ((client, server, "to_server"), (server, client, "to_client")):
                threading.Thread(target=self._pump, args=(src, dst, way, budget, client, server),
                                 daemon=True).start()

    def _pump(self, src, dst, way, budget, client, server) -> None:  # noqa: ANN001
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                if way == self.direction and budget[0] is not None:
                    if len(data) >= budget[0]:
                        dst.sendall(data[: budget[0]])
                        with self._lock:
                            self.cuts_done += 1
                        break  # cut: both sides closed below
                    budget[0] -= len(data)
                dst.sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
