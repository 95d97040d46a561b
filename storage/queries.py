"""The queries the rest of ticketd needs, in one place per decision."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Insert, bindparam, cast, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from parsers.outgoing import sent_text
from storage.models import (
    STATUSES,
    TICKET_NUMBER_OFFSET,
    Contact,
    Event,
    IngestRecord,
    MailboxCursor,
    Message,
    OutboxMessage,
    Participant,
    SlaClock,
    StoredAttachment,
    Ticket,
    utcnow,
)


def find_ingested(session: Session, key: str) -> IngestRecord | None:
    flush_held(session)
    return session.scalar(select(IngestRecord).where(IngestRecord.ingest_key == key))


# Statements ingest runs for every mail are built once with bound parameters: SQLAlchemy
# then compiles each once, instead of coercing literal values on every call.
_INGESTED = (
    select(IngestRecord.outcome, IngestRecord.reason, Ticket.number)
    .outerjoin(Ticket, Ticket.id == IngestRecord.ticket_id)
    .where(IngestRecord.ingest_key == bindparam("key"))
)
_INGESTED_CONTENT = (
    select(IngestRecord.outcome, IngestRecord.reason, Ticket.number, IngestRecord.ingest_key)
    .outerjoin(Ticket, Ticket.id == IngestRecord.ticket_id)
    .where(IngestRecord.content_sha256 == bindparam("content"))
    .order_by(IngestRecord.id).limit(1)
)
_CONTACT_ID = select(Contact.id).where(Contact.address == bindparam("address"))
_NEW_CONTACT = {
    dialect.__name__.rpartition(".")[2]: dialect.insert(Contact)
    .values(address=bindparam("address"), name=bindparam("name"), language=bindparam("language"),
            bouncing=False, created_at=bindparam("now"))
    .on_conflict_do_nothing(index_elements=["address"])
    for dialect in (postgresql, sqlite)
}


_INGESTED_AMONG = (
    select(IngestRecord.ingest_key, IngestRecord.content_sha256, IngestRecord.outcome,
           IngestRecord.reason, Ticket.number)
    .outerjoin(Ticket, Ticket.id == IngestRecord.ticket_id)
    .where(IngestRecord.ingest_key.in_(bindparam("keys", expanding=True))
           | IngestRecord.content_sha256.in_(bindparam("contents", expanding=True)))
    .order_by(IngestRecord.id)
)


def ingested_among(session: Session, keys: Sequence[str], contents: Sequence[str],
                   ) -> list[tuple[str, str | None, str, str, int | None]]:
    """(ingest key, content digest, outcome, reason, ticket number) of every mail already
    ingested under one of `keys` or with one of `contents`, oldest first: a batch's
    `ingested_outcome` and `ingested_copy` in one statement."""
    flush_held(session)
    rows = session.execute(_INGESTED_AMONG, {"keys": list(keys), "contents": list(contents)})
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def ingested_outcome(session: Session, key: str) -> tuple[str, str, int | None] | None:
    """(outcome, reason, ticket number) of a mail already ingested under this key."""
    flush_held(session)  # an earlier mail of the batch is one
    row = session.execute(_INGESTED, {"key": key}).first()
    return (row[0], row[1], row[2]) if row else None


def ingested_copy(session: Session, content: str) -> tuple[str, str, int | None, str] | None:
    """(outcome, reason, ticket number, ingest key) of a mail already ingested with the same
    content (the same mail delivered again with other trace fields), else None."""
    flush_held(session)
    row = session.execute(_INGESTED_CONTENT, {"content": content}).first()
    return (row[0], row[1], row[2], row[3]) if row else None


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


_REQUESTER = {
    dialect.__name__.rpartition(".")[2]: (lambda stmt: stmt.on_conflict_do_update(
        index_elements=["address"],
        set_={"language": func.coalesce(stmt.excluded.language, Contact.__table__.c.language)},
    ).returning(Contact.__table__.c.id, Contact.__table__.c.language))(
        dialect.insert(Contact.__table__).values(
            address=bindparam("address"), name=bindparam("name"), language=bindparam("language"),
            bouncing=False, created_at=bindparam("now")))
    for dialect in (postgresql, sqlite)
}


def requester(session: Session, address: str, name: str,
              detected: str | None) -> tuple[int, str | None]:
    """The contact of a new ticket's sender, created when new, in one statement:
    (its id, the language to write to it in) as `contact_id` then `contact_language` give."""
    values = _no_nul({"address": address, "name": name, "language": detected, "now": utcnow()})
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    row = session.execute(_REQUESTER[dialect], values).one()
    return row[0], row[1]


def contact_language(session: Session, contact: int, detected: str | None) -> str | None:
    """The language to write to a contact in: what this mail was written in, remembered for
    next time, else what was remembered (a short "ok" or a bare number tells nothing)."""
    if detected:
        session.execute(update(Contact).where(Contact.id == contact).values(language=detected))
        return detected
    return session.scalar(select(Contact.language).where(Contact.id == contact))


def ticket_brand(session: Session, ticket_id: int) -> str | None:
    """The brand a ticket is under (None: no such ticket)."""
    return session.scalar(_BRAND, {"tid": ticket_id})


_BRAND = select(Ticket.brand).where(Ticket.id == bindparam("tid"))


@dataclass(frozen=True)
class TicketFacts:
    """What threading decides on: a ticket's state and whether the sender takes part in it."""

    id: int
    number: int
    status: str
    resolved_at: datetime | None
    participant: bool  # the sender is its requester or a recorded participant
    brand: str | None = None  # the brand it is under ("": the desk's own)


