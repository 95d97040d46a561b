"""The queries the rest of ticketd needs, in one place per decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from storage.models import (
    TICKET_NUMBER_OFFSET,
    Contact,
    Event,
    IngestRecord,
    MailboxCursor,
    Message,
    OutboxMessage,
    Participant,
    StoredAttachment,
    Ticket,
    utcnow,
)


def find_ingested(session: Session, key: str) -> IngestRecord | None:
    return session.scalar(select(IngestRecord).where(IngestRecord.ingest_key == key))


# Statements ingest runs for every mail are built once with bound parameters: SQLAlchemy
# then compiles each once, instead of coercing literal values on every call.
_INGESTED = (
    select(IngestRecord.outcome, IngestRecord.reason, Ticket.number)
    .outerjoin(Ticket, Ticket.id == IngestRecord.ticket_id)
    .where(IngestRecord.ingest_key == bindparam("key"))
)
_CONTACT_ID = select(Contact.id).where(Contact.address == bindparam("address"))
_NEW_CONTACT = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(Contact)
    .values(address=bindparam("address"), name=bindparam("name"), language=bindparam("language"),
            bouncing=False, created_at=bindparam("now"))
    .on_conflict_do_nothing(index_elements=["address"])
    for dialect in (postgresql, sqlite)
}


def ingested_outcome(session: Session, key: str) -> tuple[str, str, int | None] | None:
    """(outcome, reason, ticket number) of a mail already ingested under this key."""
    row = session.execute(_INGESTED, {"key": key}).first()
    return (row[0], row[1], row[2]) if row else None


def contact_id(session: Session, address: str, name: str = "", language: str | None = None) -> int:
    """The id of an address's contact, created when new; safe against a concurrent creator."""
    values = _no_nul({"address": address, "name": name, "language": language, "now": utcnow()})
    found = session.scalar(_CONTACT_ID, {"address": values["address"]})
    if found is None:
        dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
        session.execute(_NEW_CONTACT[dialect], values)
        found = session.scalar(_CONTACT_ID, {"address": values["address"]})
    assert found is not None
    return found


@dataclass(frozen=True)
class TicketFacts:
    """What threading decides on: a ticket's state and whether the sender takes part in it."""

    id: int
    number: int
    status: str
    resolved_at: datetime | None
    participant: bool  # the sender is its requester or a recorded participant


_PARTICIPATES = select(Participant.id).where(
    Participant.ticket_id == Ticket.id, Participant.address == bindparam("sender")).exists()
_FACTS = (select(Ticket.id, Ticket.number, Ticket.status, Ticket.resolved_at,
                 (Contact.address == bindparam("sender")) | _PARTICIPATES)
          .join(Contact, Contact.id == Ticket.requester_id))
_FACTS_BY_REFERENCE = _FACTS.where(Ticket.id.in_(
    select(Message.ticket_id).where(Message.header_message_id.in_(bindparam("ids", expanding=True)))
    .order_by(Message.id.desc()).limit(1).scalar_subquery()))
_FACTS_BY_NUMBER = _FACTS.where(Ticket.number.in_(bindparam("numbers", expanding=True)))


def ticket_facts(session: Session, sender: str, *, message_ids: Sequence[str] = (),
                 numbers: Sequence[int] = ()) -> list[TicketFacts]:
    """The one threading lookup: tickets named by stored Message-IDs (newest message first) or
    by public numbers, each with the sender's participation. Indexed equality lookups only."""
    ids = [m for m in message_ids if m][-50:]  # a References chain may be long; newest last
    if ids:
        rows = session.execute(_FACTS_BY_REFERENCE, {"sender": sender, "ids": ids}).all()
    elif numbers:
        rows = session.execute(_FACTS_BY_NUMBER, {"sender": sender,
                                                  "numbers": list(numbers)[:20]}).all()
    else:
        return []
    facts = [TicketFacts(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]
    if numbers and not ids:
        order = {n: i for i, n in enumerate(numbers)}
        facts.sort(key=lambda f: order.get(f.number, 0))
    return facts


_NEW_PARTICIPANT = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(Participant)
    .values(ticket_id=bindparam("tid"), address=bindparam("address"), role=bindparam("role"),
            created_at=bindparam("now"))
    .on_conflict_do_nothing(index_elements=["ticket_id", "address"])
    for dialect in (postgresql, sqlite)
}


