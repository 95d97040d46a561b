"""SLA clocks in the daemon: how they start, stop, pause and resume, and the monitor that sends
the warning and the two breach escalations (DESIGN invariant 6).

The lifecycle functions run in the caller's transaction (ingest, an agent's reply): they do
the working-time arithmetic (responders.sla) and store its result (storage.sla). The
monitor handles each due clock in a transaction of its own: it locks the clock, moves its
stage with an UPDATE that names the stage it moves from, and queues the mail and the event
in the same transaction. A clock's stage is only ever moved that way, so each level of each
ticket is sent once, whichever monitor gets there and however often they run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon import report_digest, sla_metrics
from daemon.complaints import GuardStats, guard_pass
from daemon.pacing import pause
from daemon.webhooks import events_of, queue_event
from parsers.rg import RG_CATEGORY, RG_PRIORITY
from responders import mime
from responders.escalation import STAGE_NAMES, EscalationContext, escalation
from responders.headers import UnsafeRecipient
from responders.identity import Identity, of_brand
from responders.sla import (
    DEFAULT_POLICIES,
    DEFAULT_RULES,
    BusinessHours,
    Calendar,
    Policy,
    Rule,
    add_working_time,
    select_policy,
    working_time_between,
)
from responders.webhooks import SLA_BREACHED, WebhookEvents
from storage import outbox, queries
from storage import sla as clocks
from storage.models import utcnow
from storage.sla import Clock

log = logging.getLogger(__name__)

APPEAL_POLICY = "appeal"
RESPONSE_KINDS = ("first_response", "next_response")


# --- settings -------------------------------------------------------------------------

@dataclass(frozen=True)
class SlaOptions:
    """What the clocks and the monitor need from the settings, as plain values."""

    policies: Mapping[str, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    rules: tuple[Rule, ...] = DEFAULT_RULES
    hours: BusinessHours | None = None  # None: round the clock in UTC
    holiday_country: str | None = None
    warning_address: str | None = None
    team_lead_address: str | None = None
    head_of_support_address: str | None = None
    routing: Mapping[str, str] = field(default_factory=dict)  # [team]: category -> group
    default_group: str = "support"
    group_addresses: Mapping[str, str] = field(default_factory=dict)  # group -> shared mailbox
    timezone: str = "UTC"  # of the due times written in escalations
    batch: int = 200  # clocks read per due query
    webhooks: WebhookEvents | None = None  # sla.breached to the platform; None: [webhooks] off

    @classmethod
    def from_settings(cls, settings: Settings) -> SlaOptions:
        sla = settings.sla
        hours = None
        if sla.business_hours or sla.holidays or sla.holiday_country:
            weekly = sla.business_hours.weekly if sla.business_hours else {}  # {}: 24x7
            hours = BusinessHours(sla.timezone, weekly, sla.holiday_dates)
        return cls(
            policies=policies_from_settings(settings), hours=hours,
            holiday_country=sla.holiday_country, warning_address=sla.warning_address,
            team_lead_address=sla.team_lead_address,
            head_of_support_address=sla.head_of_support_address,
            routing=settings.team.routing, default_group=settings.team.default_group,
            group_addresses=settings.team.group_addresses, timezone=sla.timezone,
            webhooks=events_of(settings.webhooks, settings.support.address),
        )

    def calendar(self, now: datetime) -> Calendar:
        """The calendar in force around `now` (country holidays are known year by year)."""
        return _calendar(self.hours, self.holiday_country, now.year)

    def policy(self, name: str) -> Policy:
        """A stored clock's policy; a policy since removed from the settings falls back to
        "default" rather than leaving its clocks without escalation."""
        return self.policies.get(name) or self.policies["default"]

    def select(self, category: str, priority: str, appeal: bool = False) -> Policy:
        if appeal:
            return self.policy(APPEAL_POLICY)
        return select_policy(category, priority, self.policies, self.rules)

    def group_address(self, group: str | None, category: str) -> str | None:
        """The shared mailbox of the ticket's group (by its category when it has none yet)."""
        return self.group_addresses.get(group or self.routing.get(category, self.default_group))

    def recipients(self, stage: int, *, assignee: str | None = None,
                   group_address: str | None = None) -> list[str]:
        """Who gets the mail of a stage: the first of its chain that is known.

        The warning goes to whoever can still answer in time (the assignee, else the
        ticket's group); the breach levels go up the line, each falling back on the other.
        """
        lead, head = self.team_lead_address, self.head_of_support_address
        chain = {1: (assignee, group_address, self.warning_address, lead),
                 2: (lead, head), 3: (head, lead)}[stage]
        return [address for address in chain if address][:1]


