"""The complaint lifecycle in the daemon: the record of each player ticket, the agents'
complaint commands, the dispute, an ADR body's enquiry, and the deadline guard.

The rules are daemon/complaint_rules.py; this module reads the row, asks them, and writes
the answer with its event and mail in the caller's transaction (ingest, an agent's mail),
or, for the guard, in one transaction per complaint, advanced by a conditional update
(storage.complaints.advance) so that each reminder and letter goes once.

Events (read by the reports; their names and keys are a contract): complaint_opened,
final_decision, deadline_letter, deadline_extended, complaint_reminder, dispute_opened,
adr_referral, adr_outcome, adr_enquiry, complaint_paused, complaint_resumed,
complaint_fast_lane, complaint_moved, complaint_merged, complaint_letter_suppressed,
complaint_late_at_receipt. Times in their data are ISO-8601 UTC strings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from daemon import complaint_rules as rules
from responders import mime
from responders.complaint_profiles import ComplaintProfile
from responders.complaints import LetterContext, player_letter, staff_letter
from responders.headers import UnsafeRecipient
from responders.identity import Identity, of_brand
from storage import complaints as records
from storage import outbox, queries
from storage.models import Complaint

log = logging.getLogger(__name__)

COMMANDS = ("final", "extend", "adr", "adr-outcome")
ENQUIRY = "adr_enquiry"  # the reminder point of an ADR body's enquiry falling due


def facts(row: Complaint) -> rules.ComplaintFacts:
    return rules.ComplaintFacts(
        state=row.state, received_at=row.received_at, final_due_at=row.final_due_at,
        extended_at=row.extended_at, final_at=row.final_at,
        adr_referred_at=row.adr_referred_at, stage=row.stage, category=row.category,
        paused_at=row.paused_at, paused_seconds=row.paused_seconds or 0,
        enquiry_due_at=row.enquiry_due_at if row.enquiry_reminded_at is None else None)


# --- in ingest's transaction ------------------------------------------------------------

def open_complaint(session: Session, profile: ComplaintProfile, ticket_id: int,
                   category: str, received_at: datetime, now: datetime) -> None:
    """Every new player ticket is a complaint on the record (under "none" without deadlines),
    its deadlines counted from `received_at` (rules.received_moment). One whose deadline had
    passed already is recorded so (`complaint_late_at_receipt`): the guard hands its letter
    to a person rather than write to the player at once."""
    values = rules.opened(profile, category, received_at)
    if records.insert_complaint(session, ticket_id, values) is None:
        return
    queries.insert_event(session, "complaint_opened", ticket_id, profile=profile.name,
                         category=category, received_at=rules.iso(received_at),
                         ack_due_at=rules.iso(values["ack_due_at"]),
                         final_due_at=rules.iso(values["final_due_at"]))
    if rules.overdue_at_receipt(values["final_due_at"], now):
        queries.insert_event(session, "complaint_late_at_receipt", ticket_id,
                             received_at=rules.iso(received_at),
                             final_due_at=rules.iso(values["final_due_at"]))


def pause_clock(session: Session, profile: ComplaintProfile, ticket_id: int, actor: str,
                now: datetime, *, asked_in: str) -> bool:
    """The desk asked the player for information (#status pending on a public reply): under
    a pausing profile the complaint's clock stands still until they answer (True when it
    paused). `asked_in`, the Message-ID of the relay that asked, is kept on the event as the
    evidence of the question."""
    return _apply(session, ticket_id, "complaint_paused", actor,
                  lambda row: rules.pause(facts(row), profile, now), asked_in=asked_in)


def resume_clock(session: Session, profile: ComplaintProfile, ticket_id: int, actor: str,
                 now: datetime) -> bool:
    """The player wrote again, or the ticket no longer waits on them: a paused clock runs on,
    its deadline later by the pause (True when it was paused)."""
    if not records.paused(session, ticket_id):
        return False  # most answers: the clock runs, nothing to change
    return _apply(session, ticket_id, "complaint_resumed", actor,
                  lambda row: rules.resume(facts(row), profile, now))


def safeguarded(session: Session, profile: ComplaintProfile, ticket_id: int, actor: str,
                now: datetime) -> bool:
    """The ticket became a responsible-gambling one after it opened: the profile's fast lane
    (CGA: one business day) from now, as a ticket opened so gets (True when it changed)."""
    return _apply(session, ticket_id, "complaint_fast_lane", actor,
                  lambda row: rules.fast_lane(facts(row), profile, now))


def _apply(session: Session, ticket_id: int, kind: str, actor: str,
           decide: Callable[[Complaint], rules.Change | None], **evidence: Any) -> bool:
    row = records.for_ticket(session, ticket_id)
    change = decide(row) if row is not None else None
    if row is None or change is None:
        return False
    records.write(row, change.values)
    queries.insert_event(session, kind, ticket_id, actor=actor, **change.event, **evidence)
    return True


def player_disagrees(session: Session, ticket_id: int, now: datetime, actor: str) -> bool:
    """The player asked to appeal after the final decision: a dispute (True)."""
    row = records.for_ticket(session, ticket_id)
    change = rules.dispute(facts(row), now) if row is not None else None
    if row is None or change is None:
        return False
    records.write(row, change.values)
    queries.insert_event(session, "dispute_opened", ticket_id, actor=actor)
    return True


def adr_enquiry(session: Session, profile: ComplaintProfile, ticket_id: int, entity: str,
                now: datetime) -> None:
    """An ADR body wrote about this ticket: its enquiry clock starts (UKGC: 10 working days).
    Another enquiry while one waits, not yet reminded of, keeps the earlier due time: the
    first question is still owed its answer by then."""
    due = rules.enquiry_due(profile, now)
    row = records.for_ticket(session, ticket_id)
    if row is not None and row.enquiry_reminded_at is None:
        due = rules.earliest(due, row.enquiry_due_at)
    if row is None:  # its own ticket: a record that is an ADR case from the start
        values = {**rules.opened(ComplaintProfile(name=profile.name), "other", now),
                  "state": "adr", "adr_entity": entity[:200]}
        records.insert_complaint(session, ticket_id, values)
        row = records.for_ticket(session, ticket_id)
    assert row is not None
    row.enquiry_due_at, row.enquiry_reminded_at = due, None
    # The guard reminds the desk when it falls due, beside whatever else it has to do.
    row.next_action_at = rules.earliest(row.next_action_at, due)
    queries.insert_event(session, "adr_enquiry", ticket_id, actor=entity, entity=entity,
                         due_at=rules.iso(due))


# --- agents' commands (in the agent mail's transaction) ---------------------------------

class Command(Protocol):
    name: str
    argument: str | None


def command_errors(session: Session, profile: ComplaintProfile, ticket_id: int,
                   commands: Sequence[Command], text: str, now: datetime) -> list[str]:
    """Why the complaint commands of a mail may not be applied ([] when they may)."""
    wanted = [c for c in commands if c.name in COMMANDS]
    if not wanted:
        return []
    row = records.for_ticket(session, ticket_id)
    errors = [rules.refusal(facts(row) if row else None, profile, c.name, now) for c in wanted]
    if any(c.name == "final" for c in wanted) and not text.strip():
        errors.append("#final needs the decision itself on the lines below it")
    return [error for error in errors if error]


def apply_commands(session: Session, identity: Identity, ticket_id: int,
                   commands: Sequence[Command], actor: str, now: datetime) -> None:
    """Write #final, #extend, #adr and #adr-outcome (already checked by command_errors)."""
    row = records.for_ticket(session, ticket_id)
    if row is None:
        return
    for command in commands:
        change = _change(row, identity.complaints, command, actor, now)
        if change is None:
            continue
        records.write(row, change.values)
        kind = {"final": "final_decision", "extend": "deadline_extended",
                "adr": "adr_referral", "adr-outcome": "adr_outcome"}[command.name]
        queries.insert_event(session, kind, ticket_id, actor=actor, **change.event)
        if command.name == "extend":
            _extension_notice(session, identity, row, now)