_PARTICIPATES = select(Participant.id).where(
    Participant.ticket_id == Ticket.id, Participant.address == bindparam("sender")).exists()
_FACTS = (select(Ticket.id, Ticket.number, Ticket.status, Ticket.resolved_at,
                 (Contact.address == bindparam("sender")) | _PARTICIPATES, Ticket.brand)
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
    facts = [TicketFacts(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]
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


def ticket_numbers(session: Session, ticket_ids: set[int]) -> dict[int, int]:
    """Public numbers of tickets by id, in one query."""
    if not ticket_ids:
        return {}
    return dict(session.execute(select(Ticket.id, Ticket.number)
                                .where(Ticket.id.in_(ticket_ids))).all())


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


def contact_known(session: Session, address: str) -> bool:
    return session.scalar(_CONTACT_ID, {"address": address}) is not None


def has_tickets(session: Session, address: str) -> bool:
    """Whether the address has asked us something before (requested a ticket): a contact
    row alone is not that, since sealing any mail at rest makes one for its sender."""
    return session.scalar(select(Ticket.id).join(Contact, Contact.id == Ticket.requester_id)
                          .where(Contact.address == address).limit(1)) is not None


def clear_bouncing(session: Session, address: str, *, actor: str, how: str) -> bool:
    """Lift the bouncing flag (True when it was set) and record who and how, in one step:
    a conditional update, so two daemons clearing at once write one event."""
    done = session.execute(update(Contact).where(Contact.address == address,
                                                 Contact.bouncing.is_(True))
                           .values(bouncing=False))
    if not done.rowcount:
        return False
    insert_event(session, "bounce_cleared", actor=actor, how=how,
                 contact=session.scalar(_CONTACT_ID, {"address": address}))
    return True


def count_events(session: Session, kind: str, actor: str, short: timedelta,
                 long: timedelta) -> tuple[int, int]:
    """Events of a kind by one actor within a short and a long window, in one indexed query
    (kind, actor, created_at)."""
    flush_held(session)  # an earlier mail of the batch counts
    now = utcnow()
    row = session.execute(
        select(func.count().filter(Event.created_at >= now - short), func.count())
        .select_from(Event)
        .where(Event.kind == kind, Event.actor == actor, Event.created_at >= now - long)
    ).one()
    return row[0] or 0, row[1] or 0


# Ingest runs these for every mail: constant Core statements with parameters,
# compiled once and cached, instead of ORM units of work.
_TICKETS, _MESSAGES = Ticket.__table__, Message.__table__
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
    """A new ticket's (id, public number), in one statement."""
    now = utcnow()
    values = _no_nul({"status": "open", "created_at": now, "updated_at": now, **values})
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    ticket_id = session.execute(_insert_ticket(dialect, tuple(sorted(values))), values).scalar_one()
    return ticket_id, ticket_id + TICKET_NUMBER_OFFSET


@lru_cache(maxsize=16)
def _insert_ticket(dialect: str, columns: tuple[str, ...]) -> Insert:
    """The INSERT of a ticket with these columns that also writes its public number (its id
    plus the offset), so no UPDATE follows. The id is taken in the statement itself: from the
    id sequence on PostgreSQL, where concurrent daemons each get their own; on SQLite the
    next rowid (one writer at a time holds the database, so no other can take it meanwhile)."""
    if dialect == "postgresql":
        taken = select(func.nextval(func.pg_get_serial_sequence("tickets", "id")).label("n"))
        # A parameter in a SELECT list has no type of its own there: give it the column's.
        # Typed, so that the column's own conversion (UTC for times) runs on the value.
        given = [cast(bindparam(c, type_=_TICKETS.c[c].type), _TICKETS.c[c].type)
                 for c in columns]
    else:
        taken = select((func.coalesce(func.max(_TICKETS.c.id), 0) + 1).label("n"))
        given = [bindparam(c, type_=_TICKETS.c[c].type) for c in columns]
    # A subquery, so that the id is taken once for both columns.
    new = taken.subquery()
    return insert(_TICKETS).from_select(
        ["id", "number", *columns], select(new.c.n, new.c.n + TICKET_NUMBER_OFFSET, *given),
    ).returning(_TICKETS.c.id)


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
    """Held like events inside `hold_rows`: every column is given, so that the rows of a
    batch, whatever their outcome, go in one executemany."""
    _write(session, _INSERT_RECORD, [_no_nul({**_RECORD_DEFAULTS, "created_at": utcnow(),
                                               **values})])


_RECORD_DEFAULTS: dict[str, Any] = {"reason": "", "source": "", "header_message_id": None,
                                    "content_sha256": None, "raw_size": 0, "key_id": None,
                                    "ticket_id": None, "message_id": None, "rg_intent": None}


def insert_event(
    session: Session, kind: str, ticket_id: int | None = None, actor: str = "system", **data: Any
) -> None:
    write_events(session, [{"ticket_id": ticket_id, "kind": kind, "actor": actor, "data": data}])


# session.info key of the rows `hold_rows` keeps back: {table: rows in the order written}.
_HELD = "ticketd held rows"


def write_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert events (ticket_id, kind, actor, data, created_at optional), in this order: at once,
    or, inside `hold_rows`, with the rest of the block's events when it ends. Every event of
    ticketd goes through here, so held or not, ids follow the order events happened in."""
    now = utcnow()
    _write(session, _INSERT_EVENT, [
        {"ticket_id": row.get("ticket_id"), "kind": row["kind"],
         "actor": row.get("actor", "system"), "data": row.get("data", {}),
         "created_at": row.get("created_at") or now} for row in rows])


def _write(session: Session, statement: Any, rows: list[dict[str, Any]]) -> None:
    held = session.info.get(_HELD)
    if held is not None:
        held.setdefault(statement, []).extend(rows)
    elif rows:
        session.execute(statement, rows)


@contextmanager
def hold_rows(session: Session, hold: bool = True) -> Iterator[None]:
    """Keep back the events and ingest records written in this block, and insert each table's
    in one executemany when it ends: a batch of mails writes three or four such rows a mail,
    each a round trip of its own otherwise. The block ends inside the transaction, before its
    commit; an error drops the held rows, as the rollback would. Until then they are rows like
    any other: sealing (storage.audit) chains events after the commit, in id order, which is
    the order they were written in. A query that reads either table calls `flush_held` first.

    An ingest record's unique key then clashes at the flush, not when its mail is stored:
    `ingest_many` stores the batch again (see there), then with `hold` false: the rows are
    written at once, as outside the block."""
    if not hold:
        yield
        return
    session.info[_HELD] = {}
    try:
        yield
        flush_held(session)
    finally:
        session.info.pop(_HELD, None)


def flush_held(session: Session) -> None:
    """Insert the rows `hold_rows` keeps back now (a query is about to read them)."""
    held = session.info.get(_HELD)
    for statement, rows in (held or {}).items():
        if rows:
            session.execute(statement, list(rows))
            rows.clear()


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


@dataclass(frozen=True)
class TicketFilter:
    """What `ticketd tickets` narrows the list by; None is "any". An assignee of "" means
    tickets nobody holds."""

    status: str | None = None
    requester: str | None = None
    assignee: str | None = None
    group: str | None = None
    category: str | None = None
    since: datetime | None = None  # created at or after
    loop_stopped: bool = False  # only tickets whose automatic mail was stopped as a loop


@dataclass(frozen=True)
class TicketLine:
    """One ticket as `ticketd tickets` lists it."""

    id: int
    number: int
    subject: str
    status: str
    category: str
    priority: str
    language: str
    requester: str
    assignee: str | None
    group: str | None
    created_at: datetime
    next_due: datetime | None  # the earliest due time of its running SLA clocks
    loop_stopped_at: datetime | None = None  # automatic mail stopped: a person must act

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of `ticketd tickets --json`; other tools read these names."""
        return {"id": self.id, "number": self.number, "subject": self.subject,
                "status": self.status, "category": self.category, "priority": self.priority,
                "language": self.language, "requester": self.requester,
                "assignee": self.assignee, "group": self.group,
                "created_at": _iso(self.created_at), "next_due": _iso(self.next_due),
                "loop_stopped_at": _iso(self.loop_stopped_at)}


# A running clock that is not paused has a due time; the earliest is the next promise.
# A correlated subquery over the (ticket_id, kind) index of running clocks, for the rows
# shown only.
_NEXT_DUE = (select(func.min(SlaClock.due_at))
             .where(SlaClock.ticket_id == Ticket.id, SlaClock.stopped_at.is_(None))
             .correlate(Ticket).scalar_subquery())


# `ticketd tickets` counts the matches beyond those it shows up to this many: counting them
# all would make the listing grow with the desk (a million tickets: a million index entries).
COUNT_CAP = 1_000


def find_tickets(session: Session, wanted: TicketFilter,
                 limit: int = 50) -> tuple[list[TicketLine], int]:
    """Tickets matching ``wanted``, newest first, at most ``limit``, and how many match in all,
    counted up to ``limit`` + COUNT_CAP + 1: more than COUNT_CAP beyond the shown means "many
    more"."""
    conditions = _conditions(wanted)
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.subject, Ticket.status, Ticket.category,
               Ticket.priority, Ticket.language, Contact.address, Ticket.assignee, Ticket.group,
               Ticket.created_at, _NEXT_DUE, Ticket.loop_stopped_at)
        .join(Contact, Contact.id == Ticket.requester_id)
        .where(*conditions).order_by(Ticket.id.desc()).limit(limit)).all()
    lines = [TicketLine(*row) for row in rows]
    total = len(lines)
    if total == limit:  # only then can there be more: count them
        matching = select(Ticket.id).where(*conditions).limit(limit + COUNT_CAP + 1)
        total = session.scalar(select(func.count()).select_from(matching.subquery())) or 0
    return lines, total


