"""The queries the loop limits need (DESIGN invariant 3): each one indexed and bounded.

What counts is kept in `auto_mails`, one row per recipient of an automatic mail; a count
stops growing at the limit (a blocked mail adds no row), so a runaway ticket never makes
its own check slower. The decisions are in responders/loops.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from storage.models import AutoMail, Message, OutboxMessage, Ticket, utcnow

_AUTO = AutoMail.__table__
_INSERT = insert(_AUTO)


def counts(session: Session, ticket_id: int | None, address: str, ticket_since: datetime,
           address_since: datetime) -> tuple[int, int]:
    """(automatic mails about this ticket since `ticket_since`, to this address since
    `address_since`): two index range scans in one statement."""
    # A mail to two agents is one mail about the ticket: distinct outbox rows.
    per_ticket = (select(func.count(func.distinct(_AUTO.c.outbox_id))).select_from(_AUTO)
                  .where(_AUTO.c.ticket_id == ticket_id, _AUTO.c.created_at >= ticket_since)
                  .scalar_subquery())
    per_address = (select(func.count()).select_from(_AUTO)
                   .where(_AUTO.c.address == address, _AUTO.c.created_at >= address_since)
                   .scalar_subquery())
    row = session.execute(select(per_ticket if ticket_id is not None else 0, per_address)).one()
    return int(row[0] or 0), int(row[1] or 0)


def record(session: Session, ticket_id: int | None, addresses: Sequence[str], kind: str,
           outbox_id: int | None, now: datetime | None = None) -> None:
    now = now or utcnow()
    session.execute(_INSERT, [{"ticket_id": ticket_id, "address": a.lower(), "kind": kind,
                               "outbox_id": outbox_id, "created_at": now} for a in addresses])


def prune(session: Session, before: datetime) -> None:
    """Rows no window reaches any more: the addresses in them are personal data."""
    session.execute(delete(_AUTO).where(_AUTO.c.created_at < before))


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
    """A person acted: the flag goes and the ticket's count starts again."""
    done = session.execute(update(Ticket).where(Ticket.id == ticket_id,
                                                Ticket.loop_stopped_at.is_not(None))
                           .values(loop_stopped_at=None))
    if done.rowcount:
        session.execute(delete(_AUTO).where(_AUTO.c.ticket_id == ticket_id))
    return bool(done.rowcount)


@dataclass(frozen=True)
class LastNotification:
    outbox_id: int
    state: str
    attempts: int
    due_at: datetime  # when it was (or will be) sent: next_attempt_at, or sent_at once sent


def last_notification(session: Session, ticket_id: int) -> LastNotification | None:
    """The newest notification queued for the ticket within the count's reach, unless an
    agent's answer was relayed after it (then the player's next mail is news again)."""
    newest = (select(_AUTO.c.kind, func.max(_AUTO.c.outbox_id))
              .where(_AUTO.c.ticket_id == ticket_id, _AUTO.c.kind.in_(("notification", "relay")))
              .group_by(_AUTO.c.kind))
    latest = dict(session.execute(newest).all())
    notified = latest.get("notification")
    if notified is None or (latest.get("relay") or 0) > notified:
        return None
    row = session.execute(
        select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.attempts,
               OutboxMessage.next_attempt_at, OutboxMessage.sent_at)
        .where(OutboxMessage.id == notified)).first()
    if row is None:
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


def recent_texts(session: Session, ticket_id: int, sender: str, since: datetime,
                 limit: int = 20) -> list[str]:
    """The visible text of the sender's latest messages on the ticket (any direction: an
    agent's reply is stored as outgoing)."""
    return list(session.scalars(
        select(Message.visible_text).where(Message.ticket_id == ticket_id,
                                           Message.sender == sender, Message.created_at >= since)
        .order_by(Message.id.desc()).limit(limit)))