def add_participants(session: Session, ticket_id: int, addresses: Sequence[tuple[str, str]]) -> None:
    """Record (address, role) pairs on a ticket; an address already there is kept as it was.
    One statement for all of them: a mail may carry thousands of recipients."""
    if not addresses:
        return
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    now = utcnow()
    session.execute(_NEW_PARTICIPANT[dialect], [
        {"tid": ticket_id, "address": address.replace("\x00", ""), "role": role, "now": now}
        for address, role in addresses
    ])


def reopen_ticket(session: Session, ticket_id: int) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(
        status="open", resolved_at=None, updated_at=utcnow()))


def mark_appeal(session: Session, ticket_id: int) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(
        appeal_requested_at=utcnow()))


@dataclass(frozen=True)
class TicketSummary:
    id: int
    number: int
    category: str
    priority: str
    language: str


def ticket_summary(session: Session, ticket_id: int) -> TicketSummary:
    row = session.execute(select(Ticket.id, Ticket.number, Ticket.category, Ticket.priority,
                                 Ticket.language).where(Ticket.id == ticket_id)).one()
    return TicketSummary(*row)


def ticket_number(session: Session, ticket_id: int) -> int | None:
    return session.scalar(select(Ticket.number).where(Ticket.id == ticket_id))


def outbox_origin(session: Session, message_id: str | None) -> tuple[int | None, list[str]] | None:
    """(ticket id, recipients) of the mail we sent with this Message-ID, if we sent it."""
    if not message_id:
        return None
    row = session.execute(select(OutboxMessage.ticket_id, OutboxMessage.recipients, OutboxMessage.accepted)
                          .where(OutboxMessage.message_id == message_id)).first()
    if row is None:
        return None
    return row[0], list(dict.fromkeys([*(row[1] or []), *(row[2] or [])]))


def contact_bouncing(session: Session, address: str) -> bool:
    return bool(session.scalar(select(Contact.bouncing).where(Contact.address == address)))


def mark_bouncing(session: Session, address: str) -> None:
    session.execute(update(Contact).where(Contact.address == address).values(bouncing=True))


def count_events(session: Session, kind: str, actor: str, short: timedelta,
                 long: timedelta) -> tuple[int, int]:
    """Events of a kind by one actor within a short and a long window, in one indexed query
    (kind, actor, created_at)."""
    now = utcnow()
    row = session.execute(
        select(func.count().filter(Event.created_at >= now - short), func.count())
        .select_from(Event)
        .where(Event.kind == kind, Event.actor == actor, Event.created_at >= now - long)
    ).one()
    return row[0] or 0, row[1] or 0


_STORED_INBOUND = select(Message.ticket_id).where(
    Message.header_message_id == bindparam("mid"), Message.direction == "in",
    Message.sender == bindparam("sender")).limit(1)


def stored_inbound_message(session: Session, message_id: str, sender: str) -> int | None:
    """The ticket of an incoming message already stored under this Message-ID from this sender."""
    return session.scalar(_STORED_INBOUND, {"mid": message_id, "sender": sender})


# Ingest runs these for every mail: constant Core statements with parameters,
# compiled once and cached, instead of ORM units of work.
_TICKETS, _MESSAGES = Ticket.__table__, Message.__table__
_INSERT_TICKET = insert(_TICKETS).returning(_TICKETS.c.id)
_NUMBER_TICKET = update(_TICKETS).where(_TICKETS.c.id == bindparam("tid")).values(
    number=bindparam("number"))
_TOUCH_TICKET = update(_TICKETS).where(_TICKETS.c.id == bindparam("tid")).values(
    updated_at=bindparam("now"))
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_INSERT_ATTACHMENT = insert(StoredAttachment.__table__)
_INSERT_RECORD = insert(IngestRecord.__table__)
_INSERT_EVENT = insert(Event.__table__)