def _conditions(wanted: TicketFilter) -> list[Any]:
    conditions: list[Any] = []
    if wanted.status:
        conditions.append(Ticket.status == wanted.status)
    if wanted.requester is not None:
        # Addresses are stored as they came; look up both spellings through the unique index.
        spellings = {wanted.requester.strip(), wanted.requester.strip().lower()}
        conditions.append(Ticket.requester_id.in_(
            select(Contact.id).where(Contact.address.in_(spellings))))
    if wanted.assignee is not None:
        value = wanted.assignee.strip()
        conditions.append(Ticket.assignee.is_(None) if value == ""
                          else Ticket.assignee.in_({value, value.lower()}))
    if wanted.group is not None:
        conditions.append(Ticket.group == wanted.group)
    if wanted.category is not None:
        conditions.append(Ticket.category == wanted.category)
    if wanted.since is not None:
        conditions.append(Ticket.created_at >= wanted.since)
    if wanted.loop_stopped:
        conditions.append(Ticket.loop_stopped_at.is_not(None))
    return conditions


def next_due(session: Session, ticket_id: int) -> datetime | None:
    """The earliest due time of a ticket's running SLA clocks (paused ones have none)."""
    return session.scalar(select(func.min(SlaClock.due_at)).where(
        SlaClock.ticket_id == ticket_id, SlaClock.stopped_at.is_(None)))


