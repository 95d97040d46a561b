"""The weekly digest, queued from the SLA monitor's pass: once per ISO week, whichever of
several daemons gets there and however often they pass.

When the digest of the week just ended is due ([reports] digest_weekday and digest_hour,
UTC) and no `report_digest_queued` event says it was queued, the pass builds the report and
queues the mail with that event in one transaction. Two daemons may both get that far: the
digest's Message-ID is the same for the same week, the outbox's Message-ID is unique, so
the second insert fails and its transaction (the event too) is rolled back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.schema import WEEKDAYS, ReportsSettings
from responders import mime
from responders.identity import Identity
from responders.report_digest import Digest, digest_mail
from storage import outbox, queries
from storage.models import Event
from storage.reports import Period, build_report

log = logging.getLogger(__name__)

DIGEST_EVENT = "report_digest_queued"
TREND_WEEKS = 8  # weeks the digest's chart shows, the reported one last


@dataclass(frozen=True)
class DueDigest:
    week: str  # "2026-W49"
    period: Period  # its Monday to Sunday
    due_at: datetime


def due_digest(settings: ReportsSettings, now: datetime) -> DueDigest | None:
    """The digest due at `now`: the ISO week before this one, once this week's due moment
    has passed; None before it."""
    monday = now.astimezone(UTC).date() - timedelta(days=now.astimezone(UTC).weekday())
    due_day = monday + timedelta(days=WEEKDAYS.index(settings.digest_weekday))
    due_at = datetime.combine(due_day, time(settings.digest_hour), UTC)
    if now < due_at:
        return None
    last_monday = monday - timedelta(days=7)
    year, week, _ = last_monday.isocalendar()
    return DueDigest(f"{year}-W{week:02d}", Period(last_monday, monday - timedelta(days=1)),
                     due_at)


def queue_weekly_digest(sessions: sessionmaker[Session], desk: Any, now: datetime) -> bool:
    """Queue the week's digest if due and not yet queued; True when this call queued it.

    `desk` is the runtime value (its settings and identity); a desk without settings (a
    monitor built by hand) has no digest. Never raises but for the database being away:
    a digest that cannot be made must not stop the SLA pass.
    """
    settings = getattr(desk, "settings", None)
    if settings is None or not settings.reports.digest:
        return False
    to = settings.sla.head_of_support_address
    due = due_digest(settings.reports, now)
    if due is None or not to:
        return False
    try:
        return _queue(sessions, desk.identity, due, to, now)
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


def _already_queued(session: Session, due: DueDigest) -> bool:
    # One digest event per week ever exists: reading them by kind is cheap (the index on
    # kind, created_at), and their week says which week they were.
    found = session.scalar(select(Event.id).where(
        Event.kind == DIGEST_EVENT, Event.data["week"].as_string() == due.week).limit(1))
    return found is not None