def final_answer(session: Session, ticket_id: int, actor: str, now: datetime) -> None:
    """An answer that resolves or closes the ticket (#status resolved with text) is the
    desk's final decision too: it carries the ADR paragraph, so the guard has no letter to
    send. Nothing changes for a complaint already decided."""
    row = records.for_ticket(session, ticket_id)
    if row is None or row.state != "complaint":
        return
    change = rules.final(facts(row), actor, now)
    records.write(row, change.values)
    queries.insert_event(session, "final_decision", ticket_id, actor=actor, **change.event)


def merged(session: Session, ticket_id: int, into: int) -> None:
    """A ticket merged into another: the other's complaint runs on and this one's guard stops
    (an ADR body's enquiry about it is still reminded of). When the other has no complaint
    record (opened before they were kept) and is the same player's, this one's becomes its:
    the deadline runs on. Another player's ticket never takes it: both records stay, this
    one ended as merged."""
    row = records.for_ticket(session, ticket_id)
    if row is None:
        return
    if records.move(session, ticket_id, into):
        queries.insert_event(session, "complaint_moved", into, moved_from=ticket_id,
                             final_due_at=rules.iso(row.final_due_at),
                             received_at=rules.iso(row.received_at))
        session.expire(row)
        return
    change = rules.merged_away(facts(row))
    records.write(row, change.values)
    if change.values.get("state") == rules.MERGED:
        queries.insert_event(session, "complaint_merged", ticket_id, into=into)


