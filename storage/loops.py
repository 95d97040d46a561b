"""The queries the loop limits need (DESIGN invariant 3): each one indexed and bounded.

What counts is kept in `auto_mails`, one row per recipient of an automatic mail; a count
stops growing at the limit (a blocked mail adds no row), so a runaway ticket never makes
its own check slower. The same ledger keeps the one sign of a responder that must be
counted per sender, an answer dated within seconds of our mail (kind `quick_answer`, no
outbox row): so no event is written only to be counted. Every count takes only the rows
within its window; `prune`, run by the daemon's records task now and then and by
`ticketd retention --once` (never on the path of a mail), removes the rows no window
reaches. The decisions are in responders/loops.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ScalarSelect, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from storage.models import AutoMail, Contact, Message, OutboxMessage, Ticket, utcnow

_AUTO = AutoMail.__table__
_INSERT = insert(_AUTO)
QUICK_ANSWER = "quick_answer"  # a mark of a sender's answer, not a mail of ours


@dataclass(frozen=True)
class Counts:
    ticket: int  # automatic mails about the ticket within the short window
    ticket_day: int  # ... within the long one
    address: int  # to the address within its window


def counts(session: Session, ticket_id: int | None, address: str, ticket_since: datetime,
           ticket_day_since: datetime, address_since: datetime) -> Counts:
    """The automatic mails about this ticket since `ticket_since` and `ticket_day_since`,
    and to this address since `address_since`: index range scans in one statement."""
    per_address = (select(func.count()).select_from(_AUTO)
                   .where(_AUTO.c.address == address, _AUTO.c.created_at >= address_since,
                          _AUTO.c.outbox_id.is_not(None))
                   .scalar_subquery())
    if ticket_id is None:
        return Counts(0, 0, int(session.scalar(select(per_address)) or 0))
    row = session.execute(select(_about(ticket_id, ticket_since),
                                 _about(ticket_id, ticket_day_since), per_address)).one()
    return Counts(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def _about(ticket_id: int, since: datetime) -> ScalarSelect[int]:
    # A mail to two agents is one mail about the ticket: distinct outbox rows (a mark has
    # none, and COUNT DISTINCT skips it).
    return (select(func.count(func.distinct(_AUTO.c.outbox_id))).select_from(_AUTO)
            .where(_AUTO.c.ticket_id == ticket_id, _AUTO.c.created_at >= since)
            .scalar_subquery())


def count_kind(session: Session, address: str, kind: str, since: datetime) -> int:
    """Rows of one kind for this address since `since` (acknowledgements, quick answers)."""
    return int(session.scalar(select(func.count()).select_from(_AUTO).where(
        _AUTO.c.address == address.lower(), _AUTO.c.created_at >= since,
        _AUTO.c.kind == kind)) or 0)


def standing(session: Session, address: str, kind: str, short_since: datetime,
             long_since: datetime) -> tuple[bool, int, int]:
    """Whether the address is bouncing, and its rows of one kind since `short_since` and
    since `long_since`, in one statement: what every acknowledgement asks."""
    row = session.execute(_STANDING, {"address": address.lower(), "contact": address,
                                      "kind": kind, "short": short_since,
                                      "long": long_since}).one()
    return bool(row[0]), int(row[1] or 0), int(row[2] or 0)


# Built once: composing the statement anew cost more than running it (every new ticket's).
_COUNTS = (select(func.count().filter(_AUTO.c.created_at >= bindparam("short")), func.count())
           .select_from(_AUTO)
           .where(_AUTO.c.address == bindparam("address"),
                  _AUTO.c.created_at >= bindparam("long"), _AUTO.c.kind == bindparam("kind"))
           .subquery())
_STANDING = select(
    select(Contact.bouncing).where(Contact.address == bindparam("contact")).scalar_subquery(),
    *_COUNTS.c)


def record(session: Session, ticket_id: int | None, addresses: Sequence[str], kind: str,
           outbox_id: int | None, now: datetime | None = None) -> None:
    now = now or utcnow()
    session.execute(_INSERT, [{"ticket_id": ticket_id, "address": a.lower(), "kind": kind,
                               "outbox_id": outbox_id, "created_at": now} for a in addresses])


def prune(session: Session, before: datetime) -> int:
    """Rows no window reaches any more (the addresses in them are personal data): for the
    records task, not for the check of each mail, where a DELETE would make every daemon
    of a PostgreSQL desk wait on the others' row locks. The rows removed."""
    return int(session.execute(delete(_AUTO).where(_AUTO.c.created_at < before)).rowcount or 0)


