"""A TLS mode that does not match the port says so, for IMAP (real Dovecot) and SMTP (real
aiosmtpd with TLS), instead of a bare "timed out" or a TLS error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.imap import GreetingTimeout, ImapConfigError, ImapSource, is_temporary
from responders.transport import ServerUnavailable
from tests.outbox.smtp_sink import (
    Sink,
    SmtpServer,
    free_port,
    self_signed_certificate,
    server_tls_context,
    transport_to,
)
from tests.support.dovecot import Account


def _imap(account: Account, *, port: int, tls: str) -> ImapSource:
    return ImapSource(host=account.host, port=port, tls=tls, username=account.username,
                      password=account.password, ca_file=account.cafile, timeout=2)


@pytest.mark.dovecot
@pytest.mark.parametrize("tls", ["starttls", "none"])
def test_imap_waiting_for_a_greeting_on_the_implicit_tls_port_names_the_mode(
        imap_account: Account, tls: str) -> None:
    source = _imap(imap_account, port=imap_account.tls_port, tls=tls)
    with pytest.raises(GreetingTimeout) as failure:
        source.connect()
    text = str(failure.value)
    assert text.startswith(f"no greeting from {imap_account.host}:{imap_account.tls_port} "
                           f'within 2s (tls = "{tls}" waits for a greeting, but an '
                           "implicit-TLS port (usually 993) stays silent: "
                           'is tls = "implicit" meant?)')
    assert is_temporary(failure.value)  # it may still be the network: retried, with this hint


@pytest.mark.dovecot
def test_imap_implicit_tls_on_the_plain_port_names_the_mode(imap_account: Account) -> None:
    source = _imap(imap_account, port=imap_account.port, tls="implicit")
    with pytest.raises(ImapConfigError) as failure:
        source.connect()
    text = str(failure.value)
    assert text.startswith(f"TLS with {imap_account.host}:{imap_account.port} failed "
                           '(tls = "implicit", but the port may speak plain IMAP with STARTTLS '
                           '(usually 143): is tls = "starttls" meant?): ')


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def implicit_tls_server(certificate):  # noqa: ANN001, ANN201
    cert, key = certificate
    server = SmtpServer(Sink(), free_port(), server_hostname="localhost",
                        ssl_context=server_tls_context(cert, key)).start()
    yield server
    server.stop()


@pytest.fixture
def starttls_server(certificate):  # noqa: ANN001, ANN201
    cert, key = certificate
    server = SmtpServer(Sink(), free_port(), tls_context=server_tls_context(cert, key)).start()
    yield server
    server.stop()


async def _connect(port: int, tls: str, cert: Path) -> str:
    transport = transport_to(port, tls=tls, ca_file=str(cert), timeout=2, connect_attempts=1)
    async with transport.session() as session:
        with pytest.raises(ServerUnavailable) as failure:
            await session.connect()
    return str(failure.value)


def test_smtp_starttls_on_the_implicit_tls_port_names_the_mode(
        implicit_tls_server: SmtpServer, certificate) -> None:  # noqa: ANN001
    text = asyncio.run(_connect(implicit_tls_server.port, "starttls", certificate[0]))
    assert text.startswith("SMTPConnectTimeoutError")
    assert f'no greeting from 127.0.0.1:{implicit_tls_server.port} with tls = "starttls"' in text
    assert "implicit TLS (usually 465)" in text and 'is tls = "implicit" meant?' in text


def test_smtp_implicit_tls_on_the_plain_port_names_the_mode(
        starttls_server: SmtpServer, certificate) -> None:  # noqa: ANN001
    text = asyncio.run(_connect(starttls_server.port, "implicit", certificate[0]))
    assert f'TLS handshake with 127.0.0.1:{starttls_server.port} (tls = "implicit") failed' in text
    assert "STARTTLS (usually 587 or 25)" in text and 'is tls = "starttls" meant?' in text


def test_smtp_right_modes_connect_without_a_hint(
        implicit_tls_server: SmtpServer, starttls_server: SmtpServer, certificate) -> None:  # noqa: ANN001
    async def both() -> None:
        for port, tls in ((implicit_tls_server.port, "implicit"),
                          (starttls_server.port, "starttls")):
            transport = transport_to(port, tls=tls, ca_file=str(certificate[0]), timeout=2)
            async with transport.session() as session:
                await session.connect()

    asyncio.run(both())
