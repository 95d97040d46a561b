"""Complaint records in the database: insert, read (locked), change, the guard's due query
and its stage step.

Exactly once, as storage.sla: the guard moves a complaint's stage only by `advance`, an
UPDATE that names the stage and the deadline it read. Whoever commits first wins; another
monitor's UPDATE then matches no row (PostgreSQL re-reads the row after the first commits),
so it queues nothing. An extension or a final decision committed meanwhile changes the
deadline or the state, so a guard that read the old ones writes nothing either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Complaint, Contact, Erasure, Ticket

__all__ = ["GuardFacts", "advance", "by_reference", "due_complaints", "for_ticket", "paused",
           "guard_facts", "insert_complaint", "lock", "mark_enquiry_reminded", "move",
           "reference_words", "write"]

_T = Complaint.__table__
_C = _T.c

_DUE = (
    select(_C.id)
    .where(_C.next_action_at.is_not(None), _C.next_action_at <= bindparam("now"))
    .order_by(_C.next_action_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_ADVANCE = (
    update(_T)
    .where(_C.id == bindparam("cid"), _C.stage == bindparam("from_stage"),
           _C.final_due_at == bindparam("due"), _C.state == "complaint",
           _C.paused_at.is_(None))
    .values(stage=bindparam("to_stage"), next_action_at=bindparam("next_at"))
)


# One statement (ingest opens a complaint with every ticket): a ticket that already has
# its complaint (ticket_id is unique) gets no row back, and nothing is written.
_INSERT = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(_T)
    .on_conflict_do_nothing(index_elements=["ticket_id"]).returning(_C.id)
    for dialect in (postgresql, sqlite)
}


def insert_complaint(session: Session, ticket_id: int, values: dict[str, Any]) -> int | None:
    """The complaint of a ticket; None (nothing written) when it already has one."""
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    return session.execute(_INSERT[dialect], {**values, "ticket_id": ticket_id}).scalar()


_PAUSED = select(_C.paused_at.is_not(None)).where(_C.ticket_id == bindparam("tid")) \
    .with_for_update()


def paused(session: Session, ticket_id: int) -> bool:
    """Whether the ticket's complaint clock stands still (waits on the player), read under
    the lock `for_ticket` takes: one cheap statement for the answer that changes nothing."""
    return bool(session.scalar(_PAUSED, {"tid": ticket_id}))


def for_ticket(session: Session, ticket_id: int) -> Complaint | None:
    """The ticket's complaint, locked for the rest of the transaction (the guard's too), as
    the lock found it: a copy read earlier in the session (by_reference) is overwritten."""
    return session.scalar(select(Complaint).where(Complaint.ticket_id == ticket_id)
                          .with_for_update().execution_options(populate_existing=True))


# A case reference as an ADR body writes it: letters and digits, joined by - / . _ (FP-77,
# ADR/2026/0031); the punctuation around it in a subject ("Case FP-77:") is not part of it.
_REFERENCE_WORD = re.compile(r"\w+(?:[-/._]\w+)*")
_AROUND = "\"'()[]<>{},.;:!?"


def reference_words(subject: str) -> list[str]:
    """What in a subject may be a case reference, lower-case (at most 100): each word between
    spaces without the punctuation around it (IBAS:12345), and each run of letters and
    digits joined by - / . _ in it (FP-77 of "Case#FP-77")."""
    spaced = [w.strip(_AROUND) for w in subject.split()]
    joined = _REFERENCE_WORD.findall(subject)
    return list(dict.fromkeys(w.lower() for w in (*spaced, *joined) if w))[:100]


def by_reference(session: Session, subject: str) -> Complaint | None:
    """The complaint whose ADR reference the subject names as a whole word (an ADR body's
    own case number): FP-77 is not found in "FP-770", nor FP-7 in "FP-77"."""
    words = reference_words(subject)
    if not words:
        return None
    return session.scalar(select(Complaint).where(func.lower(Complaint.adr_reference)
                                                  .in_(words))
                          .order_by(Complaint.id.desc()).limit(1))


def move(session: Session, from_ticket: int, to_ticket: int) -> bool:
    """The complaint of `from_ticket` becomes `to_ticket`'s, which has none (a ticket opened
    before complaints were recorded) and is the same player's; False when there is nothing
    to move, no room, or the other ticket is another player's (a complaint is the record of
    what one player asked: it never changes hands).

    Both tickets' rows are locked first (in id order), so two merges into one ticket at once
    take turns on PostgreSQL: the second reads the first's complaint and moves nothing. The
    update runs in a savepoint all the same, so a clash with the unique ticket_id is a False,
    never an error that would quarantine the agent's mail."""
    requesters = {row.id: row.requester_id for row in session.execute(
        select(Ticket.id, Ticket.requester_id).where(Ticket.id.in_((from_ticket, to_ticket)))
        .order_by(Ticket.id).with_for_update())}
    if len(requesters) != 2 or requesters[from_ticket] != requesters[to_ticket]:
        return False
    if session.scalar(select(_C.id).where(_C.ticket_id == to_ticket)) is not None:
        return False
    try:
        with session.begin_nested():
            done = session.execute(update(_T).where(_C.ticket_id == from_ticket)
                                   .values(ticket_id=to_ticket))
    except IntegrityError:
        return False
    return done.rowcount == 1  # type: ignore[attr-defined]


