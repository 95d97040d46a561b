"""Loops end within a few messages (DESIGN invariant 3), on SQLite and PostgreSQL: limits per
ticket and address with one summary, responder signs without Auto-Submitted, no ticket from
an agent's own mail, coalesced notifications, held notices that quote no attacker."""

from __future__ import annotations

import email
from datetime import datetime, timedelta
from email.policy import default
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from daemon.ingest import Ingestor, IngestPolicy
from daemon.team import Agent, TeamPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.loops import LoopPolicy
from responders.rendering import Templates
from storage import db, queries
from storage.blobs import BlobStore
from storage.models import Event, Message, OutboxMessage, Ticket, utcnow
from tests.support.agents import AUTHSERV, reply_to_notification
from tests.support.mails import mail

SUPPORT = "support@casino.test"
OPS = "ops@casino.test"
KEYS = (b"loops-test-key-0123456789abcdef0",)
DESK = Identity(SUPPORT, "Casino Support", KEYS, Templates())
LOOPS = LoopPolicy(team_addresses=frozenset({"anna@casino.test", "lead@casino.test"}),
                   summary_to=(OPS,), summary_from=SUPPORT)
TEAM = TeamPolicy(
    DESK, agents={"anna@casino.test": Agent("anna@casino.test", "Anna Smirnova", ("payments",))},
    staff={"lead@casino.test": Agent("lead@casino.test", "Team lead")},
    routing={"refund": "payments"}, authserv_id=AUTHSERV, loops=LOOPS)
ATTACKER_URL = "https://evil.example/verify"


def make(db_url: str, tmp_path: Path, loops: LoopPolicy = LOOPS) -> Ingestor:
    team = TeamPolicy(**{**TEAM.__dict__, "loops": loops})
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS,
                          ack=AckPolicy(DESK, loops=loops), team=team,
                          agents=frozenset((*team.agents, *team.staff)), authserv_id=AUTHSERV,
                          loops=loops)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    return make(db_url, tmp_path)


def outbox(ingestor: Ingestor, kind: str) -> list[OutboxMessage]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def events(ingestor: Ingestor, kind: str) -> list[Event]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def complaint(ingestor: Ingestor) -> int:
    raw = mail(subject="Refund of my deposit", body="Please refund my deposit of 100 EUR.",
               message_id="<player-q@mail.test>")
    return ingestor.ingest(raw, "t").ticket_number


def follow_up(ingestor: Ingestor, n: int, **kw) -> str:  # noqa: ANN003
    raw = mail(subject="Re: Refund of my deposit", body=kw.pop("body", f"Still waiting ({n})."),
               message_id=f"<f{n}@mail.test>", in_reply_to="<player-q@mail.test>", **kw)
    return ingestor.ingest(raw, "t").outcome


def sent_now(ingestor: Ingestor, kind: str) -> None:
    """The outbox delivered these rows just now (as its loop would have)."""
    with ingestor.sessions.begin() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.kind == kind)
                        .values(state="sent", sent_at=utcnow()))


def test_sixty_follow_ups_in_a_minute_give_one_notification_and_one_deferred(
        ingestor: Ingestor) -> None:
    complaint(ingestor)
    sent_now(ingestor, "notification")
    for n in range(60):
        follow_up(ingestor, n)
    first, deferred = outbox(ingestor, "notification")
    assert first.state == "sent"
    assert deferred.state == "pending" and deferred.attempts == 0
    assert deferred.next_attempt_at >= first.sent_at + LOOPS.notify_every - timedelta(seconds=1)
    text = email.message_from_bytes(deferred.raw, policy=default).get_body(("plain",)).get_content()
    assert "Follow-ups came in a burst" in text
    assert len(events(ingestor, "notification_coalesced")) == 59


