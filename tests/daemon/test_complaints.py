"""The regulated complaint lifecycle through ingest, agents' mail and the monitor pass, on
SQLite and PostgreSQL: reminders and exactly one final-response letter at the deadline,
#final stopping the guard, #extend once, disputes, ADR referrals and enquiries."""

from __future__ import annotations

import email
import logging
import threading
from datetime import datetime, timedelta
from email.policy import default
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import delete, select

from daemon import complaints as lifecycle
from daemon.ingest import Ingestor, IngestPolicy
from daemon.sla import MonitorDesk, SlaMonitor, SlaOptions
from daemon.team import Agent, TeamPolicy
from responders.complaint_profiles import AdrEntity, profile
from responders.identity import Identity
from responders.rendering import Templates
from storage import db
from storage.blobs import BlobStore
from storage.models import Complaint, Event, OutboxMessage, Ticket, utcnow
from tests.support.agents import AUTHSERV, reply_to_notification
from tests.support.mails import mail

SUPPORT, HEAD = "support@casino.test", "head@casino.test"
ADR_MAIL = "cases@adr.test"
KEYS = (b"complaints-test-key-0123456789ab",)
ADR = MappingProxyType({
    "en": AdrEntity("Fair Play Adjudication", "https://adr.test", "1 Fair Street, London"),
    "ru": AdrEntity("Служба честной игры", "https://adr.test/ru", "Лондон, Фэр-стрит, 1"),
})
WEEK = timedelta(weeks=1)


def desk(name: str, **changes: object) -> Identity:
    return Identity(SUPPORT, "Casino Support", KEYS, Templates(),
                    complaints=profile(name, adr=ADR), adr_addresses=frozenset({ADR_MAIL}),
                    **changes)  # type: ignore[arg-type]


def make_ingestor(db_url: str, tmp_path: Path, identity: Identity) -> Ingestor:
    team = TeamPolicy(identity, agents={"anna@casino.test": Agent("anna@casino.test", "Anna")},
                      authserv_id=AUTHSERV)
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, team=team,
                          agents=frozenset(team.agents), authserv_id=AUTHSERV,
                          sla=SlaOptions(head_of_support_address=HEAD),
                          complaints=identity.complaints, adr_addresses=identity.adr_addresses)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


def monitor_at(ingestor: Ingestor, identity: Identity, delta: timedelta,
               start: datetime | None = None) -> list[tuple[int, str]]:
    assert ingestor.policy.sla is not None
    monitor = SlaMonitor(ingestor.sessions, MonitorDesk(ingestor.policy.sla, identity))
    return monitor.run_once((start or utcnow()) + delta).complaints.done


def complain(ingestor: Ingestor, language: str = "en",
             sender: str = "player@mail.test") -> tuple[int, bytes]:
    subject, body = (("Вывод средств", "Здравствуйте, мой вывод средств не пришёл уже неделю, "
                      "прошу разобраться и вернуть деньги.")
                     if language == "ru" else
                     ("Missing withdrawal", "Hello, my withdrawal has not arrived for a week, "
                      "please look into it and return my money."))
    number = ingestor.ingest(mail(sender=sender, subject=subject, body=body,
                                  message_id=f"<{sender}-{language}@mail.test>"), "t").ticket_number
    note = [r for r in outbox(ingestor, "notification") if f"[#{number}]".encode() in r.raw][-1]
    return number, note.raw


def outbox(ingestor: Ingestor, kind: str) -> list[OutboxMessage]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def events(ingestor: Ingestor, kind: str) -> list[dict]:
    with ingestor.sessions() as session:
        return [e.data for e in session.scalars(select(Event).where(Event.kind == kind)
                                                .order_by(Event.id))]


def record(ingestor: Ingestor) -> Complaint:
    with ingestor.sessions() as session:
        row = session.scalar(select(Complaint).order_by(Complaint.id.desc()))
        assert row is not None
        return row


def text_of(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=default).get_body(("plain",)).get_content()


