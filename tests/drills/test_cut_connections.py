"""Connections broken in the middle of an IMAP FETCH literal and of SMTP DATA: cut (FIN),
reset (RST), or stalled (a black hole that only a timeout ends). After each, every mail is in
exactly one ticket and every due mail is delivered once (DESIGN invariants 1 and 2)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.outbox import OutboxSender
from storage import db, outbox
from storage.models import Ticket, utcnow
from tests.drills.proxy import FaultyProxy
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port, transport_to
from tests.support.configs import write_config
from tests.support.mails import PNG, mail

FAULTS = ("cut", "reset", "stall")
TIMEOUT = 2  # seconds: the IMAP and SMTP read timeouts here, so that a stall ends soon
# What the client must notice for each fault: the stall only by its read timeout.
IMAP_NOTICES = {"cut": "error=\"abort", "reset": "error=\"ConnectionResetError",
                "stall": "error=\"TimeoutError"}
SMTP_NOTICES = {"cut": "Unexpected EOF", "reset": "Connection lost", "stall": "Timed out"}


@pytest.mark.parametrize("fault", FAULTS)
def test_an_imap_connection_broken_mid_literal_loses_and_doubles_nothing(
        dovecot, sqlite_url: str, tmp_path: Path, fault: str) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    for i in range(20):
        dovecot.append(account, mail(sender=f"p{i}@mail.test", subject=f"Refund {i}",
                                     body="x" * 3000,
                                     attachments=(("s.png", "image/png", PNG * 200),)))
    proxy = FaultyProxy(account.port, fault=fault, after=40_000, direction="to_client", times=2)
    account_via_proxy = type(account)(**{**account.__dict__, "port": proxy.port})
    config = write_config(tmp_path, sqlite_url, account_via_proxy, imap={"timeout": TIMEOUT})
    sessions = db.session_factory(db.make_engine(sqlite_url))
    log_path = tmp_path / "daemon.log"
    log = log_path.open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40  # a stall is over in TIMEOUT s, or it hangs forever
        while time.monotonic() < deadline and dovecot.uids(account, "INBOX"):
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        proxy.close()
        log.close()
    assert proxy.faults_done == 2 and proxy.connections >= 3  # broken twice, reconnected
    failures = [line for line in log_path.read_text().splitlines() if "watcher failed" in line]
    assert len(failures) == 2 and all(IMAP_NOTICES[fault] in line for line in failures)
    assert dovecot.uids(account, "INBOX") == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 20
    assert len(dovecot.uids(account, "Processed")) == 20


@pytest.mark.parametrize("fault", FAULTS)
def test_an_smtp_connection_broken_mid_data_is_retried_and_delivered_once(
        db_url: str, fault: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    sink = SmtpServer(Sink(), free_port()).start()
    proxy = FaultyProxy(sink.port, fault=fault, after=5_000, direction="to_server", times=1)
    try:
        now = utcnow()
        with sessions.begin() as session:
            raw = mail(subject="Ack", body="y" * 20_000, message_id="<cut-1@casino.test>")
            outbox.enqueue(session, raw=raw, message_id="cut-1@casino.test",
                           envelope_from="support@casino.test", recipients=["p@mail.test"],
                           kind="ack", now=now)
        clock = [now]
        sender = OutboxSender(sessions, transport_to(proxy.port, timeout=TIMEOUT),
                              ops_address=None, now=lambda: clock[0])
        started = time.monotonic()
        first = asyncio.run(sender.run_once())
        assert (first.sent, first.retried) == (0, 1) and proxy.faults_done == 1
        assert time.monotonic() - started < 10 * TIMEOUT  # a stall times out, it does not hang
        with sessions() as session:
            [row] = outbox.list_rows(session)
            assert row.state == "pending" and row.next_attempt_at > now  # persisted schedule
            assert "connection lost" in row.last_error and SMTP_NOTICES[fault] in row.last_error
        second = asyncio.run(sender.run_once())
        assert second.claimed == 0  # not before its time
        clock[0] = now + timedelta(hours=2)  # past the persisted retry time
        third = asyncio.run(sender.run_once())
        assert third.sent == 1
    finally:
        proxy.close()
        sink.stop()
    assert [r.message_id for r in sink.handler.received] == ["<cut-1@casino.test>"]
    with sessions() as session:
        [row] = outbox.list_rows(session)
        assert (row.state, row.attempts) == ("sent", 2)
