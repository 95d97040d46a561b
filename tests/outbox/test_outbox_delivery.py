"""The outbox sender end to end: rows in SQLite or PostgreSQL, real aiosmtpd servers on
loopback, a clock the test moves. Invariant 2: nothing lost, retried on a stored schedule,
given up and reported once."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import event

from daemon.outbox import OutboxSender
from tests.outbox.smtp_sink import (
    ClosesWith421,
    FailsFirst,
    Refuses,
    RefusesNamed,
    Sink,
    free_port,
    transport_to,
)

OPS = "ops@casino.test"


def sender(sessions, port, clock, **options) -> OutboxSender:  # noqa: ANN001
    defaults = {"ops_address": OPS, "from_address": "support@casino.test", "now": clock}
    return OutboxSender(sessions, transport_to(port), **defaults | options)


def deliver(outbox_sender: OutboxSender):  # noqa: ANN201
    return asyncio.run(outbox_sender.run_once())


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_goes_over_one_connection(sessions, clock, queue, smtp_server, look):
    server = smtp_server()
    queued = [queue([f"p{i}@mail.test"])[1] for i in range(12)]
    stats = deliver(sender(sessions, server.port, clock))
    assert (stats.claimed, stats.sent) == (12, 12)
    assert server.handler.message_ids() == queued
    assert server.handler.connections == 1
    assert {r.state for r in look.rows()} == {"sent"}
    assert metric("ticketd_outbox_rows", state="sent") == 12


def test_451_three_times_then_250_is_one_delivery(sessions, clock, queue, smtp_server, look):
    server = smtp_server(FailsFirst(3))
    row_id, message_id = queue()
    outbox_sender = sender(sessions, server.port, clock)
    for attempt in range(1, 4):
        assert deliver(outbox_sender).retried == 1
        row = look.row(row_id)
        assert (row.state, row.attempts) == ("pending", attempt)
        assert "451" in (row.last_error or "")
        assert row.next_attempt_at > clock()
        assert deliver(outbox_sender).claimed == 0  # not before its time
        clock.advance(row.next_attempt_at - clock())
    assert deliver(outbox_sender).sent == 1
    row = look.row(row_id)
    assert (row.state, row.attempts, row.accepted) == ("sent", 4, ["player@mail.test"])
    assert server.handler.message_ids() == [message_id]  # exactly one copy
    clock.advance(timedelta(days=1))
    assert deliver(outbox_sender).claimed == 0


def test_550_is_dead_at_once_recorded_on_the_ticket_and_reported_once(
        sessions, clock, queue, ticket_id, smtp_server, look):
    refusing = smtp_server(Refuses("550 5.7.1 rejected by policy"))
    # A relay: what an agent wrote to a player. Dead acknowledgements go to a digest.
    row_id, message_id = queue(ticket_id=ticket_id, kind="relay")
    dead_before = metric("ticketd_deliveries_total", result="dead")
    assert deliver(sender(sessions, refusing.port, clock)).dead == 1
    row = look.row(row_id)
    assert (row.state, row.attempts) == ("dead", 1) and "550" in (row.last_error or "")
    [event] = look.events("delivery_failed")
    assert event.ticket_id == ticket_id and "550 5.7.1" in event.data["error"]
    assert metric("ticketd_deliveries_total", result="dead") == dead_before + 1
    assert metric("ticketd_outbox_rows", state="dead") == 1
    [ops_row] = look.rows("pending")
    assert (ops_row.kind, ops_row.recipients) == ("ops", [OPS])

    sink = smtp_server()  # the report goes out on the next pass, to a server that takes it
    outbox_sender = sender(sessions, sink.port, clock)
    assert deliver(outbox_sender).sent == 1
    [report] = sink.handler.received
    assert report.rcpt_tos == (OPS,)
    assert f"outbox row:  {row_id}".encode() in report.content
    assert message_id.encode() in report.content
    assert b"Auto-Submitted: auto-generated" in report.content
    assert b"We received your mail" not in report.content  # never the mail's body
    for _ in range(3):  # no retry of the dead row, and no second report
        clock.advance(timedelta(hours=2))
        assert deliver(outbox_sender).claimed == 0
    assert len(sink.handler.received) == 1 and len(look.rows()) == 2


def test_a_dead_report_is_not_reported_again(sessions, clock, queue, smtp_server, look):
    refusing = smtp_server(Refuses("550 5.1.1 no such mailbox", at="MAIL"))
    queue(kind="relay")
    outbox_sender = sender(sessions, refusing.port, clock)
    deliver(outbox_sender)  # the mail dies, its report is queued
    assert deliver(outbox_sender).dead == 1  # the report dies too ...
    assert [r.kind for r in look.rows("dead")] == ["relay", "ops"]
    assert look.rows("pending") == []  # ... and nothing reports on the report


def test_server_down_keeps_everything_until_it_comes_back(sessions, clock, queue, smtp_server,
                                                          look):
    port = free_port()  # nothing listens here for now
    ids = [queue()[0] for _ in range(3)]
    outbox_sender = sender(sessions, port, clock)
    stats = deliver(outbox_sender)
    assert (stats.claimed, stats.retried, stats.sent) == (3, 3, 0)
    pending = look.rows("pending")
    assert [r.id for r in pending] == ids
    assert all(r.next_attempt_at > clock() and r.attempts == 1 for r in pending)
    server = smtp_server(port=port)
    assert deliver(outbox_sender).claimed == 0  # the clock has not reached the retry time
    clock.advance(max(r.next_attempt_at for r in pending) - clock())
    assert deliver(outbox_sender).sent == 3
    assert len(server.handler.received) == 3
    assert {r.state for r in look.rows()} == {"sent"}


def test_partial_refusal_retries_only_the_4xx_recipient(sessions, clock, queue, ticket_id,
                                                        smtp_server, look):
    handler = RefusesNamed({"busy@mail.test": "450 4.2.1 mailbox busy",
                            "gone@mail.test": "550 5.1.1 no such user"})
    server = smtp_server(handler)
    row_id, message_id = queue(["ok@mail.test", "busy@mail.test", "gone@mail.test"],
                               ticket_id=ticket_id)
    outbox_sender = sender(sessions, server.port, clock)
    assert deliver(outbox_sender).retried == 1
    row = look.row(row_id)
    assert (row.state, row.recipients, row.accepted) == (
        "pending", ["busy@mail.test"], ["ok@mail.test"])
    assert row.refused == {"gone@mail.test": "550 5.1.1 no such user"}
    [event] = look.events("delivery_failed")
    assert event.ticket_id == ticket_id and "gone@mail.test" in event.data["refused"]

    del handler.replies["busy@mail.test"]  # the mailbox has room again
    clock.advance(row.next_attempt_at - clock())
    assert deliver(outbox_sender).sent == 1
    assert [r.rcpt_tos for r in handler.received] == [("ok@mail.test",), ("busy@mail.test",)]
    assert handler.message_ids() == [message_id, message_id]
    row = look.row(row_id)
    assert (row.state, row.accepted) == ("sent", ["ok@mail.test", "busy@mail.test"])
    assert row.refused == {"gone@mail.test": "550 5.1.1 no such user"}
    assert look.rows("pending") == []  # a partly refused mail is not reported to ops


def test_a_mail_past_its_lifetime_is_given_up(sessions, clock, queue, ticket_id, smtp_server,
                                              look):
    server = smtp_server(FailsFirst(100))
    row_id, _ = queue(ticket_id=ticket_id, lifetime=timedelta(minutes=30))
    outbox_sender = sender(sessions, server.port, clock)
    deliver(outbox_sender)
    passes = 1
    while (row := look.row(row_id)).state == "pending" and passes < 50:
        assert row.next_attempt_at <= row.expires_at  # retries never go past the expiry
        clock.advance(row.next_attempt_at - clock())
        deliver(outbox_sender)
        passes += 1
    assert row.state == "dead" and "expired" in (row.last_error or "")
    assert "451" in (row.last_error or "")  # the reason it never went out
    assert row.attempts == passes and clock() == row.expires_at
    [event] = look.events("delivery_failed")
    assert event.ticket_id == ticket_id and event.data["dead"] is True
    assert [r.kind for r in look.rows("pending")] == ["ops"]


def test_421_mid_batch_reconnects_and_loses_nothing(sessions, clock, queue, smtp_server, look):
    server = smtp_server(ClosesWith421(1))
    queued = [queue()[1] for _ in range(4)]
    assert deliver(sender(sessions, server.port, clock)).sent == 4
    assert server.handler.message_ids() == queued
    assert server.handler.connections == 2


def test_two_senders_at_once_deliver_every_row_once(sessions, clock, queue, smtp_server, look):
    server = smtp_server()
    queued = {queue([f"p{i}@mail.test"])[1] for i in range(80)}
    start = threading.Barrier(2)
    totals = []

    def run() -> None:
        outbox_sender = sender(sessions, server.port, clock, batch=7)
        start.wait()
        totals.append(asyncio.run(outbox_sender.drain()).sent)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    received = server.handler.message_ids()
    assert sorted(received) == sorted(queued)  # every one, and none twice
    assert sum(totals) == 80
    assert {r.state for r in look.rows()} == {"sent"}


class _Checks(Sink):
    """Reads the database as each message arrives (after DATA, before its "250"): how many
    rows the outbox has recorded as sent by then."""

    def __init__(self, look) -> None:  # noqa: ANN001
        super().__init__()
        self.look = look
        self.sent_before: list[int] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.sent_before.append(len(self.look.rows("sent")))
        return await super().handle_DATA(server, session, envelope)


def test_a_message_goes_only_once_the_mail_before_it_is_recorded(
        sessions, clock, queue, smtp_server, look):
    """The commit of one mail's "250" overlaps the next mail's envelope, never its message:
    at the default commit_every = 1, the server is handed mail k only after mails 1..k-1
    are recorded as sent, so a crash can repeat at most the one mail in flight."""
    server = smtp_server(_Checks(look))
    queued = [queue([f"p{i}@mail.test"])[1] for i in range(8)]
    # A slow disk: each commit takes longer than the next mail's whole SMTP exchange.
    engine = sessions.kw["bind"]

    def slow(_conn) -> None:  # noqa: ANN001
        time.sleep(0.15)

    event.listen(engine, "commit", slow)
    try:
        stats = deliver(sender(sessions, server.port, clock))
    finally:
        event.remove(engine, "commit", slow)
    assert stats.sent == 8
    assert server.handler.message_ids() == queued
    assert server.handler.sent_before == list(range(8))
