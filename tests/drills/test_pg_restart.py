"""PostgreSQL restarted under a running daemon: a clean restart (-m fast), a crash-like one
(-m immediate, crash recovery on start) and an outage of seconds, while mail is being stored
and acknowledgements sent. The daemon stays up and waits for the database (it does not exit:
systemd would restart it, but nothing here needs that), and afterwards every mail is in
exactly one ticket with one acknowledgement, delivered at most twice with one Message-ID.

The server is a throwaway cluster of the test's own (tests/support/postgres.py): the shared
one on 5432 serves the other tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage import db
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.dovecot import Account
from tests.support.drill import (
    CONNECTED,
    Daemon,
    all_delivered,
    assert_one_ticket_and_one_ack_per_mail,
    count_tickets,
    wait_until,
)
from tests.support.mails import mail
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
MAILS = 150
OUTAGE = 3.0  # seconds the server stays down in the "outage" case
STANDING_BY = "standing by"  # a second daemon waits for the mailbox lease


def _setup(dovecot, postgres: PostgresServer, tmp_path: Path, mails: int  # noqa: ANN001
           ) -> tuple[Path, str, SmtpServer, Account, list[str]]:
    """A migrated database, a mailbox holding `mails` complaints, an SMTP sink, a config."""
    url = postgres.create_database("ticketd")
    server = SmtpServer(Sink(), free_port()).start()
    account = dovecot.new_account()
    message_ids = [f"<pg-{i}@mail.test>" for i in range(mails)]
    with dovecot.client(account) as client:
        for i, message_id in enumerate(message_ids):
            client.append("INBOX", mail(sender=f"p{i}@mail.test", subject=f"Refund {i}",
                                        body="Please refund.", message_id=message_id))
    config = write_config(tmp_path, url, account,
                          smtp={"host": "127.0.0.1", "port": server.port, "tls": "none"},
                          outbox={"interval": "1s", "lease": "3s"})
    upgrade = Daemon(config, tmp_path).command("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    return config, url, server, account, message_ids


@pytest.mark.timeout(90)  # about 15 s each; a daemon that never recovers fails here
@pytest.mark.parametrize("disruptions", [("fast", "immediate"), ("outage",)],
                         ids=["restarts", "outage"])
def test_postgres_restarts_during_ingest_lose_and_double_nothing(
        dovecot, private_postgres: PostgresServer, tmp_path: Path,  # noqa: ANN001
        disruptions: tuple[str, ...]) -> None:
    config, url, server, account, message_ids = _setup(dovecot, private_postgres, tmp_path,
                                                       MAILS)
    sessions = db.session_factory(db.make_engine(url))
    daemon = Daemon(config, tmp_path)
    stored_at: list[int] = []  # tickets stored when each disruption began
    try:
        daemon.start()
        for how in disruptions:
            # More mail was stored since the last one (acknowledgements on the way): now.
            last = stored_at[-1] if stored_at else 0
            assert wait_until(lambda last=last: (count_tickets(sessions) or 0) > last, 30), (
                stored_at, daemon.log())
            stored_at.append(count_tickets(sessions) or 0)
            if how == "outage":
                private_postgres.stop("immediate")
                time.sleep(OUTAGE)
                private_postgres.start()
            else:
                private_postgres.restart(how)
            assert daemon.running(), f"the daemon exited after {how}:\n{daemon.log()}"
        assert wait_until(lambda: all_delivered(sessions, server.handler, MAILS), 60, 0.2), (
            stored_at, count_tickets(sessions), len(server.handler.received))
        assert daemon.running(), daemon.log()
        assert daemon.terminate() == 0, daemon.log()
    finally:
        daemon.clean_up()
        server.stop()
    assert all(0 < stored < MAILS for stored in stored_at), stored_at  # in the middle of ingest
    if "outage" in disruptions:  # seconds without a database: the daemon saw it and went on
        assert "OperationalError" in daemon.log(), daemon.log()
    assert "Traceback" not in daemon.log(), daemon.log()
    assert_one_ticket_and_one_ack_per_mail(sessions, server.handler, message_ids,
                                           interruptions=len(disruptions))
    assert dovecot.uids(account, "INBOX") == []


def _advisory_locks(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")).scalar())
    finally:
        engine.dispose()


@pytest.mark.timeout(90)
def test_one_daemon_watches_the_mailbox_after_a_restart(
        dovecot, private_postgres: PostgresServer, tmp_path: Path) -> None:  # noqa: ANN001
    """One watcher per mailbox (DESIGN, Scale): the lease is a session advisory lock, which a
    restarted server has forgotten. After a restart the daemon that goes on watching must
    hold the lease again, or a second daemon takes it and both watch the same mailbox."""
    config, url, server, account, _ = _setup(dovecot, private_postgres, tmp_path, 0)
    first = Daemon(config, tmp_path / "first")
    second = Daemon(config, tmp_path / "second")
    for daemon in (first, second):
        daemon.log_dir.mkdir()

    def one_watcher() -> bool:  # a daemon standing by holds no IMAP connection
        return dovecot.sessions(account) == 1 and _advisory_locks(url) == 1

    try:
        first.start()
        assert wait_until(lambda: CONNECTED in first.log(), 20), first.log()
        assert one_watcher()
        private_postgres.restart("fast")  # while the first daemon idles on an empty mailbox
        second.start()
        assert wait_until(lambda: STANDING_BY in second.log() or CONNECTED in second.log(),
                          20), second.log()
        # Whichever holds the lease now, only that one watches, and it stays so.
        assert wait_until(one_watcher, 10, 0.2), (dovecot.sessions(account), first.log(),
                                                  second.log())
        time.sleep(3)
        assert one_watcher(), (dovecot.sessions(account), first.log(), second.log())
        assert first.running() and second.running()
        assert first.terminate() == 0, first.log()
        assert wait_until(lambda: CONNECTED in second.log() and one_watcher(), 20), second.log()
        assert second.terminate() == 0, second.log()
    finally:
        first.clean_up()
        second.clean_up()
        server.stop()