def expired(session: Session, before: datetime) -> int:
    """The rows `prune` would remove (a dry run)."""
    return int(session.scalar(select(func.count()).select_from(_AUTO)
                              .where(_AUTO.c.created_at < before)) or 0)


def stopped_at(session: Session, ticket_id: int) -> datetime | None:
    return session.scalar(select(Ticket.loop_stopped_at).where(Ticket.id == ticket_id))


def stop(session: Session, ticket_id: int, now: datetime) -> bool:
    """Flag the ticket; True only for the call that flagged it (one summary, not one per
    blocked mail, even with several daemons)."""
    done = session.execute(update(Ticket).where(Ticket.id == ticket_id,
                                                Ticket.loop_stopped_at.is_(None))
                           .values(loop_stopped_at=now))
    return bool(done.rowcount)


def resume(session: Session, ticket_id: int) -> bool:
    """A person acted: the flag goes and the ticket's count starts again. The rows stay
    for the counts per address (acknowledgements, quick answers): they leave the ticket."""
    done = session.execute(update(Ticket).where(Ticket.id == ticket_id,
                                                Ticket.loop_stopped_at.is_not(None))
                           .values(loop_stopped_at=None))
    if done.rowcount:
        session.execute(update(_AUTO).where(_AUTO.c.ticket_id == ticket_id)
                        .values(ticket_id=None))
    return bool(done.rowcount)


@dataclass(frozen=True)
class LastNotification:
    outbox_id: int
    state: str
    attempts: int
    due_at: datetime  # when it was (or will be) sent: next_attempt_at, or sent_at once sent


_RECENT_NOTIFICATIONS = 200  # of one ticket: far more than its limits let out in a window


def last_notification(session: Session, ticket_id: int, address: str) -> LastNotification | None:
    """The newest notification of the ticket to `address`, unless an agent's answer was
    relayed after it (then the player's next mail is news again). Per recipient: after a
    reassignment the new assignee's first notification waits on nobody else's. Read from
    the outbox (indexed by ticket), which each notification row names one recipient in."""
    wanted = address.lower()
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.attempts,
               OutboxMessage.next_attempt_at, OutboxMessage.sent_at, OutboxMessage.recipients)
        .where(OutboxMessage.ticket_id == ticket_id, OutboxMessage.kind == "notification")
        .order_by(OutboxMessage.id.desc()).limit(_RECENT_NOTIFICATIONS)).all()
    row = next((r for r in rows if wanted in {a.lower() for a in r[5] or ()}), None)
    if row is None:
        return None
    relayed = session.scalar(select(func.max(OutboxMessage.id)).where(
        OutboxMessage.ticket_id == ticket_id, OutboxMessage.kind == "relay"))
    if relayed is not None and relayed > row[0]:
        return None
    return LastNotification(row[0], row[1], row[2], row[4] or row[3])


def defer(session: Session, outbox_id: int, until: datetime) -> None:
    session.execute(update(OutboxMessage).where(OutboxMessage.id == outbox_id)
                    .values(next_attempt_at=until))


def sent_to(session: Session, message_ids: Sequence[str], address: str) -> datetime | None:
    """When the newest of these mails of ours went to `address` (its outbox row, by the
    unique Message-ID index), or None."""
    ids = [m.strip("<>") for m in message_ids if m][:20]
    if not ids:
        return None
    rows = session.execute(select(OutboxMessage.sent_at, OutboxMessage.recipients,
                                  OutboxMessage.accepted)
                           .where(OutboxMessage.message_id.in_(ids))).all()
    times = [sent for sent, recipients, accepted in rows if sent is not None
             and address.lower() in {a.lower() for a in (*recipients, *accepted)}]
    return max(times) if times else None


def last_sent_to(session: Session, address: str, since: datetime) -> datetime | None:
    """When our newest automatic mail to `address` queued since `since` was sent, or None:
    the ledger's address index, then each row's outbox entry."""
    return session.scalar(
        select(func.max(OutboxMessage.sent_at))
        .join(_AUTO, _AUTO.c.outbox_id == OutboxMessage.id)
        .where(_AUTO.c.address == address.lower(), _AUTO.c.created_at >= since))


def recent_texts(session: Session, ticket_id: int, sender: str, since: datetime,
                 limit: int = 20) -> list[str]:
    """The visible text of the sender's latest messages on the ticket (any direction: an
    agent's reply is stored as outgoing)."""
    return list(session.scalars(
        select(Message.visible_text).where(Message.ticket_id == ticket_id,
                                           Message.sender == sender, Message.created_at >= since)
        .order_by(Message.id.desc()).limit(limit)))