def policies_from_settings(settings: Settings) -> dict[str, Policy]:
    """The built-in policies with the [sla] times: the same promise the acknowledgement makes."""
    sla = settings.sla
    common: dict[str, Any] = {"warn_at": sla.warn_at / 100, "level2_after": sla.level2_after}
    default, urgent = DEFAULT_POLICIES["default"], DEFAULT_POLICIES["urgent"]
    return {
        **{name: replace(policy, **common) for name, policy in DEFAULT_POLICIES.items()},
        "default": replace(default, first_response=sla.first_response,
                           resolution=sla.resolution, **common),
        "urgent": replace(urgent, first_response=sla.first_response_urgent, **common),
    }


@lru_cache(maxsize=8)
def _calendar(hours: BusinessHours | None, country: str | None, year: int) -> Calendar:
    if hours is None:
        return Calendar()
    if country is None:
        return Calendar(hours)
    # The year before and after too: a clock started in December falls due in January.
    return Calendar.with_country_holidays(hours, country, range(year - 1, year + 2))


# --- the lifecycle of a ticket's clocks (in the caller's transaction) -------------------

def start_clock(session: Session, ticket_id: int, kind: str, policy: Policy, calendar: Calendar,
                now: datetime) -> bool:
    """Start the ticket's clock of `kind` under `policy`; False when one is already running."""
    amount: timedelta = getattr(policy, kind)
    return clocks.insert_clock(
        session, ticket_id=ticket_id, kind=kind, policy=policy.name, now=now,
        due_at=add_working_time(now, amount, calendar),
        warn_at=add_working_time(now, amount * policy.warn_at, calendar), remaining=amount,
    )


def stop_clock(session: Session, ticket_id: int, kind: str, now: datetime) -> bool:
    """Stop the running clock of `kind` (storage.sla.stop_clock, here for one import)."""
    return clocks.stop_clock(session, ticket_id, kind, now)


def pause_clocks(session: Session, ticket_id: int, now: datetime, calendar: Calendar) -> int:
    """Pause the ticket's running clocks, keeping the working time each still owes."""
    paused = 0
    for clock in clocks.open_clocks(session, ticket_id):
        if clock.paused_at is None and clock.due_at is not None:
            left = working_time_between(now, clock.due_at, calendar)  # zero once overdue
            paused += clocks.mark_paused(session, clock.id, now, left)
    return paused


def resume_clocks(session: Session, ticket_id: int, now: datetime, calendar: Calendar,
                  policies: Mapping[str, Policy] = DEFAULT_POLICIES) -> int:
    """Run the ticket's paused clocks again with the working time they had left."""
    resumed = 0
    for clock in clocks.open_clocks(session, ticket_id):
        if clock.paused_at is None:
            continue
        policy = policies.get(clock.policy) or policies["default"]
        # The warning keeps its distance from the due time: (1 - warn_at) of the promise.
        lead = getattr(policy, clock.kind) * (1 - policy.warn_at)
        due = add_working_time(now, clock.remaining, calendar)
        warn = add_working_time(now, max(clock.remaining - lead, timedelta(0)), calendar)
        moments = _moments(warn, due, policy, calendar)
        resumed += clocks.mark_resumed(session, clock, due_at=due, warn_at=warn,
                                       next_action_at=moments.get(clock.stage + 1))
    return resumed


def clocks_for_new_ticket(session: Session, ticket_id: int, category: str, priority: str,
                          now: datetime, options: SlaOptions, *, appeal: bool = False) -> Policy:
    """Start a new ticket's first_response and resolution clocks; the policy they run on.

    A ticket of category "appeal", or one whose appeal_requested_at is set (`appeal`),
    runs on the "appeal" policy.
    """
    policy = options.select(category, priority, appeal or category == APPEAL_POLICY)
    calendar = options.calendar(now)
    for kind in ("first_response", "resolution"):
        start_clock(session, ticket_id, kind, policy, calendar, now)
    return policy


def clocks_for_agent_reply(session: Session, ticket_id: int, now: datetime) -> int:
    """An agent's public reply answers the player: the response clocks stop."""
    return clocks.stop_clocks(session, ticket_id, now, RESPONSE_KINDS)


