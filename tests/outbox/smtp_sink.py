"""Real SMTP servers for the outbox tests: aiosmtpd on loopback, with handlers that record
what they accept or answer as a troubled server would. No mail leaves the machine."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from responders.transport import SmtpTransport

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    @property
    def message_id(self) -> str:
        return str(message_from_bytes(self.content)["Message-ID"])


class Sink:
    """Accepts everything and records each mail with its envelope (aiosmtpd's
    ReceivingHandler, plus the connections that carried mail)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._sessions: list[Any] = []
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        """Connections that sent at least one MAIL command."""
        return len(self._sessions)

    async def handle_MAIL(self, server, session, envelope, address, options):  # noqa: ANN001, ANN201
        with self._lock:
            if not any(s is session for s in self._sessions):
                self._sessions.append(session)
        reply = self.mail_reply(server, address)
        if reply.startswith("250"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN001, ANN201
        reply = self.rcpt_reply(address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        reply = self.data_reply()
        if reply.startswith("250"):
            with self._lock:
                self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                                              bytes(envelope.original_content)))
        return reply

    # Subclasses answer differently by overriding these.
    def mail_reply(self, server: Any, address: str) -> str:
        return "250 OK"

    def rcpt_reply(self, address: str) -> str:
        return "250 OK"

    def data_reply(self) -> str:
        return "250 2.0.0 queued"

    def message_ids(self) -> list[str]:
        return [r.message_id for r in self.received]


class FailsFirst(Sink):
    """Answers `reply` to the first `times` mails at DATA, then accepts."""

    def __init__(self, times: int, reply: str = "451 4.3.0 try again later") -> None:
        super().__init__()
        self.left, self.reply = times, reply

    def data_reply(self) -> str:
        if self.left > 0:
            self.left -= 1
            return self.reply
        return super().data_reply()


class Refuses(Sink):
    """Refuses every mail (at DATA by default, or at MAIL FROM)."""

    def __init__(self, reply: str = "550 5.7.1 message rejected", at: str = "DATA") -> None:
        super().__init__()
        self.reply, self.at = reply, at

    def mail_reply(self, server: Any, address: str) -> str:
        return self.reply if self.at == "MAIL" else super().mail_reply(server, address)

    def data_reply(self) -> str:
        return self.reply if self.at == "DATA" else super().data_reply()


class RefusesNamed(Sink):
    """Answers RCPT TO per recipient (address -> reply); everyone else is accepted."""

    def __init__(self, replies: dict[str, str]) -> None:
        super().__init__()
        self.replies = dict(replies)

    def rcpt_reply(self, address: str) -> str:
        return self.replies.get(address, "250 OK")


class ClosesWith421(Sink):
    """The first `times` MAIL commands get "421" and the connection is closed, as a server
    that shuts down or limits its connections does."""

    def __init__(self, times: int = 1) -> None:
        super().__init__()
        self.left = times

    def mail_reply(self, server: Any, address: str) -> str:
        if self.left > 0:
            self.left -= 1
            # Close once the reply is written: transport.close() flushes it first.
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return "421 4.3.2 service shutting down"
        return super().mail_reply(server, address)


class PasswordSink(Sink):
    """Requires AUTH (PLAIN/LOGIN) with `username` and the one `password` it knows now; the
    test changes `password` to rotate it, and the old one is refused from then on. Each
    accepted mail is recorded with the password its connection logged in with (`used`).

    Serve it with `SmtpServer(sink, port, **sink.server_options())`."""

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.used: list[str] = []  # per accepted mail, in the order of `received`
        self.refused_logins = 0

    def server_options(self) -> dict[str, Any]:
        # AUTH without TLS, only because the server is on loopback.
        return {"authenticator": self.authenticator, "auth_require_tls": False,
                "auth_required": True}

    def authenticator(self, server, session, envelope, mechanism, data):  # noqa: ANN001, ANN201
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.username.encode(), self.password.encode())
        if not ok:
            self.refused_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=data.password.decode() if ok
                          else None)

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            with self._lock:
                self.used.append(session.auth_data)
        return reply


class SmtpServer:
    """One aiosmtpd server on HOST:port in its own thread, started and stopped here."""

    def __init__(self, handler: Sink, port: int, **smtp_options: Any) -> None:
        self.handler = handler
        self.port = port
        self._controller = Controller(handler, hostname=HOST, port=port, ready_timeout=5,
                                      **smtp_options)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def transport_to(port: int, **options: Any) -> SmtpTransport:
    """A plain loopback transport with short connection retries, for tests."""
    defaults: dict[str, Any] = {"tls": "none", "timeout": 5, "local_hostname": "localhost",
                                "connect_wait": (0.01, 0.05)}
    return SmtpTransport(HOST, port, **defaults | options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1 and localhost; the certificate is its own CA."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context
