"""The weekly digest, queued from the SLA monitor's pass: once per ISO week, whichever of
several daemons gets there and however often they pass.

When the digest of the week just ended is due ([reports] digest_weekday and digest_hour,
UTC) and no `report_digest_queued` event says it was queued, the pass builds the report and
queues the mail with that event in one transaction; after an outage, each week missed since
the last event too (the last few), oldest first, one transaction each. Two daemons may
both get that far: the digest's Message-ID is the same for the same week, the outbox's
Message-ID is unique, so the second insert fails and its transaction (the event too) is
rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.schema import WEEKDAYS, ReportsSettings
from responders import mime
from responders.identity import Identity
from responders.report_digest import Digest, digest_mail
from storage import outbox, queries
from storage.models import Event, utcnow
from storage.reports import Period, build_report

log = logging.getLogger(__name__)

DIGEST_EVENT = "report_digest_queued"
TREND_WEEKS = 8  # weeks the digest's chart shows, the reported one last
MISSED_WEEKS = 4  # at most this many weeks' digests, the latest last, after a long outage


@dataclass(frozen=True)
class DueDigest:
    week: str  # "2026-W49"
    period: Period  # its Monday to Sunday
    due_at: datetime


def digest_of(settings: ReportsSettings, monday: date) -> DueDigest:
    """The digest of the ISO week starting `monday`: due on the next week's weekday and hour."""
    next_monday = monday + timedelta(days=7)
    due_day = next_monday + timedelta(days=WEEKDAYS.index(settings.digest_weekday))
    year, week, _ = monday.isocalendar()
    return DueDigest(f"{year}-W{week:02d}", Period(monday, next_monday - timedelta(days=1)),
                     datetime.combine(due_day, time(settings.digest_hour), UTC))


def due_digest(settings: ReportsSettings, now: datetime) -> DueDigest | None:
    """The digest due at `now`: the ISO week before this one, once this week's due moment
    has passed; None before it."""
    due = digest_of(settings, _monday(now) - timedelta(days=7))
    return due if now >= due.due_at else None


def due_digests(settings: ReportsSettings, now: datetime,
                last_week: str | None) -> list[DueDigest]:
    """The digests to queue at `now`, oldest first, after `last_week` (the latest one queued):
    every week since, so a daemon down over a due moment sends it when it comes back, but
    no more than MISSED_WEEKS. A desk that never queued one starts with this week's."""
    latest = latest_due(settings, now)
    if last_week is None:
        return [latest] if due_digest(settings, now) is not None else []
    weeks = [digest_of(settings, latest.period.first - timedelta(weeks=back))
             for back in reversed(range(MISSED_WEEKS))]
    return [due for due in weeks if due.week > last_week]  # "YYYY-Www" sorts as time


def latest_due(settings: ReportsSettings, now: datetime) -> DueDigest:
    """The latest week whose digest is due at `now`: the week before this one once this
    week's due moment has passed, else the week before that."""
    due = due_digest(settings, now)
    return due or digest_of(settings, _monday(now) - timedelta(days=14))


def _monday(now: datetime) -> date:
    day = now.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def queue_weekly_digest(sessions: sessionmaker[Session], desk: Any, now: datetime, *,
                        wall_clock: Callable[[], datetime] = utcnow) -> list[str]:
    """Queue the digests due and not yet queued; the weeks this call queued.

    `desk` is the runtime value (its settings and identity); a desk without settings (a
    monitor built by hand) has no digest. A pass run as if at a time still to come
    (`sla --once --now ... --apply`) queues none: its figures would be incomplete, its Date
    wrong, and its event and Message-ID would stand in for the real digest of that week.
    Never raises but for the database being away: a digest that cannot be made must not
    stop the SLA pass.
    """
    settings = getattr(desk, "settings", None)
    if settings is None or not settings.reports.digest:
        return []
    to = settings.sla.head_of_support_address
    if not to or now > wall_clock():
        return []
    with sessions() as session:
        last = _last_week(session, settings.reports, wall_clock())
    return [due.week for due in due_digests(settings.reports, now, last)
            if _queue_one(sessions, desk.identity, due, to, now)]


def _queue_one(sessions: sessionmaker[Session], identity: Identity, due: DueDigest, to: str,
               now: datetime) -> bool:
    """One week's digest in its own transaction: one that fails leaves the others queued."""
    try:
        return _queue(sessions, identity, due, to, now)
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        raise
    except sa_exc.IntegrityError:
        return False  # another daemon queued it meanwhile: its Message-ID is taken
    except Exception as err:  # noqa: BLE001 - the SLA pass that called goes on
        log.error("report digest not queued", extra={"fields": {
            "week": due.week, "error": f"{type(err).__name__}: {str(err)[:200]}"}})
        return False


def _queue(sessions: sessionmaker[Session], identity: Identity, due: DueDigest, to: str,
           now: datetime) -> bool:
    with sessions.begin() as session:
        if _already_queued(session, due):
            return False
        report = build_report(session, due.period)
        trend = build_report(session, Period(due.period.first - timedelta(weeks=TREND_WEEKS - 1),
                                             due.period.last))
        msg = digest_mail(Digest(due.week, report, now, trend), identity, to=to)
        outbox_id = outbox.enqueue(session, raw=mime.wire_bytes(msg),
                                   message_id=mime.message_id(msg),
                                   envelope_from=identity.address, recipients=[to],
                                   kind="digest", now=now)
        queries.insert_event(session, DIGEST_EVENT, None, week=due.week, outbox_id=outbox_id,
                             to=[to])
    log.info("report digest queued", extra={"fields": {"week": due.week}})
    return True


def _last_week(session: Session, settings: ReportsSettings, real_now: datetime) -> str | None:
    """The latest week whose digest was queued, ignoring any of a week not yet due by the
    real clock (queued ahead of time by an older version): it must not hide real weeks."""
    week = Event.data["week"].as_string()
    found: str | None = session.scalar(select(func.max(week)).where(
        Event.kind == DIGEST_EVENT, week <= latest_due(settings, real_now).week))
    return found


def _already_queued(session: Session, due: DueDigest) -> bool:
    # One digest event per week ever exists: reading them by kind is cheap (the index on
    # kind, created_at), and their week says which week they were.
    found = session.scalar(select(Event.id).where(
        Event.kind == DIGEST_EVENT, Event.data["week"].as_string() == due.week).limit(1))
    return found is not None
