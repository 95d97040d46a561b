"""Reports count a complaint on the day the mailbox got it, and a complaint moved by a merge
once, on SQLite and PostgreSQL: mail taken through ingest, the report built from its
events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select

from storage.models import Complaint, Event, Ticket, utcnow
from storage.reports import Period, build_report
from daemon.ingest import Ingestor
from tests.daemon.test_complaints import complain, desk, make_ingestor, outbox
from tests.support.agents import reply_to_notification
from tests.support.mails import mail


def test_a_complaint_fetched_three_days_late_counts_on_its_day_of_receipt(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    delivered = utcnow().replace(microsecond=0) - timedelta(days=3)
    ingestor.ingest(mail(sender="late@mail.test", body="My withdrawal is missing for a week."),
                    "t", delivered_at=delivered)
    day, today = delivered.date(), utcnow().date()
    with ingestor.sessions() as session:
        assert build_report(session, Period(day, day)).total.complaints == 1
        assert build_report(session, Period(today, today)).total.complaints == 0
        assert build_report(session, Period(day, today)).total.complaints == 1


def test_a_complaint_moved_by_a_merge_is_counted_once_and_decided_where_it_was(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, desk("ukgc"))
    old, old_note = complain(ingestor, "ru", sender="a@mail.test")
    with ingestor.sessions.begin() as session:  # a ticket from before complaint records
        old_id = session.scalar(select(Ticket.id).where(Ticket.number == old))
        session.execute(delete(Complaint).where(Complaint.ticket_id == old_id))
        session.execute(delete(Event).where(Event.ticket_id == old_id,
                                            Event.kind == "complaint_opened"))
    delivered = utcnow().replace(microsecond=0) - timedelta(days=2)
    new = ingestor.ingest(mail(sender="a@mail.test", subject="Withdrawal again",
                               body="My withdrawal is still missing.",
                               message_id="<again@mail.test>"), "t",
                          delivered_at=delivered).ticket_number
    note = [r for r in outbox(ingestor, "notification") if f"[#{new}]".encode() in r.raw][-1]
    ingestor.ingest(reply_to_notification(note.raw, f"#merge {old}"), "t")
    assert len([e for e in _events(ingestor) if e.kind == "complaint_moved"]) == 1
    ingestor.ingest(reply_to_notification(old_note, "#final\nWe cannot pay this out."), "t")
    today = utcnow().date()
    with ingestor.sessions() as session:
        report = build_report(session, Period(delivered.date(), today))
    assert report.total.complaints == 1  # not the old ticket's own receipt too
    assert report.total.final_decisions == 1
    [hours] = report.total.final_hours
    assert hours >= 48  # timed from the moved complaint's receipt, two days back


def _events(ingestor: Ingestor) -> list[Event]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(Event)))
