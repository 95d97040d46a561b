"""Erasure of one person (a contact): crypto-shredding, files deleted, the database scrubbed.

In one transaction: the contact's data key is destroyed (so every copy of what it sealed,
backups included, is unreadable), their personal data is blanked in every table, the rows
of mail to them are deleted, a tombstone and an `erased` event are written; the files are
deleted just before the commit. Refused while a legal hold covers the contact or any of
their tickets (storage/holds.py).

What is theirs: every ticket they requested (wholly: subject, every message's texts and
headers, attachment names, participants, events' details, outgoing mail), and on any other
ticket the messages they sent and their participation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import String, Text, delete, false, func, or_, select, text, update
from sqlalchemy.orm import Session

from parsers import Limits, RejectedMail, parse
from storage import audit, holds, search
from storage.blobs import BlobStore
from storage.crypto import DataKey, tombstone
from storage.models import (
    AutoMail,
    Complaint,
    Contact,
    ContactKey,
    Erasure,
    Event,
    IngestRecord,
    LegalHold,
    Message,
    OutboxMessage,
    Participant,
    SlaClock,
    StoredAttachment,
    Ticket,
    utcnow,
)
from storage.queries import insert_event
from storage.vault import KeyDestroyed, Vault, vault_of

ERASED = "erased"
# Columns that say what a row is, not who or what was said: kept.
_KEPT = {"tickets": {"status", "category", "priority", "language", "group", "assignee",
                     "brand"},
         "messages": {"direction", "kind", "raw_sha256"}}
_UNKEYED_TOMBSTONE = b"ticketd tombstone without a key file"


class ErasureRefused(Exception):
    def __init__(self, reason: str, hold_ids: tuple[int, ...] = ()) -> None:
        super().__init__(reason)
        self.hold_ids = hold_ids


@dataclass
class ErasureReport:
    erasure_id: int
    tickets: list[int] = field(default_factory=list)  # public numbers
    messages: int = 0
    attachments: int = 0
    outbox_rows: int = 0
    files: int = 0
    key_destroyed: bool = False


def address_hash(session: Session, address: str) -> str:
    """The tombstone of an address: keyed with the desk's data key when there is a vault."""
    vault = vault_of(session)
    key = vault.desk_key(session).secret if vault else _UNKEYED_TOMBSTONE
    return tombstone(key, address)


def erased_before(session: Session, address: str) -> Erasure | None:
    """The tombstone of an earlier erasure of this address, if there was one."""
    return session.scalars(select(Erasure).where(
        Erasure.address_hash == address_hash(session, address)).order_by(Erasure.id)).first()


def erased_among(session: Session, addresses: list[str]) -> dict[str, int]:
    """Which of these addresses were erased before: address -> erasure id. Ingest asks for
    every new contact; with no erasure ever made it costs one query per batch."""
    if not addresses or session.scalar(select(Erasure.id).limit(1)) is None:
        return {}
    hashes = {address_hash(session, a): a for a in addresses}
    rows = session.execute(select(Erasure.address_hash, Erasure.id)
                           .where(Erasure.address_hash.in_(list(hashes)))).all()
    return {hashes[h]: erasure_id for h, erasure_id in rows}


def erase(session: Session, blobs: BlobStore, address: str, by: str) -> ErasureReport:
    """Erase the contact of `address` inside the caller's transaction; raises ErasureRefused
    (unknown address, or a legal hold with its ids). The caller commits."""
    address = address.strip().lower()
    contact = session.scalar(select(Contact).where(func.lower(Contact.address) == address))
    if contact is None:
        before = erased_before(session, address)
        raise ErasureRefused(f"already erased at {before.erased_at:%Y-%m-%d %H:%M} UTC by "
                             f"{before.erased_by}" if before else "no contact with this address")
    held = holds.holds_covering_contact(session, contact.id)
    if held:
        ids = tuple(h.id for h in held)
        raise ErasureRefused("a legal hold covers this contact or their tickets: "
                             + ", ".join(f"hold {h.id} ({h.reason})" for h in held), ids)
    vault = vault_of(session)
    if session.get_bind().dialect.name == "sqlite":
        # Freed space is zeroed rather than left holding the old texts in the file.
        session.execute(text("PRAGMA secure_delete = ON"))
    tickets = list(session.scalars(select(Ticket).where(Ticket.requester_id == contact.id)))
    ticket_ids = [t.id for t in tickets]
    messages = _their_messages(session, ticket_ids, contact.address)
    report = ErasureReport(0, tickets=[t.number for t in tickets if t.number is not None],
                           messages=len(messages))
    files = _their_files(session, blobs, vault, messages, ticket_ids, contact.id)
    report.attachments = _scrub_messages(session, messages)
    _scrub_rows(session, tickets, ticket_ids, messages, contact)
    report.outbox_rows = _delete_outbox(session, ticket_ids, contact)
    report.key_destroyed = _destroy_key(session, contact.id)
    session.info.pop("data_keys", None)  # no key of theirs kept in this session either
    tomb = Erasure(address_hash=address_hash(session, contact.address), contact_id=contact.id,
                   erased_by=by)
    session.add(tomb)
    contact.address, contact.name, contact.language = f"{ERASED}-{contact.id}@invalid", "", None
    # What they asked for and where is theirs too; the platform enforces a self-exclusion
    # (the webhook), and a returning player is a new contact anyway.
    contact.safeguarded_at = contact.safeguard_intent = contact.safeguard_brand = None
    session.flush()
    report.erasure_id = tomb.id
    search.forget_removed_text(session)
    report.files = sum(blobs.remove(path) for path in files)
    insert_event(session, "erased", None, actor=by, erasure=tomb.id, contact=contact.id,
                 tickets=report.tickets, messages=report.messages,
                 attachments=report.attachments, outbox_rows=report.outbox_rows,
                 files=report.files, key_destroyed=report.key_destroyed)
    return report