def clocks_for_pending(session: Session, ticket_id: int, now: datetime,
                       options: SlaOptions) -> int:
    """The ticket waits on the player (status pending): its clocks pause."""
    return pause_clocks(session, ticket_id, now, options.calendar(now))


def clocks_for_follow_up(session: Session, ticket_id: int, now: datetime,
                         options: SlaOptions) -> None:
    """The player wrote again: paused clocks run on, the desk owes a next response (unless
    the first is still owed), and a reopened ticket gets a resolution clock again."""
    calendar = options.calendar(now)
    resume_clocks(session, ticket_id, now, calendar, options.policies)
    category, priority, appealed = clocks.ticket_policy_facts(session, ticket_id)
    policy = options.select(category, priority, appealed or category == APPEAL_POLICY)
    running = {clock.kind for clock in clocks.open_clocks(session, ticket_id)}
    if "first_response" not in running:
        start_clock(session, ticket_id, "next_response", policy, calendar, now)
    start_clock(session, ticket_id, "resolution", policy, calendar, now)  # no-op if running


def clocks_for_resolved(session: Session, ticket_id: int, now: datetime) -> int:
    """Resolving (or closing) a ticket stops all its clocks."""
    return clocks.stop_clocks(session, ticket_id, now)


def clocks_for_appeal(session: Session, ticket_id: int, now: datetime,
                      options: SlaOptions) -> Policy:
    """An appeal restarts the response and resolution promises on the "appeal" policy."""
    clocks.stop_clocks(session, ticket_id, now, ("next_response", "resolution"))
    policy, calendar = options.policy(APPEAL_POLICY), options.calendar(now)
    if "first_response" not in {c.kind for c in clocks.open_clocks(session, ticket_id)}:
        start_clock(session, ticket_id, "next_response", policy, calendar, now)
    start_clock(session, ticket_id, "resolution", policy, calendar, now)
    return policy


def clocks_for_safeguard(session: Session, ticket_id: int, now: datetime,
                         options: SlaOptions) -> Policy:
    """A responsible-gambling request: the desk owes an answer on the urgent policy from now
    (1 hour by default), whatever was owed before and whatever the ticket was, appeals too."""
    policy, calendar = options.select(RG_CATEGORY, RG_PRIORITY), options.calendar(now)
    running = {c.kind for c in clocks.open_clocks(session, ticket_id)}
    response = "first_response" if "first_response" in running or not running else "next_response"
    clocks.stop_clocks(session, ticket_id, now, (*RESPONSE_KINDS, "resolution"))
    start_clock(session, ticket_id, response, policy, calendar, now)
    start_clock(session, ticket_id, "resolution", policy, calendar, now)
    return policy


# --- what the monitor does with a due clock (pure) -------------------------------------

@dataclass(frozen=True)
class Step:
    """The stage a clock moves to, when to look at it next, and the stages whose mail goes."""

    to_stage: int
    next_action_at: datetime | None
    sends: tuple[int, ...]


def _moments(warn_at: datetime, due_at: datetime, policy: Policy,
             calendar: Calendar) -> dict[int, datetime]:
    """When each stage (1 warning, 2 level 1, 3 level 2) falls due."""
    return {1: warn_at, 2: due_at, 3: add_working_time(due_at, policy.level2_after, calendar)}


def plan(clock: Clock, policy: Policy, calendar: Calendar, now: datetime) -> Step:
    """Every stage reached by `now` is taken at once (a monitor that was down catches up),
    but a warning is dropped when the breach itself is due: it would warn of the past."""
    assert clock.due_at is not None and clock.warn_at is not None  # paused clocks are not due
    moments = _moments(clock.warn_at, clock.due_at, policy, calendar)
    reached = [stage for stage in (1, 2, 3) if stage > clock.stage and moments[stage] <= now]
    if any(stage >= 2 for stage in reached):
        reached = [stage for stage in reached if stage >= 2]
    to_stage = max(reached, default=clock.stage)
    return Step(to_stage, moments.get(to_stage + 1), tuple(reached))


# --- the monitor ----------------------------------------------------------------------

@dataclass(frozen=True)
class Escalation:
    """One stage of one clock, recorded (and its mail queued unless `withheld` says why not)."""

    ticket: int  # the public number
    clock_kind: str
    stage: int
    recipients: tuple[str, ...]
    withheld: str = ""

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES[self.stage]