def test_thirty_forged_agent_mails_give_a_handful_of_notices_quoting_nothing(
        ingestor: Ingestor) -> None:
    complaint(ingestor)
    [note] = outbox(ingestor, "notification")
    for n in range(30):
        spoof = email.message_from_bytes(reply_to_notification(
            note.raw, f"#status closed\nLog in at {ATTACKER_URL}?n={n} to confirm.", auth=(),
            sender=f'"Anna {ATTACKER_URL}" <anna@casino.test>'), policy=default)
        spoof.replace_header("Subject", f"Urgent: verify your account {ATTACKER_URL}")
        assert ingestor.ingest(spoof.as_bytes(), "t").reason.startswith("agent held")
    notices = outbox(ingestor, "held_notice")
    assert len(events(ingestor, "agent_mail_held")) == 30
    assert len(notices) == LOOPS.held_notices_per_hour + 1
    for notice in notices:
        assert b"evil.example" not in notice.raw and b"Urgent" not in notice.raw
        assert notice.recipients == ["anna@casino.test"]
    last = email.message_from_bytes(notices[-1].raw, policy=default)
    assert "No further notice" in last.get_body(("plain",)).get_content()


@pytest.mark.parametrize("sender", ["Anna Smirnova <anna@casino.test>", "lead@casino.test"])
def test_an_agents_or_staff_mail_naming_no_ticket_opens_none(ingestor: Ingestor,
                                                             sender: str) -> None:
    result = ingestor.ingest(mail(sender=sender, subject="Out of office",
                                  body="I am away until Monday."), "t")
    assert (result.outcome, result.ticket_number) == ("ignored", None)
    assert "agent or staff address" in result.reason
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.id)) is None
    assert outbox(ingestor, "ack") == [] and outbox(ingestor, "notification") == []
    assert len(events(ingestor, "staff_mail_without_ticket")) == 1


@pytest.mark.parametrize("subject", ["Out of office: Refund of my deposit", "Abwesend",
                                     "Отсутствую до понедельника", "Автоответ",
                                     "Automatic reply: Refund", "Autoreply",
                                     "Réponse automatique : Refund"])
def test_an_out_of_office_subject_without_auto_submitted_sends_nothing(
        ingestor: Ingestor, subject: str) -> None:
    number = complaint(ingestor)
    raw = mail(subject=subject, body="I will read your mail when I am back.",
               message_id="<ooo@mail.test>", in_reply_to="<player-q@mail.test>")
    result = ingestor.ingest(raw, "t")
    assert result.outcome == "follow_up" and result.ticket_number == number
    assert result.reason.startswith("automated")
    assert len(outbox(ingestor, "notification")) == 1  # the complaint's, nothing more
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")).all()
    assert kinds == ["complaint", "auto_reply"]


def test_an_answer_within_seconds_of_our_mail_is_a_responders(ingestor: Ingestor) -> None:
    complaint(ingestor)
    sent_now(ingestor, "ack")
    [ack] = outbox(ingestor, "ack")
    def answer(n: int, date: datetime) -> bytes:
        msg = email.message_from_bytes(mail(
            subject="Re: Refund of my deposit", body=f"Thank you for your message ({n}).",
            message_id=f"<r{n}@mail.test>", in_reply_to=f"<{ack.message_id}>"), policy=default)
        msg.replace_header("Date", format_datetime(date))
        return msg.as_bytes()

    # A person's client dates the mail when they press send: later than that.
    person = ingestor.ingest(answer(1, ack.sent_at + timedelta(seconds=40)), "t")
    assert person.reason == ""
    assert len(outbox(ingestor, "notification")) == 2
    # Once within seconds may be a fast person; twice is a program.
    fast = ingestor.ingest(answer(2, ack.sent_at + timedelta(seconds=2)), "t")
    assert fast.reason == ""
    quick = ingestor.ingest(answer(3, ack.sent_at + timedelta(seconds=3)), "t")
    assert quick.reason.startswith("automated: responder: written ")
    assert quick.reason.endswith(" s after our mail to the sender, again")
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")
                                .order_by(Message.id)).all()
    assert kinds == ["complaint", "follow_up", "follow_up", "auto_reply"]


