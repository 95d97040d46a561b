"""The SMTP transport against real aiosmtpd servers on loopback: TLS verified, AUTH, one
connection per batch, and every kind of answer classified."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from responders.transport import (
    PermanentDeliveryError,
    SendResult,
    ServerUnavailable,
    SmtpTransport,
    TemporaryDeliveryError,
)
from tests.outbox.smtp_sink import (
    ClosesWith421,
    FailsFirst,
    Refuses,
    RefusesNamed,
    Sink,
    free_port,
    self_signed_certificate,
    server_tls_context,
    transport_to,
)
from tests.support.mails import mail

RAW = mail(sender="support@casino.test", to="player@mail.test", message_id="<t-1@casino.test>")


def send(transport: SmtpTransport, *mails: tuple[str, list[str]]) -> list[SendResult | Exception]:
    """Send mails over one session; each result or the error it raised."""

    async def go() -> list[SendResult | Exception]:
        results: list[SendResult | Exception] = []
        async with transport.session() as smtp:
            for sender, recipients in mails:
                try:
                    results.append(await smtp.send(sender, recipients, RAW))
                except Exception as err:  # noqa: BLE001 - the test looks at it
                    results.append(err)
        return results

    return asyncio.run(go())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_one_connection_carries_a_batch(smtp_server):
    server = smtp_server()
    results = send(transport_to(server.port), *[("support@casino.test", ["p@mail.test"])] * 5)
    assert all(isinstance(r, SendResult) and r.accepted == ["p@mail.test"] for r in results)
    assert len(server.handler.received) == 5
    assert server.handler.connections == 1
    assert server.handler.received[0].content.rstrip() == RAW.rstrip()


def test_starttls_with_a_self_signed_certificate_needs_its_ca_file(smtp_server, certificate):
    cert, key = certificate
    server = smtp_server(tls_context=server_tls_context(cert, key), require_starttls=True)
    [refused] = send(transport_to(server.port, tls="starttls", connect_attempts=1),
                     ("support@casino.test", ["p@mail.test"]))
    assert isinstance(refused, ServerUnavailable)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused) or "certificate" in str(refused).lower()
    [result] = send(transport_to(server.port, tls="starttls", ca_file=str(cert)),
                    ("support@casino.test", ["p@mail.test"]))
    assert isinstance(result, SendResult) and len(server.handler.received) == 1


def test_implicit_tls_is_verified_too(smtp_server, certificate):
    cert, key = certificate
    server = smtp_server(ssl_context=server_tls_context(cert, key))
    [refused] = send(transport_to(server.port, tls="implicit", connect_attempts=1),
                     ("support@casino.test", ["p@mail.test"]))
    assert isinstance(refused, ServerUnavailable)
    [result] = send(transport_to(server.port, tls="implicit", ca_file=str(cert)),
                    ("support@casino.test", ["p@mail.test"]))
    assert isinstance(result, SendResult) and len(server.handler.received) == 1


def test_a_plain_transport_goes_only_to_loopback():
    with pytest.raises(ValueError, match="loopback"):
        SmtpTransport("smtp.example.com", 25, tls="none")


class _Logins(Sink):
    """Knows one password and one XOAUTH2 token, and remembers who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[tuple[str, str]] = []

    def authenticator(self, server, session, envelope, mechanism, data):  # noqa: ANN001, ANN201
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"desk", b"pw")
        if ok:
            self.logins.append((mechanism, data.login.decode()))
        return AuthResult(success=ok, handled=False)

    async def auth_XOAUTH2(self, server, args):  # noqa: ANN001, ANN201
        decoded = base64.b64decode(args[1]).decode()
        ok = decoded == "user=desk\x01auth=Bearer tok-123\x01\x01"
        if ok:
            self.logins.append(("XOAUTH2", "desk"))
        return AuthResult(success=ok, handled=False)


# AUTH without TLS, only because the server is on loopback: aiosmtpd warns about it.
no_tls_warning = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def _auth_server(smtp_server):  # noqa: ANN001, ANN202
    handler = _Logins()
    return smtp_server(handler, authenticator=handler.authenticator, auth_require_tls=False,
                       auth_required=True)


@no_tls_warning
def test_password_auth(smtp_server):
    server = _auth_server(smtp_server)
    [result] = send(transport_to(server.port, username="desk", password="pw"),
                    ("support@casino.test", ["p@mail.test"]))
    assert isinstance(result, SendResult)
    [(mechanism, login)] = server.handler.logins
    assert login == "desk" and mechanism in ("PLAIN", "LOGIN")
    [wrong] = send(transport_to(server.port, username="desk", password="nope"),
                   ("support@casino.test", ["p@mail.test"]))
    assert isinstance(wrong, ServerUnavailable) and "535" in str(wrong)
    assert len(server.handler.received) == 1


@no_tls_warning
def test_xoauth2_when_a_token_is_configured(smtp_server):
    server = _auth_server(smtp_server)
    [result] = send(transport_to(server.port, username="desk", oauth2_token="tok-123"),
                    ("support@casino.test", ["p@mail.test"]))
    assert isinstance(result, SendResult)
    assert server.handler.logins == [("XOAUTH2", "desk")]


def test_4xx_at_data_is_temporary_and_5xx_permanent(smtp_server):
    soft = smtp_server(FailsFirst(1))
    first, second = send(transport_to(soft.port), *[("support@casino.test", ["p@mail.test"])] * 2)
    assert isinstance(first, TemporaryDeliveryError) and "451" in str(first)
    assert isinstance(second, SendResult)  # the connection stays usable after the 451
    hard = smtp_server(Refuses("550 5.7.1 no", at="MAIL"))
    [refused] = send(transport_to(hard.port), ("support@casino.test", ["p@mail.test"]))
    assert isinstance(refused, PermanentDeliveryError) and "MAIL FROM: 550" in str(refused)


def test_recipients_refused_one_by_one(smtp_server):
    server = smtp_server(RefusesNamed({"busy@mail.test": "450 4.2.1 mailbox busy",
                                       "gone@mail.test": "550 5.1.1 no such user"}))
    partial, all_refused, all_gone = send(
        transport_to(server.port),
        ("support@casino.test", ["ok@mail.test", "busy@mail.test", "gone@mail.test"]),
        ("support@casino.test", ["busy@mail.test", "gone@mail.test"]),
        ("support@casino.test", ["gone@mail.test"]),
    )
    assert isinstance(partial, SendResult)
    assert partial.accepted == ["ok@mail.test"]
    assert partial.temporarily_refused == ["busy@mail.test"]
    assert partial.permanently_refused == {"gone@mail.test": "550 5.1.1 no such user"}
    assert isinstance(all_refused, TemporaryDeliveryError)
    assert set(all_refused.refused) == {"busy@mail.test", "gone@mail.test"}
    assert isinstance(all_gone, PermanentDeliveryError)
    assert [r.rcpt_tos for r in server.handler.received] == [("ok@mail.test",)]


def test_421_and_a_closed_connection_mean_a_new_connection_for_the_same_mail(smtp_server):
    server = smtp_server(ClosesWith421(1))
    results = send(transport_to(server.port), *[("support@casino.test", ["p@mail.test"])] * 3)
    assert all(isinstance(r, SendResult) for r in results), results
    assert len(server.handler.received) == 3
    assert server.handler.connections == 2


def test_no_server_is_a_temporary_failure_after_quick_retries():
    [result] = send(transport_to(free_port(), connect_attempts=3),
                    ("support@casino.test", ["p@mail.test"]))
    assert isinstance(result, ServerUnavailable)
    assert isinstance(result, TemporaryDeliveryError)
