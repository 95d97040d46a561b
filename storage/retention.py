"""The queries of the retention sweep: what has expired, and the conditional updates that mark
it swept, each run in the caller's transaction.

Every rule is a pair: `candidates` (the ids of up to `limit` expired rows, oldest first) and
`mark` (an UPDATE of those ids that also requires the row to be unmarked still, returning
what it marked). A row is marked once: a second sweep, a second daemon, or a rerun after a
crash finds nothing to do for it. Nothing a legal hold covers is a candidate
(storage.holds.held_ticket_ids), and a file is removed only when no unmarked row refers to
its file any more (`raw_in_use`, `attachment_in_use`): content addressing lets several
rows, even held ones, share one file. A file is a digest and a data key (`FileRef`): with
encryption at rest one contact's rows may share a sealed file, two contacts' rows never do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, cast, func, literal, or_, select
from sqlalchemy import update as _update
from sqlalchemy.orm import Session

from storage import audit
from storage.holds import held_ticket_ids
from storage.models import (
    Contact,
    Event,
    IngestRecord,
    LegalHold,
    Message,
    OutboxMessage,
    Participant,
    StoredAttachment,
    Ticket,
)
from storage.queries import SENT_MAIL_EVENT

STORED = ("ticket", "follow_up")  # ingest outcomes whose mail is on a ticket
REJECTED = ("spam", "ignored", "quarantined")  # spam, machines' mail, mail not stored
# Events whose data quote what was written, not only who: the text of each mail queued for the
# ticket (acknowledgements, escalations quote the player without their address) and the
# phrase a responsible-gambling request was recognised by. Anonymising redacts them whole.
TEXT_EVENTS = (SENT_MAIL_EVENT, "responsible_gambling")
ANONYMOUS_DOMAIN = "anonymised.invalid"  # RFC 2606: never a real address


def update(model: type) -> Any:
    """An UPDATE that leaves the session's loaded objects alone (the sweep loads none)."""
    return _update(model).execution_options(synchronize_session=False)


def _not_held(ticket_id: ColumnElement[int | None]) -> ColumnElement[bool]:
    return or_(ticket_id.is_(None), ticket_id.not_in(held_ticket_ids()))


# A stored file as rows name it: its content's sha256 and the id of the data key that sealed
# it (None: stored in clear). With a key file, the file name depends on both.
FileRef = tuple[str, int | None]


# --- raw mails (the .eml of every mail ingested) ----------------------------------------

def _raw_query(outcomes: Sequence[str], cutoff: datetime) -> Select[tuple[int]]:
    log = IngestRecord
    return select(log.id).where(log.outcome.in_(outcomes), log.raw_removed_at.is_(None),
                                log.raw_size > 0, log.created_at < cutoff,
                                _not_held(log.ticket_id))


def raw_candidates(session: Session, outcomes: Sequence[str], cutoff: datetime,
                   limit: int) -> list[int]:
    return list(session.scalars(_raw_query(outcomes, cutoff).order_by(IngestRecord.id)
                                .limit(limit)))


def count_raw(session: Session, outcomes: Sequence[str], cutoff: datetime) -> int:
    return _count(session, _raw_query(outcomes, cutoff))


def mark_raw(session: Session, ids: Sequence[int], now: datetime) -> list[FileRef]:
    """Mark the raw mails of these ingest records removed; the files of those marked now."""
    if not ids:
        return []
    log = IngestRecord
    return [(digest, key_id) for digest, key_id in session.execute(
        update(log).where(log.id.in_(ids), log.raw_removed_at.is_(None))
        .values(raw_removed_at=now).returning(log.raw_sha256, log.key_id))]


def raw_in_use(session: Session, refs: Sequence[FileRef]) -> set[FileRef]:
    """The files (digest, data key) some unmarked ingest record still refers to: they stay."""
    log = IngestRecord
    digests = sorted({digest for digest, _ in refs})
    return set(refs) & _refs(session.execute(select(log.raw_sha256, log.key_id).distinct().where(
        log.raw_sha256.in_(digests), log.raw_removed_at.is_(None)))) if digests else set()


def raw_of_key(session: Session, key_id: int) -> list[str]:
    """The digests of every unmarked raw mail sealed with this data key."""
    log = IngestRecord
    return list(session.scalars(select(log.raw_sha256).distinct().where(
        log.key_id == key_id, log.raw_removed_at.is_(None))))


# --- attachments --------------------------------------------------------------------------

def _attachment_query(cutoff: datetime) -> Select[tuple[int]]:
    return (select(StoredAttachment.id).join(Message, Message.id == StoredAttachment.message_id)
            .where(StoredAttachment.removed_at.is_(None), Message.created_at < cutoff,
                   _not_held(Message.ticket_id)))


def attachment_candidates(session: Session, cutoff: datetime, limit: int) -> list[int]:
    return list(session.scalars(_attachment_query(cutoff).order_by(StoredAttachment.id)
                                .limit(limit)))


def count_attachments(session: Session, cutoff: datetime) -> int:
    return _count(session, _attachment_query(cutoff))