def write(row: Complaint, values: dict[str, Any]) -> None:
    for key, value in values.items():
        setattr(row, key, value)


def due_complaints(session: Session, now: datetime, limit: int) -> list[int]:
    return list(session.scalars(_DUE, {"now": now, "limit": limit}))


def lock(session: Session, complaint_id: int) -> Complaint | None:
    """The row as it is now (not as the due query saw it), locked: no SKIP LOCKED, so a row
    another monitor holds is waited for and then read as it left it."""
    session.expire_all()
    return session.scalar(select(Complaint).where(Complaint.id == complaint_id)
                          .with_for_update())


_ENQUIRY_REMINDED = (
    update(_T)
    .where(_C.id == bindparam("cid"), _C.enquiry_due_at.is_not(None),
           _C.enquiry_reminded_at.is_(None))
    .values(enquiry_reminded_at=bindparam("now"))
)


def mark_enquiry_reminded(session: Session, complaint_id: int, now: datetime) -> bool:
    """The ADR enquiry's reminder, taken once (as `advance`): False when another took it."""
    done = session.execute(_ENQUIRY_REMINDED, {"cid": complaint_id, "now": now})
    return done.rowcount == 1  # type: ignore[attr-defined]


def advance(session: Session, complaint_id: int, from_stage: int, to_stage: int,
            due: datetime, next_at: datetime | None) -> bool:
    done = session.execute(_ADVANCE, {"cid": complaint_id, "from_stage": from_stage,
                                      "to_stage": to_stage, "due": due, "next_at": next_at})
    return done.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class GuardFacts:
    """What the guard's mail says of the ticket, and to whom the player's letter goes."""

    number: int
    subject: str
    language: str
    assignee: str | None
    player: str
    player_name: str
    brand: str = "default"  # whose name the letters go out in
    erased: bool = False  # the player's data was erased: nobody is left to write to
    stored_at: datetime | None = None  # when the ticket was opened here (not its receipt)


def guard_facts(session: Session, ticket_id: int) -> GuardFacts:
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    player = session.get(Contact, ticket.requester_id)
    assert player is not None
    erased = session.scalar(select(Erasure.id).where(Erasure.contact_id == player.id)
                            .limit(1)) is not None
    return GuardFacts(ticket.number, ticket.subject, ticket.language, ticket.assignee,
                      player.address, player.name or "", ticket.brand, erased,
                      ticket.created_at)
