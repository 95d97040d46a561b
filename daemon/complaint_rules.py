"""The complaint lifecycle's rules as functions of values (DESIGN: rules stay pure, in one
place): the deadlines a complaint gets, what each agent command may do in which state, the
one extension, the dispute after a final decision, and what the deadline guard does next.

States: ``complaint`` (open, the final-decision deadline runs; under a pausing profile it
stands still while the desk waits on the player, and the deadline moves by the pause) →
``final`` (a final decision was given, by an agent's ``#final`` or the guard's deadline
letter) → ``dispute`` (the player disagreed) → ``adr`` (referred to the ADR entity; its
outcome is recorded there). ``merged`` is terminal: the ticket was merged into another
whose complaint runs on, so nothing here (guard, pause, resume, extension, fast lane) moves
this one again; only an ADR body's enquiry about it is still reminded of.
The caller (daemon/complaints.py) reads the row, asks here, and writes the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from parsers.commands import ADR_OUTCOMES
from parsers.rg import RG_CATEGORY
from responders.complaint_profiles import ComplaintProfile

__all__ = ["ADR_OUTCOMES", "DEADLINE", "MERGED", "Change", "ComplaintFacts", "GuardStep",
           "add_business_days", "adr_outcome", "earliest", "adr_referral", "dispute", "enquiry_due",
           "extend", "fast_lane", "final", "guard_points", "iso", "merged_away", "opened",
           "overdue_at_receipt", "pause",
           "plan", "received_moment", "refusal", "resume"]
DEADLINE = "deadline"  # the guard's last point: the final-response letter
MERGED = "merged"  # the terminal state of a complaint whose ticket was merged into another
# A Date header older than this before we process the mail is not taken as its receipt: mail
# queued by MTAs gives up within about 5 days, so an older one is a wrong clock or a forgery.
PLAUSIBLE_DELAY = timedelta(days=5)


@dataclass(frozen=True)
class ComplaintFacts:
    """What the rules read of a complaint row."""

    state: str
    received_at: datetime
    final_due_at: datetime | None = None
    extended_at: datetime | None = None
    final_at: datetime | None = None
    adr_referred_at: datetime | None = None
    stage: int = 0
    category: str = "other"
    paused_at: datetime | None = None  # the clock stands still since then
    paused_seconds: int = 0  # it stood still so long before (final_due_at moved by it)
    enquiry_due_at: datetime | None = None  # an ADR body's enquiry not yet reminded of


@dataclass(frozen=True)
class Change:
    """Columns to write and what the event of the change records."""

    values: dict[str, Any]
    event: dict[str, Any] = field(default_factory=dict)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def add_business_days(start: datetime, days: int, timezone: str = "UTC") -> datetime:
    """`days` working days (Monday to Friday where the desk is, in `timezone`) after `start`,
    at the same time of day there. Public holidays are not known here: a regulator's
    "working day" may be one day longer."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    day, left = local.date(), days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return datetime.combine(day, local.time(), zone).astimezone(start.tzinfo or UTC)


def received_moment(delivered_at: datetime | None, dated: datetime | None,
                    now: datetime) -> datetime:
    """When a complaint was received: when our mailbox got it (IMAP INTERNALDATE), else the
    mail's Date when plausible (not after now, not older than PLAUSIBLE_DELAY), else now."""
    if delivered_at is not None:
        return min(delivered_at, now)
    if dated is not None and now - PLAUSIBLE_DELAY <= dated:
        return min(dated, now)
    return now


def overdue_at_receipt(final_due: datetime | None, stored_at: datetime) -> bool:
    """A complaint whose final deadline had passed when we stored it (an INTERNALDATE older
    than the profile's deadline: a mailbox imported, a daemon down for weeks). The guard
    sends no automatic final-response letter to it before anyone has read it, let alone
    acknowledged it: it hands the letter to a person instead (README, "Complaints")."""
    return final_due is not None and final_due <= stored_at