@pytest.mark.parametrize("language", ["en", "ru"])
def test_an_undecided_ukgc_complaint_gets_reminders_then_one_final_response_letter(
        db_url: str, tmp_path: Path, language: str) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, _ = complain(ingestor, language)
    [opened] = events(ingestor, "complaint_opened")
    assert opened["profile"] == "ukgc" and opened["final_due_at"]
    assert monitor_at(ingestor, identity, 6 * WEEK - timedelta(hours=1), start) == []
    assert monitor_at(ingestor, identity, 6 * WEEK + timedelta(minutes=1), start) == [
        (number, "2w before")]
    assert monitor_at(ingestor, identity, 7 * WEEK + timedelta(minutes=1), start) == [
        (number, "1w before")]
    assert [r.recipients for r in outbox(ingestor, "complaint_reminder")] == [[HEAD], [HEAD]]
    assert outbox(ingestor, "complaint_letter") == []
    assert monitor_at(ingestor, identity, 8 * WEEK + timedelta(minutes=1), start) == [
        (number, "deadline")]
    assert monitor_at(ingestor, identity, 9 * WEEK, start) == []  # exactly once
    [letter] = outbox(ingestor, "complaint_letter")
    assert letter.recipients == ["player@mail.test"]
    body = text_of(letter.raw)
    if language == "ru":
        assert "Служба честной игры" in body and "окончательный ответ" in body
        assert "Fair Play" not in body and "final" not in body.lower()
    else:
        assert "Fair Play Adjudication" in body and "https://adr.test" in body
        assert "final response" in body
    assert [e["point"] for e in events(ingestor, "complaint_reminder")] == ["2w before",
                                                                           "1w before"]
    assert events(ingestor, "deadline_letter")[0]["in_time"] is False
    [decision] = events(ingestor, "final_decision")
    assert decision["by"] == "guard" and decision["in_time"] is False
    assert record(ingestor).state == "final" and record(ingestor).letter_sent_at is not None
    with ingestor.sessions() as session:  # the letter is on the ticket as sent
        sent = [e.data for e in session.scalars(select(Event).where(Event.kind == "mail_queued"))]
    assert [s["text"].strip() for s in sent if s["kind"] == "complaint_letter"] == [
        body.replace("\r\n", "\n").strip()]


