"""The regulated complaint lifecycle through ingest, agents' mail and the monitor pass, on
SQLite and PostgreSQL: reminders and exactly one final-response letter at the deadline,
#final stopping the guard, #extend once, disputes, ADR referrals and enquiries."""

from __future__ import annotations

import email
import threading
from datetime import datetime, timedelta
from email.policy import default
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import select

from daemon.ingest import Ingestor, IngestPolicy
from daemon.sla import MonitorDesk, SlaMonitor, SlaOptions
from daemon.team import Agent, TeamPolicy
from responders.complaint_profiles import AdrEntity, profile
from responders.identity import Identity
from responders.rendering import Templates
from storage import db
from storage.blobs import BlobStore
from storage.models import Complaint, Event, OutboxMessage, utcnow
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