def _change(row: Complaint, profile: ComplaintProfile, command: Command, actor: str,
            now: datetime) -> rules.Change | None:
    argument = command.argument or ""
    if command.name == "final":
        return rules.final(facts(row), actor, now)
    if command.name == "extend":
        return rules.extend(facts(row), profile, argument, now)
    if command.name == "adr":
        entity, _, reference = argument.rpartition(" ")
        return rules.adr_referral(facts(row), entity or reference, reference if entity else "",
                                  now)
    if command.name == "adr-outcome":
        return rules.adr_outcome(argument, now)
    return None


def _extension_notice(session: Session, identity: Identity, row: Complaint,
                      now: datetime) -> None:
    """The written notice with the reason and the new deadline, to the player (none to an
    erased player's placeholder address: that is only recorded)."""
    ticket = records.guard_facts(session, row.ticket_id)
    if ticket.erased:
        suppressed(session, row.ticket_id, "extension")
        return
    ctx = LetterContext(ticket_number=ticket.number, language=ticket.language,
                        player=ticket.player, player_name=ticket.player_name,
                        subject=ticket.subject, received_at=row.received_at,
                        final_due_at=row.final_due_at, reason=row.extension_reason or "",
                        nonce=f"cx{row.id}", now=now)
    _queue(session, lambda: player_letter("extension", ctx, identity), "complaint_letter",
           row.ticket_id, [ticket.player], identity)


def suppressed(session: Session, ticket_id: int, letter: str) -> None:
    """A letter the player was owed, not written: their data was erased, nobody is left to
    write to. The record says so (`complaint_letter_suppressed`)."""
    queries.insert_event(session, "complaint_letter_suppressed", ticket_id, letter=letter,
                         reason="erased")


def _queue(session: Session, compose: Any, kind: str, ticket_id: int, to: list[str],
           identity: Identity) -> str:
    """Compose and enqueue (the outbox records the text on the ticket); "" or why not."""
    try:
        msg = compose()
    except UnsafeRecipient as err:  # a bad address: retrying would not help
        log.warning("not sent", extra={"fields": {"kind": kind, "ticket": ticket_id,
                                                  "reason": str(err)}})
        return str(err)
    # Due at once, whatever moment the pass stands for: a pass run for a moved clock
    # (`sla --once --now ... --apply`) sends its letters now, not on that day.
    outbox.enqueue(session, raw=mime.wire_bytes(msg), message_id=mime.message_id(msg),
                   envelope_from=identity.address, recipients=to, kind=kind,
                   ticket_id=ticket_id, shown=mime.shown(msg))
    return ""


# --- the deadline guard (one transaction per complaint) ---------------------------------