def test_a_final_decision_before_the_deadline_stops_the_guard(db_url: str,
                                                              tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, note = complain(ingestor, "ru")
    done = ingestor.ingest(reply_to_notification(note, "#final\nВ возврате отказано."), "t")
    assert done.reason == "agent reply"
    [relay] = outbox(ingestor, "relay")
    body = text_of(relay.raw)
    assert "В возврате отказано." in body and "Служба честной игры" in body
    assert "If you do not agree" not in body  # no English inside a Russian answer
    [decision] = events(ingestor, "final_decision")
    assert decision["by"] == "anna@casino.test" and decision["in_time"] is True
    assert monitor_at(ingestor, identity, 9 * WEEK, start) == []
    assert outbox(ingestor, "complaint_letter") == [] == outbox(ingestor, "complaint_reminder")
    assert record(ingestor).state == "final"


def test_a_final_decision_written_as_a_note_is_refused_not_recorded(db_url: str,
                                                                    tmp_path: Path) -> None:
    """A #note stays with the team: taking #final from it would stop the guard with the
    player told nothing."""
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    _, note = complain(ingestor)
    result = ingestor.ingest(reply_to_notification(note, "#final\n#note\nRefund refused."), "t")
    assert result.reason.startswith("agent refused")
    [refused] = outbox(ingestor, "command_refused")
    assert "not as a #note" in text_of(refused.raw)
    assert events(ingestor, "final_decision") == [] and outbox(ingestor, "relay") == []
    assert record(ingestor).state == "complaint"
    assert len(monitor_at(ingestor, identity, 9 * WEEK, start)) > 0  # the guard still runs


def test_cga_extends_once_with_a_written_notice_and_refuses_a_second(db_url: str,
                                                                    tmp_path: Path) -> None:
    identity = desk("cga")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    _, note = complain(ingestor)
    due = record(ingestor).final_due_at
    assert due is not None
    ingestor.ingest(reply_to_notification(note, "#extend we are waiting for the payment "
                                                "provider's statement"), "t")
    assert record(ingestor).final_due_at == due + 4 * WEEK
    [notice] = outbox(ingestor, "complaint_letter")
    body = text_of(notice.raw)
    assert notice.recipients == ["player@mail.test"]
    assert "waiting for the payment provider's statement" in body
    assert (due + 4 * WEEK).strftime("%Y-%m-%d") in body
    [extended] = events(ingestor, "deadline_extended")
    assert extended["reason"].startswith("we are waiting")
    result = ingestor.ingest(reply_to_notification(note, "#extend still waiting"), "t")
    assert result.reason.startswith("agent refused")
    [refused] = outbox(ingestor, "command_refused")
    assert refused.recipients == ["anna@casino.test"]
    assert "extended only once" in text_of(refused.raw)
    assert record(ingestor).final_due_at == due + 4 * WEEK
    assert len(outbox(ingestor, "complaint_letter")) == 1


def test_ukgc_refuses_an_extension(db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    _, note = complain(ingestor)
    due = record(ingestor).final_due_at
    ingestor.ingest(reply_to_notification(note, "#extend need more time"), "t")
    [refused] = outbox(ingestor, "command_refused")
    assert "allows no extension" in text_of(refused.raw)
    assert record(ingestor).final_due_at == due and events(ingestor, "deadline_extended") == []


def test_a_dispute_after_the_final_decision_and_the_adr_referral_are_recorded(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#final\nWe cannot pay this out."), "t")
    [relay] = outbox(ingestor, "relay")
    ingestor.ingest(mail(sender="player@mail.test", subject=f"Re: Missing withdrawal [#{number}]",
                         body="I do not accept this, I want to appeal.",
                         in_reply_to=f"<{relay.message_id}>"), "t")
    assert events(ingestor, "dispute_opened") == [{}]
    assert record(ingestor).state == "dispute"
    ingestor.ingest(reply_to_notification(note, "#adr Fair Play Adjudication FP-2031"), "t")
    assert events(ingestor, "adr_referral") == [{"entity": "Fair Play Adjudication",
                                                 "reference": "FP-2031"}]
    ingestor.ingest(reply_to_notification(note, "#adr-outcome partially_upheld"), "t")
    assert events(ingestor, "adr_outcome") == [{"outcome": "partially_upheld"}]
    row = record(ingestor)
    assert row.state == "adr" and row.adr_outcome == "partially_upheld"


def test_an_adr_body_mail_links_by_its_reference_and_starts_the_enquiry_clock(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#adr Fair Play FP-77"), "t")
    result = ingestor.ingest(mail(sender=ADR_MAIL, subject="Case FP-77: request for documents",
                                  body="Please send us your final response letter."), "t")
    assert result.ticket_number == number
    [enquiry] = events(ingestor, "adr_enquiry")
    assert enquiry["entity"] == ADR_MAIL
    due = datetime.fromisoformat(enquiry["due_at"])
    received = record(ingestor).received_at
    days = [received.date() + timedelta(days=n) for n in range(1, (due - received).days + 1)]
    assert sum(day.weekday() < 5 for day in days) == 10 and due.weekday() < 5  # working days
    assert len(events(ingestor, "complaint_opened")) == 1  # the ADR body is no complainant
    identity = desk("ukgc")
    assert monitor_at(ingestor, identity, timedelta(0), due - timedelta(minutes=1)) == []
    assert monitor_at(ingestor, identity, timedelta(0), due) == [(number, "adr_enquiry")]
    assert monitor_at(ingestor, identity, timedelta(days=1), due) == []  # once
    [reminder] = outbox(ingestor, "complaint_reminder")
    assert reminder.recipients == [HEAD] and "ADR body's enquiry" in text_of(reminder.raw)


def test_under_none_every_ticket_is_recorded_without_deadlines(db_url: str,
                                                               tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("none"))
    complain(ingestor)
    [opened] = events(ingestor, "complaint_opened")
    assert opened["profile"] == "none" and opened["final_due_at"] is None
    assert opened["ack_due_at"] is None and opened["category"]
    assert monitor_at(ingestor, desk("none"), 52 * WEEK) == []


def test_the_head_of_support_gets_the_letter_to_send_when_so_configured(
        db_url: str, tmp_path: Path) -> None:
    identity = desk("ukgc", deadline_action="head_of_support")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, _ = complain(ingestor, "ru")
    assert monitor_at(ingestor, identity, 8 * WEEK + timedelta(minutes=1), start) == [
        (number, "deadline")]
    assert outbox(ingestor, "complaint_letter") == []
    [handoff] = outbox(ingestor, "complaint_reminder")
    assert handoff.recipients == [HEAD] and "Служба честной игры" in text_of(handoff.raw)
    assert events(ingestor, "deadline_letter") == [] and record(ingestor).state == "complaint"


def test_two_monitor_passes_at_once_send_one_letter_each(pg_url: str, tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(pg_url, tmp_path, identity)
    start = utcnow()
    numbers = [complain(ingestor, sender=f"p{i}@mail.test")[0] for i in range(30)]
    assert ingestor.policy.sla is not None
    engines = [db.make_engine(pg_url) for _ in range(2)]
    monitors = [SlaMonitor(db.session_factory(e), MonitorDesk(ingestor.policy.sla, identity))
                for e in engines]
    barrier = threading.Barrier(2)
    done: list[list[tuple[int, str]]] = []

    def run(monitor: SlaMonitor) -> None:
        barrier.wait()
        done.append(monitor.run_once(start + 8 * WEEK + timedelta(minutes=1)).complaints.done)

    threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for engine in engines:
        engine.dispose()
    assert sorted(n for d in done for n, _ in d) == sorted(numbers)
    letters = outbox(ingestor, "complaint_letter")
    assert sorted(r.recipients[0] for r in letters) == sorted(f"p{i}@mail.test" for i in range(30))
    assert len(events(ingestor, "deadline_letter")) == 30


def test_a_resolving_answer_is_the_final_decision_and_a_merge_stops_the_guard(
        db_url: str, tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    first, note = complain(ingestor, sender="a@mail.test")
    second, other = complain(ingestor, sender="b@mail.test")
    ingestor.ingest(reply_to_notification(note, "#status resolved\nPaid out today."), "t")
    [relay] = outbox(ingestor, "relay")
    assert "Fair Play Adjudication" in text_of(relay.raw)
    [decision] = events(ingestor, "final_decision")
    assert decision["by"] == "anna@casino.test" and decision["in_time"] is True
    ingestor.ingest(reply_to_notification(other, f"#merge {first}"), "t")
    assert monitor_at(ingestor, identity, 9 * WEEK, start) == []
    assert outbox(ingestor, "complaint_letter") == []


# --- waiting on the player ----------------------------------------------------------------

def ticket_id_of(ingestor: Ingestor, number: int) -> int:
    with ingestor.sessions() as session:
        found = session.scalar(select(Ticket.id).where(Ticket.number == number))
        assert found is not None
        return found


def test_a_ukgc_complaint_paused_two_weeks_gets_its_deadlock_letter_at_ten_weeks(
        db_url: str, tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(
        note, "#status pending\nPlease send us the bank statement of the withdrawal."), "t")
    [paused] = events(ingestor, "complaint_paused")
    assert record(ingestor).paused_at is not None and record(ingestor).next_action_at is None
    # The player answers two weeks later (the same step ingest takes on their mail).
    with ingestor.sessions.begin() as session:
        assert lifecycle.resume_clock(session, identity.complaints, ticket_id_of(
            ingestor, number), "player@mail.test", start + 2 * WEEK)
    [resumed] = events(ingestor, "complaint_resumed")
    assert 2 * WEEK - timedelta(minutes=5) < timedelta(seconds=resumed["paused_seconds"]) \
        <= 2 * WEEK
    assert monitor_at(ingestor, identity, 6 * WEEK + timedelta(minutes=1), start) == []
    assert monitor_at(ingestor, identity, 8 * WEEK + timedelta(minutes=1), start) == [
        (number, "2w before")]  # not the letter: its 8 weeks stood still for two
    assert outbox(ingestor, "complaint_letter") == []
    assert monitor_at(ingestor, identity, 10 * WEEK + timedelta(minutes=1), start) == [
        (number, "deadline")]
    [letter] = outbox(ingestor, "complaint_letter")
    assert letter.recipients == ["player@mail.test"]
    row = record(ingestor)
    assert row.state == "final" and row.paused_seconds == resumed["paused_seconds"]
    assert paused["final_due_at"] == events(ingestor, "complaint_opened")[0]["final_due_at"]


def test_while_waiting_on_the_player_the_guard_sends_nothing_and_their_mail_resumes_it(
        db_url: str, tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#status pending\nWhich card did you use?"),
                    "t")
    [relay] = outbox(ingestor, "relay")
    assert monitor_at(ingestor, identity, 12 * WEEK, start) == []
    assert outbox(ingestor, "complaint_letter") == [] == outbox(ingestor, "complaint_reminder")
    ingestor.ingest(mail(sender="player@mail.test", subject=f"Re: Missing withdrawal [#{number}]",
                         body="The Visa ending 4242.", in_reply_to=f"<{relay.message_id}>"), "t")
    assert len(events(ingestor, "complaint_resumed")) == 1
    row = record(ingestor)
    assert row.paused_at is None and row.next_action_at is not None
    assert row.final_due_at is not None and row.final_due_at > start + 8 * WEEK


def test_an_ordinary_answer_does_not_pause_and_a_status_other_than_pending_resumes(
        db_url: str, tmp_path: Path) -> None:
    """Every answer leaves the ticket pending; only #status pending says the desk asked
    for something, so only it stops the deadline."""
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    _, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "We are looking into it."), "t")
    assert events(ingestor, "complaint_paused") == [] and record(ingestor).paused_at is None
    ingestor.ingest(reply_to_notification(note, "#status pending\nWhich card was it?"), "t")
    assert record(ingestor).paused_at is not None
    ingestor.ingest(reply_to_notification(note, "#status open"), "t")
    assert record(ingestor).paused_at is None and len(events(ingestor, "complaint_resumed")) == 1


def test_only_a_question_relayed_to_the_player_pauses_and_its_relay_is_the_evidence(
        db_url: str, tmp_path: Path) -> None:
    """#status pending on a note, or with no text, asks the player nothing: the deadline runs
    on. On a public reply it pauses, and the event names the relay that asked."""
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    _, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(
        note, "#status pending\n#note\nShould we ask for the bank statement?"), "t")
    ingestor.ingest(reply_to_notification(note, "#status pending"), "t")
    assert events(ingestor, "complaint_paused") == [] and record(ingestor).paused_at is None
    assert outbox(ingestor, "relay") == []
    ingestor.ingest(reply_to_notification(
        note, "#status pending\nPlease send us the bank statement."), "t")
    [relay] = outbox(ingestor, "relay")
    [paused] = events(ingestor, "complaint_paused")
    assert paused["asked_in"] == relay.message_id
    assert record(ingestor).paused_at is not None


def test_cga_does_not_pause(db_url: str, tmp_path: Path) -> None:
    identity = desk("cga")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#status pending\nWhich card did you use?"),
                    "t")
    assert events(ingestor, "complaint_paused") == [] and record(ingestor).paused_at is None
    assert monitor_at(ingestor, identity, 4 * WEEK + timedelta(minutes=1), start) == [
        (number, "deadline")]


# --- an ADR body's enquiry outlives what else happens to the complaint --------------------

@pytest.mark.parametrize("then", ["final", "adr", "merge"])
def test_a_pending_adr_enquiry_is_still_reminded_of_after_final_referral_or_merge(
        db_url: str, tmp_path: Path, then: str) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    number, note = complain(ingestor)
    other, _ = complain(ingestor, sender="other@mail.test")
    ingestor.ingest(mail(sender=ADR_MAIL, subject=f"Enquiry about your ticket [#{number}]",
                         body="Has the player had your final response?"), "t")
    [enquiry] = events(ingestor, "adr_enquiry")
    due = datetime.fromisoformat(enquiry["due_at"])
    command = {"final": "#final\nWe cannot pay this out.", "adr": "#adr Fair Play FP-9",
               "merge": f"#merge {other}"}[then]
    done = ingestor.ingest(reply_to_notification(note, command), "t")
    assert not done.reason.startswith("agent refused"), done.reason
    assert monitor_at(ingestor, identity, timedelta(0), due) == [(number, "adr_enquiry")]
    [reminder] = outbox(ingestor, "complaint_reminder")
    assert "ADR body's enquiry" in text_of(reminder.raw)


# --- merging into a ticket from before complaints were recorded ---------------------------

def test_a_merge_into_a_ticket_without_a_complaint_record_carries_the_deadline_over(
        db_url: str, tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    old, _ = complain(ingestor, "ru", sender="a@mail.test")
    with ingestor.sessions.begin() as session:  # opened before migration 0012
        session.execute(delete(Complaint).where(Complaint.ticket_id == ticket_id_of(
            ingestor, old)))
    new, note = complain(ingestor, sender="a@mail.test")  # the same player writes again
    due = record(ingestor).final_due_at
    ingestor.ingest(reply_to_notification(note, f"#merge {old}"), "t")
    row = record(ingestor)
    assert row.ticket_id == ticket_id_of(ingestor, old) and row.final_due_at == due
    assert events(ingestor, "complaint_moved") == [{
        "moved_from": ticket_id_of(ingestor, new), "final_due_at": due.isoformat(),
        "received_at": row.received_at.isoformat()}]
    assert monitor_at(ingestor, identity, 8 * WEEK + timedelta(minutes=1), start) == [
        (old, "deadline")]
    [letter] = outbox(ingestor, "complaint_letter")
    assert letter.recipients == ["a@mail.test"]  # the player of the ticket that carries on


# --- the hand-over without a head of support ------------------------------------------------

def test_a_hand_over_with_no_head_of_support_sends_the_player_letter_and_says_so(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The settings refuse this; a desk built without them must still not stay silent."""
    identity = desk("ukgc", deadline_action="head_of_support")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, _ = complain(ingestor)
    monitor = SlaMonitor(ingestor.sessions, MonitorDesk(SlaOptions(), identity))
    with caplog.at_level(logging.WARNING, logger="daemon.complaints"):
        assert monitor.run_once(start + 8 * WEEK + timedelta(minutes=1)).complaints.done == [
            (number, "deadline")]
    [letter] = outbox(ingestor, "complaint_letter")
    assert letter.recipients == ["player@mail.test"]
    assert any("no head of support" in r.getMessage() for r in caplog.records)
    assert record(ingestor).state == "final"


# --- the responsible-gambling fast lane, later in the conversation ------------------------

def test_a_cga_complaint_that_turns_into_a_self_exclusion_takes_the_fast_lane(
        db_url: str, tmp_path: Path) -> None:
    identity = desk("cga")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "We are checking with the payments team."),
                    "t")
    [relay] = outbox(ingestor, "relay")
    written = utcnow()
    ingestor.ingest(mail(sender="player@mail.test", subject=f"Re: Missing withdrawal [#{number}]",
                         body="Forget it. I have a gambling problem, please self-exclude me.",
                         in_reply_to=f"<{relay.message_id}>"), "t")
    [lane] = events(ingestor, "complaint_fast_lane")
    row = record(ingestor)
    assert row.category == "self_exclusion" and row.final_due_at is not None
    assert lane["final_due_at"] == row.final_due_at.isoformat()
    assert written + timedelta(days=1) <= row.final_due_at <= written + timedelta(days=3, hours=1)
    assert monitor_at(ingestor, identity, timedelta(0), row.final_due_at) == [
        (number, "deadline")]


# --- receipt: when the mailbox got the mail -------------------------------------------------

def test_the_complaint_is_received_when_the_mailbox_got_it(db_url: str,
                                                           tmp_path: Path) -> None:
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    delivered = utcnow().replace(microsecond=0) - timedelta(days=3)
    ingestor.ingest(mail(sender="p1@mail.test", body="My withdrawal is missing for a week."),
                    "t", delivered_at=delivered)
    row = record(ingestor)
    assert row.received_at == delivered and row.final_due_at == delivered + 8 * WEEK
    assert events(ingestor, "complaint_opened")[0]["received_at"] == delivered.isoformat()
    dated = utcnow().replace(microsecond=0) - timedelta(hours=2)
    ingestor.ingest(mail(sender="p2@mail.test", body="My withdrawal is missing for a week.",
                         date=dated), "t")
    assert record(ingestor).received_at == dated  # no INTERNALDATE: its Date, plausible


# --- an ADR body's mail: automated, matched by its reference as a whole ------------------

AUTOMATED = {"Auto-Submitted": "auto-generated", "Precedence": "bulk"}


def test_an_adr_case_systems_automated_mail_is_an_enquiry_and_never_acknowledged(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    number, note = complain(ingestor)
    acks = len(outbox(ingestor, "ack"))
    ingestor.ingest(reply_to_notification(note, "#adr Fair Play FP-77"), "t")
    result = ingestor.ingest(mail(sender=ADR_MAIL, subject="Case FP-77: documents due",
                                  body="Automated notice: documents are due.",
                                  headers=AUTOMATED), "t")
    assert result.outcome == "follow_up" and result.ticket_number == number
    assert [e["entity"] for e in events(ingestor, "adr_enquiry")] == [ADR_MAIL]
    # A case the desk has not heard of yet opens its own ticket, unacknowledged.
    opened = ingestor.ingest(mail(sender=ADR_MAIL, subject="New case FP-90",
                                  body="Automated notice: a new case was opened.",
                                  headers=AUTOMATED), "t")
    assert opened.outcome == "ticket" and opened.ticket_number != number
    assert len(events(ingestor, "adr_enquiry")) == 2
    assert len(outbox(ingestor, "ack")) == acks  # a machine is never answered
    notified = [r for r in outbox(ingestor, "notification")
                if f"[#{opened.ticket_number}]".encode() in r.raw]
    assert notified  # the team hears of it


def test_an_adr_reference_is_matched_as_a_whole_word(db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#adr Fair Play FP-7"), "t")
    longer = ingestor.ingest(mail(sender=ADR_MAIL, subject="Case FP-77: a new case",
                                  body="Please contact us about case FP-77."), "t")
    assert longer.ticket_number != number  # FP-7 is not FP-77
    named = ingestor.ingest(mail(sender=ADR_MAIL, subject="Re: case fp-7, documents",
                                 body="Please send the documents."), "t")
    assert named.ticket_number == number


def test_an_adr_entity_longer_than_the_record_keeps_is_refused_with_a_reply(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    _, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#final\nWe cannot pay this out."), "t")
    result = ingestor.ingest(reply_to_notification(note, "#adr " + "Adjudication " * 20
                                                   + "FP-1"), "t")
    assert result.reason.startswith("agent refused")
    [refused] = outbox(ingestor, "command_refused")
    assert refused.recipients == ["anna@casino.test"]
    assert "at most 200" in text_of(refused.raw)
    assert events(ingestor, "adr_referral") == [] and record(ingestor).state == "final"


def test_a_complaint_clock_moved_after_the_erasure_sends_no_letter(db_url: str,
                                                                     tmp_path: Path) -> None:
    """Erasure stops the guard; a later command that moves the clock again (a resume, an
    extension) must not make it write to the erased player's tombstone address."""
    from storage.erasure import erase

    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    complain(ingestor)
    with ingestor.sessions.begin() as session:
        erase(session, BlobStore(tmp_path), "player@mail.test", "dpo@casino.test")
    assert record(ingestor).next_action_at is None  # the erasure stopped the guard
    with ingestor.sessions.begin() as session:  # as a resume after the erasure would
        session.get(Complaint, record(ingestor).id).next_action_at = start + 8 * WEEK
    assert monitor_at(ingestor, identity, 9 * WEEK, start) == []
    assert outbox(ingestor, "complaint_letter") == []
    assert record(ingestor).next_action_at is None


# --- a merged-away complaint stays stopped ----------------------------------------------------

def test_a_paused_complaint_merged_into_another_gets_no_letter_of_its_own(
        db_url: str, tmp_path: Path) -> None:
    """The merged-away ticket is closed: its status must not resume the paused clock, nor a
    later #extend re-arm it; the complaint that runs on is the other ticket's, one letter."""
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    first, _ = complain(ingestor, sender="a@mail.test")
    second, note = complain(ingestor, sender="b@mail.test")
    ingestor.ingest(reply_to_notification(
        note, "#status pending\nPlease send us the bank statement."), "t")
    assert len(events(ingestor, "complaint_paused")) == 1
    ingestor.ingest(reply_to_notification(note, f"#merge {first}"), "t")
    assert events(ingestor, "complaint_resumed") == []
    with ingestor.sessions() as session:
        merged = session.scalar(select(Complaint).where(
            Complaint.ticket_id == ticket_id_of(ingestor, second)))
        assert merged is not None
        assert (merged.state, merged.paused_at, merged.next_action_at) == ("merged", None, None)
    assert [e["into"] for e in events(ingestor, "complaint_merged")] == [
        ticket_id_of(ingestor, first)]
    refused = ingestor.ingest(reply_to_notification(note, "#extend waiting for the bank"), "t")
    assert refused.reason.startswith("agent refused")
    assert "merged into another" in text_of(outbox(ingestor, "command_refused")[-1].raw)
    assert monitor_at(ingestor, identity, 8 * WEEK + timedelta(minutes=1), start) == [
        (first, "deadline")]
    [letter] = outbox(ingestor, "complaint_letter")
    assert letter.recipients == ["a@mail.test"]


def test_a_merge_into_another_players_ticket_moves_no_complaint(db_url: str,
                                                                tmp_path: Path) -> None:
    """A complaint is one player's record: merged into another player's ticket (one without a
    record of its own), it stays on its ticket, stopped as merged, and no letter goes to the
    other player in its name."""
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    old, _ = complain(ingestor, sender="a@mail.test")
    with ingestor.sessions.begin() as session:  # opened before migration 0012
        session.execute(delete(Complaint).where(Complaint.ticket_id == ticket_id_of(
            ingestor, old)))
    new, note = complain(ingestor, sender="b@mail.test")
    ingestor.ingest(reply_to_notification(note, f"#merge {old}"), "t")
    assert events(ingestor, "complaint_moved") == []
    row = record(ingestor)
    assert row.ticket_id == ticket_id_of(ingestor, new) and row.state == "merged"
    assert monitor_at(ingestor, identity, 9 * WEEK, start) == []
    assert outbox(ingestor, "complaint_letter") == []


def test_two_merges_into_one_ticket_at_once_move_one_complaint(pg_url: str,
                                                               tmp_path: Path) -> None:
    """The second merge waits for the first and then finds the complaint there: it moves
    nothing, and raises nothing that would quarantine the agent's mail."""
    from storage import complaints as records

    ingestor = make_ingestor(pg_url, tmp_path, desk("ukgc"))
    numbers = [ingestor.ingest(mail(sender="a@mail.test", subject=f"Withdrawal {n}",
                                    body="My withdrawal is missing for a week.",
                                    message_id=f"<race-{n}@mail.test>"), "t").ticket_number
               for n in range(3)]
    target, first, second = (ticket_id_of(ingestor, n) for n in numbers)
    with ingestor.sessions.begin() as session:  # opened before migration 0012
        session.execute(delete(Complaint).where(Complaint.ticket_id == target))
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    outcome: dict[str, object] = {}

    def merge_second() -> None:
        try:
            with sessions.begin() as session:
                outcome["moved"] = records.move(session, second, target)
        except Exception as err:  # noqa: BLE001 - what the agent's mail would have met
            outcome["error"] = type(err).__name__

    with sessions.begin() as session:
        assert records.move(session, first, target)
        thread = threading.Thread(target=merge_second)
        thread.start()
        with engine.connect() as watch:  # until the second merge waits on the first's lock
            for _ in range(600):
                waiting = watch.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()").scalar()
                if waiting:
                    break
                threading.Event().wait(0.05)
    thread.join(60)
    engine.dispose()
    assert outcome == {"moved": False}
    with ingestor.sessions() as session:
        owners = sorted(session.scalars(select(Complaint.ticket_id)))
    assert owners == sorted([target, second])


def test_the_locked_read_of_a_complaint_is_not_an_earlier_reads_stale_copy(
        pg_url: str, tmp_path: Path) -> None:
    """Ingest finds an ADR body's case by its reference before it locks the record: the
    locked read must carry what another transaction committed in between (PostgreSQL: on
    SQLite a transaction that wrote holds the database to itself)."""
    from storage import complaints as records

    ingestor = make_ingestor(pg_url, tmp_path, desk("ukgc"))
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#adr Fair Play FP-5"), "t")
    with ingestor.sessions() as session:
        seen = records.by_reference(session, "Case FP-5")
        assert seen is not None and seen.adr_outcome is None
        with ingestor.sessions.begin() as other:
            row = other.get(Complaint, seen.id)
            assert row is not None
            row.adr_outcome = "settled"
        locked = records.for_ticket(session, ticket_id_of(ingestor, number))
        assert locked is not None and locked.adr_outcome == "settled"


def test_after_the_erasure_the_staff_are_still_reminded_and_no_letter_goes_to_the_player(
        db_url: str, tmp_path: Path) -> None:
    """An extension after the erasure re-arms the guard: the team's reminders still go, the
    extension notice and the deadline letter to the placeholder address do not, and the
    record says each was suppressed."""
    from storage.erasure import erase

    identity = desk("cga")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    start = utcnow()
    number, note = complain(ingestor)
    with ingestor.sessions.begin() as session:
        erase(session, BlobStore(tmp_path), "player@mail.test", "dpo@casino.test")
    done = ingestor.ingest(reply_to_notification(note, "#extend waiting for the bank"), "t")
    assert done.reason == "agent commands", done.reason
    assert outbox(ingestor, "complaint_letter") == []
    assert [e["letter"] for e in events(ingestor, "complaint_letter_suppressed")] == [
        "extension"]
    assert monitor_at(ingestor, identity, 7 * WEEK + timedelta(minutes=1), start) == [
        (number, "1w before")]  # cga: 4 weeks, extended by 4
    [reminder] = outbox(ingestor, "complaint_reminder")
    assert reminder.recipients == [HEAD]
    assert monitor_at(ingestor, identity, 8 * WEEK + timedelta(minutes=1), start) == []
    assert outbox(ingestor, "complaint_letter") == []
    assert [e["letter"] for e in events(ingestor, "complaint_letter_suppressed")] == [
        "extension", "deadlock"]
    assert record(ingestor).next_action_at is None


def test_an_adr_bodys_out_of_office_is_no_enquiry_and_a_second_keeps_the_first_due(
        db_url: str, tmp_path: Path) -> None:
    """A case system's auto-generated notice is an enquiry; an auto-reply from the same
    address asks nothing and moves no clock; a second enquiry while the first waits keeps the
    first one's due time."""
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    number, _ = complain(ingestor)
    subject = f"Enquiry about your ticket [#{number}]"
    ingestor.ingest(mail(sender=ADR_MAIL, subject=subject, body="Documents are due.",
                         headers=AUTOMATED, message_id="<e1@adr.test>"), "t")
    [first] = events(ingestor, "adr_enquiry")
    due = record(ingestor).enquiry_due_at
    assert due is not None and first["due_at"] == due.isoformat()
    away = ingestor.ingest(mail(sender=ADR_MAIL, subject=f"Out of office: {subject}",
                                body="I am away until Monday.", message_id="<oof@adr.test>",
                                headers={"Auto-Submitted": "auto-replied"}), "t")
    assert away.ticket_number in (number, None)
    assert len(events(ingestor, "adr_enquiry")) == 1 and record(ingestor).enquiry_due_at == due
    ingestor.ingest(mail(sender=ADR_MAIL, subject=f"Re: {subject}", body="A reminder.",
                         message_id="<e2@adr.test>"), "t")
    assert len(events(ingestor, "adr_enquiry")) == 2
    assert record(ingestor).enquiry_due_at == due


def test_a_pause_ends_an_enquiry_starts_and_the_fast_lane_runs_from_receipt(
        db_url: str, tmp_path: Path) -> None:
    """Mail fetched late counts from when the mailbox got it (INTERNALDATE), for every clock
    it moves, not from when it was stored."""
    from daemon.complaint_rules import add_business_days

    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    number, note = complain(ingestor)
    ingestor.ingest(reply_to_notification(note, "#status pending\nWhich card was it?"), "t")
    [relay] = outbox(ingestor, "relay")
    asked = utcnow().replace(microsecond=0) - timedelta(days=5)
    with ingestor.sessions.begin() as session:  # asked five days ago
        row = session.scalar(select(Complaint))
        assert row is not None
        row.paused_at = asked
    reply = mail(sender="player@mail.test", subject=f"Re: Missing withdrawal [#{number}]",
                 body="The Visa ending 4242.", in_reply_to=f"<{relay.message_id}>")
    ingestor.ingest(reply, "t", delivered_at=asked + 2 * timedelta(days=1))
    [resumed] = events(ingestor, "complaint_resumed")
    assert resumed["paused_seconds"] == 2 * 24 * 3600  # answered two days after, not five
    enquired = asked + timedelta(days=3)
    ingestor.ingest(mail(sender=ADR_MAIL, subject=f"Enquiry about your ticket [#{number}]",
                         body="Has the player had your final response?"), "t",
                    delivered_at=enquired)
    assert record(ingestor).enquiry_due_at == add_business_days(enquired, 10)
    cga = make_ingestor(db_url, tmp_path, desk("cga"))
    other, _ = complain(cga, sender="rg@mail.test")
    asked_out = utcnow().replace(microsecond=0) - timedelta(days=4)
    cga.ingest(mail(sender="rg@mail.test", subject=f"Re: Missing withdrawal [#{other}]",
                    body="Forget it. I have a gambling problem, please self-exclude me."),
               "t", delivered_at=asked_out)
    assert record(cga).final_due_at == add_business_days(asked_out, 1)


def test_a_complaint_overdue_when_stored_is_handed_to_a_person_not_answered_at_once(
        db_url: str, tmp_path: Path) -> None:
    """An INTERNALDATE nine weeks back: its 8 weeks have passed before anyone read it. The
    deadlock letter is not sent by the first pass but handed to the head of support, and the
    record says why."""
    identity = desk("ukgc")
    ingestor = make_ingestor(db_url, tmp_path, identity)
    delivered = utcnow().replace(microsecond=0) - 9 * WEEK
    number = ingestor.ingest(mail(sender="old@mail.test", body="My withdrawal is missing."),
                             "t", delivered_at=delivered).ticket_number
    [late] = events(ingestor, "complaint_late_at_receipt")
    assert late["received_at"] == delivered.isoformat()
    assert late["final_due_at"] == (delivered + 8 * WEEK).isoformat()
    assert monitor_at(ingestor, identity, timedelta(minutes=1)) == [(number, "deadline")]
    assert outbox(ingestor, "complaint_letter") == []
    [handoff] = outbox(ingestor, "complaint_reminder")
    assert handoff.recipients == [HEAD] and "Fair Play Adjudication" in text_of(handoff.raw)
    assert record(ingestor).state == "complaint"
    assert monitor_at(ingestor, identity, WEEK) == []  # once
