"""kill -9 at random moments of ingest and delivery, again and again: afterwards every mail is
in exactly one ticket and every acknowledgement was delivered at least once and at most twice
(the second only after a kill between the server's 250 and our commit), same Message-ID."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import db
from storage.models import OutboxMessage, Ticket
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.mails import mail

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
MAILS, KILLS = 200, 6


def test_random_kills_during_ingest_and_delivery_lose_and_double_nothing(
        dovecot, sqlite_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    rng = random.Random(20261125)
    sink = SmtpServer(Sink(), free_port()).start()
    account = dovecot.new_account()
    with dovecot.client(account) as client:
        for i in range(MAILS):
            client.append("INBOX", mail(sender=f"k{i}@mail.test", subject=f"Refund {i}",
                                        body="Please refund.", message_id=f"<kill-{i}@mail.test>"))
    config = write_config(tmp_path, sqlite_url, account,
                          smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none"},
                          outbox={"interval": "1s", "lease": "3s"})
    env = {**os.environ, "TICKETD_SECURITY__SECRET": "kill-loop-secret-0123456789abcdef"}
    sessions = db.session_factory(db.make_engine(sqlite_url))

    log = tmp_path / "daemon.log"

    def start() -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                                    stdout=out, stderr=subprocess.STDOUT, env=env)

    def done() -> bool:
        with sessions() as session:
            tickets = session.scalar(select(func.count()).select_from(Ticket))
        return tickets == MAILS and len({r.message_id for r in sink.handler.received}) == MAILS

    def progress() -> tuple[int, int]:
        with sessions() as session:
            tickets = session.scalar(select(func.count()).select_from(Ticket))
        return tickets, len(sink.handler.received)

    seen = []
    try:
        for n in range(KILLS):
            # Kill when ingest (even n) or delivery (odd n) has moved a random step further:
            # the moment within that mail's work is whatever the scheduler makes it.
            tickets, sent = progress()
            target = rng.randint(5, 25)
            daemon = start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now_tickets, now_sent = progress()
                if (now_tickets if n % 2 == 0 else now_sent) >= min(
                        (tickets if n % 2 == 0 else sent) + target, MAILS - 1):
                    break
                time.sleep(0.005)
            daemon.kill()
            daemon.wait(10)
            seen.append(progress())
        daemon = start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (done() and "ticketd running" in log.read_text()):
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        sink.stop()
    assert done()
    # The kills really fell in the middle of the work, not before or after it.
    assert any(0 < tickets < MAILS or 0 < sent < MAILS for tickets, sent in seen), seen
    with sessions() as session:
        acks = Counter(session.scalars(select(OutboxMessage.ticket_id)
                                       .where(OutboxMessage.kind == "ack")))
    assert len(acks) == MAILS and set(acks.values()) == {1}
    delivered = Counter(r.message_id for r in sink.handler.received)
    assert max(delivered.values()) <= 2
    assert sum(c - 1 for c in delivered.values()) <= KILLS  # at most one resend per kill
    assert dovecot.uids(account, "INBOX") == []