class GuardDesk(Protocol):
    """What the guard reads of the runtime: who writes, and the SLA staff addresses."""

    @property
    def identity(self) -> Identity: ...

    @property
    def sla(self) -> Any: ...  # daemon.sla.SlaOptions (not imported: sla imports us)


@dataclass
class GuardStats:
    due: int = 0
    reminders: int = 0
    letters: int = 0  # deadline letters to players (or handed to the head of support)
    lost: int = 0
    failed: int = 0
    done: list[tuple[int, str]] = field(default_factory=list)  # (ticket number, point)


def guard_pass(sessions: sessionmaker[Session], desk: GuardDesk, now: datetime,
               batch: int = 200) -> GuardStats:
    """Every complaint whose next point has come: its reminders or its deadline letter."""
    stats, seen = GuardStats(), set[int]()
    while True:
        with sessions.begin() as session:
            ids = records.due_complaints(session, now, batch)
        fresh = [cid for cid in ids if cid not in seen]
        seen.update(fresh)
        for cid in fresh:
            _guard_one(sessions, desk, cid, now, stats)
        if not fresh or len(ids) < batch:
            return stats


def _guard_one(sessions: sessionmaker[Session], desk: GuardDesk, complaint_id: int,
               now: datetime, stats: GuardStats) -> None:
    stats.due += 1
    try:
        with sessions.begin() as session:
            done = _Guard(desk, session, now).step(complaint_id)
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        raise  # the database is away: end the pass
    except Exception as err:  # noqa: BLE001 - one bad complaint must not stop the others
        stats.failed += 1
        log.error("complaint guard failed", extra={"fields": {
            "complaint": complaint_id, "error": type(err).__name__}})
        return
    if done is None:
        stats.lost += 1
        return
    for number, point in done:
        stats.done.append((number, point))
        if point == rules.DEADLINE:
            stats.letters += 1
        else:
            stats.reminders += 1
        log.info("complaint guard", extra={"fields": {"ticket": number, "point": point}})


