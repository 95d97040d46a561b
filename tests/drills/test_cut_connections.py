"""Connections cut in the middle: an IMAP FETCH literal and SMTP DATA. After each, every mail
is in exactly one ticket and every due mail is delivered once (DESIGN invariants 1 and 2)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from daemon.outbox import OutboxSender
from storage import db, outbox
from storage.models import Ticket, utcnow
from tests.drills.proxy import CuttingProxy
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port, transport_to
from tests.support.configs import write_config
from tests.support.mails import PNG, mail


def test_an_imap_connection_cut_mid_literal_loses_and_doubles_nothing(
        dovecot, sqlite_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    for i in range(20):
        dovecot.append(account, mail(sender=f"p{i}@mail.test", subject=f"Refund {i}", body="x" * 3000,
                                     attachments=(("s.png", "image/png", PNG * 200),)))
    proxy = CuttingProxy(account.port, cut_after=40_000, direction="to_client", cuts=2)
    account_via_proxy = type(account)(**{**account.__dict__, "port": proxy.port})
    config = write_config(tmp_path, sqlite_url, account_via_proxy)
    sessions = db.session_factory(db.make_engine(sqlite_url))
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and dovecot.uids(account, "INBOX"):
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        proxy.close()
        log.close()
    assert proxy.cuts_done == 2 and proxy.connections >= 3  # cut twice, reconnected
    assert dovecot.uids(account, "INBOX") == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 20
    assert len(dovecot.uids(account, "Processed")) == 20


def test_an_smtp_connection_cut_mid_data_is_retried_and_delivered_once(db_url: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    sink = SmtpServer(Sink(), free_port()).start()
    proxy = CuttingProxy(sink.port, cut_after=5_000, direction="to_server", cuts=1)
    try:
        now = utcnow()
        with sessions.begin() as session:
            raw = mail(subject="Ack", body="y" * 20_000, message_id="<cut-1@casino.test>")
            outbox.enqueue(session, raw=raw, message_id="cut-1@casino.test",
                           envelope_from="support@casino.test", recipients=["p@mail.test"],
                           kind="ack", now=now)
        clock = [now]
        sender = OutboxSender(sessions, transport_to(proxy.port), ops_address=None,
                              now=lambda: clock[0])
        first = asyncio.run(sender.run_once())
        assert (first.sent, first.retried) == (0, 1) and proxy.cuts_done == 1
        clock[0] = now + timedelta(hours=2)  # past the persisted retry time
        second = asyncio.run(sender.run_once())
        assert second.sent == 1
    finally:
        proxy.close()
        sink.stop()
    assert [r.message_id for r in sink.handler.received] == ["<cut-1@casino.test>"]
    with sessions() as session:
        [row] = outbox.list_rows(session)
        assert (row.state, row.attempts) == ("sent", 2)