# --- deadlines --------------------------------------------------------------------------

def opened(profile: ComplaintProfile, category: str, received_at: datetime) -> dict[str, Any]:
    """The record of a new complaint: its deadlines and the guard's first moment. A
    responsible-gambling complaint has the profile's fast lane as its final deadline."""
    final_due = None
    if profile.final_within is not None:
        final_due = received_at + profile.final_within
        if category == RG_CATEGORY and profile.rg_business_days:
            final_due = add_business_days(received_at, profile.rg_business_days,
                                          profile.timezone)
    ack_due = received_at + profile.ack_within if profile.ack_within else None
    points = guard_points(profile, final_due)
    return {"profile": profile.name, "category": category, "state": "complaint",
            "received_at": received_at, "ack_due_at": ack_due, "final_due_at": final_due,
            "stage": 0, "next_action_at": points[0][1] if points else None}


def guard_points(profile: ComplaintProfile, final_due: datetime | None,
                 received_at: datetime | None = None) -> list[tuple[str, datetime]]:
    """(name, moment) of each thing the guard does, in order: the reminders, then the letter.
    A reminder that would come before receipt (a short fast-lane deadline) is left out."""
    if final_due is None:
        return []
    reminders = sorted(final_due - before for before in profile.reminders_before)
    start = received_at or datetime.min.replace(tzinfo=final_due.tzinfo)
    named = [(_point_name(at, final_due, before), at) for at, before in zip(
        reminders, sorted(profile.reminders_before, reverse=True), strict=True) if at > start]
    return [*named, (DEADLINE, final_due)]


def _point_name(at: datetime, due: datetime, before: timedelta) -> str:
    """"2w before" / "3d before": the reminder as the team reads it."""
    if before % timedelta(weeks=1) == timedelta(0):
        return f"{before // timedelta(weeks=1)}w before"
    if before % timedelta(days=1) == timedelta(0):
        return f"{before // timedelta(days=1)}d before"
    return f"{int(before.total_seconds() // 3600)}h before"


@dataclass(frozen=True)
class GuardStep:
    to_stage: int
    next_action_at: datetime | None
    sends: tuple[str, ...]  # the points reached, in order; DEADLINE last if reached


def plan(facts: ComplaintFacts, profile: ComplaintProfile, now: datetime) -> GuardStep:
    """Every point reached by `now` is taken at once, but reminders are dropped when the
    deadline itself is reached (they would remind of the past), as the SLA ladder does."""
    points = guard_points(profile, facts.final_due_at, facts.received_at)
    if facts.state != "complaint" or facts.paused_at is not None:  # nothing while it waits
        return GuardStep(facts.stage, None, ())
    reached = [(i + 1, name) for i, (name, at) in enumerate(points)
               if i + 1 > facts.stage and at <= now]
    if any(name == DEADLINE for _, name in reached):
        reached = [(i, name) for i, name in reached if name == DEADLINE]
    to_stage = max((i for i, _ in reached), default=facts.stage)
    later = points[to_stage][1] if to_stage < len(points) else None
    return GuardStep(to_stage, later, tuple(name for _, name in reached))


# --- commands ---------------------------------------------------------------------------

def refusal(facts: ComplaintFacts | None, profile: ComplaintProfile, name: str,
            now: datetime) -> str:
    """Why command `name` may not be applied to this complaint now; "" when it may."""
    if facts is None:
        return f"#{name}: this ticket has no complaint record (not a player's complaint)"
    if facts.state == MERGED:
        return (f"#{name}: this ticket was merged into another; its complaint is handled "
                "there (write the command on that ticket)")
    if name == "final" and facts.state != "complaint":
        return (f"#final: the final decision was already given ({_day(facts.final_at)}); "
                "a dispute goes to the ADR entity (#adr ENTITY REFERENCE)")
    if name == "extend":
        return _extend_refusal(facts, profile, now)
    if name == "adr" and facts.adr_referred_at is not None:
        return f"#adr: a referral is already recorded ({_day(facts.adr_referred_at)})"
    if name == "adr-outcome" and facts.state != "adr":
        return "#adr-outcome: no ADR referral is recorded yet (#adr ENTITY REFERENCE first)"
    return ""


