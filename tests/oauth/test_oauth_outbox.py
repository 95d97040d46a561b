"""Mail to players during a long OAuth outage (on SQLite and PostgreSQL): the failure is
ours (no SMTP token), so the outbox neither counts the passes as attempts nor lets the rows
expire; it sends them once a new login works, however long it took."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from daemon.oauth import TokenKeeper
from daemon.outbox import OutboxSender
from responders.transport import SmtpTransport
from storage import db, outbox
from storage.models import utcnow
from storage.tokens import TokenRecord, TokenStore
from tests.support.oauth_server import BearerSmtp, OAuthServer, client_for

MAIL = (b"From: desk@test.example\r\nTo: player@test.example\r\nSubject: re\r\n"
        b"Message-ID: <reply-1@test.example>\r\n\r\nhello\r\n")


@pytest.fixture
def bearer_smtp(idp: OAuthServer) -> Iterator[BearerSmtp]:
    server = BearerSmtp(f"{idp.url}/introspect")
    yield server
    server.stop()


def _row(sessions):  # noqa: ANN001, ANN202
    with sessions() as session:
        (row,) = outbox.list_rows(session)
    return row


def test_mail_waits_out_an_oauth_outage_longer_than_its_lifetime(
        idp: OAuthServer, bearer_smtp: BearerSmtp, db_url: str, tmp_path: Path) -> None:
    idp.username = "desk@test.example"
    sessions = db.session_factory(db.make_engine(db_url))
    start = utcnow()
    with sessions.begin() as session:
        outbox.enqueue(session, raw=MAIL, message_id="<reply-1@test.example>",
                       envelope_from="desk@test.example", recipients=["player@test.example"],
                       kind="reply", now=start, lifetime=timedelta(minutes=5))
    store = TokenStore.in_state_directory(tmp_path / "state", "smtp")
    store.save(TokenRecord(refresh_token=idp.issue_refresh_token()))
    keeper = TokenKeeper(client_for(idp, "smtp", idp.username), store)
    transport = SmtpTransport("127.0.0.1", bearer_smtp.port, tls="none",
                              username=idp.username, oauth2_tokens=keeper,
                              local_hostname="localhost", timeout=5)
    now = [start]
    sender = OutboxSender(sessions, transport, ops_address=None, now=lambda: now[0])
    idp.revoke()  # the admin revoked the app: nobody logs in again for a while
    for _ in range(12):  # twice the lifetime, a pass each time the rows are due again
        stats = asyncio.run(sender.run_once())
        assert stats.claimed == 1 and stats.released == 1
        row = _row(sessions)
        assert (row.state, row.attempts) == ("pending", 0)
        due = row.next_attempt_at  # naive on SQLite, which stores UTC
        now[0] = max(now[0], due if due.tzinfo else due.replace(tzinfo=UTC))
    assert now[0] - start > timedelta(minutes=10)
    assert "invalid_grant" in (row.last_error or "")
    store.save(TokenRecord(refresh_token=idp.issue_refresh_token()))  # ticketd oauth login
    keeper.invalidate()  # systemctl reload ticketd
    now[0] += timedelta(minutes=1)
    stats = asyncio.run(sender.run_once())
    assert stats.sent == 1
    assert _row(sessions).state == "sent"
    assert len(bearer_smtp.sink.received) == 1
