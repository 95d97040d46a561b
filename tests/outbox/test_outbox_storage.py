"""The outbox table on SQLite and PostgreSQL: enqueue with the cause, claims and leases,
settling, requeue, and the retry schedule."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update

from storage import outbox, queries
from storage.models import OutboxMessage, Ticket
from storage.retention import clear_sent

LEASE = timedelta(minutes=5)


def test_a_row_commits_with_its_cause_or_not_at_all(sessions, clock, look):
    with pytest.raises(RuntimeError), sessions.begin() as session:
        who = queries.contact_id(session, "player@mail.test")
        ticket_id, _ = queries.insert_ticket(session, subject="x", requester_id=who)
        outbox.enqueue(session, raw=b"Subject: x\r\n\r\nx\r\n", message_id="<a@t>",
                       envelope_from="support@casino.test", recipients=["player@mail.test"],
                       kind="ack", ticket_id=ticket_id, now=clock())
        raise RuntimeError("the cause failed after the mail was written")
    assert look.rows() == []
    with sessions() as session:
        assert session.scalar(select(Ticket.id)) is None


def test_enqueue_stores_the_exact_bytes_and_the_schedule(sessions, clock, queue, ticket_id):
    row_id, message_id = queue(["a@mail.test", "b@mail.test"], ticket_id=ticket_id,
                               lifetime=timedelta(days=2))
    with sessions() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        assert (row.state, row.attempts, row.kind) == ("pending", 0, "ack")
        assert row.message_id == message_id and message_id.encode() in row.raw
        assert row.recipients == ["a@mail.test", "b@mail.test"]
        assert (row.accepted, row.refused) == ([], {})
        assert row.next_attempt_at == clock()
        assert row.expires_at == clock() + timedelta(days=2)


@pytest.mark.parametrize("bad", [
    {"recipients": ["victim@mail.test\r\nRCPT TO:<other@mail.test>"]},
    {"envelope_from": "a@b\nc"},
    {"recipients": []},
    {"raw": ""},
])
def test_enqueue_refuses_what_would_break_the_smtp_commands(sessions, clock, bad):
    values = {"raw": b"x", "message_id": "<m@t>", "envelope_from": "support@casino.test",
              "recipients": ["p@mail.test"], "kind": "ack", "now": clock()} | bad
    with pytest.raises(ValueError), sessions.begin() as session:
        outbox.enqueue(session, **values)


def test_the_same_message_id_cannot_be_queued_twice(sessions, clock):
    values = {"raw": b"x", "message_id": "<same@t>", "envelope_from": "s@casino.test",
              "recipients": ["p@mail.test"], "kind": "ack", "now": clock()}
    with sessions.begin() as session:
        outbox.enqueue(session, **values)
    with pytest.raises(sa_exc.IntegrityError), sessions.begin() as session:
        outbox.enqueue(session, **values)


def test_enqueue_many_gives_each_mail_its_own_row_id_in_the_order_given(
        sessions, clock, ticket_id, look):
    # Message-IDs in no sorted order: the ids must follow the mails, not the ids' order.
    names = ["<m-7@t>", "<m-2@t>", "<m-9@t>", "<m-1@t>", "<m-5@t>"]
    mails = [outbox.Outgoing(raw=f"Subject: {name}\r\n\r\nx\r\n".encode(), message_id=name,
                             envelope_from="support@casino.test", recipients=(f"{n}@mail.test",),
                             kind="escalation", ticket_id=ticket_id if n % 2 else None,
                             now=clock())
             for n, name in enumerate(names)]
    with sessions.begin() as session:
        ids = outbox.enqueue_many(session, mails)
    rows = {row.id: row for row in look.rows()}
    assert len(set(ids)) == len(mails) == len(rows)
    for row_id, mail in zip(ids, mails, strict=True):
        assert (rows[row_id].message_id, rows[row_id].recipients) == (
            mail.message_id, list(mail.recipients))
    queued = {e.data["message_id"]: e.data["outbox_id"] for e in look.events("mail_queued")}
    assert queued == {mail.message_id: row_id for row_id, mail in zip(ids, mails, strict=True)
                      if mail.ticket_id is not None}


def test_enqueue_many_with_a_message_id_already_queued_writes_nothing(sessions, clock, look):
    def mail(name: str) -> outbox.Outgoing:
        return outbox.Outgoing(raw=b"Subject: x\r\n\r\nx\r\n", message_id=name,
                               envelope_from="support@casino.test",
                               recipients=("lead@mail.test",), kind="escalation", now=clock())

    with sessions.begin() as session:
        outbox.enqueue_many(session, [mail("<a@t>")])
    with pytest.raises(sa_exc.IntegrityError), sessions.begin() as session:
        outbox.enqueue_many(session, [mail("<b@t>"), mail("<a@t>")])
    assert [row.message_id for row in look.rows()] == ["<a@t>"]


def test_claim_takes_due_rows_once_until_the_lease_passes(sessions, clock, queue):
    due, _ = queue()
    with sessions.begin() as session:
        later = outbox.enqueue(session, raw=b"x", message_id="<later@t>",
                               envelope_from="s@casino.test", recipients=["p@mail.test"],
                               kind="ack", now=clock() + timedelta(hours=1))
    with sessions.begin() as session:
        [claimed] = outbox.claim_due(session, clock(), 10, LEASE)
    assert claimed.id == due and claimed.attempts == 1
    assert claimed.claimed_until == clock() + LEASE
    with sessions.begin() as session:
        assert outbox.claim_due(session, clock() + LEASE / 2, 10, LEASE) == []
    with sessions.begin() as session:  # the sender died: its lease runs out
        again = outbox.claim_due(session, clock() + LEASE, 10, LEASE)
    assert [m.id for m in again] == [due] and again[0].attempts == 2
    assert later not in [m.id for m in again]


def test_claim_respects_the_limit_and_release_gives_rows_back(sessions, clock, queue):
    ids = [queue()[0] for _ in range(5)]
    with sessions.begin() as session:
        first = outbox.claim_due(session, clock(), 3, LEASE)
    assert [m.id for m in first] == ids[:3]
    with sessions.begin() as session:
        outbox.release(session, [m.id for m in first])
    with sessions.begin() as session:
        everything = outbox.claim_due(session, clock(), 10, LEASE)
    assert [m.id for m in everything] == ids
    assert [m.attempts for m in everything] == [1] * 5  # a release is not an attempt


def test_partial_outcomes_accumulate_and_shrink_the_recipients(sessions, clock, queue, look):
    row_id, _ = queue(["a@t.test", "b@t.test", "c@t.test"])
    with sessions.begin() as session:
        outbox.claim_due(session, clock(), 10, LEASE)
        outbox.mark_retry(session, row_id, "b: 450 busy", clock() + timedelta(minutes=3),
                          remaining=["b@t.test"], accepted=["a@t.test"],
                          refused={"c@t.test": "550 no such user"})
    row = look.row(row_id)
    assert (row.state, row.recipients, row.accepted) == ("pending", ["b@t.test"], ["a@t.test"])
    assert row.refused == {"c@t.test": "550 no such user"}
    with sessions.begin() as session:
        outbox.mark_sent(session, row_id, ["b@t.test"], {}, clock())
    row = look.row(row_id)
    assert (row.state, row.accepted, row.last_error) == ("sent", ["a@t.test", "b@t.test"], None)
    assert row.sent_at == clock()
    [event] = look.events("delivery_failed")
    assert event.data["refused"] == {"c@t.test": "550 no such user"}


def test_mark_dead_records_the_failure_on_the_ticket_and_requeue_revives(
        sessions, clock, queue, ticket_id, look):
    row_id, message_id = queue(ticket_id=ticket_id)
    with sessions.begin() as session:
        outbox.claim_due(session, clock(), 10, LEASE)
        outbox.mark_dead(session, row_id, "DATA: 550 5.7.1 rejected", clock())
    [event] = look.events("delivery_failed")
    assert event.ticket_id == ticket_id
    assert event.data["error"] == "DATA: 550 5.7.1 rejected" and event.data["dead"] is True
    assert event.data["message_id"] == message_id
    with sessions.begin() as session:
        assert outbox.claim_due(session, clock() + timedelta(days=1), 10, LEASE) == []
        assert outbox.requeue(session, row_id, clock() + timedelta(days=1)) is True
        assert outbox.requeue(session, row_id) is False  # pending now, not dead
        assert outbox.requeue(session, 999999) is False
    row = look.row(row_id)
    assert (row.state, row.attempts) == ("pending", 0)
    assert row.expires_at == clock() + timedelta(days=6)
    with sessions() as session:
        assert outbox.count_by_state(session) == {"pending": 1, "sent": 0, "dead": 0}


def test_a_row_whose_bytes_were_removed_is_never_revived_nor_blocks_the_others(
        sessions, clock, queue, ticket_id, look):
    emptied, _ = queue(ticket_id=ticket_id)
    with sessions.begin() as session:
        outbox.claim_due(session, clock(), 10, LEASE)
        outbox.mark_dead(session, emptied, "DATA: 550 5.7.1 rejected", clock())
        clear_sent(session, [emptied], clock())  # retention, or anonymising the ticket
        assert outbox.requeue(session, emptied) is False  # nothing left to send
    # A pending row that lost its bytes all the same (an older database, a hand edit) goes
    # dead alone; the mail beside it in the same claim still goes.
    broken, _ = queue(ticket_id=ticket_id)
    good, _ = queue(ticket_id=ticket_id)
    with sessions.begin() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == broken).values(raw=b""))
    with sessions.begin() as session:
        claimed = outbox.claim_due(session, clock(), 10, LEASE)
    assert [mail.id for mail in claimed] == [good]
    assert (look.row(broken).state, look.row(emptied).state) == ("dead", "dead")
    assert any(e.data["outbox_id"] == broken and e.data["dead"]
               for e in look.events("delivery_failed"))


def test_two_claimers_at_once_never_take_the_same_row(sessions, clock, queue):
    ids = {queue()[0] for _ in range(60)}
    taken: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claimer(mine: list[int]) -> None:
        start.wait()
        while True:
            with sessions.begin() as session:
                batch = outbox.claim_due(session, clock(), 7, LEASE)
            if not batch:
                return
            mine.extend(m.id for m in batch)

    threads = [threading.Thread(target=claimer, args=(mine,)) for mine in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(taken[0]) & set(taken[1])
    assert set(taken[0]) | set(taken[1]) == ids
    assert len(taken[0]) + len(taken[1]) == len(ids)


def test_retry_schedule_backs_off_with_jitter_up_to_about_an_hour():
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    rng = random.Random(7)
    firsts = [outbox.next_attempt(1, now, rng) - now for _ in range(500)]
    assert all(timedelta(minutes=1) <= d <= timedelta(minutes=5) for d in firsts)
    assert len(set(firsts)) > 400  # jittered, so that failed senders do not retry in step
    later = [outbox.next_attempt(n, now, rng) - now for n in range(1, 400) for _ in range(3)]
    assert max(later) <= timedelta(minutes=61)
    assert max(later) > timedelta(minutes=45)
    assert outbox.next_attempt(10_000, now, rng) - now <= timedelta(minutes=61)