def mark_attachments(session: Session, ids: Sequence[int], now: datetime) -> list[FileRef]:
    """Mark these attachments removed; the files (digest, their message's data key) of those
    marked now."""
    if not ids:
        return []
    att = StoredAttachment
    marked = list(session.scalars(update(att).where(att.id.in_(ids), att.removed_at.is_(None))
                                  .values(removed_at=now).returning(att.id)))
    return [(digest, key_id) for digest, key_id in session.execute(
        select(att.sha256, Message.key_id).join(Message, Message.id == att.message_id)
        .where(att.id.in_(marked)))] if marked else []


def attachment_in_use(session: Session, refs: Sequence[FileRef]) -> set[FileRef]:
    """The files some unmarked attachment row still refers to. A sealed file is named by its
    digest and its data key: the same bytes under another key are another file."""
    att = StoredAttachment
    digests = sorted({digest for digest, _ in refs})
    return set(refs) & _refs(session.execute(
        select(att.sha256, Message.key_id).distinct().join(Message, Message.id == att.message_id)
        .where(att.sha256.in_(digests), att.removed_at.is_(None)))) if digests else set()


def attachments_of_key(session: Session, key_id: int) -> list[str]:
    """The digests of every unmarked attachment sealed with this data key."""
    att = StoredAttachment
    return list(session.scalars(select(att.sha256).distinct()
                                .join(Message, Message.id == att.message_id)
                                .where(Message.key_id == key_id, att.removed_at.is_(None))))


def files_marked_on_ticket(session: Session, ticket_id: int, raw: Sequence[str],
                           attachments: Sequence[str]) -> tuple[set[FileRef], set[FileRef]]:
    """The files (digest, data key) of a ticket's marked raw mails and attachments among these
    digests (what anonymising it marked): with encryption at rest the digest alone does not
    name a file."""
    log, att = IngestRecord, StoredAttachment
    raw_files = _refs(session.execute(select(log.raw_sha256, log.key_id).where(
        log.ticket_id == ticket_id, log.raw_removed_at.is_not(None),
        log.raw_sha256.in_(sorted(set(raw)))))) if raw else set()
    attachment_files = _refs(session.execute(
        select(att.sha256, Message.key_id).join(Message, Message.id == att.message_id)
        .where(Message.ticket_id == ticket_id, att.removed_at.is_not(None),
               att.sha256.in_(sorted(set(attachments)))))) if attachments else set()
    return raw_files, attachment_files


def _refs(rows: Any) -> set[FileRef]:
    return {(digest, key_id) for digest, key_id in rows if digest}


# --- the bytes of sent mail (outbox.raw) -----------------------------------------------------

def _sent_query(cutoff: datetime) -> Select[tuple[int]]:
    out = OutboxMessage
    return select(out.id).where(out.state == "sent", out.raw_removed_at.is_(None),
                                out.sent_at < cutoff, _not_held(out.ticket_id))


def sent_candidates(session: Session, cutoff: datetime, limit: int) -> list[int]:
    return list(session.scalars(_sent_query(cutoff).order_by(OutboxMessage.id).limit(limit)))


def count_sent(session: Session, cutoff: datetime) -> int:
    return _count(session, _sent_query(cutoff))


def clear_sent(session: Session, ids: Sequence[int], now: datetime,
               where: ColumnElement[bool] | None = None) -> int:
    """Empty `raw` of these outbox rows (the row stays: Message-ID, recipients, outcome)."""
    if not ids and where is None:
        return 0
    out = OutboxMessage
    target = out.id.in_(ids) if where is None else where
    cleared = session.execute(update(out).where(target, out.raw_removed_at.is_(None),
                                                out.state != "pending")
                              .values(raw=b"", raw_removed_at=now)
                              .returning(out.id, out.ticket_id)).all()
    _redact_sent_text(session, cleared)
    return len(cleared)


def _redact_sent_text(session: Session, cleared: Sequence[Any]) -> int:
    """The `mail_queued` event of each cleared outbox row keeps the text of the mail (ticket
    history): it goes with the bytes."""
    wanted = {row.id for row in cleared}
    tickets = {row.ticket_id for row in cleared if row.ticket_id is not None}
    if not tickets:
        return 0
    rows = session.execute(select(Event.id, Event.data).where(
        Event.kind == SENT_MAIL_EVENT, Event.ticket_id.in_(tickets),
        Event.actor != audit.REDACTED_ACTOR)).all()
    return audit.redact(session, [row.id for row in rows
                                  if (row.data or {}).get("outbox_id") in wanted])


# --- closed tickets ----------------------------------------------------------------------

def _closed_query(cutoff: datetime) -> Select[tuple[int]]:
    closed_at = func.coalesce(Ticket.resolved_at, Ticket.updated_at)
    return select(Ticket.id).where(Ticket.status == "closed", Ticket.anonymised_at.is_(None),
                                   closed_at < cutoff, Ticket.id.not_in(held_ticket_ids()))