def _extend_refusal(facts: ComplaintFacts, profile: ComplaintProfile, now: datetime) -> str:
    if profile.extension is None:
        return (f'#extend: the "{profile.name}" profile allows no extension of the '
                "final-decision deadline")
    if facts.state != "complaint":
        return "#extend: the final decision was already given"
    if facts.extended_at is not None:
        return (f"#extend: the deadline was already extended once ({_day(facts.extended_at)}); "
                "it may be extended only once")
    due = _unpaused(facts, now).get("final_due_at", facts.final_due_at)
    if due is None or due <= now:
        return "#extend: the deadline has passed; the final response is due now"
    return ""


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "earlier"


def final(facts: ComplaintFacts, by: str, now: datetime) -> Change:
    """A final decision: the deadline guard stops (an ADR body's enquiry still waits for its
    reminder); in time when given by the deadline (or none), which a pause has moved. The
    guard's letter is never in time: it is sent because the deadline came without one."""
    unpaused = _unpaused(facts, now)
    due = unpaused.get("final_due_at", facts.final_due_at)
    in_time = by != "guard" and (due is None or now <= due)
    return Change({**unpaused, "state": "final", "final_at": now, "final_by": by,
                   "next_action_at": facts.enquiry_due_at},
                  {"by": by, "in_time": in_time, "final_due_at": iso(due),
                   "category": facts.category})


def _unpaused(facts: ComplaintFacts, now: datetime) -> dict[str, Any]:
    """The columns of a pause ended at `now` ({} when the clock runs): the deadline moves by
    the time it stood still."""
    if facts.paused_at is None:
        return {}
    held = max(now - facts.paused_at, timedelta(0))
    due = facts.final_due_at + held if facts.final_due_at is not None else None
    return {"paused_at": None, "final_due_at": due,
            "paused_seconds": facts.paused_seconds + int(held.total_seconds())}


def pause(facts: ComplaintFacts, profile: ComplaintProfile, now: datetime) -> Change | None:
    """The desk asks the player for information (#status pending): under a profile that allows
    it the final deadline stands still, and the guard with it (an ADR body's enquiry does not
    wait). None when nothing pauses: the profile does not allow it, the clock already stands,
    the deadline has passed, or it is the responsible-gambling fast lane, which never waits."""
    if (not profile.pause_while_waiting or facts.state != "complaint"
            or facts.paused_at is not None or facts.final_due_at is None
            or facts.final_due_at <= now or facts.category == RG_CATEGORY):
        return None
    return Change({"paused_at": now, "next_action_at": facts.enquiry_due_at},
                  {"final_due_at": iso(facts.final_due_at)})


def resume(facts: ComplaintFacts, profile: ComplaintProfile, now: datetime) -> Change | None:
    """The player wrote again, or the ticket no longer waits on them: the clock runs on, the
    deadline and the reminders before it later by the pause. None when it was not paused, or
    when its ticket was merged away (the complaint that runs on is the other ticket's)."""
    unpaused = _unpaused(facts, now)
    if not unpaused or facts.state == MERGED:
        return None
    held = unpaused["paused_seconds"] - facts.paused_seconds
    values = {**unpaused, **_schedule(facts, profile, unpaused["final_due_at"], now)}
    return Change(values, {"paused_seconds": held, "final_due_at": iso(values["final_due_at"])})