def count_by_status(session: Session) -> dict[str, int]:
    """Tickets per status, every known status included (0 when no ticket has it)."""
    rows = session.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all()
    return {status: 0 for status in STATUSES} | {status: count for status, count in rows}


def count_tickets_of(session: Session, requester_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Ticket)
                          .where(Ticket.requester_id == requester_id)) or 0


def list_events(
    session: Session, ticket_ref: str | None = None, kind: str | None = None, limit: int = 100
) -> list[Event]:
    flush_held(session)
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


# The event that keeps, on the ticket, what an outgoing mail said (see record_sent_mail).
SENT_MAIL_EVENT = "mail_queued"


def record_sent_mail(session: Session, ticket_id: int, *, outbox_id: int, kind: str,
                     message_id: str, recipients: Sequence[str], raw: bytes,
                     shown: tuple[str, str] | None = None) -> None:
    """Keep on the ticket what a mail queued for it says, in the transaction that queues it:
    `ticketd show` then shows what the player (or the agent) was told, acknowledgements and
    escalations included. `shown` is (subject, text) as `parsers.outgoing.sent_text` reads
    them from `raw`, handed by a composer that knows them (`responders.mime.shown`); None
    reads them from `raw`."""
    write_events(session, [sent_mail_event(ticket_id, outbox_id=outbox_id, kind=kind,
                                           message_id=message_id, recipients=recipients,
                                           raw=raw, shown=shown)])


