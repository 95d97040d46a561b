"""SMTP XOAUTH2 against a local aiosmtpd that asks the same introspection endpoint; a refresh
token revoked is reported once: STATUS=, the metric, one mail to ops through the outbox."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from daemon import metrics  # noqa: F401 - registers the metrics read below
from daemon.oauth import OAuthProblem, RefreshWatch
from daemon.systemd import notify
from responders.transport import SmtpTransport, TokenUnavailable
from storage import db, outbox
from tests.support.dovecot import Account
from tests.support.oauth_server import BearerSmtp, OAuthServer

pytestmark = pytest.mark.dovecot  # the mailbox fixture starts Dovecot


@pytest.fixture
def bearer_smtp(idp: OAuthServer):  # noqa: ANN201
    server = BearerSmtp(f"{idp.url}/introspect")
    yield server.sink, server.port
    server.stop()


MAIL = b"From: desk@test.example\r\nTo: p@test.example\r\nSubject: hi\r\n\r\nhello\r\n"


async def _send(transport: SmtpTransport) -> None:
    async with transport.session() as smtp:
        await smtp.send("desk@test.example", ["p@test.example"], MAIL)


def test_smtp_takes_a_fresh_token_per_connection(idp: OAuthServer, mailbox: Account,
                                                 bearer_smtp, logged_in) -> None:  # noqa: ANN001
    sink, port = bearer_smtp
    keeper = logged_in("smtp")
    transport = SmtpTransport("127.0.0.1", port, tls="none", username=mailbox.username,
                              oauth2_tokens=keeper, local_hostname="localhost", timeout=5)
    asyncio.run(_send(transport))
    idp.expire_access_tokens()  # the provider ended the first token early
    asyncio.run(_send(transport))
    assert len(sink.received) == 2
    assert len(set(sink.tokens)) == 2 and sink.refused == 1  # refused once, refreshed, sent


def test_smtp_without_a_token_is_a_server_unavailable(idp: OAuthServer, mailbox: Account,
                                                      bearer_smtp, logged_in) -> None:  # noqa: ANN001
    sink, port = bearer_smtp
    keeper = logged_in("smtp")
    idp.revoke()
    transport = SmtpTransport("127.0.0.1", port, tls="none", username=mailbox.username,
                              oauth2_tokens=keeper, local_hostname="localhost", timeout=5)
    with pytest.raises(TokenUnavailable):
        asyncio.run(_send(transport))
    assert sink.received == []


def _failures(mailbox: str, error: str) -> float:
    value = REGISTRY.get_sample_value("ticketd_oauth_refresh_failures_total",
                                      {"mailbox": mailbox, "error": error})
    return value or 0.0


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def _said(sock: socket.socket) -> list[str]:
    lines = []
    while True:
        try:
            lines += sock.recv(4096).decode().splitlines()
        except BlockingIOError:
            return lines


def test_a_revoked_refresh_token_is_reported_once(idp: OAuthServer, mailbox: Account,
                                                  logged_in, sqlite_url: str,
                                                  notify_socket: socket.socket) -> None:  # noqa: ANN001
    sessions = db.session_factory(db.make_engine(sqlite_url))

    def watch() -> RefreshWatch:  # one per daemon start
        made = RefreshWatch(sessions, "ops@test.example", "desk@test.example")
        made.on_change = lambda: notify(f"STATUS=running; {made.status()}")
        return made

    first = watch()
    keeper = logged_in(listener=first)
    keeper.access_token()
    idp.revoke()
    before = _failures("imap", "invalid_grant")
    for _ in range(3):  # refused logins: each makes the keeper refresh at once
        keeper.invalidate()
        with pytest.raises(OAuthProblem) as problem:
            keeper.access_token()
        assert problem.value.permanent
    keeper.listener = watch()  # as after a restart: it may not report the same token again
    keeper.invalidate()
    with pytest.raises(OAuthProblem):
        keeper.access_token()
    assert _failures("imap", "invalid_grant") == before + 4
    with sessions() as session:
        rows = [r for r in outbox.list_rows(session) if r.kind == "ops"]
    assert [r.recipients for r in rows] == [["ops@test.example"]]
    status = [line for line in _said(notify_socket) if line.startswith("STATUS=")]
    assert status and "invalid_grant" in status[-1]
    assert "ticketd oauth login imap" in status[-1]


def test_an_endpoint_down_briefly_is_not_reported_but_counted(
        idp: OAuthServer, mailbox: Account, logged_in, sqlite_url: str) -> None:  # noqa: ANN001
    sessions = db.session_factory(db.make_engine(sqlite_url))
    watch = RefreshWatch(sessions, "ops@test.example", "desk@test.example")
    keeper = logged_in(listener=watch)
    idp.state.down = True
    before = _failures("imap", "network") + _failures("imap", "temporarily_unavailable")
    with pytest.raises(OAuthProblem) as problem:
        keeper.access_token()
    assert not problem.value.permanent
    after = _failures("imap", "network") + _failures("imap", "temporarily_unavailable")
    assert after == before + 1
    assert watch.problems and watch.reports == 0
    idp.state.down = False
    keeper.invalidate()
    keeper.access_token()
    assert watch.problems == {}  # the STATUS line clears once a refresh works again


def test_an_endpoint_down_for_long_is_reported_once(idp: OAuthServer, mailbox: Account,
                                                    logged_in, sqlite_url: str) -> None:  # noqa: ANN001
    from datetime import UTC, datetime

    from daemon.oauth import REPORT_AFTER
    from tests.support.oauth_server import Clock

    clock = Clock()
    sessions = db.session_factory(db.make_engine(sqlite_url))
    watch = RefreshWatch(sessions, "ops@test.example", "desk@test.example",
                         now=lambda: datetime.fromtimestamp(clock.now, UTC))
    keeper = logged_in(listener=watch, clock=clock)
    idp.state.down = True
    started = clock.now
    reports = []
    for lasted in (0, REPORT_AFTER / 2, REPORT_AFTER + 1, 2 * REPORT_AFTER):
        clock.now = started + lasted
        keeper.invalidate()
        with pytest.raises(OAuthProblem):
            keeper.access_token()
        reports.append(watch.reports)
    assert reports == [0, 0, 1, 1]  # once it has lasted, and then not again
    with sessions() as session:
        assert len([r for r in outbox.list_rows(session) if r.kind == "ops"]) == 1
