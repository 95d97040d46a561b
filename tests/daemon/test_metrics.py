"""The metrics endpoint of a running daemon (real Dovecot, SQLite and PostgreSQL): no stale
gauge, and what an alert needs about the mailbox and the outbox."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from storage import db, outbox
from storage.models import OutboxMessage, Ticket, utcnow
from tests.daemon.test_service import Daemon, wait_for
from tests.outbox.smtp_sink import free_port
from tests.support.configs import write_config
from tests.support.mails import mail

pytestmark = [pytest.mark.dovecot]


def scrape(port: int) -> dict[str, float]:
    """Every sample of the page: 'name{labels}' -> value."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
            text = page.read().decode()
    except OSError:
        return {}
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def sample(port: int, name: str) -> float | None:
    return scrape(port).get(name)


def test_ticket_gauges_fall_to_zero_and_the_mailbox_is_watched(
        dovecot, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    port = free_port()
    account = dovecot.new_account()
    config = write_config(tmp_path, db_url, account, metrics={"listen": f"127.0.0.1:{port}"})
    (tmp_path / "imap-password").write_text("not-the-password\n")  # refused at first
    sessions = db.session_factory(db.make_engine(db_url))
    dovecot.append(account, mail(subject="Refund please", body="Refund my deposit"))
    label = f'{{mailbox="{account.username}@{account.host}:{account.port}/INBOX"}}'
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: sample(port, f"ticketd_mailbox_connected{label}") == 0.0, 30,
                 "the refused mailbox shown as not connected")
        assert sample(port, f"ticketd_mailbox_last_pass_timestamp_seconds{label}") is None
        (tmp_path / "imap-password").write_text(account.password + "\n")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: sample(port, 'ticketd_tickets{status="open"}') == 1.0, 30,
                 "the ticket counted")
        page = scrape(port)
        assert page[f"ticketd_mailbox_connected{label}"] == 1.0
        assert abs(page[f"ticketd_mailbox_last_pass_timestamp_seconds{label}"] - time.time()) < 30
        for status in ("pending", "resolved", "closed"):  # every status, before any has it
            assert page[f'ticketd_tickets{{status="{status}"}}'] == 0.0

        with sessions.begin() as session:
            session.execute(update(Ticket).values(status="resolved"))
        wait_for(lambda: sample(port, 'ticketd_tickets{status="resolved"}') == 1.0, 30,
                 "the resolved ticket counted")
        assert sample(port, 'ticketd_tickets{status="open"}') == 0.0  # not stuck at 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.close()
    assert "Traceback" not in daemon.text()


def test_the_age_of_the_oldest_due_outbox_row_is_exported(
        dovecot, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    port = free_port()
    account = dovecot.new_account()
    # No [smtp]: no sender takes the outbox's work, which is the case this gauge alerts on.
    config = write_config(tmp_path, db_url, account, metrics={"listen": f"127.0.0.1:{port}"})
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        for hours in (1, 3):  # due one and three hours ago; another not due for an hour
            outbox.enqueue(session, raw=b"Subject: x\r\n\r\nx\r\n", message_id=f"<due-{hours}@t>",
                           envelope_from="support@casino.test", recipients=["p@mail.test"],
                           kind="ack", now=utcnow() - timedelta(hours=hours))
        outbox.enqueue(session, raw=b"Subject: x\r\n\r\nx\r\n", message_id="<later@t>",
                       envelope_from="support@casino.test", recipients=["p@mail.test"],
                       kind="ack", now=utcnow() + timedelta(hours=1))
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: (sample(port, "ticketd_outbox_oldest_due_seconds") or 0) > 0, 30,
                 "the oldest due row's age")
        age = sample(port, "ticketd_outbox_oldest_due_seconds")
        assert 3 * 3600 - 5 <= age <= 3 * 3600 + 60
        with sessions.begin() as session:  # as a sender would: both due rows sent
            session.execute(update(OutboxMessage).where(OutboxMessage.message_id != "<later@t>")
                            .values(state="sent"))
        wait_for(lambda: sample(port, "ticketd_outbox_oldest_due_seconds") == 0.0, 30,
                 "0 once nothing is due")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.close()
