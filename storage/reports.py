"""Complaint figures for a period, read from the append-only event log.

The report never reads a ticket's mutable state except its category (the fallback when no
event names one) and what identifies it (number, requester, subject). Events are streamed
one ticket at a time (ordered by ticket, `yield_per`), folded into that ticket's facts and
added to the tally, so memory holds one ticket's events plus the figures, not the desk.

Periods are whole UTC days: `--from 2026-11-01 --to 2026-11-30` is every event with
2026-11-01T00:00Z <= created_at < 2026-12-01T00:00Z. Only events before the end of the
period count, so a report of a past period reads the same tomorrow.

What each figure counts (README, "Reports"):
- complaints: tickets received in the period (the `received_at` of their `complaint_opened`,
  when the mailbox got the mail, else its time, else `created`). A complaint received in
  the period but stored after it (fetched late) is found by its `complaint_opened` however
  late. A complaint moved by a merge onto a ticket from before complaint records
  (`complaint_moved` on that ticket) is counted once, by its original record: the other
  ticket's own receipt no longer counts, and its decisions are timed from the moved
  complaint's receipt;
- acknowledged_in_time: of those, acknowledged (an "ack" mail queued) by their `ack_due_at`,
  or at all when the complaint has no acknowledgement deadline;
- time to first answer: of those, from receipt to the first `public_reply` or
  `final_decision`;
- final_decisions, final_in_time, disputes, adr_referrals, adr_outcomes: events of the
  period, whenever their complaint was received; time to final: receipt to each decision.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.models import Event, Ticket

# The events a report reads; anything else in the log is not looked at.
RECEIVED_KINDS = ("complaint_opened", "created")
ANSWER_KINDS = ("public_reply", "final_decision")
REPORT_KINDS = (*RECEIVED_KINDS, "mail_queued", "public_reply", "final_decision",
                "deadline_extended", "dispute_opened", "adr_referral", "adr_outcome",
                "complaint_moved")
# The events that put a ticket in a period's report: an answer or an acknowledgement in the
# period counts only for a complaint received in it, which its receipt already brings in.
COUNTED_KINDS = tuple(k for k in REPORT_KINDS if k not in ("mail_queued", "public_reply"))
ADR_OUTCOMES = ("upheld", "partially_upheld", "not_upheld", "settled", "withdrawn")
PROFILES = ("ukgc", "mga", "cga")
FIGURES = ("complaints", "acknowledged_in_time", "final_decisions", "final_in_time",
           "disputes", "adr_referrals")
UNCATEGORISED = "other"


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both ends included."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError("the period ends before it starts")

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time(0), UTC)

    @property
    def until(self) -> datetime:  # exclusive
        return datetime.combine(self.last + timedelta(days=1), time(0), UTC)

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment < self.until

    def as_dict(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "timezone": "UTC"}


def iso_week_period(year: int, week: int) -> Period:
    """Monday to Sunday of an ISO week."""
    monday = date.fromisocalendar(year, week, 1)
    return Period(monday, monday + timedelta(days=6))


# --- one ticket's events, folded -----------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One event as the report reads it, with what identifies its ticket."""

    ticket_id: int
    number: int | None
    requester_id: int | None
    subject: str
    ticket_category: str
    kind: str
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class Referral:
    at: datetime
    entity: str
    reference: str


@dataclass
class TicketFacts:
    """What a ticket's events say, in the order they happened."""

    ticket_id: int
    number: int | None = None
    requester_id: int | None = None
    subject: str = ""
    category: str = UNCATEGORISED
    received_at: datetime | None = None
    receipt_elsewhere: bool = False  # a complaint moved here: received on its own ticket
    ack_due_at: datetime | None = None
    acked_at: datetime | None = None
    first_answer_at: datetime | None = None
    finals: list[tuple[datetime, bool]] = field(default_factory=list)
    extensions: list[datetime] = field(default_factory=list)
    disputes: list[datetime] = field(default_factory=list)
    referrals: list[Referral] = field(default_factory=list)
    outcomes: list[tuple[datetime, str]] = field(default_factory=list)