def sent_mail_event(ticket_id: int, *, outbox_id: int, kind: str, message_id: str,
                    recipients: Sequence[str], raw: bytes,
                    shown: tuple[str, str] | None = None) -> dict[str, Any]:
    """The parameters of the event `record_sent_mail` writes (for a caller that writes many
    at once)."""
    subject, body = shown if shown is not None else sent_text(raw)
    return {"ticket_id": ticket_id, "kind": SENT_MAIL_EVENT, "actor": "system",
            "data": _no_nul({"outbox_id": outbox_id, "kind": kind, "message_id": message_id,
                             "subject": subject, "text": body}) | {"to": list(recipients)}}


def insert_events(session: Session, events: Sequence[tuple[str, int | None, dict[str, Any]]],
                  actor: str = "system") -> None:
    """Several events, (kind, ticket id, data) each, in this order: one executemany."""
    write_events(session, [{"ticket_id": ticket_id, "kind": kind, "actor": actor, "data": data}
                           for kind, ticket_id, data in events])


@dataclass(frozen=True)
class SentMail:
    """An outgoing mail of a ticket: what it said and how its delivery stands."""

    message_id: str
    kind: str
    to: list[str]
    subject: str
    text: str
    queued_at: datetime
    state: str  # pending | sent | dead, from the outbox
    accepted: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "kind": self.kind, "to": self.to,
                "subject": self.subject, "text": self.text, "queued_at": _iso(self.queued_at),
                "state": self.state, "accepted": self.accepted}