@dataclass
class MonitorStats:
    due: int = 0  # due clocks looked at
    warnings: int = 0
    breaches: int = 0  # level 1 and level 2
    lost: int = 0  # another monitor had or did it, or it was stopped or paused meanwhile
    failed: int = 0
    escalations: list[Escalation] = field(default_factory=list)
    complaints: GuardStats = field(default_factory=GuardStats)  # the deadline guard's part


class SlaDesk(Protocol):
    """What the monitor works with: the clocks' options and who the escalations come from.
    The daemon's runtime value is one; `MonitorDesk` is the plain one."""

    @property
    def sla(self) -> SlaOptions: ...

    @property
    def identity(self) -> Identity: ...


@dataclass(frozen=True)
class MonitorDesk:
    sla: SlaOptions
    identity: Identity


class SlaMonitor:
    """Looks for due clocks and escalates them. `now` is injectable, so tests move time.

    `desk` is a fixed value, or a function giving the one in force: it is read once per
    pass, so a reload changes the next pass whole and never half of one.
    """

    def __init__(self, sessions: sessionmaker[Session],
                 desk: SlaDesk | Callable[[], SlaDesk], *,
                 now: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._desk: Callable[[], SlaDesk] = desk if callable(desk) else (lambda: desk)
        self._now = now

    async def run(self, stop: asyncio.Event, interval: float | Callable[[], float] = 60,
                  wake: asyncio.Event | None = None) -> None:
        """Pass after pass until `stop` is set; a failed pass is logged and the loop goes on.
        An interval given as a function is asked for at each pause; `wake` (set by a reload)
        ends the pause at once."""
        wake = wake or asyncio.Event()
        seconds = interval if callable(interval) else (lambda: interval)
        while not stop.is_set():
            wake.clear()
            try:
                await asyncio.to_thread(self.run_once)
            except Exception as err:  # noqa: BLE001 - the database may be down for a while
                log.error("sla pass failed", extra={"fields": {"error": _describe(err)}})
            await pause(stop, wake, seconds())

    def run_once(self, now: datetime | None = None) -> MonitorStats:
        """Escalate every clock due at `now` (default: the clock's now), one transaction per
        batch of due clocks, then let the complaint deadline guard (daemon/complaints.py) do
        what is due.

        The batch's clocks are locked by the due query itself (FOR UPDATE SKIP LOCKED on
        PostgreSQL, the single writer on SQLite) until the batch commits, so another monitor
        neither waits for them nor takes them; a batch in which one clock fails is rolled
        back whole and done again one clock per transaction, so the bad clock alone fails."""
        now = now or self._now()
        desk = self._desk()  # one value for the whole pass
        report_digest.queue_weekly_digest(self._sessions, desk, now, wall_clock=self._now)
        stats, seen = MonitorStats(), set[int]()
        while True:
            # A clock seen once in this pass is not tried again in it: one that fails waits
            # for the next pass instead of spinning here.
            found, fresh = self._batch(desk, now, seen, stats)
            if not fresh or found < desk.sla.batch:
                break
        # The complaint deadline guard: the same pass, the same clock, the same desk value.
        stats.complaints = guard_pass(self._sessions, desk, now, desk.sla.batch)
        return stats

    def _batch(self, desk: SlaDesk, now: datetime, seen: set[int],
               stats: MonitorStats) -> tuple[int, list[int]]:
        """One batch of due clocks in one transaction: (clocks the query found, new ones)."""
        fresh: list[int] = []
        try:
            with self._sessions.begin() as session:
                batch = clocks.due_clocks(session, now, desk.sla.batch)
                due = [clock for clock in batch if clock.id not in seen]
                fresh = [clock.id for clock in due]
                seen.update(fresh)
                done = _Pass(desk, session, now).steps(due)
        except (sa_exc.OperationalError, sa_exc.InterfaceError):
            raise  # the database is away: end the pass, not 10,000 errors, one per clock
        except Exception:  # noqa: BLE001 - some clock of the batch failed: find which
            if not fresh:
                raise
            for clock_id in fresh:
                self._handle(desk, clock_id, now, stats)
            return len(fresh), fresh
        for clock_id in fresh:
            stats.due += 1
            _record(done[clock_id], stats)
        return len(batch), fresh

    def preview(self, now: datetime) -> MonitorStats:
        """What a pass at `now` would escalate, worked out in one transaction that is rolled
        back: nothing is recorded, no mail is queued, no metric counts (`sla --now` ahead)."""
        desk = self._desk()
        stats, seen = MonitorStats(), set[int]()
        session = self._sessions()
        try:
            session.begin()
            while True:  # the clocks it moves stay moved until the rollback: no page twice
                batch = clocks.due_clocks(session, now, desk.sla.batch)
                fresh = [clock.id for clock in batch if clock.id not in seen]
                seen.update(fresh)
                for clock_id in fresh:
                    _preview_one(_Pass(desk, session, now), clock_id, stats)
                if not fresh or len(batch) < desk.sla.batch:
                    return stats
        finally:
            session.rollback()
            session.close()

    def _handle(self, desk: SlaDesk, clock_id: int, now: datetime, stats: MonitorStats) -> None:
        stats.due += 1
        try:
            with self._sessions.begin() as session:
                done = _Pass(desk, session, now).step(clock_id)
        except (sa_exc.OperationalError, sa_exc.InterfaceError):
            raise  # the database is away: end the pass, not 10,000 errors, one per clock
        except Exception as err:  # noqa: BLE001 - one bad clock must not stop the others
            stats.failed += 1
            log.error("sla escalation failed",
                      extra={"fields": {"clock": clock_id, "error": _describe(err)}})
            return
        _record(done, stats)


def _record(done: list[Escalation] | None, stats: MonitorStats) -> None:
    """Count and log what one clock did, once it is committed."""
    if done is None:
        stats.lost += 1
        return
    for item in done:
        _count(item, stats)
        log.info("sla escalation", extra={"fields": {
            "ticket": item.ticket, "clock": item.clock_kind, "stage": item.stage_name,
            "queued": "no" if item.withheld else "yes"}})


class _Pass:
    """One transaction within a pass: the desk in force, the session, the moment. The mails
    and events of its clocks are gathered and written together by `flush`."""

    def __init__(self, desk: SlaDesk, session: Session, now: datetime) -> None:
        self.options, self.identity = desk.sla, desk.identity
        self.desk, self.session, self.now = desk, session, now
        self.mails: list[outbox.Outgoing] = []
        self.events: list[tuple[str, int | None, dict[str, Any]]] = []
        self._staff: dict[str, Identity] = {}  # by brand: see `staff_identity`

    def step(self, clock_id: int) -> list[Escalation] | None:
        """Move one clock on and record what it reached; None when it was not ours to move."""
        clock = clocks.lock_clock(self.session, clock_id)  # as it is now, not as the query saw it
        if clock is None:
            return None
        return self.steps([clock])[clock.id]

    def steps(self, due: list[Clock]) -> dict[int, list[Escalation] | None]:
        """Move clocks locked in this transaction on, and record what each reached: their
        stages in one executemany, the facts of their tickets in one query, their mails and
        events in one executemany each. None for a clock that was not ours to move."""
        session, now = self.session, self.now
        done: dict[int, list[Escalation] | None] = {}
        moves: list[tuple[Clock, Policy, Step]] = []
        for clock in due:
            if clock.paused_at is not None or clock.next_action_at is None \
                    or clock.next_action_at > now:
                done[clock.id] = None
                continue
            policy = self.options.policy(clock.policy)
            moves.append((clock, policy, plan(clock, policy, self.options.calendar(now), now)))
        if moves and not clocks.advance_many(session, [
                (clock.id, clock.stage, step.to_stage, step.next_action_at)
                for clock, _, step in moves]):
            if len(moves) == 1:  # another monitor did it: write nothing
                done[moves[0][0].id] = None
                return done
            raise _Moved("a clock of the batch moved under its lock")
        sending = {clock.ticket_id for clock, _, step in moves if step.sends}
        facts = clocks.escalation_facts_of(session, sorted(sending))
        for clock, policy, step in moves:
            done[clock.id] = [self._escalate(clock, stage, policy, facts[clock.ticket_id])
                              for stage in step.sends]
        self.flush()
        return done

    def flush(self) -> None:
        """Write the gathered mails (each with what its ticket keeps of it) and events."""
        outbox.enqueue_many(self.session, self.mails)
        queries.insert_events(self.session, self.events)
        self.mails, self.events = [], []

    def _escalate(self, clock: Clock, stage: int, policy: Policy,
                  facts: clocks.EscalationFacts) -> Escalation:
        """Queue the mail of one stage and write its event, in the clock's transaction."""
        recipients = self.options.recipients(
            stage, assignee=facts.assignee,
            group_address=self.options.group_address(facts.group, facts.category))
        withheld = "" if recipients else "no escalation address configured ([sla])"
        if recipients and not self.identity.keys:
            withheld = "no signing key configured ([security] secret_file)"
        if not withheld:
            withheld = self._queue(clock, stage, policy, facts, recipients[0])
        assert clock.due_at is not None
        data: dict[str, Any] = {"clock": clock.kind, "policy": clock.policy,
                                "stage": STAGE_NAMES[stage], "due_at": clock.due_at.isoformat(),
                                "recipients": [] if withheld else recipients}
        if stage >= 2:
            data["level"] = stage - 1
        if withheld:
            data["withheld"] = withheld
        self.events.append(("sla_warning" if stage == 1 else "sla_breach", clock.ticket_id, data))
        if stage == 2:  # the breach itself, once per clock; level 2 is the desk's own matter
            # The cause is the clock and the time it promised: a clock restarted (a new due
            # time) that breaches again is a new breach, a second pass over this one is not.
            queue_event(self.session, self.options.webhooks, SLA_BREACHED, clock.ticket_id,
                        now=self.now, cause=f"clock {clock.id} due {data['due_at']}",
                        data={"clock": clock.kind, "policy": clock.policy,
                              "due_at": data["due_at"]})
        return Escalation(facts.number, clock.kind, stage,
                          () if withheld else tuple(recipients), withheld)

    def staff_identity(self, brand: str) -> Identity:
        """Who escalations of a ticket of `brand` come from: the brand, written in the staff's
        language, the desk's. Made once per brand and transaction, not once per mail: the desk
        does not change within a pass."""
        identity = self._staff.get(brand)
        if identity is None:
            identity = replace(of_brand(self.desk, brand), language=self.identity.language)
            self._staff[brand] = identity
        return identity

    def _queue(self, clock: Clock, stage: int, policy: Policy, facts: clocks.EscalationFacts,
               to: str) -> str:
        """Compose and enqueue the mail; "" when queued, else why it was not."""
        assert clock.due_at is not None
        ctx = EscalationContext(
            ticket_number=facts.number, stage=stage, clock_kind=clock.kind, policy=policy.name,
            promised=getattr(policy, clock.kind), started_at=clock.started_at,
            due_at=clock.due_at, now=self.now, subject=facts.subject, question=facts.question,
            assignee=facts.assignee,
            nonce=f"sla{clock.id}s{stage}",  # one Message-ID per clock and stage
        )
        identity = self.staff_identity(facts.brand)
        try:
            msg = escalation(ctx, identity, to=to, timezone=self.options.timezone)
        except UnsafeRecipient as err:  # a configuration mistake: retrying would not help
            return str(err)
        self.mails.append(outbox.Outgoing(
            raw=mime.wire_bytes(msg), message_id=mime.message_id(msg),
            envelope_from=identity.address, recipients=(to,), kind="escalation",
            ticket_id=clock.ticket_id, now=self.now, shown=mime.shown(msg)))
        return ""


class _Moved(RuntimeError):
    """A clock of a batch was not at the stage read under its lock: the batch is done again
    one clock per transaction, where such a clock is simply another monitor's."""


def _preview_one(step: _Pass, clock_id: int, stats: MonitorStats) -> None:
    stats.due += 1
    try:
        with step.session.begin_nested():
            done = step.step(clock_id)
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        raise
    except Exception:  # noqa: BLE001 - as in a real pass, one bad clock is counted
        stats.failed += 1
        return
    if done is None:
        stats.lost += 1
    for item in done or ():
        _tally(item, stats)


def _count(item: Escalation, stats: MonitorStats) -> None:
    _tally(item, stats)
    if item.stage == 1:
        sla_metrics.WARNINGS.inc()
    else:
        sla_metrics.BREACHES.labels(str(item.stage - 1)).inc()


def _tally(item: Escalation, stats: MonitorStats) -> None:
    stats.escalations.append(item)
    if item.stage == 1:
        stats.warnings += 1
    else:
        stats.breaches += 1


def _describe(err: BaseException) -> str:
    # The first line only: a database error's text can carry statement parameters.
    text = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