def parse_instant(value: Any) -> datetime | None:
    """An ISO time from event data; None for null or garbage (a report must not crash)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fold(rows: Iterable[Row]) -> TicketFacts | None:
    """The facts of one ticket from its events, oldest first; None without any."""
    facts: TicketFacts | None = None
    named_category = False
    for row in rows:
        if facts is None:
            facts = TicketFacts(row.ticket_id, row.number, row.requester_id, row.subject,
                                row.ticket_category or UNCATEGORISED)
        category = row.data.get("category")
        if isinstance(category, str) and category and not named_category:
            facts.category, named_category = category, True
        _apply(facts, row)
    return facts


def _apply(facts: TicketFacts, row: Row) -> None:
    kind, data, at = row.kind, row.data, row.at
    if kind in RECEIVED_KINDS:
        _received(facts, kind, data, at)
    elif kind == "complaint_moved":
        # Counted where it was received; decided here, timed from that receipt.
        facts.receipt_elsewhere = True
        facts.received_at = parse_instant(data.get("received_at")) or facts.received_at
    elif kind == "mail_queued" and data.get("kind") == "ack" and facts.acked_at is None:
        facts.acked_at = at
    elif kind == "deadline_extended":
        facts.extensions.append(at)
    elif kind == "dispute_opened":
        facts.disputes.append(at)
    elif kind == "adr_referral":
        facts.referrals.append(Referral(at, str(data.get("entity") or ""),
                                        str(data.get("reference") or "")))
    elif kind == "adr_outcome":
        facts.outcomes.append((at, str(data.get("outcome") or "")))
    if kind == "final_decision":
        facts.finals.append((at, data.get("in_time") is True))
    if kind in ANSWER_KINDS and facts.first_answer_at is None:
        facts.first_answer_at = at


def _received(facts: TicketFacts, kind: str, data: dict[str, Any], at: datetime) -> None:
    # Received when the mailbox got the mail: `complaint_opened` says when (received_at),
    # written in the same transaction as `created`, with the deadlines; a ticket from
    # before the complaint lifecycle has only `created`, at the time it was stored.
    if kind == "complaint_opened":
        facts.received_at = parse_instant(data.get("received_at")) or at
        facts.ack_due_at = parse_instant(data.get("ack_due_at"))
    elif facts.received_at is None:
        facts.received_at = at


# --- the tally -----------------------------------------------------------------------

@dataclass
class Figures:
    """The counts and durations of one slice (all complaints, or one category)."""

    complaints: int = 0
    acknowledged_in_time: int = 0
    final_decisions: int = 0
    final_in_time: int = 0
    disputes: int = 0
    adr_referrals: int = 0
    extensions: int = 0
    adr_outcomes: Counter[str] = field(default_factory=Counter)
    first_answer_hours: list[float] = field(default_factory=list)
    final_hours: list[float] = field(default_factory=list)

    def add(self, facts: TicketFacts, period: Period) -> None:
        if received_in(facts, period):
            self._add_received(facts)
        for at, in_time in facts.finals:
            if period.holds(at):
                self.final_decisions += 1
                self.final_in_time += in_time
                if facts.received_at is not None:
                    self.final_hours.append(_hours(at - facts.received_at))
        self.extensions += sum(period.holds(at) for at in facts.extensions)
        self.disputes += sum(period.holds(at) for at in facts.disputes)
        self.adr_referrals += sum(period.holds(r.at) for r in facts.referrals)
        self.adr_outcomes.update(outcome for at, outcome in facts.outcomes if period.holds(at))

    def _add_received(self, facts: TicketFacts) -> None:
        assert facts.received_at is not None
        self.complaints += 1
        if facts.acked_at is not None and (facts.ack_due_at is None
                                           or facts.acked_at <= facts.ack_due_at):
            self.acknowledged_in_time += 1
        if facts.first_answer_at is not None:
            self.first_answer_hours.append(_hours(facts.first_answer_at - facts.received_at))

    def counts_anything(self) -> bool:
        return any(getattr(self, name) for name in FIGURES) or bool(
            self.extensions or sum(self.adr_outcomes.values()))

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of a slice; other tools read these names."""
        return {name: getattr(self, name) for name in FIGURES} | {
            "deadline_extensions": self.extensions,
            "adr_outcomes": {name: self.adr_outcomes.get(name, 0) for name in _outcomes(self)},
            "time_to_first_answer": spread(self.first_answer_hours),
            "time_to_final": spread(self.final_hours),
        }


