"""The weekly digest: queued from the SLA monitor's pass, once per ISO week however many
passes and monitors run, to the head of support, with the week's figures and a chart."""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon.report_digest import DIGEST_EVENT, due_digest, queue_weekly_digest
from daemon.sla import SlaMonitor, SlaOptions
from responders.identity import Identity
from responders.rendering import Templates
from storage import db
from storage.models import Event, OutboxMessage
from tests.reports import desk50

HEAD = "head@casino.test"
IDENTITY = Identity("support@casino.test", "Casino Support", (b"digest-test-key-0123456789",),
                    Templates())
MONDAY_0900 = datetime(2026, 11, 16, 9, tzinfo=UTC)  # W47 starts; W46 (Nov 9-15) is due


@dataclass(frozen=True)
class Desk:
    """What the daemon's runtime value gives the monitor, digest settings included."""

    sla: SlaOptions
    identity: Identity
    settings: Settings


def desk(**reports: Any) -> Desk:
    settings = Settings.model_validate({
        "database": {"url": "sqlite://"}, "sla": {"head_of_support_address": HEAD},
        "reports": {"digest": True, **reports}})
    return Desk(SlaOptions(head_of_support_address=HEAD), IDENTITY, settings)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(db_url)
    factory = db.session_factory(engine)
    with factory.begin() as session:
        desk50.load(session)
    yield factory
    engine.dispose()


def digests(sessions: sessionmaker[Session]) -> list[tuple[list[str], bytes]]:
    with sessions() as session:
        return [(list(r.recipients), r.raw) for r in session.execute(
            select(OutboxMessage.recipients, OutboxMessage.raw)
            .where(OutboxMessage.kind == "digest").order_by(OutboxMessage.id))]