def _no_nul(values: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL text cannot hold NUL; mail text sometimes does. The raw mail keeps it."""
    return {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in values.items()}


def insert_ticket(session: Session, **values: Any) -> tuple[int, int]:
    """A new ticket's (id, public number)."""
    now = utcnow()
    values = _no_nul({"status": "open", "created_at": now, "updated_at": now, **values})
    ticket_id = session.execute(_INSERT_TICKET, values).scalar_one()
    number = ticket_id + TICKET_NUMBER_OFFSET
    session.execute(_NUMBER_TICKET, {"tid": ticket_id, "number": number})
    return ticket_id, number


def insert_message(session: Session, **values: Any) -> int:
    return session.execute(_INSERT_MESSAGE, _no_nul(values)).scalar_one()


def insert_attachments(session: Session, message_id: int, parts: Sequence[Any]) -> None:
    if parts:
        session.execute(_INSERT_ATTACHMENT, [
            {"message_id": message_id, "filename": p.filename.replace("\x00", ""), "content_type": p.content_type,
             "size": p.size, "sha256": p.sha256, "inline": p.inline, "content_id": p.content_id}
            for p in parts
        ])


def touch_ticket(session: Session, ticket_id: int) -> None:
    session.execute(_TOUCH_TICKET, {"tid": ticket_id, "now": utcnow()})


def insert_ingest_record(session: Session, **values: Any) -> None:
    session.execute(_INSERT_RECORD, _no_nul(values))


def insert_event(
    session: Session, kind: str, ticket_id: int | None = None, actor: str = "system", **data: Any
) -> None:
    session.execute(_INSERT_EVENT, {"ticket_id": ticket_id, "kind": kind, "actor": actor, "data": data})


def ticket_by_ref(session: Session, ref: str | int) -> Ticket | None:
    """A ticket by its public number (10234 or "#10234")."""
    text = str(ref).strip().lstrip("#")
    if not text.isdigit():
        return None
    return session.scalar(
        select(Ticket)
        .where(Ticket.number == int(text))
        .options(selectinload(Ticket.messages).selectinload(Message.attachments))
    )


def list_tickets(session: Session, status: str | None = None, limit: int = 200) -> list[Ticket]:
    query = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if status:
        query = query.where(Ticket.status == status)
    return list(session.scalars(query))


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all()
    return {status: count for status, count in rows}


def count_tickets_of(session: Session, requester_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Ticket)
                          .where(Ticket.requester_id == requester_id)) or 0


def list_events(
    session: Session, ticket_ref: str | None = None, kind: str | None = None, limit: int = 100
) -> list[Event]:
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if ticket_ref:
        ticket = ticket_by_ref(session, ticket_ref)
        query = query.where(Event.ticket_id == (ticket.id if ticket else -1))
    if kind:
        query = query.where(Event.kind == kind)
    return list(session.scalars(query))


def get_cursor(session: Session, mailbox: str) -> MailboxCursor | None:
    return session.scalar(select(MailboxCursor).where(MailboxCursor.mailbox == mailbox))


def save_cursor(session: Session, mailbox: str, uidvalidity: int, last_uid: int) -> bool:
    """Store the mailbox position; True when UIDVALIDITY changed since the last save."""
    cursor = get_cursor(session, mailbox)
    if cursor is None:
        session.add(MailboxCursor(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid))
        return False
    changed = cursor.uidvalidity != uidvalidity
    if changed:
        cursor.uidvalidity, cursor.last_uid = uidvalidity, last_uid
    else:
        cursor.last_uid = max(cursor.last_uid, last_uid)
    cursor.updated_at = utcnow()
    return changed


def ticket_as_dict(ticket: Ticket) -> dict[str, Any]:
    """The JSON shape of `ticketd show`; other tools read these names."""
    return {
        "id": ticket.id,
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "category": ticket.category,
        "priority": ticket.priority,
        "language": ticket.language,
        "requester": ticket.requester.address,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "linked_ticket": ticket.linked_ticket_id,
        "messages": [_message_as_dict(m) for m in ticket.messages],
    }


INTERNAL_KINDS = frozenset({"note", "held", "refused"})


def _message_as_dict(message: Message) -> dict[str, Any]:
    return {
        "direction": message.direction,
        "kind": message.kind,
        "from": message.sender,
        "from_name": message.sender_name,
        "subject": message.subject,
        "message_id": message.header_message_id,
        "date": _iso(message.created_at),
        "text": message.visible_text,
        # Notes, held and refused agent mail are for agents only; the player never sees them.
        "visibility": "internal" if message.kind in INTERNAL_KINDS else "public",
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in message.attachments
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