class _Guard:
    def __init__(self, desk: GuardDesk, session: Session, now: datetime) -> None:
        self.identity, self.sla = desk.identity, desk.sla
        self.desk, self.session, self.now = desk, session, now
        self.staff_language = desk.identity.language

    def step(self, complaint_id: int) -> list[tuple[int, str]] | None:
        """The final deadline's points reached, then an ADR enquiry fallen due; None when
        another monitor (or an extension, or a decision) got there first."""
        row = records.lock(self.session, complaint_id)
        if row is None or row.next_action_at is None or row.next_action_at > self.now:
            return None
        ticket = records.guard_facts(self.session, row.ticket_id)
        self.identity = of_brand(self.desk, ticket.brand)  # its profile, its letters' From
        later, done = None, []
        if row.state == "complaint" and row.final_due_at is not None:
            step = rules.plan(facts(row), self.identity.complaints, self.now)
            if step.to_stage != row.stage:
                if not records.advance(self.session, row.id, row.stage, step.to_stage,
                                       row.final_due_at, step.next_action_at):
                    return None
                done = [(ticket.number, point) for point in step.sends
                        if self._point(row, ticket, point, step.to_stage)]
            later = step.next_action_at
        enquiry = row.enquiry_due_at if row.enquiry_reminded_at is None else None
        if enquiry is not None and enquiry <= self.now:
            if not records.mark_enquiry_reminded(self.session, row.id, self.now):
                return done or None
            self._remind(row, self._context(row, ticket, ENQUIRY, row.stage), ENQUIRY)
            done.append((ticket.number, ENQUIRY))
            enquiry = None
        row.next_action_at = rules.earliest(later, enquiry)
        return done

    def _context(self, row: Complaint, ticket: records.GuardFacts, point: str,
                 stage: int) -> LetterContext:
        return LetterContext(
            ticket_number=ticket.number, language=ticket.language, player=ticket.player,
            player_name=ticket.player_name, subject=ticket.subject,
            received_at=row.received_at, final_due_at=row.final_due_at, point=point,
            enquiry_due_at=row.enquiry_due_at, assignee=ticket.assignee,
            nonce=f"cg{row.id}{'e' if point == ENQUIRY else 's'}{stage}", now=self.now)

    def _point(self, row: Complaint, ticket: records.GuardFacts, point: str,
               stage: int) -> bool:
        """Do what the point calls for; False when it was a letter to an erased player,
        which is only recorded (the staff's reminders still go: the desk still owes the
        regulator its deadlines, and an ADR body its answer)."""
        ctx = self._context(row, ticket, point, stage)
        if point != rules.DEADLINE:
            self._remind(row, ctx, point)
        elif self.identity.deadline_action == "head_of_support" \
                and self.sla.head_of_support_address:
            self._hand_over(row, ctx, self.sla.head_of_support_address)
        elif ticket.erased:  # a clock moved after the erasure (a resume, an extension)
            suppressed(self.session, row.ticket_id, "deadlock")
            return False
        elif self._late(row, ticket):  # nobody has read it yet: a person sends the letter
            self._hand_over(row, ctx, self._late(row, ticket))
        else:
            if self.identity.deadline_action == "head_of_support":  # the settings refuse this
                log.warning("no head of support to hand the deadline letter to: sent to the "
                            "player", extra={"fields": {"ticket": ticket.number}})
            self._letter(row, ctx, ticket)
        return True

    def _to_staff(self) -> Identity:
        """The ticket's brand, in the staff's language (the desk's)."""
        return replace(self.identity, language=self.staff_language)

    def _late(self, row: Complaint, ticket: records.GuardFacts) -> str:
        """Who gets the letter of a complaint overdue when it was stored: the head of
        support, else the team lead; "" when it was not overdue (or nobody is there)."""
        if ticket.stored_at is None or not rules.overdue_at_receipt(row.final_due_at,
                                                                    ticket.stored_at):
            return ""
        return self.sla.head_of_support_address or self.sla.team_lead_address or ""

    def _staff(self, assignee: str | None) -> list[str]:
        head = self.sla.head_of_support_address
        found = [a for a in (assignee, head or self.sla.team_lead_address) if a]
        return list(dict.fromkeys(a.lower() for a in found))

    def _remind(self, row: Complaint, ctx: LetterContext, point: str) -> None:
        sent = []
        for i, to in enumerate(self._staff(ctx.assignee)):
            one = replace(ctx, nonce=f"{ctx.nonce}r{i}")
            if not _queue(self.session, lambda one=one, to=to: staff_letter(
                    "reminder", one, self._to_staff(), to), "complaint_reminder",
                    row.ticket_id, [to], self.identity):
                sent.append(to)
        due = row.enquiry_due_at if point == ENQUIRY else row.final_due_at
        queries.insert_event(self.session, "complaint_reminder", row.ticket_id, point=point,
                             due_at=rules.iso(due), recipients=sent)

    def _hand_over(self, row: Complaint, ctx: LetterContext, head: str) -> None:
        """deadline_action = "head_of_support": the head sends the letter (with #final)."""
        sent = []
        if not _queue(self.session, lambda: staff_letter(
                "handoff", ctx, self._to_staff(), head), "complaint_reminder", row.ticket_id,
                [head], self.identity):
            sent.append(head)
        queries.insert_event(self.session, "complaint_reminder", row.ticket_id,
                             point=rules.DEADLINE, final_due_at=rules.iso(row.final_due_at),
                             recipients=sent)

    def _letter(self, row: Complaint, ctx: LetterContext, ticket: records.GuardFacts) -> None:
        """The final-response letter to the player: the guard's final decision, late."""
        withheld = _queue(self.session, lambda: player_letter("deadlock", ctx, self.identity),
                          "complaint_letter", row.ticket_id, [ticket.player], self.identity)
        change = rules.final(facts(row), "guard", self.now)
        records.write(row, {**change.values, "letter_sent_at": None if withheld else self.now})
        queries.insert_event(self.session, "deadline_letter", row.ticket_id, in_time=False,
                             final_due_at=rules.iso(row.final_due_at),
                             **({"withheld": withheld} if withheld else {}))
        queries.insert_event(self.session, "final_decision", row.ticket_id, actor="guard",
                             **change.event)
