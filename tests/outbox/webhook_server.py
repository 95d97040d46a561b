"""A real HTTP server on loopback for the webhook tests: it records every request it gets
and answers from a script (503, 503, then 200 ...), as a platform that fails and recovers."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from responders.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the server answered

    @property
    def delivery(self) -> str:
        return self.headers[DELIVERY_HEADER.lower()]

    @property
    def event(self) -> str:
        return self.headers[EVENT_HEADER.lower()]

    @property
    def signature(self) -> str:
        return self.headers[SIGNATURE_HEADER.lower()]

    def json(self) -> Any:  # noqa: ANN401 - the event as the platform reads it
        return json.loads(self.body)


class Platform:
    """What the server answers, in order; 200 once the script is used up. An answer may be
    (status, headers), such as (429, {"Retry-After": "120"}). While `stall` is set, each
    request is read and then left unanswered until it is cleared (at most a minute)."""

    def __init__(self, answers: Iterable[int | tuple[int, dict[str, str]]] = ()) -> None:
        self.answers = list(answers)
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stall = threading.Event()
        self.answering = threading.Event()  # set to let stalled requests go on
        self.arrived = threading.Event()  # set at each request read

    def next_answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            answer = self.answers.pop(0) if self.answers else 200
        return answer if isinstance(answer, tuple) else (answer, {})

    def next_status(self) -> int:
        return self.next_answer()[0]

    def delivered(self) -> list[Request]:
        """The requests answered with a 2xx: what the platform took."""
        return [r for r in self.requests if 200 <= r.status < 300]


class WebhookServer:
    def __init__(self, platform: Platform, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.platform = platform
        self.port = port
        self.scheme = "https" if tls else "http"
        handler = _handler_for(platform)
        self._server = ThreadingHTTPServer((HOST, port), handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}/hooks/ticketd"

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.platform.answering.set()  # a stalled request ends, so the server can stop
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def _handler_for(platform: Platform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real platform

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, extra = platform.next_answer()
            named = {k.lower(): v for k, v in self.headers.items()}
            with platform.lock:
                platform.requests.append(Request(self.path, named, body, status))
            platform.arrived.set()
            if platform.stall.is_set():
                platform.answering.wait(60)
            reply = b'{"ok": true}' if status < 300 else b'{"error": "busy"}'
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the test reads `platform.requests`

    return Handler
