"""Agents by mail through the ingest pipeline and the outbox, on SQLite and PostgreSQL:
replies relayed, notes kept in, commands applied, impersonation held (invariants 4, 5)."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.ingest import Ingestor, IngestPolicy
from daemon.team import Agent, TeamPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.rendering import Templates
from storage import db, queries
from storage.blobs import BlobStore
from storage.models import Event, OutboxMessage, Ticket
from tests.support.agents import AUTHSERV, PASS, reply_to_notification
from tests.support.mails import PNG, mail

SUPPORT = "support@casino.test"
KEYS = (b"agents-test-key-0123456789abcdef",)
DESK = Identity(SUPPORT, "Casino Support", KEYS, Templates())
TEAM = TeamPolicy(
    DESK,
    agents={"anna@casino.test": Agent("anna@casino.test", "Anna Smirnova", ("payments",)),
            "boris@casino.test": Agent("boris@casino.test", "Boris", ("team_leads",))},
    routing={"refund": "payments", "appeal": "team_leads"}, authserv_id=AUTHSERV,
)


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    ack = AckPolicy(DESK)
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, ack=ack, team=TEAM,
                          agents=frozenset(TEAM.agents), authserv_id=AUTHSERV)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


def outbox(ingestor: Ingestor, kind: str | None = None) -> list[OutboxMessage]:
    with ingestor.sessions() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        return list(session.scalars(query))


def ticket(ingestor: Ingestor, number: int) -> Ticket:
    with ingestor.sessions() as session:
        return session.scalar(select(Ticket).where(Ticket.number == number))


def events(ingestor: Ingestor, kind: str) -> list[Event]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def complaint(ingestor: Ingestor) -> tuple[int, bytes]:
    raw = mail(subject="Refund of my deposit", body="Please refund my deposit of 100 EUR.",
               message_id="<player-q@mail.test>", attachments=(("receipt.png", "image/png", PNG),))
    number = ingestor.ingest(raw, "t").ticket_number
    [note] = outbox(ingestor, "notification")
    return number, note.raw


def test_a_new_ticket_notifies_its_group_and_never_the_player(ingestor: Ingestor) -> None:
    complaint(ingestor)
    [note] = outbox(ingestor, "notification")
    assert note.recipients == ["anna@casino.test"]  # refunds go to payments
    msg = email.message_from_bytes(note.raw, policy=default)
    body = msg.get_body(("plain",)).get_content()
    assert "Please refund my deposit" in body and "refund" in body
    assert [a.get_filename() for a in msg.iter_attachments()] == ["receipt.png"]
    assert "+t" in str(msg["Reply-To"])  # a signed reply address


@pytest.mark.parametrize("layout", ["thunderbird", "outlook"])
def test_an_agent_reply_reaches_the_player_as_the_new_text_only_from_the_support_address(
        ingestor: Ingestor, layout: str) -> None:
    number, note = complaint(ingestor)
    answer = "Hello! We have refunded your deposit; it arrives within 3 days."
    result = ingestor.ingest(reply_to_notification(note, answer, layout=layout), "t")
    assert result.reason == "agent reply"
    [relayed] = outbox(ingestor, "relay")
    assert relayed.recipients == ["player@mail.test"]
    assert b"anna@casino.test" not in relayed.raw
    msg = email.message_from_bytes(relayed.raw, policy=default)
    text = msg.get_body(("plain",)).get_content()
    assert answer in text and "Please refund my deposit" not in text and "##- " in text
    assert msg["From"].addresses[0].addr_spec == SUPPORT
    assert msg["In-Reply-To"] == "<player-q@mail.test>" and f"[#{number}]" in msg["Subject"]
    assert ticket(ingestor, number).status == "pending"


def test_the_players_answer_reopens_the_ticket_and_notifies_the_agents_again(ingestor: Ingestor) -> None:
    number, note = complaint(ingestor)
    ingestor.ingest(reply_to_notification(note, "Refunded."), "t")
    [relayed] = outbox(ingestor, "relay")
    answer = mail(subject=f"Re: Refund of my deposit [#{number}]", body="Thanks, but not yet.",
                  in_reply_to=f"<{relayed.message_id}>")
    assert ingestor.ingest(answer, "t").ticket_number == number
    assert ticket(ingestor, number).status == "open"
    assert len(outbox(ingestor, "notification")) == 2


def test_an_internal_note_never_reaches_the_player(ingestor: Ingestor) -> None:
    number, note = complaint(ingestor)
    secret = "Check the provider's chargeback list first."
    assert ingestor.ingest(reply_to_notification(note, f"#note\n{secret}"), "t").reason == "agent note"
    assert not any(secret.encode() in row.raw for row in outbox(ingestor))
    with ingestor.sessions() as session:
        doc = queries.ticket_as_dict(queries.ticket_by_ref(session, number))
    notes = [m for m in doc["messages"] if m["kind"] == "note"]
    assert [n["text"] for n in notes] == [secret] and notes[0]["direction"] == "internal"


def test_commands_change_the_ticket_and_send_nothing_to_the_player(ingestor: Ingestor) -> None:
    number, note = complaint(ingestor)
    commands = "#status pending\n#priority urgent\n#category bet_settlement\n#assign me"
    assert ingestor.ingest(reply_to_notification(note, commands), "t").reason == "agent commands"
    t = ticket(ingestor, number)
    assert (t.status, t.priority, t.category, t.assignee) == (
        "pending", "urgent", "bet_settlement", "anna@casino.test")
    assert [e.actor for e in events(ingestor, "command_priority")] == ["Anna Smirnova"]
    assert outbox(ingestor, "relay") == []


def test_an_unknown_command_is_refused_with_a_reply_and_nothing_is_applied(ingestor: Ingestor) -> None:
    number, note = complaint(ingestor)
    result = ingestor.ingest(reply_to_notification(note, "#stauts resolved\n#priority high\nDone."), "t")
    assert result.reason.startswith("agent refused") and "#stauts" in result.reason
    [refusal] = outbox(ingestor, "command_refused")
    assert refusal.recipients == ["anna@casino.test"] and b"stauts" in refusal.raw
    t = ticket(ingestor, number)
    assert (t.status, t.priority) == ("open", "normal")
    assert outbox(ingestor, "relay") == []


@pytest.mark.parametrize("auth, references, why", [
    ((PASS,), False, "no signed reference"),
    ((), True, "no Authentication-Results"),
    ((f"{AUTHSERV}; dkim=pass header.d=evil.test",), True, "not aligned"),
    ((PASS, f"{AUTHSERV}; dkim=pass header.d=casino.test"), True, "2 Authentication-Results"),
    ((f"{AUTHSERV}; dkim=fail header.d=casino.test; spf=fail smtp.mailfrom=casino.test",), True,
     "dkim=fail"),
], ids=["no-token", "no-authres", "unaligned-dkim", "two-headers", "dkim-fail"])
def test_a_spoofed_agent_mail_is_held_applied_nowhere_and_relayed_to_no_one(
        ingestor: Ingestor, auth: tuple[str, ...], references: bool, why: str) -> None:
    number, note = complaint(ingestor)
    spoof = reply_to_notification(note, "#status closed\nYour complaint is rejected.", auth=auth,
                                  references=references)
    if not references:  # the subject tag is still there: it names the ticket
        assert f"[#{number}]".encode() in spoof
    result = ingestor.ingest(spoof, "t")
    assert result.reason.startswith("agent held") and why in result.reason
    assert ticket(ingestor, number).status == "open"
    assert outbox(ingestor, "relay") == []
    [held] = outbox(ingestor, "held_notice")
    assert held.recipients == ["anna@casino.test"]
    [event] = events(ingestor, "agent_mail_held")
    assert why in event.data["reason"]


def test_attachments_the_agent_adds_are_relayed_to_the_player(ingestor: Ingestor) -> None:
    number, note = complaint(ingestor)
    reply = email.message_from_bytes(reply_to_notification(note, "The receipt of our refund."),
                                     policy=default)
    reply.add_attachment(b"%PDF-1.4 refund receipt", maintype="application", subtype="pdf",
                         filename="refund.pdf")
    ingestor.ingest(reply.as_bytes(), "t")
    [relayed] = outbox(ingestor, "relay")
    msg = email.message_from_bytes(relayed.raw, policy=default)
    [attached] = list(msg.iter_attachments())
    assert (attached.get_filename(), attached.get_content()) == ("refund.pdf", b"%PDF-1.4 refund receipt")


def test_mail_to_the_comment_address_is_an_internal_note(db_url: str, tmp_path: Path) -> None:
    from dataclasses import replace

    team = replace(TEAM, comment_address="support+comment@casino.test")
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, team=team,
                          agents=frozenset(team.agents), authserv_id=AUTHSERV)
    ingestor = Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)
    number, note = complaint(ingestor)
    reply = email.message_from_bytes(reply_to_notification(note, "Waiting for the provider."),
                                     policy=default)
    reply["Cc"] = "support+comment@casino.test"
    assert ingestor.ingest(reply.as_bytes(), "t").reason == "agent note"
    assert outbox(ingestor, "relay") == []


def _sla_ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    from daemon.sla import SlaOptions

    sla = SlaOptions(team_lead_address="lead@casino.test", head_of_support_address="head@casino.test")
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, team=TEAM, sla=sla,
                          agents=frozenset(TEAM.agents), authserv_id=AUTHSERV)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


def _monitor_at(ingestor: Ingestor, hours: float) -> list[str]:
    from datetime import timedelta

    from daemon.sla import MonitorDesk, SlaMonitor
    from storage.models import utcnow

    monitor = SlaMonitor(ingestor.sessions, MonitorDesk(ingestor.policy.sla, DESK))
    stats = monitor.run_once(utcnow() + timedelta(hours=hours))
    return [f"{e.ticket}:{e.clock_kind}:{e.stage_name}" for e in stats.escalations]


def test_an_unanswered_complaint_breaches_and_an_agents_reply_stops_the_clock(
        db_url: str, tmp_path: Path) -> None:
    ingestor = _sla_ingestor(db_url, tmp_path)
    complaint(ingestor)  # ticket 10001: nobody answers
    second = ingestor.ingest(mail(sender="other@mail.test", subject="Refund two",
                                  body="Refund please", message_id="<q2@mail.test>"), "t")
    note = next(r for r in outbox(ingestor, "notification") if f"[#{second.ticket_number}]".encode() in r.raw)
    ingestor.ingest(reply_to_notification(note.raw, "Refunded."), "t")  # answered at once
    escalated = _monitor_at(ingestor, 24.1)
    with ingestor.sessions() as session:
        by_ticket = {r.ticket_id for r in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "escalation"))}
    assert "10001:first_response:level1" in escalated, escalated
    assert not any(e.startswith(f"{second.ticket_number}:") for e in escalated)
    assert by_ticket == {ticket(ingestor, 10001).id}  # the answered ticket never escalates


def test_a_final_answer_tells_the_player_where_to_take_the_complaint_beyond_us(
        db_url: str, tmp_path: Path) -> None:
    from dataclasses import replace

    team = replace(TEAM, identity=replace(
        DESK, dispute_text="Independent dispute body: ADR Gaming Ombudsman."))
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, team=team,
                          agents=frozenset(team.agents), authserv_id=AUTHSERV)
    ingestor = Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)
    number, note = complaint(ingestor)
    ingestor.ingest(reply_to_notification(note, "More details, please."), "t")
    ingestor.ingest(reply_to_notification(note, "#status resolved\nWe cannot refund this bet."), "t")
    first, final = outbox(ingestor, "relay")
    assert b"ADR Gaming Ombudsman" not in first.raw
    assert "ADR Gaming Ombudsman" in email.message_from_bytes(final.raw, policy=default) \
        .get_body(("plain",)).get_content()
    assert ticket(ingestor, number).status == "resolved"


def test_the_notification_states_the_sla_due_time(db_url: str, tmp_path: Path) -> None:
    ingestor = _sla_ingestor(db_url, tmp_path)
    _, note = complaint(ingestor)
    body = email.message_from_bytes(note, policy=default).get_body(("plain",)).get_content()
    [line] = [line for line in body.splitlines() if line.startswith("Response due:")]
    assert line.endswith("UTC (in 24 hours)"), line
