"""A help desk with data of known ages, for the retention tests: real mails ingested (raw
files and attachments on disk), then dated back, closed, held and answered as each test
needs; with a master key (encryption at rest) every file is sealed with its sender's data
key and named by HMAC(data key, sha256)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from daemon.ingest import Ingestor, IngestPolicy
from daemon.retention import RetentionRules
from parsers.spam import SpamPolicy
from storage import db, dbcipher, holds, outbox, queries
from storage.blobs import BlobStore
from storage.crypto import DataKey, MasterKeys
from storage.models import IngestRecord, Message, OutboxMessage, StoredAttachment, Ticket, utcnow
from storage.vault import Vault
from tests.support.mails import mail

POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}), spam=SpamPolicy())
# Our MTA's hop on top, its filter's verdict above it: a spam verdict ingest trusts.
SPAM_HEADERS = (b"X-Spam-Flag: YES\r\n"
                b"Received: from mx.mail.test by mx1.casino.test (Postfix) with ESMTPS\r\n")
# What an escalation on anna's ticket quoted of her, without her address.
ANNA_QUOTED = "escalation quoting what anna asked"
RULES = RetentionRules(raw_mail=timedelta(days=10), attachments=timedelta(days=20),
                       sent_mail=timedelta(days=5), closed_tickets=timedelta(days=30),
                       rejected_mail=timedelta(days=3), batch=2)
# As [retention] in a config file, for the command line.
RULES_TOML = {"raw_mail": "10d", "attachments": "20d", "sent_mail": "5d",
              "closed_tickets": "30d", "rejected_mail": "3d", "batch": 2}
PASSPORT = b"%PDF-1.4 passport scan of two players who share a file " + b"x" * 200
STATEMENT = b"%PDF-1.4 bank statement " + b"y" * 200
SCREENSHOT = b"%PDF-1.4 screenshot " + b"z" * 200
PHISHING = b"%PDF-1.4 an invoice a robot sent " + b"w" * 200
MASTER_KEY = bytes(range(32))  # as the key file holds it, base64: MASTER_KEY_LINE
MASTER_KEY_LINE = base64.b64encode(MASTER_KEY).decode()


@dataclass
class Desk:
    sessions: sessionmaker[Session]
    blobs: BlobStore
    now: datetime  # the moment the ages below are counted from
    tickets: dict[str, int]  # name -> ticket id
    raw: dict[str, str]  # name -> raw digest
    attachments: dict[str, str]  # file name -> digest
    sent: dict[str, int]  # name -> outbox id
    key_ids: dict[str, int | None]  # raw or attachment name -> the id of the key sealing it

    @property
    def sealed(self) -> bool:
        return db.vault_of_factory(self.sessions) is not None

    def key(self, name: str) -> DataKey | None:
        key_id = self.key_ids[name]
        if key_id is None:
            return None
        vault = db.vault_of_factory(self.sessions)
        with self.sessions() as session:
            return vault.key(session, key_id)

    def raw_on_disk(self, name: str) -> bool:
        return self.blobs.raw_path(self.raw[name], self.key(name)).exists()

    def attachment_on_disk(self, name: str) -> bool:
        return self.blobs.attachment_path(self.attachments[name], self.key(name)).exists()

    def stored_files(self) -> set[Path]:
        """Every raw mail and attachment in the store, the trash left out."""
        return {p for kind in ("raw", "attachments") for p in (self.blobs.root / kind).rglob("*")
                if p.is_file()}


def _engine(db_url: str, vault: Vault | None) -> Engine:
    """With a key, a SQLite database is sealed first (`privacy encrypt-db`) and opened with
    SQLCipher, as `ticketd` opens it with the same key file."""
    url = make_url(db_url)
    if vault and url.get_backend_name() == "sqlite" and dbcipher.state(url.database) == "plain":
        dbcipher.encrypt(url.database, vault.masters)
    return db.make_engine(db_url, masters=vault.masters if vault else None)


def build(db_url: str, state: Path, master_key: bytes | None = None) -> Desk:
    """anna: one ticket closed 35 days ago (passport). dora: the same, held (same passport).
    boris: an open ticket 15 days old (statement), a closed one. carl: a ticket 2 days old
    (screenshot). An auto-reply ignored 4 days ago, with an attachment. Sent mail 6 and 1
    days ago, one of them on dora's held ticket, and a pending one."""
    vault = Vault(MasterKeys.of((master_key,))) if master_key else None
    sessions = db.session_factory(_engine(db_url, vault), vault)
    blobs = BlobStore(state, fsync=False)
    ingestor = Ingestor(sessions, blobs, POLICY)
    now = utcnow()
    desk = Desk(sessions, blobs, now, {}, {}, {}, {}, {})
    _ticket(desk, ingestor, "anna", 40, "Anna <anna@players.test>", "Withdrawal to Anna's card",
            ("passport.pdf", PASSPORT), closed_days=35)
    _ticket(desk, ingestor, "dora", 40, "Dora <dora@players.test>", "Dora's bonus",
            ("passport.pdf", PASSPORT), closed_days=35)
    _ticket(desk, ingestor, "boris", 15, "Boris <boris@players.test>", "Boris's statement",
            ("statement.pdf", STATEMENT))
    _ticket(desk, ingestor, "boris_old", 40, "Boris <boris@players.test>", "Boris, old",
            None, closed_days=35)
    _ticket(desk, ingestor, "carl", 2, "Carl <carl@players.test>", "Carl's screenshot",
            ("screen.pdf", SCREENSHOT))
    robot = mail("Robot <robot@players.test>", "Out of office", "I am away",
                 headers={"Auto-Submitted": "auto-replied"},
                 attachments=(("invoice.pdf", "application/pdf", PHISHING),))
    assert ingestor.ingest(robot, "test").outcome == "ignored"
    desk.raw["robot"], desk.key_ids["robot"] = _latest_raw(sessions)
    desk.attachments["robot/invoice.pdf"] = hashlib.sha256(PHISHING).hexdigest()
    desk.key_ids["robot/invoice.pdf"] = desk.key_ids["robot"]
    assert desk.attachment_on_disk("robot/invoice.pdf")  # written, though no row names it
    _age_raw(sessions, desk.raw["robot"], now - timedelta(days=4))
    spam = SPAM_HEADERS + mail("Pills <pills@players.test>", "Cheap pills", "Buy now")
    assert ingestor.ingest(spam, "test").outcome == "spam"
    desk.raw["spam"], desk.key_ids["spam"] = _latest_raw(sessions)
    _age_raw(sessions, desk.raw["spam"], now - timedelta(days=4))
    with sessions.begin() as session:
        holds.place(session, contact_id=_requester(session, desk.tickets["dora"]),
                    reason="AML review", by="mlro@casino.test")
        for name, ticket, days, state_ in (("old", "carl", 6, "sent"), ("new", "carl", 1, "sent"),
                                           ("held", "dora", 6, "sent"),
                                           ("pending", "carl", 10, "pending")):
            desk.sent[name] = _sent(session, desk.tickets[ticket], name, now - timedelta(days),
                                    state_)
        # An escalation of anna's ticket to an agent that could not be delivered: its text is
        # kept on the ticket as a mail_queued event, and it quotes her without her address.
        _sent(session, desk.tickets["anna"], "escalation", now - timedelta(days=36), "dead",
              text=ANNA_QUOTED, to="rita@casino.test")
    return desk