def flush_to_disk(engine: Any) -> None:
    """After the commit, on SQLite: copy the write-ahead log into the database and empty it,
    so that page images from before the erasure do not linger in the WAL file. PostgreSQL
    keeps old row versions until VACUUM (autovacuum, or VACUUM of the tables by hand)."""
    if engine.dialect.name == "sqlite":
        conn = engine.raw_connection()  # outside any transaction: a checkpoint needs that
        try:
            conn.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def _their_messages(session: Session, ticket_ids: list[int], address: str) -> list[Message]:
    query = select(Message).where(or_(Message.ticket_id.in_(ticket_ids),
                                      func.lower(Message.sender) == address.lower()))
    return list(session.scalars(query.order_by(Message.id)))


def _their_files(session: Session, blobs: BlobStore, vault: Vault | None,
                 messages: list[Message], ticket_ids: list[int], contact_id: int) -> set[Path]:
    """Every stored file of theirs that nothing else refers to: raw mails, attachments and
    quarantined attachments of their messages (agents' mail on their tickets included: it
    is sealed with their key), and of mail of theirs kept without a message (ignored,
    quarantined)."""
    ids = {m.id for m in messages}
    their_key = session.scalar(select(ContactKey.id).where(ContactKey.contact_id == contact_id))
    records = list(session.scalars(select(IngestRecord).where(or_(
        IngestRecord.message_id.in_(ids), IngestRecord.ticket_id.in_(ticket_ids),
        IngestRecord.key_id == their_key if their_key else false()))))
    keys: dict[int | None, DataKey | None] = {None: None}
    paths: set[Path] = set()
    raws = {(m.raw_sha256, m.key_id) for m in messages if m.raw_sha256}
    raws |= {(r.raw_sha256, r.key_id) for r in records if r.message_id is None}
    for digest, key_id in raws:
        if not _sealed_for_them(key_id, their_key) and _raw_used_elsewhere(
                session, digest, key_id, ids):
            continue
        key = _key(session, vault, keys, key_id)
        if key is False:
            continue
        paths.add(blobs.raw_path(digest, key))
        theirs = _sealed_for_them(key_id, their_key)
        for part in _attachments_in(blobs, digest, key):
            if theirs or not _attachment_used_elsewhere(session, part, key_id, ids):
                paths.add(blobs.attachment_path(part, key))
            if theirs:  # an infected attachment went to the quarantine under the same key
                paths.add(blobs.quarantine_path(part, key))
    for message in messages:
        key = _key(session, vault, keys, message.key_id)
        if key is False:
            continue
        for att in message.attachments:
            if _sealed_for_them(message.key_id, their_key) or not _attachment_used_elsewhere(
                    session, att.sha256, message.key_id, ids):
                paths.add(blobs.attachment_path(att.sha256, key))
    return paths


def _sealed_for_them(key_id: int | None, their_key: int | None) -> bool:
    """A file sealed with their own data key is theirs alone (names are keyed per contact).
    A file in clear is named by its content only, so another row may need the same file."""
    return their_key is not None and key_id == their_key


def _key(session: Session, vault: Vault | None, cache: dict[int | None, Any],
         key_id: int | None) -> Any:
    """The data key of `key_id` (None: in clear); False when it cannot be had any more."""
    if key_id not in cache:
        try:
            cache[key_id] = vault.key(session, key_id) if vault else False
        except KeyDestroyed:
            cache[key_id] = False
    return cache[key_id]


def _attachments_in(blobs: BlobStore, digest: str, key: DataKey | None) -> list[str]:
    """The attachments' sha256 of a stored raw mail: ingest stores them for every mail it
    parses, also for mail that became no message."""
    try:
        raw = blobs.get_raw(digest, key)
        return [part.sha256 for part in parse(raw, Limits()).attachments]
    except (OSError, RejectedMail):
        return []
    except Exception:  # noqa: BLE001 - a file that does not open is one not to delete
        return []


def _raw_used_elsewhere(session: Session, digest: str, key_id: int | None,
                        ids: set[int]) -> bool:
    return session.scalar(select(Message.id).where(
        Message.raw_sha256 == digest, _same_key(Message.key_id, key_id),
        Message.id.not_in(ids)).limit(1)) is not None