def received_in(facts: TicketFacts, period: Period) -> bool:
    """Whether the ticket's complaint counts as received in the period (a complaint moved
    onto it is counted on the ticket it was received on)."""
    return not facts.receipt_elsewhere and period.holds(facts.received_at)


def _outcomes(figures: Figures) -> list[str]:
    """The five known outcomes always, anything else a producer wrote after them."""
    return [*ADR_OUTCOMES, *sorted(set(figures.adr_outcomes) - set(ADR_OUTCOMES))]


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def spread(hours: list[float]) -> dict[str, Any]:
    """Count, median and 90th percentile (nearest rank: the smallest value with at least
    90% of the values at or below it), in hours rounded to two places."""
    if not hours:
        return {"count": 0, "median_hours": None, "p90_hours": None}
    ordered = sorted(hours)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return {"count": len(ordered), "median_hours": round(statistics.median(ordered), 2),
            "p90_hours": round(p90, 2)}


@dataclass(frozen=True)
class AdrCase:
    """A line of the MGA list: a dispute referred to ADR, and its conclusion if known."""

    player_id: str
    ticket: int | None
    subject: str
    category: str
    entity: str
    reference: str
    referred_at: datetime
    outcome: str  # "pending" until the entity concluded
    concluded_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"player_id": self.player_id, "ticket": self.ticket, "subject": self.subject,
                "category": self.category, "entity": self.entity, "reference": self.reference,
                "referred_at": self.referred_at.isoformat(), "outcome": self.outcome,
                "concluded_at": self.concluded_at.isoformat() if self.concluded_at else None}


