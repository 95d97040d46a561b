"""Legal holds: records that erasure and retention must leave alone.

A hold covers one ticket, or one contact and so every ticket that contact requested or took
part in. Callers record their own event (placing or releasing a hold is an audited act).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from storage.models import Contact, LegalHold, Participant, Ticket, utcnow


def place(session: Session, *, reason: str, by: str, ticket_id: int | None = None,
          contact_id: int | None = None) -> int:
    if (ticket_id is None) == (contact_id is None):
        raise ValueError("a hold names exactly one ticket or one contact")
    hold = LegalHold(ticket_id=ticket_id, contact_id=contact_id, reason=reason, placed_by=by)
    session.add(hold)
    session.flush()
    return hold.id


def release(session: Session, *, by: str, ticket_id: int | None = None,
            contact_id: int | None = None, when: datetime | None = None) -> int:
    """End the active holds on a ticket or a contact; the number ended."""
    target = (LegalHold.ticket_id == ticket_id if ticket_id is not None
              else LegalHold.contact_id == contact_id)
    result = session.execute(
        update(LegalHold).where(target, LegalHold.released_at.is_(None))
        .values(released_at=when or utcnow(), released_by=by)
    )
    return result.rowcount or 0


def held_ticket_ids() -> Select[tuple[int]]:
    """The ids of every ticket an active hold covers, as a subquery for `NOT IN` filters."""
    active = LegalHold.released_at.is_(None)
    held_contacts = select(LegalHold.contact_id).where(active, LegalHold.contact_id.is_not(None))
    held_addresses = select(Contact.address).where(Contact.id.in_(held_contacts))
    return (
        select(LegalHold.ticket_id).where(active, LegalHold.ticket_id.is_not(None))
        .union(
            select(Ticket.id).where(Ticket.requester_id.in_(held_contacts)),
            select(Participant.ticket_id).where(Participant.address.in_(held_addresses)),
        )
    )


def holds_covering_contact(session: Session, contact_id: int) -> list[LegalHold]:
    """Active holds on the contact itself or on any ticket they requested or took part in."""
    address = select(Contact.address).where(Contact.id == contact_id).scalar_subquery()
    their_tickets = select(Ticket.id).where(Ticket.requester_id == contact_id).union(
        select(Participant.ticket_id).where(Participant.address == address))
    return list(session.scalars(
        select(LegalHold).where(
            LegalHold.released_at.is_(None),
            or_(LegalHold.contact_id == contact_id, LegalHold.ticket_id.in_(their_tickets)),
        ).order_by(LegalHold.id)
    ))


def is_ticket_held(session: Session, ticket_id: int) -> bool:
    return session.scalar(
        select(Ticket.id).where(Ticket.id == ticket_id, Ticket.id.in_(held_ticket_ids()))
    ) is not None
