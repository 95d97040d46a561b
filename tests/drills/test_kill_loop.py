"""kill -9 at random moments of ingest and delivery, again and again: afterwards every mail is
in exactly one ticket and every acknowledgement was delivered at least once, with one
Message-ID, and again only once for each kill that fell between the server's 250 and our
commit of it (at most one mail per kill); and every start after a kill came up cleanly and
went on with the work.

A kill is counted as falling in that window when, the daemon dead, the server holds more
copies of an acknowledgement than the database records as sent. Delivery kills are aimed at
the moment the server has taken a mail, so the same mail can be caught by two kills in a row
and then arrives three times: at-least-once allows it, and the count shows it was earned."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import db
from storage.models import OutboxMessage
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.drill import (
    CONNECTED,
    Daemon,
    all_delivered,
    assert_one_ticket_and_one_ack_per_mail,
    count_tickets,
    wait_until,
)
from tests.support.mails import mail

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
MAILS, KILLS = 300, 24
START_TIMEOUT = 20  # seconds from start to the next step of work, on a loaded 2-core machine


def _progress(sessions: sessionmaker[Session], sink: Sink) -> tuple[int, int]:
    """(tickets stored, acknowledgements the server accepted, duplicates included)."""
    return count_tickets(sessions) or 0, len(sink.received)


def _settle(sink: Sink) -> None:
    """The server records a mail when its last bytes arrive, a moment after the sender died:
    wait until its count has stood still for a while."""
    count, still_since = len(sink.received), time.monotonic()
    deadline = still_since + 2
    while time.monotonic() < deadline and time.monotonic() - still_since < 0.2:
        time.sleep(0.02)
        if len(sink.received) != count:
            count, still_since = len(sink.received), time.monotonic()


def _unrecorded(sessions: sessionmaker[Session], sink: Sink) -> Counter[str]:
    """Per acknowledgement, the copies the server took beyond the one a "sent" row records:
    how many times a kill fell between that mail's 250 and its commit."""
    _settle(sink)
    with sessions() as session:
        sent = dict(session.execute(select(OutboxMessage.message_id, OutboxMessage.state)
                                    .where(OutboxMessage.kind == "ack")).all())
    delivered = Counter(mid.strip().strip("<>") for mid in sink.message_ids())
    assert set(delivered) <= set(sent), "the server took a mail the outbox does not hold"
    return Counter({mid: delivered[mid] - (state == "sent") for mid, state in sent.items()})


@pytest.mark.timeout(150)  # about 60 s on a 2-core machine; a hang fails here, not at 300 s
def test_random_kills_during_ingest_and_delivery_lose_and_double_nothing(
        dovecot, sqlite_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    rng = random.Random(20261125)
    server = SmtpServer(Sink(), free_port()).start()
    sink = server.handler
    account = dovecot.new_account()
    message_ids = [f"<kill-{i}@mail.test>" for i in range(MAILS)]
    with dovecot.client(account) as client:
        for i, message_id in enumerate(message_ids):
            client.append("INBOX", mail(sender=f"k{i}@mail.test", subject=f"Refund {i}",
                                        body="Please refund.", message_id=message_id))
    config = write_config(tmp_path, sqlite_url, account,
                          smtp={"host": "127.0.0.1", "port": server.port, "tls": "none"},
                          outbox={"interval": "1s", "lease": "3s"})
    sessions = db.session_factory(db.make_engine(sqlite_url))
    daemon = Daemon(config, tmp_path)
    seen: list[tuple[str, tuple[int, int]]] = []
    caught: Counter[str] = Counter()  # kills that fell between a mail's 250 and its commit
    unrecorded: Counter[str] = Counter()
    try:
        for n in range(KILLS):
            tickets, sent = _progress(sessions, sink)
            daemon.start()
            # Every start after a kill comes up cleanly: ready and logged in to the mailbox.
            assert wait_until(lambda: CONNECTED in daemon.log(), START_TIMEOUT), daemon.log()
            if n % 2 == 0 and tickets < MAILS:
                # Ingest commits a batch of mails at a time: a kill at a random moment falls
                # in fetching, parsing, writing files, the transaction, or the move.
                kind = "ingest"
                time.sleep(rng.uniform(0, 1.0))
            else:
                # Delivery commits each mail: kill when it has moved a random step further,
                # which also shows that this start went on with the work.
                kind = "delivery"
                goal = min(sent + rng.randint(2, 12), MAILS - 1)
                moved = wait_until(lambda goal=goal: _progress(sessions, sink)[1] >= goal,
                                   START_TIMEOUT, 0.005)
                assert moved, f"start {daemon.starts} sent nothing: {seen}\n{daemon.log()}"
            daemon.kill()
            now = _unrecorded(sessions, sink)
            assert min(now.values(), default=0) >= 0, "an ack recorded as sent was not sent"
            # One SMTP session, one mail at a time: a kill leaves at most one mail unrecorded.
            new = now - unrecorded
            assert sum(new.values()) <= 1, new
            caught += new
            unrecorded = now
            seen.append((kind, _progress(sessions, sink)))
            assert "Traceback" not in daemon.log(), daemon.log()
        daemon.start()
        assert wait_until(lambda: all_delivered(sessions, sink, MAILS), 60, 0.2), seen
        assert daemon.terminate() == 0
        assert "Traceback" not in daemon.log(), daemon.log()
    finally:
        daemon.clean_up()
        server.stop()
    # The kills really fell in the middle of both kinds of work, not before or after it.
    assert any(kind == "ingest" and 0 < t < MAILS for kind, (t, _) in seen), seen
    assert any(kind == "delivery" and 0 < s < MAILS for kind, (_, s) in seen), seen
    assert caught, "no kill fell between a 250 and its commit"  # the window that resends
    assert_one_ticket_and_one_ack_per_mail(sessions, sink, message_ids, interruptions=KILLS,
                                           max_deliveries=1 + max(caught.values(), default=0))
    # Every copy beyond the first was earned by a kill in that mail's 250-to-commit window.
    delivered = Counter(mid.strip().strip("<>") for mid in sink.message_ids())
    assert {mid: n - 1 for mid, n in delivered.items() if n > 1} == dict(caught), caught
    assert dovecot.uids(account, "INBOX") == []