def test_a_sender_repeating_their_text_is_a_responder(ingestor: Ingestor) -> None:
    complaint(ingestor)
    assert follow_up(ingestor, 1, body="Thank you. I am away.") == "follow_up"
    assert follow_up(ingestor, 2, body="thank you.  I am AWAY.") == "follow_up"
    reasons = [e.data.get("reason", "") for e in events(ingestor, "auto_reply")]
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")
                                .order_by(Message.id)).all()
    assert kinds == ["complaint", "follow_up", "auto_reply"], reasons


def test_a_runaway_ticket_stops_with_one_summary_until_an_agent_acts(
        db_url: str, tmp_path: Path) -> None:
    loops = LoopPolicy(**{**LOOPS.__dict__, "per_ticket": 3, "notify_every": timedelta(0),
                          "responder_seconds": 0})
    ingestor = make(db_url, tmp_path, loops)
    number = complaint(ingestor)  # ack + notification: 2 of 3
    for n in range(10):
        follow_up(ingestor, n)
    assert len(outbox(ingestor, "ack")) + len(outbox(ingestor, "notification")) == 3
    [summary] = outbox(ingestor, "loop_summary")
    assert summary.recipients == [OPS]
    assert b"Auto-Submitted: auto-generated" in summary.raw
    assert len(events(ingestor, "loop_stopped")) == 1
    assert len(events(ingestor, "auto_mail_withheld")) == 9
    with ingestor.sessions() as session:
        lines, _ = queries.find_tickets(session, queries.TicketFilter(loop_stopped=True))
    assert [line.number for line in lines] == [number]
    # A plain reply is relayed (an agent's words) but ends nothing: a responder writes those.
    [note] = outbox(ingestor, "notification")[:1]
    ingestor.ingest(reply_to_notification(note.raw, "Your refund went out today."), "t")
    assert len(outbox(ingestor, "relay")) == 1
    assert events(ingestor, "loop_resumed") == []
    notified = len(outbox(ingestor, "notification"))
    follow_up(ingestor, 99)
    assert len(outbox(ingestor, "notification")) == notified
    # A command is a person acting: the flag goes, automatic mail may go again.
    ingestor.ingest(reply_to_notification(note.raw, "#status open"), "t")
    assert len(events(ingestor, "loop_resumed")) == 1
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.loop_stopped_at)) is None


def test_a_busy_team_mailbox_over_its_daily_count_stops_no_ticket(
        db_url: str, tmp_path: Path) -> None:
    """Anna's address over its day's count withholds her notification, but the new player's
    ticket is no loop: it is not stopped and nobody gets a loop summary."""
    loops = LoopPolicy(**{**LOOPS.__dict__, "per_team_address": 2,
                          "notify_every": timedelta(0), "responder_seconds": 0})
    ingestor = make(db_url, tmp_path, loops)
    for n in range(3):
        ingestor.ingest(mail(sender=f"player{n}@mail.test", subject="Refund of my deposit",
                             body=f"Please refund my deposit of {n}00 EUR.",
                             message_id=f"<busy{n}@mail.test>"), "t")
    assert len(outbox(ingestor, "notification")) == 2  # the third is withheld ...
    assert len(events(ingestor, "auto_mail_withheld")) == 1
    assert events(ingestor, "loop_stopped") == [] == outbox(ingestor, "loop_summary")
    with ingestor.sessions() as session:  # ... and no ticket is flagged as a loop
        assert session.scalars(select(Ticket.loop_stopped_at)).all() == [None, None, None]


def test_after_an_agents_answer_the_players_next_mail_is_notified_at_once(
        ingestor: Ingestor) -> None:
    complaint(ingestor)
    sent_now(ingestor, "notification")
    [note] = outbox(ingestor, "notification")
    ingestor.ingest(reply_to_notification(note.raw, "Your refund went out today."), "t")
    assert len(outbox(ingestor, "relay")) == 1
    follow_up(ingestor, 1, body="It has not arrived.")
    first, second = outbox(ingestor, "notification")
    assert second.next_attempt_at <= utcnow()  # a live conversation is not held back