def weeks(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return [data["week"] for data in session.scalars(
            select(Event.data).where(Event.kind == DIGEST_EVENT).order_by(Event.id))]


def test_two_monitors_queue_one_digest_per_week(sessions: sessionmaker[Session]) -> None:
    first, second = SlaMonitor(sessions, desk()), SlaMonitor(sessions, desk())
    first.run_once(datetime(2026, 11, 16, 7, 59, tzinfo=UTC))  # before Monday 08:00 UTC
    assert digests(sessions) == []

    first.run_once(MONDAY_0900)
    second.run_once(MONDAY_0900)
    first.run_once(datetime(2026, 11, 22, 23, tzinfo=UTC))  # still week 47
    assert weeks(sessions) == ["2026-W46"]
    assert [to for to, _ in digests(sessions)] == [[HEAD]]

    second.run_once(datetime(2026, 11, 23, 8, tzinfo=UTC))  # week 48: week 47's digest
    assert weeks(sessions) == ["2026-W46", "2026-W47"]


def test_the_digest_holds_the_weeks_figures_and_a_chart(
        sessions: sessionmaker[Session]) -> None:
    SlaMonitor(sessions, desk()).run_once(MONDAY_0900)
    [(_, raw)] = digests(sessions)
    mail = email.message_from_bytes(raw, policy=default)
    assert isinstance(mail, EmailMessage)
    assert mail["To"] == HEAD and mail["Auto-Submitted"] == "auto-generated"
    assert mail["Subject"] == "Complaints, week 2026-W46 (2026-11-09 to 2026-11-15)"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # Week 46 by hand: B 15 + C k 8 received; B acknowledged in time (C k 8 on the 16th);
    # B's five decisions, three in time; B j 5's dispute; D m 0's referral.
    for figure, value in [("complaints", 16), ("acknowledged in time", 15),
                          ("final decisions", 5), ("final in time", 3), ("disputes", 1),
                          ("adr referrals", 1)]:
        assert f"\n{figure:<22} {value}\n" in text, figure
    files = {part.get_filename(): part for part in mail.iter_attachments()}
    assert set(files) == {"complaints-2026-W46.png", "report-2026-W46.html"}
    assert files["complaints-2026-W46.png"].get_content().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in files["report-2026-W46.html"].get_content()


def test_no_digest_unless_it_is_on_or_before_its_weekday_and_hour(
        sessions: sessionmaker[Session]) -> None:
    assert not queue_weekly_digest(sessions, desk(digest=False), MONDAY_0900)
    wednesday = desk(digest_weekday="wed", digest_hour=6)
    assert not queue_weekly_digest(sessions, wednesday, datetime(2026, 11, 18, 5, tzinfo=UTC))
    assert queue_weekly_digest(sessions, wednesday, datetime(2026, 11, 18, 6, tzinfo=UTC))
    assert weeks(sessions) == ["2026-W46"]


def test_racing_daemons_queue_it_once(pg_url: str) -> None:
    """Both see no digest yet and both build one; the outbox takes one Message-ID once."""
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    start = threading.Barrier(4)
    queued: list[bool] = []

    def run() -> None:
        start.wait()
        queued.append(bool(queue_weekly_digest(sessions, desk(), MONDAY_0900)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(queued) == [False, False, False, True]
    assert len(digests(sessions)) == 1 and weeks(sessions) == ["2026-W46"]
    engine.dispose()


def test_the_week_due_across_a_year_end() -> None:
    """2026 has 53 ISO weeks: on Monday 2027-01-04 the week due is 2026-W53, Dec 28 to
    Jan 3; on the Sunday before, the week due is still W52 (Dec 21 to 27)."""
    settings = desk().settings.reports
    due = due_digest(settings, datetime(2027, 1, 4, 8, tzinfo=UTC))
    assert due is not None
    assert (due.week, due.period.first, due.period.last) == (
        "2026-W53", date(2026, 12, 28), date(2027, 1, 3))
    sunday = due_digest(settings, datetime(2027, 1, 3, 23, 59, tzinfo=UTC))
    assert sunday is not None and sunday.week == "2026-W52"
    assert due_digest(settings, datetime(2027, 1, 4, 7, 59, tzinfo=UTC)) is None


def test_a_pass_ahead_of_the_clock_queues_no_digest(sessions: sessionmaker[Session]) -> None:
    """`sla --once --now <next Monday> --apply`: that week is not over, so no digest of it,
    and the real pass of that Monday still queues the real one."""
    real = datetime(2026, 11, 18, 10, tzinfo=UTC)  # Wednesday of week 47
    ahead = SlaMonitor(sessions, desk(), now=lambda: real)
    ahead.run_once(datetime(2026, 11, 23, 9, tzinfo=UTC))
    assert weeks(sessions) == [] and digests(sessions) == []

    monday = datetime(2026, 11, 23, 9, tzinfo=UTC)
    SlaMonitor(sessions, desk(), now=lambda: monday).run_once()
    assert weeks(sessions) == ["2026-W47"]


def test_a_digest_queued_ahead_of_time_hides_no_real_week(
        sessions: sessionmaker[Session]) -> None:
    """An event of a week still to come (queued ahead by an older version) is not the last
    digest: the weeks before it are still sent."""
    def real() -> datetime:
        return datetime(2026, 11, 23, 9, tzinfo=UTC)

    with sessions.begin() as session:
        session.add(Event(kind=DIGEST_EVENT, ticket_id=None, data={"week": "2026-W46"}))
        session.add(Event(kind=DIGEST_EVENT, ticket_id=None, data={"week": "2026-W52"}))
    assert queue_weekly_digest(sessions, desk(), real(), wall_clock=real) == ["2026-W47"]


def test_a_daemon_down_over_a_due_moment_sends_each_missed_week_once(
        sessions: sessionmaker[Session]) -> None:
    clock = [MONDAY_0900]
    monitor = SlaMonitor(sessions, desk(), now=lambda: clock[0])
    monitor.run_once()  # W46's digest; then down from Sunday to the Monday after next
    clock[0] = datetime(2026, 11, 30, 9, tzinfo=UTC)
    monitor.run_once()
    clock[0] += timedelta(minutes=1)
    monitor.run_once()
    assert weeks(sessions) == ["2026-W46", "2026-W47", "2026-W48"]
    subjects = [email.message_from_bytes(raw, policy=default)["Subject"]
                for _, raw in digests(sessions)]
    assert subjects[1:] == ["Complaints, week 2026-W47 (2026-11-16 to 2026-11-22)",
                            "Complaints, week 2026-W48 (2026-11-23 to 2026-11-29)"]


def test_after_a_long_outage_only_the_last_four_weeks_are_sent(
        sessions: sessionmaker[Session]) -> None:
    clock = [MONDAY_0900]
    monitor = SlaMonitor(sessions, desk(), now=lambda: clock[0])
    monitor.run_once()
    clock[0] = datetime(2027, 1, 25, 9, tzinfo=UTC)  # ten weeks later: W03 is due
    monitor.run_once()
    assert weeks(sessions) == ["2026-W46", "2026-W53", "2027-W01", "2027-W02", "2027-W03"]