def _attachment_used_elsewhere(session: Session, digest: str, key_id: int | None,
                               ids: set[int]) -> bool:
    return session.scalar(
        select(StoredAttachment.id).join(Message, Message.id == StoredAttachment.message_id)
        .where(StoredAttachment.sha256 == digest, _same_key(Message.key_id, key_id),
               Message.id.not_in(ids)).limit(1)) is not None


def _same_key(column: Any, key_id: int | None) -> Any:
    return column.is_(None) if key_id is None else column == key_id


def _blank(table: Any, kept: set[str]) -> dict[str, Any]:
    """Every text column of a table not in `kept`, blanked: new columns are covered too."""
    return {c.name: (None if c.nullable else "") for c in table.columns
            if isinstance(c.type, String | Text) and c.name not in kept}


def _scrub_messages(session: Session, messages: list[Message]) -> int:
    ids = [m.id for m in messages]
    for chunk in _chunks(ids):
        session.execute(update(Message).where(Message.id.in_(chunk))
                        .values(_blank(Message.__table__, _KEPT["messages"])))
    count = 0
    for chunk in _chunks(ids):
        count += session.execute(
            update(StoredAttachment).where(StoredAttachment.message_id.in_(chunk))
            .values(filename=ERASED, content_id=None)).rowcount or 0
    return count


def _scrub_rows(session: Session, tickets: list[Ticket], ticket_ids: list[int],
                messages: list[Message], contact: Contact) -> None:
    address = contact.address
    for chunk in _chunks(ticket_ids):
        session.execute(update(Ticket).where(Ticket.id.in_(chunk))
                        .values({**_blank(Ticket.__table__, _KEPT["tickets"]), "status": "closed"}))
        # Nobody is left to answer: no clock may escalate a blanked ticket to staff, nor
        # queue mail that would need the key just destroyed.
        session.execute(update(SlaClock).where(SlaClock.ticket_id.in_(chunk),
                                               SlaClock.stopped_at.is_(None))
                        .values(stopped_at=utcnow(), next_action_at=None))
        # Nor may the complaint guard write a deadline letter to an erased player; the
        # record's figures stay for the regulator's return, the agent's words do not.
        session.execute(update(Complaint).where(Complaint.ticket_id.in_(chunk))
                        .values(next_action_at=None, extension_reason=None))
        session.execute(delete(Participant).where(Participant.ticket_id.in_(chunk)))
    session.execute(delete(Participant).where(func.lower(Participant.address) == address.lower()))
    # The loop limits' ledger names recipients for a day: the person's rows go (their count
    # of automatic mail starts again, as for any new address).
    session.execute(delete(AutoMail).where(or_(func.lower(AutoMail.address) == address.lower(),
                                               AutoMail.ticket_id.in_(ticket_ids))))
    ids = [m.id for m in messages]
    their_key = select(ContactKey.id).where(ContactKey.contact_id == contact.id)
    session.execute(update(IngestRecord).where(or_(
        IngestRecord.message_id.in_(ids), IngestRecord.ticket_id.in_(ticket_ids),
        IngestRecord.key_id.in_(their_key))).values(header_message_id=None, reason="", source=""))
    events = session.scalars(select(Event.id).where(or_(
        Event.ticket_id.in_(ticket_ids), func.lower(Event.actor) == address.lower(),
        _mentions(Event.data, address)))).all()
    _redact_events(session, list(events))
    session.execute(update(LegalHold).where(_mentions(LegalHold.reason, address))
                    .values(reason=ERASED))


def _redact_events(session: Session, event_ids: list[int]) -> None:
    """Who did it and the details go; that it happened, when and on which ticket stay. The
    audit chain keeps each row's digest, so `events verify` still passes."""
    for chunk in _chunks(event_ids):
        audit.redact(session, chunk)


def _delete_outbox(session: Session, ticket_ids: list[int], contact: Contact) -> int:
    """Mail about them or to them: not sent any more, and its bytes gone."""
    their_key = select(ContactKey.id).where(ContactKey.contact_id == contact.id)
    where = or_(OutboxMessage.ticket_id.in_(ticket_ids), OutboxMessage.key_id.in_(their_key),
                _mentions(OutboxMessage.recipients, contact.address),
                _mentions(OutboxMessage.accepted, contact.address),
                _mentions(OutboxMessage.refused, contact.address))
    return session.execute(delete(OutboxMessage).where(where)).rowcount or 0


def _mentions(column: Any, address: str) -> Any:
    """The column's text (JSON as text) contains the address, case-insensitively."""
    escaped = address.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column.cast(Text)).like(f"%{escaped}%", escape="\\")


def _destroy_key(session: Session, contact_id: int) -> bool:
    return bool(session.execute(
        update(ContactKey).where(ContactKey.contact_id == contact_id,
                                 ContactKey.wrapped.is_not(None))
        .values(wrapped=None, master_key_id=None, destroyed_at=utcnow())).rowcount)


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
