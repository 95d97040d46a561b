"""A person's data handed back (a subject-access request): one zip file.

    contact.json                              who they are to us, and their tickets
    tickets/<number>/ticket.json              the ticket, every message (text, headers,
                                              attachments) and every event
    tickets/<number>/received/<id>.eml        each mail they sent, byte for byte as received
    tickets/<number>/attachments/<id>-<n>-<filename>   the attachments of those mails
    tickets/<number>/sent/<outbox id>.eml     each mail we sent them, as sent
    manifest.json                             every file above with its size and sha256

Tickets are theirs when they requested them or took part in them. Memory stays bounded
whatever their number of mails: one ticket's rows and one file at a time, streamed into the
zip.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from storage.blobs import BlobStore
from storage.models import Contact, Event, Message, OutboxMessage, Participant, Ticket
from storage.outbox import plain_raw
from storage.queries import ticket_as_dict
from storage.vault import vault_of

_SAFE = re.compile(r"[^\w.\-]+")


class NoSuchContact(Exception):
    pass


@dataclass
class ExportReport:
    contact_id: int
    tickets: int = 0
    received: int = 0
    sent: int = 0
    attachments: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)  # the manifest


def export(session: Session, blobs: BlobStore, address: str, out: IO[bytes]) -> ExportReport:
    address = address.strip().lower()
    contact = session.scalar(select(Contact).where(func.lower(Contact.address) == address))
    if contact is None:
        raise NoSuchContact(f"no contact with the address {address}")
    report = ExportReport(contact.id)
    person = {"address": contact.address, "name": contact.name, "language": contact.language,
              "created_at": _iso(contact.created_at),
              # what the desk holds on them for responsible gambling, under every brand
              "safeguarded": _iso(contact.safeguarded_at),
              "safeguard_intent": contact.safeguard_intent,
              "safeguard_brand": contact.safeguard_brand}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        numbers = []
        for ticket_id in _their_ticket_ids(session, contact):
            ticket = session.scalar(select(Ticket).where(Ticket.id == ticket_id).options(
                selectinload(Ticket.messages).selectinload(Message.attachments)))
            assert ticket is not None
            numbers.append(ticket.number)
            _ticket(session, blobs, archive, ticket, address, report)
            session.expunge_all()  # one ticket's rows in memory at a time
        _write(archive, report, "contact.json", _json({**person, "tickets": numbers}))
        manifest = {"address": address, "files": report.files}
        archive.writestr("manifest.json", _json(manifest))
    return report


def _their_ticket_ids(session: Session, contact: Contact) -> Iterator[int]:
    query = select(Ticket.id).where(or_(
        Ticket.requester_id == contact.id,
        Ticket.id.in_(select(Participant.ticket_id).where(
            func.lower(Participant.address) == contact.address.lower())),
    )).order_by(Ticket.id)
    yield from list(session.scalars(query))


def _ticket(session: Session, blobs: BlobStore, archive: zipfile.ZipFile, ticket: Ticket,
            address: str, report: ExportReport) -> None:
    base = f"tickets/{ticket.number}"
    doc = ticket_as_dict(ticket)
    if ticket.requester.address.lower() != address:
        # Only copied in: the requester's address and responsible-gambling flag are
        # another person's data, not this person's to receive.
        del doc["requester"], doc["requester_safeguarded"]
    vault = vault_of(session)
    keys: dict[int, Any] = {}
    for message, shown in zip(ticket.messages, doc["messages"], strict=True):
        shown["id"] = message.id
        if message.direction != "in" or message.sender.lower() != address \
                or not message.raw_sha256:
            continue
        key = None
        if message.key_id is not None:
            if vault is None:
                raise RuntimeError("sealed mail and no [privacy] key_file to open it")
            key = keys.setdefault(message.key_id, vault.key(session, message.key_id))
        try:
            raw = blobs.get_raw(message.raw_sha256, key)
        except FileNotFoundError:  # removed by a retention rule: say so, export the rest
            shown["eml"] = None
            shown["removed"] = "raw mail removed under the retention rules"
        else:
            shown["eml"] = f"{base}/received/{message.id}.eml"
            _write(archive, report, shown["eml"], raw)
            report.received += 1
        for n, (att, listed) in enumerate(zip(message.attachments, shown["attachments"],
                                              strict=True), 1):
            if att.removed_at is not None:
                listed["file"] = None
                listed["removed"] = "attachment removed under the retention rules"
                continue
            listed["file"] = f"{base}/attachments/{message.id}-{n}-{_safe(att.filename)}"
            _write(archive, report, listed["file"], blobs.get_attachment(att.sha256, key))
            report.attachments += 1
    doc["sent"] = list(_sent(session, archive, ticket, address, base, report))
    doc["events"] = [
        {"kind": e.kind, "actor": e.actor, "data": e.data, "at": _iso(e.created_at)}
        for e in session.scalars(select(Event).where(Event.ticket_id == ticket.id)
                                 .order_by(Event.id))
    ]
    _write(archive, report, f"{base}/ticket.json", _json(doc))
    report.tickets += 1


def _sent(session: Session, archive: zipfile.ZipFile, ticket: Ticket, address: str, base: str,
          report: ExportReport) -> Iterator[dict[str, Any]]:
    """Our mails to them on this ticket, one row's bytes at a time."""
    ids = session.scalars(select(OutboxMessage.id).where(OutboxMessage.ticket_id == ticket.id)
                          .order_by(OutboxMessage.id)).all()
    for outbox_id in ids:
        row = session.get(OutboxMessage, outbox_id)
        assert row is not None
        if address not in {a.lower() for a in [*row.recipients, *row.accepted, *row.refused]}:
            continue
        name: str | None = None
        if row.raw:  # emptied by a retention rule: listed without its bytes
            name = f"{base}/sent/{row.id}.eml"
            _write(archive, report, name,
                   plain_raw(session, row.raw, row.key_id, row.message_id))
            report.sent += 1
        yield {"eml": name, "kind": row.kind, "message_id": row.message_id, "state": row.state,
               "created_at": _iso(row.created_at), "sent_at": _iso(row.sent_at)}
        session.expunge(row)


def _write(archive: zipfile.ZipFile, report: ExportReport, name: str, data: bytes) -> None:
    with archive.open(name, "w", force_zip64=True) as fh:
        fh.write(data)
    report.files.append({"path": name, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()})


def _safe(filename: str) -> str:
    return _SAFE.sub("_", filename).strip("._")[:100] or "attachment"


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str).encode()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