@dataclass
class Report:
    period: Period
    total: Figures = field(default_factory=Figures)
    by_category: dict[str, Figures] = field(default_factory=dict)
    weekly: Counter[tuple[date, str]] = field(default_factory=Counter)  # (monday, category)
    adr_cases: list[AdrCase] = field(default_factory=list)

    def add(self, facts: TicketFacts) -> None:
        self.total.add(facts, self.period)
        self.by_category.setdefault(facts.category, Figures()).add(facts, self.period)
        if received_in(facts, self.period):
            assert facts.received_at is not None
            monday = facts.received_at.date() - timedelta(days=facts.received_at.weekday())
            self.weekly[(monday, facts.category)] += 1
        self.adr_cases.extend(adr_cases(facts, self.period))

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of `ticketd report --format json`."""
        slices = {name: self.by_category[name] for name in sorted(self.by_category)}
        # A category seen only in events before the period (a ticket decided in it, say) has
        # nothing to show for it.
        categories = {name: figures.as_dict() for name, figures in slices.items()
                      if figures.counts_anything()}
        return {"period": self.period.as_dict(), **self.total.as_dict(),
                "by_category": categories}


def adr_cases(facts: TicketFacts, period: Period) -> list[AdrCase]:
    """A ticket's referrals made in the period, or concluded in it (the MGA wants both the
    referral and, once there is one, its conclusion)."""
    cases = []
    for referral in facts.referrals:
        after = [(at, outcome) for at, outcome in facts.outcomes
                 if referral.at <= at < period.until]
        concluded_at, outcome = after[-1] if after else (None, "pending")
        if period.holds(referral.at) or period.holds(concluded_at):
            player = f"contact-{facts.requester_id}" if facts.requester_id else f"#{facts.number}"
            cases.append(AdrCase(player, facts.number, facts.subject, facts.category,
                                 referral.entity, referral.reference, referral.at, outcome,
                                 concluded_at))
    return cases


# --- reading the log -----------------------------------------------------------------

def stream_rows(session: Session, period: Period, batch: int = 1000) -> Iterator[Row]:
    """The report's events of every ticket that had one in the period, up to the period's
    end, ticket by ticket and oldest first; `batch` rows in memory at a time.

    A `complaint_opened` stored after the period may tell of a receipt in it (a mail fetched
    late, received at its INTERNALDATE), and is never before its receipt: so every one since
    the period's start is read, later ones included (fold decides by its received_at)."""
    opened_since = (Event.kind == "complaint_opened") & (Event.created_at >= period.since)
    touched = (select(Event.ticket_id)
               .where(Event.ticket_id.is_not(None),
                      or_(Event.kind.in_(COUNTED_KINDS) & (Event.created_at >= period.since)
                          & (Event.created_at < period.until), opened_since))
               .distinct())
    query = (select(Event.ticket_id, Ticket.number, Ticket.requester_id, Ticket.subject,
                    Ticket.category, Event.kind, Event.data, Event.created_at)
             .join(Ticket, Ticket.id == Event.ticket_id)
             .where(Event.ticket_id.in_(touched), Event.kind.in_(REPORT_KINDS),
                    or_(Event.created_at < period.until, opened_since))
             .order_by(Event.ticket_id, Event.created_at, Event.id)
             .execution_options(yield_per=batch))
    for r in session.execute(query):
        yield Row(r.ticket_id, r.number, r.requester_id, r.subject or "", r.category or "",
                  r.kind, r.data if isinstance(r.data, dict) else {}, r.created_at)


def build_report(session: Session, period: Period, batch: int = 1000) -> Report:
    report = Report(period)
    for _, rows in groupby(stream_rows(session, period, batch), key=lambda r: r.ticket_id):
        facts = fold(rows)
        if facts is not None:
            report.add(facts)
    report.adr_cases.sort(key=lambda case: (case.referred_at, case.ticket or 0))
    return report


# --- the regulators' layouts ----------------------------------------------------------

def regulator_layout(report: Report, profile: str) -> dict[str, Any]:
    """What the profile's regulator asks for, from the same figures (README, "Reports")."""
    if profile == "ukgc":
        return ukgc_return(report)
    if profile == "mga":
        return mga_adr_list(report)
    if profile == "cga":
        return cga_summary(report)
    raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")


def ukgc_return(report: Report) -> dict[str, Any]:
    """Regulatory return, complaints section: complaints logged, disputes (a subset of the
    complaints), disputes referred to ADR, and the ADR outcomes known in the period."""
    total = report.total.as_dict()
    return {"profile": "ukgc", "complaints": total["complaints"], "disputes": total["disputes"],
            "disputes_referred_to_adr": total["adr_referrals"],
            "adr_outcomes": total["adr_outcomes"]}


def mga_adr_list(report: Report) -> dict[str, Any]:
    """Monthly ADR report: every dispute referred to an ADR entity, with player id, subject
    matter and the entity's conclusion."""
    return {"profile": "mga", "disputes": [case.as_dict() for case in report.adr_cases]}


def cga_summary(report: Report) -> dict[str, Any]:
    """Periodic summary: volumes and outcomes of complaints, extensions and ADR referrals."""
    total = report.total.as_dict()
    volumes = {name: figures.complaints for name, figures in sorted(report.by_category.items())
               if figures.complaints}
    return {"profile": "cga", "complaints": total["complaints"],
            "complaints_by_category": volumes,
            "final_decisions": total["final_decisions"], "final_in_time": total["final_in_time"],
            "deadline_extensions": total["deadline_extensions"],
            "disputes": total["disputes"], "adr_referrals": total["adr_referrals"],
            "adr_outcomes": total["adr_outcomes"]}
