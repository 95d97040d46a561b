"""Fifty complaints with their events at chosen times: the fixture the report's figures are
counted against by hand (tests/reports/test_report_figures.py holds the counts).

The report period is 2026-11-02 (Monday) to 2026-11-15 (Sunday), UTC: ISO weeks 45 and 46.

A  20 "withdrawal" tickets (the ticket row says "other": the event's category wins),
   received Nov 2 00:00 + i*6h (i = 0..19), acknowledgement due +24h.
   ack +1h for i 0..17, +30h (late) for i 18, 19; public reply at +(i+1)h;
   final decision in time at +100h for i 0..9; dispute at +120h for i 0..3;
   ADR referral (IBAS, IB-i) at +150h for i 0, 1; outcome not_upheld at +200h for i 0.
B  15 "bonus" tickets received Nov 9 00:00 + j*6h (j = 0..14); j 13, 14 only `created`
   (before the complaint lifecycle: no deadline, category from the ticket row).
   ack +3h (in time) for all; final decision at +48h for j 0..4, in time for j 0..2;
   public reply at +5h for j 5..14; dispute at +60h for j 5.
C  10 "account" tickets: k 0..7 received Nov 4 00:00 + k*12h, ack +25h (late) for k 0..3,
   none for k 4..7, deadline extended at +24h for k 0; k 8 received Nov 15 23:59:59 and
   acknowledged a minute later (after the period); k 9 received Nov 16 00:00 (after it),
   final decision at +1h.
D   5 "withdrawal" tickets received Oct 20 00:00 + m*24h (m = 0..4), ack +1h; final
   decision Nov 3 00:00 + m*24h, in time for m 0, 1; m 0 referred (eCOGRA, EC-1) Nov 10,
   upheld Nov 14; m 1 referred (eCOGRA, EC-0) Oct 25, settled Nov 12; m 2 public reply
   Oct 21.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from storage import queries
from storage.models import Event

NOV2 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)


@dataclass
class Spec:
    """One ticket: the category on its row and its events as (kind, when, data)."""

    category: str
    events: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)

    def on(self, event: str, at: datetime, /, **data: Any) -> Spec:
        self.events.append((event, at, data))
        return self


def opened(category: str, at: datetime, *, row_category: str | None = None,
           lifecycle: bool = True) -> Spec:
    spec = Spec(row_category or category).on("created", at)
    if lifecycle:
        spec.on("complaint_opened", at, profile="ukgc", category=category,
                ack_due_at=(at + 24 * H).isoformat(),
                final_due_at=(at + timedelta(weeks=8)).isoformat())
    return spec


def ack(spec: Spec, at: datetime) -> Spec:
    return spec.on("mail_queued", at, kind="ack", subject="We have your complaint")


def final(spec: Spec, at: datetime, in_time: bool, category: str) -> Spec:
    return spec.on("final_decision", at, by="agent@casino.test", in_time=in_time,
                   final_due_at=None, category=category)


def group_a() -> list[Spec]:
    specs = []
    for i in range(20):
        at = NOV2 + i * 6 * H
        spec = ack(opened("withdrawal", at, row_category="other"), at + (30 if i >= 18 else 1) * H)
        spec.on("public_reply", at + (i + 1) * H)
        if i <= 9:
            final(spec, at + 100 * H, True, "withdrawal")
        if i <= 3:
            spec.on("dispute_opened", at + 120 * H)
        if i <= 1:
            spec.on("adr_referral", at + 150 * H, entity="IBAS", reference=f"IB-{i}")
        if i == 0:
            spec.on("adr_outcome", at + 200 * H, outcome="not_upheld")
        specs.append(spec)
    return specs


def group_b() -> list[Spec]:
    specs = []
    for j in range(15):
        at = NOV2 + timedelta(days=7) + j * 6 * H
        spec = ack(opened("bonus", at, lifecycle=j < 13), at + 3 * H)
        if j <= 4:
            final(spec, at + 48 * H, j <= 2, "bonus")
        else:
            spec.on("public_reply", at + 5 * H)
        if j == 5:
            spec.on("dispute_opened", at + 60 * H)
        specs.append(spec)
    return specs


def group_c() -> list[Spec]:
    specs = []
    for k in range(8):
        at = NOV2 + timedelta(days=2) + k * 12 * H
        spec = opened("account", at)
        if k <= 3:
            ack(spec, at + 25 * H)
        if k == 0:
            spec.on("deadline_extended", at + 24 * H, reason="waiting for documents",
                    final_due_at=(at + timedelta(weeks=8)).isoformat())
        specs.append(spec)
    last = datetime(2026, 11, 15, 23, 59, 59, tzinfo=UTC)
    specs.append(ack(opened("account", last), last + timedelta(minutes=1)))
    after = datetime(2026, 11, 16, tzinfo=UTC)
    specs.append(final(opened("account", after), after + H, True, "account"))
    return specs


def group_d() -> list[Spec]:
    specs = []
    for m in range(5):
        at = datetime(2026, 10, 20, tzinfo=UTC) + m * 24 * H
        spec = ack(opened("withdrawal", at), at + H)
        final(spec, datetime(2026, 11, 3, tzinfo=UTC) + m * 24 * H, m <= 1, "withdrawal")
        if m == 0:
            spec.on("adr_referral", datetime(2026, 11, 10, tzinfo=UTC), entity="eCOGRA",
                    reference="EC-1")
            spec.on("adr_outcome", datetime(2026, 11, 14, tzinfo=UTC), outcome="upheld")
        if m == 1:
            spec.on("adr_referral", datetime(2026, 10, 25, tzinfo=UTC), entity="eCOGRA",
                    reference="EC-0")
            spec.on("adr_outcome", datetime(2026, 11, 12, tzinfo=UTC), outcome="settled")
        if m == 2:
            spec.on("public_reply", at + 24 * H)
        specs.append(spec)
    return specs


def all_specs() -> list[Spec]:
    return group_a() + group_b() + group_c() + group_d()


def load(session: Session) -> dict[str, int]:
    """Store the fifty tickets and their events; the public number of each ticket by
    "A0" ... "D4"."""
    numbers: dict[str, int] = {}
    groups = {"A": group_a(), "B": group_b(), "C": group_c(), "D": group_d()}
    for letter, specs in groups.items():
        for n, spec in enumerate(specs):
            who = queries.contact_id(session, f"player-{letter}{n}@players.test")
            ticket_id, number = queries.insert_ticket(
                session, subject=f"Complaint {letter}{n}", requester_id=who,
                category=spec.category, priority="normal", language="en")
            numbers[f"{letter}{n}"] = number
            for kind, at, data in spec.events:
                session.add(Event(ticket_id=ticket_id, kind=kind, actor="system", data=data,
                                  created_at=at))
    session.flush()
    return numbers