def closed_candidates(session: Session, cutoff: datetime, limit: int) -> list[int]:
    return list(session.scalars(_closed_query(cutoff).order_by(Ticket.id).limit(limit)))


def count_closed(session: Session, cutoff: datetime) -> int:
    return _count(session, _closed_query(cutoff))


@dataclass
class Anonymised:
    """What anonymising one ticket left for the files: digests no longer referred to by it."""

    raw: list[str]
    attachments: list[str]
    contacts: int


def anonymise_ticket(session: Session, ticket_id: int, now: datetime) -> Anonymised | None:
    """Strip one closed ticket of personal data; None when it is not (any more) to be done.

    The ticket row is claimed first, with an UPDATE that requires it unanonymised, closed
    and unheld: whoever claims it does the rest in the same transaction, so a ticket is
    either wholly anonymised or not at all, and only once.
    """
    claimed = session.execute(
        update(Ticket).where(Ticket.id == ticket_id, Ticket.anonymised_at.is_(None),
                             Ticket.status == "closed", Ticket.id.not_in(held_ticket_ids()))
        .values(anonymised_at=now, subject="")).rowcount
    if not claimed:
        return None
    addresses = _people_of(session, ticket_id)
    session.execute(update(Message).where(Message.ticket_id == ticket_id).values(
        sender="", sender_name="", subject="", visible_text="", full_text=""))
    session.execute(update(Participant).where(Participant.ticket_id == ticket_id).values(
        address=_tagged("participant-", Participant.id, f"@{ANONYMOUS_DOMAIN}")))
    messages = select(Message.id).where(Message.ticket_id == ticket_id)
    att = StoredAttachment
    session.execute(update(att).where(att.message_id.in_(messages)).values(
        filename=_tagged("attachment-", att.id)))
    attachments = list(session.scalars(
        update(att).where(att.message_id.in_(messages), att.removed_at.is_(None))
        .values(removed_at=now).returning(att.sha256)))
    log = IngestRecord
    raw = list(session.scalars(update(log).where(log.ticket_id == ticket_id,
                                                 log.raw_removed_at.is_(None))
                               .values(raw_removed_at=now).returning(log.raw_sha256)))
    clear_sent(session, [], now, where=OutboxMessage.ticket_id == ticket_id)
    _redact_events(session, ticket_id, addresses)
    contacts = sum(_anonymise_contact_if_done(session, address, now) for address in addresses)
    return Anonymised(raw, attachments, contacts)


def _redact_events(session: Session, ticket_id: int, addresses: Sequence[str]) -> int:
    """Take the people's addresses, and every event quoting text (TEXT_EVENTS), out of the
    ticket's events (the chain keeps their digest)."""
    needles = [a.lower() for a in addresses if a]
    rows = session.execute(select(Event.id, Event.kind, Event.actor, Event.data).where(
        Event.ticket_id == ticket_id, Event.actor != audit.REDACTED_ACTOR)).all()
    mention = [row.id for row in rows if row.kind in TEXT_EVENTS
               or any(n in f"{row.actor} {json.dumps(row.data, ensure_ascii=False)}".lower()
                      for n in needles)]
    return audit.redact(session, mention)


def _people_of(session: Session, ticket_id: int) -> list[str]:
    """The requester's and the other non-agent participants' addresses."""
    requester = select(Contact.address).join(Ticket, Ticket.requester_id == Contact.id) \
        .where(Ticket.id == ticket_id)
    others = select(Participant.address).where(Participant.ticket_id == ticket_id,
                                               Participant.role != "agent")
    return sorted(set(session.scalars(requester.union(others))))


def _anonymise_contact_if_done(session: Session, address: str, now: datetime) -> int:
    """A contact keeps their address while any ticket of theirs is still unanonymised (they
    requested it or take part in it), or while a hold names them."""
    contact = session.scalar(select(Contact).where(Contact.address == address,
                                                   Contact.anonymised_at.is_(None)))
    if contact is None:
        return 0
    live = or_(Ticket.requester_id == contact.id, Ticket.id.in_(
        select(Participant.ticket_id).where(Participant.address == address)))
    remaining = session.scalar(select(func.count()).select_from(Ticket)
                               .where(live, Ticket.anonymised_at.is_(None)))
    held = session.scalar(select(func.count()).select_from(LegalHold).where(
        LegalHold.contact_id == contact.id, LegalHold.released_at.is_(None)))
    if remaining or held:
        return 0
    return session.execute(update(Contact).where(Contact.id == contact.id,
                                                 Contact.anonymised_at.is_(None))
                           .values(address=f"contact-{contact.id}@{ANONYMOUS_DOMAIN}", name="",
                                   anonymised_at=now)).rowcount or 0


def _count(session: Session, query: Select[tuple[int]]) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def _tagged(prefix: str, column: ColumnElement[int], suffix: str = "") -> ColumnElement[str]:
    """prefix || id || suffix, as SQL on both databases (SQLite before 3.44 has no concat)."""
    value = literal(prefix, String) + cast(column, String)
    return value + literal(suffix, String) if suffix else value