def _ticket(desk: Desk, ingestor: Ingestor, name: str, days: int, sender: str, subject: str,
            attachment: tuple[str, bytes] | None, closed_days: int | None = None) -> None:
    files = ((attachment[0], "application/pdf", attachment[1]),) if attachment else ()
    raw = mail(sender, subject, f"{subject}: the text only {name} wrote", attachments=files)
    result = ingestor.ingest(raw, "test")
    assert result.outcome == "ticket", result
    sessions, when = desk.sessions, desk.now - timedelta(days=days)
    with sessions.begin() as session:
        ticket_id = session.scalar(select(Ticket.id).where(Ticket.number == result.ticket_number))
        assert ticket_id is not None
        desk.tickets[name] = ticket_id
        session.execute(update(Ticket).where(Ticket.id == ticket_id)
                        .values(created_at=when, updated_at=when))
        session.execute(update(Message).where(Message.ticket_id == ticket_id)
                        .values(created_at=when))
        session.execute(update(IngestRecord).where(IngestRecord.ticket_id == ticket_id)
                        .values(created_at=when))
        desk.raw[name], desk.key_ids[name] = session.execute(
            select(IngestRecord.raw_sha256, IngestRecord.key_id)
            .where(IngestRecord.ticket_id == ticket_id)).one()
        if attachment:
            file = f"{name}/{attachment[0]}"
            desk.attachments[file], desk.key_ids[file] = session.execute(
                select(StoredAttachment.sha256, Message.key_id).join(Message)
                .where(Message.ticket_id == ticket_id)).one()
        if closed_days is not None:
            closed = desk.now - timedelta(days=closed_days)
            session.execute(update(Ticket).where(Ticket.id == ticket_id).values(
                status="closed", resolved_at=closed, updated_at=closed))


def _latest_raw(sessions: sessionmaker[Session]) -> tuple[str, int | None]:
    with sessions() as session:
        digest, key_id = session.execute(select(IngestRecord.raw_sha256, IngestRecord.key_id)
                                         .order_by(IngestRecord.id.desc()).limit(1)).one()
    assert digest is not None
    return digest, key_id


def _age_raw(sessions: sessionmaker[Session], digest: str, when: datetime) -> None:
    with sessions.begin() as session:
        session.execute(update(IngestRecord).where(IngestRecord.raw_sha256 == digest)
                        .values(created_at=when))


def _requester(session: Session, ticket_id: int) -> int:
    found = session.scalar(select(Ticket.requester_id).where(Ticket.id == ticket_id))
    assert found is not None
    return found


def _sent(session: Session, ticket_id: int, name: str, when: datetime, state: str,
          text: str = "", to: str = "player@players.test") -> int:
    """An outbox row and its mail_queued event, as every sender of the daemon writes them."""
    raw = f"Subject: {name}\r\n\r\n{text or sent_text_of(name)}\r\n".encode()
    row = outbox.enqueue(session, raw=raw, message_id=f"<{name}@casino.test>",
                         envelope_from="support@casino.test", recipients=[to], kind="relay",
                         ticket_id=ticket_id, now=when)
    queries.record_sent_mail(session, ticket_id, outbox_id=row, kind="relay",
                             message_id=f"<{name}@casino.test>", recipients=[to], raw=raw)
    if state != "pending":
        session.execute(update(OutboxMessage).where(OutboxMessage.id == row).values(
            state=state, sent_at=when if state == "sent" else None, recipients=[]))
    return row


def sent_text_of(name: str) -> str:
    """The body of the outbox row `name` (desk.sent)."""
    return f"answer {name}"