def sent_mail(session: Session, ticket_id: int) -> list[SentMail]:
    """The mails queued for a ticket, oldest first, with their delivery state."""
    flush_held(session)
    events = session.execute(
        select(Event.data, Event.created_at)
        .where(Event.ticket_id == ticket_id, Event.kind == SENT_MAIL_EVENT)
        .order_by(Event.id)).all()
    ids = [data["message_id"] for data, _ in events]
    states = {row[0]: (row[1], row[2]) for row in session.execute(
        select(OutboxMessage.message_id, OutboxMessage.state, OutboxMessage.accepted)
        .where(OutboxMessage.message_id.in_(ids)))} if ids else {}
    return [SentMail(data["message_id"], data["kind"], data["to"], data["subject"],
                     data["text"], created_at, *states.get(data["message_id"], ("gone", [])))
            for data, created_at in events]


def ticket_record(session: Session, ticket: Ticket) -> dict[str, Any]:
    """The JSON shape of `ticketd show`, with the next due time and the mail sent."""
    return ticket_as_dict(ticket, next_due=next_due(session, ticket.id),
                          sent=sent_mail(session, ticket.id))


def ticket_as_dict(ticket: Ticket, *, next_due: datetime | None = None,
                   sent: Sequence[SentMail] = ()) -> dict[str, Any]:
    """The JSON shape of `ticketd show`; other tools read these names."""
    by_id = {mail.message_id: mail for mail in sent}
    return {
        "id": ticket.id,
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "category": ticket.category,
        "priority": ticket.priority,
        "language": ticket.language,
        "requester": ticket.requester.address,
        "brand": ticket.brand,
        # The person's responsible-gambling flag, raised on this ticket or any other of
        # theirs, under any brand; None when never raised.
        "requester_safeguarded": safeguard_of(ticket.requester),
        "assignee": ticket.assignee,
        "group": ticket.group,
        "next_due": _iso(next_due),
        "loop_stopped_at": _iso(ticket.loop_stopped_at),
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "linked_ticket": ticket.linked_ticket_id,
        "messages": [_message_as_dict(m, by_id.get(m.header_message_id or ""))
                     for m in ticket.messages],
        # Every mail queued for the ticket, those without a message of their own
        # (agent notifications, escalations, notices) included.
        "sent_mail": [mail.as_dict() for mail in sent],
    }


def safeguard_of(contact: Contact) -> dict[str, Any] | None:
    """A contact's responsible-gambling flag as `ticketd show` and `contact show` print it."""
    if contact.safeguarded_at is None:
        return None
    return {"since": _iso(contact.safeguarded_at), "intent": contact.safeguard_intent,
            "brand": contact.safeguard_brand}


def contact_record(session: Session, address: str) -> dict[str, Any] | None:
    """One person's record across every brand: their flags and their tickets by brand."""
    contact = session.scalar(select(Contact).where(
        func.lower(Contact.address) == address.strip().lower()))
    if contact is None:
        return None
    tickets = session.execute(select(Ticket.number, Ticket.brand, Ticket.status, Ticket.subject)
                              .where(Ticket.requester_id == contact.id)
                              .order_by(Ticket.id)).all()
    return {
        "address": contact.address, "name": contact.name, "language": contact.language,
        "bouncing": contact.bouncing, "safeguarded": safeguard_of(contact),
        "tickets": [{"number": n, "brand": b, "status": st, "subject": sub}
                    for n, b, st, sub in tickets],
    }


INTERNAL_KINDS = frozenset({"note", "held", "refused"})


def _message_as_dict(message: Message, sent: SentMail | None = None) -> dict[str, Any]:
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
        # For a message we sent: the text as the receiver got it (the acknowledgement, the
        # agent's words inside the relay), or None.
        "sent": sent.as_dict() if sent else None,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
