"""Dead acknowledgements to junk senders: one digest an hour to operations, exactly once,
over a real SMTP server on loopback, on SQLite and PostgreSQL; the refused addresses are
marked bouncing."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from sqlalchemy import select

from daemon.dead_digest import bury_in_digest
from daemon.outbox import OutboxSender
from storage import db, outbox
from storage.crypto import MasterKeys
from storage.models import Contact, Event, OutboxMessage, utcnow
from storage.vault import Vault
from tests.support.mails import mail
from tests.outbox.smtp_sink import RefusesNamed, transport_to

OPS = "ops@casino.test"


def test_dead_acks_of_an_hour_make_one_report_sent_once(
        sessions, clock, queue, smtp_server, look):  # noqa: ANN001
    clock.now = clock.now.replace(minute=10, second=0)
    junk = [f"nobody{i}@junk.test" for i in range(5)]
    server = smtp_server(RefusesNamed({a: "550 5.1.1 no such user" for a in junk}))
    with sessions.begin() as session:
        for address in junk:
            session.add(Contact(address=address, name="", bouncing=False))
    sender = OutboxSender(sessions, transport_to(server.port), ops_address=OPS,
                          from_address="support@casino.test", now=clock)
    queued = []
    for address in junk:  # five junk senders within the hour, each acknowledged
        queued.append(queue([address])[1])
        assert asyncio.run(sender.run_once()).dead == 1
        clock.advance(timedelta(minutes=5))
    [report] = look.rows("pending")
    assert (report.kind, report.recipients) == ("ops", [OPS])
    assert server.handler.received == []  # nothing to ops during the hour
    clock.advance(timedelta(hours=1))
    for _ in range(3):
        asyncio.run(sender.run_once())
        clock.advance(timedelta(hours=1))
    [digest] = server.handler.received
    assert digest.rcpt_tos == (OPS,)
    assert b"5 acknowledgement(s) undeliverable" in digest.content
    assert all(message_id.encode() in digest.content for message_id in queued)
    assert b"We received your mail" not in digest.content  # never a mail's body
    with sessions() as session:
        flags = session.scalars(select(Contact.bouncing).where(Contact.address.in_(junk)))
        assert all(flags)


def test_with_encryption_at_rest_the_rewritten_digest_stays_sealed_and_is_sent(
        db_url, clock, smtp_server, look):  # noqa: ANN001
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine, Vault(MasterKeys.of((bytes(range(32)),))))
    clock.now = clock.now.replace(minute=10, second=0)
    junk = [f"gone{i}@junk.test" for i in range(2)]
    server = smtp_server(RefusesNamed({a: "550 5.1.1 no such user" for a in junk}))
    sender = OutboxSender(sessions, transport_to(server.port), ops_address=OPS,
                          from_address="support@casino.test", now=clock)
    queued = []
    for address in junk:  # the second dead ack rewrites the sealed digest
        message_id = f"<sealed-{address}>"
        with sessions.begin() as session:
            outbox.enqueue(session, raw=mail(sender="support@casino.test", to=address,
                                             message_id=message_id),
                           message_id=message_id, envelope_from="support@casino.test",
                           recipients=[address], kind="ack", now=clock())
        queued.append(message_id)
        assert asyncio.run(sender.run_once()).dead == 1
        clock.advance(timedelta(minutes=5))
    with sessions() as session:
        stored = session.scalar(select(OutboxMessage.raw).where(OutboxMessage.kind == "ops"))
    assert b"undeliverable" not in stored and b"junk.test" not in stored  # sealed, not clear
    clock.advance(timedelta(hours=1))
    asyncio.run(sender.run_once())
    [digest] = server.handler.received
    assert b"2 acknowledgement(s) undeliverable" in digest.content
    assert all(message_id.encode() in digest.content for message_id in queued)
    engine.dispose()


def test_two_daemons_burying_in_the_same_hour_make_one_digest_without_error(pg_url) -> None:  # noqa: ANN001
    """The second waits on the first's uncommitted row instead of failing on the unique
    Message-ID, which rolled back its own mark_dead; its rewrite lists both dead acks."""
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    now = utcnow()

    def bury(session, n: int) -> None:  # noqa: ANN001
        session.add(Event(kind="delivery_failed", actor="system", created_at=now, data={
            "dead": True, "kind": "ack", "outbox_id": n,
            "message_id": f"<dead-{n}@casino.test>", "error": "550 no such user"}))
        session.flush()
        bury_in_digest(session, {}, ops=OPS, sender="support@casino.test", now=now)

    failed: list[BaseException] = []

    def second() -> None:
        try:
            with sessions.begin() as session:
                bury(session, 2)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            failed.append(err)

    with sessions.begin() as session:
        bury(session, 1)
        other = threading.Thread(target=second)
        other.start()
        other.join(1.0)  # it now waits on this transaction's row (or gives up)
    other.join()
    assert failed == []
    with sessions() as session:
        [raw] = session.scalars(select(OutboxMessage.raw).where(OutboxMessage.kind == "ops"))
    assert b"<dead-1@casino.test>" in raw and b"<dead-2@casino.test>" in raw
    engine.dispose()