def _schedule(facts: ComplaintFacts, profile: ComplaintProfile, due: datetime | None,
              now: datetime) -> dict[str, Any]:
    """A complaint's guard on a new deadline: its points already past count as done (sent or
    not, they would remind of the past), the next one is the guard's next moment."""
    if facts.state != "complaint" or due is None:
        return {"final_due_at": due, "next_action_at": facts.enquiry_due_at}
    points = guard_points(profile, due, facts.received_at)
    stage = sum(1 for _, at in points if at <= now)
    later = points[stage][1] if stage < len(points) else None
    return {"final_due_at": due, "stage": stage,
            "next_action_at": earliest(later, facts.enquiry_due_at)}


def fast_lane(facts: ComplaintFacts, profile: ComplaintProfile, now: datetime) -> Change | None:
    """A complaint that becomes a responsible-gambling one (a self-exclusion asked for later
    in the conversation) gets the profile's fast lane from now, unless its deadline is
    sooner already. None when the profile has no fast lane or nothing changes."""
    days = profile.rg_business_days
    if (not days or facts.state != "complaint" or facts.final_due_at is None
            or facts.category == RG_CATEGORY):
        return None
    unpaused = _unpaused(facts, now)  # the fast lane never waits
    running = unpaused.get("final_due_at", facts.final_due_at)
    due = min(running, add_business_days(now, days, profile.timezone))
    values = {**unpaused, "category": RG_CATEGORY, **_schedule(facts, profile, due, now)}
    return Change(values, {"final_due_at": iso(due), "before": iso(running)})


def extend(facts: ComplaintFacts, profile: ComplaintProfile, reason: str,
           now: datetime) -> Change:
    """The one extension: the deadline (and the reminders before it) move; the points of the
    new schedule already past are counted as done rather than sent late."""
    assert profile.extension is not None and facts.final_due_at is not None
    due = facts.final_due_at + profile.extension
    values = _schedule(facts, profile, due, now)
    if facts.paused_at is not None:  # still waiting on the player: the guard with it
        values["next_action_at"] = facts.enquiry_due_at
    return Change({**values, "extended_at": now, "extension_reason": reason},
                  {"reason": reason, "final_due_at": iso(due)})


def dispute(facts: ComplaintFacts, now: datetime) -> Change | None:
    """A player who disagrees after the final decision opens a dispute; before it, the
    appeal is the ordinary escalation of an open complaint (None)."""
    if facts.state != "final":
        return None
    return Change({"state": "dispute", "disputed_at": now})


def adr_referral(facts: ComplaintFacts, entity: str, reference: str, now: datetime) -> Change:
    """Referred to the ADR entity: the final-decision guard has nothing more to do, an ADR
    body's enquiry already waiting still gets its reminder."""
    return Change({**_unpaused(facts, now), "state": "adr", "adr_entity": entity,
                   "adr_reference": reference, "adr_referred_at": now,
                   "next_action_at": facts.enquiry_due_at},
                  {"entity": entity, "reference": reference})


def merged_away(facts: ComplaintFacts) -> Change:
    """The ticket was merged into another, whose complaint runs on: this one ends as
    ``merged`` (its guard stops for good, a pause with it: the closed ticket's status must not
    resume it), but an ADR body's enquiry about it is still owed its answer, and its reminder.
    A complaint already decided keeps its state: its final decision stands on the record."""
    values: dict[str, Any] = {"paused_at": None, "next_action_at": facts.enquiry_due_at}
    if facts.state == "complaint":
        values["state"] = MERGED
    return Change(values)


def adr_outcome(outcome: str, now: datetime) -> Change:
    return Change({"adr_outcome": outcome, "adr_outcome_at": now}, {"outcome": outcome})


def earliest(*moments: datetime | None) -> datetime | None:
    """The guard's next moment: the first of those still to come (None: nothing)."""
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


def enquiry_due(profile: ComplaintProfile, now: datetime) -> datetime | None:
    """When an ADR body's enquiry must be answered (UKGC: 10 working days)."""
    days = profile.adr_enquiry_business_days
    return add_business_days(now, days, profile.timezone) if days else None
