"""One mail in, one transaction: parse → classify → thread → store (DESIGN invariant 1 and 7).

`Ingestor.ingest` is the only place that joins the stages. It returns an
outcome the caller acts on (move the mail to Processed or Quarantine, or
leave it in the mailbox and try again later); it never lets one bad mail
stop the loop, and never records a mail it could not store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from parsers import DEFAULT_RULES, InboundMail, Limits, RejectedMail, Rule, classify, detect_language, parse
from parsers.ingest_key import ingest_key
from storage import queries
from storage.blobs import BlobStore
from storage.models import IngestRecord, Message, Ticket

log = logging.getLogger(__name__)

Outcome = Literal["ticket", "follow_up", "ignored", "quarantined"]
LOOP_HEADER = "x-ticketd-loop"


class TemporaryFailure(Exception):
    """Storing failed for a reason that may pass (database locked or down, disk full)."""


@dataclass(frozen=True)
class IngestPolicy:
    support_addresses: frozenset[str] = frozenset({"support@localhost"})
    default_language: str = "en"
    limits: Limits = field(default_factory=Limits)
    rules: tuple[Rule, ...] = DEFAULT_RULES


@dataclass(frozen=True)
class IngestResult:
    key: str
    outcome: Outcome
    reason: str = ""
    ticket_number: int | None = None
    duplicate: bool = False


class Ingestor:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, policy: IngestPolicy):
        self.sessions = sessions
        self.blobs = blobs
        self.policy = policy

    def ingest(self, raw: bytes, source: str = "") -> IngestResult:
        key, message_id, digest = ingest_key(raw)
        try:
            return self._ingest(raw, source, key, message_id, digest)
        except TemporaryFailure:
            raise
        except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError) as err:
            raise TemporaryFailure(f"{type(err).__name__}: {_first_line(err)}") from err
        except sa_exc.IntegrityError:
            # Another worker stored the same key between our look-up and commit.
            return self._already(key) or self._quarantine(raw, source, key, message_id, digest, "conflict")
        except Exception as err:  # a bug on one mail must not stop the mailbox
            log.exception("ingest failed key=%s", key)
            reason = f"internal error: {type(err).__name__}"
            return self._quarantine(raw, source, key, message_id, digest, reason)

    def refuse_unfetched(self, source: str, size: int) -> IngestResult:
        """A mail too large to download: recorded as quarantined by where it was, not by content."""
        key = hashlib.sha256(f"unfetched\n{source}\n{size}".encode()).hexdigest()
        limit = self.policy.limits.max_message_bytes
        reason = f"message too large: {size:,} bytes > {limit:,}; left in the quarantine folder"
        return self._quarantine(b"", source, key, None, hashlib.sha256(b"").hexdigest(), reason)

    def _ingest(
        self, raw: bytes, source: str, key: str, message_id: str | None, digest: str
    ) -> IngestResult:
        known = self._already(key)
        if known:
            return known
        try:
            mail = parse(raw, self.policy.limits)
        except RejectedMail as rejected:
            return self._quarantine(raw, source, key, message_id, digest, rejected.reason)
        ignored = self._ignore_reason(mail)
        self.blobs.put_raw(raw)
        for part in mail.attachments:
            self.blobs.put_attachment(part.payload, part.sha256)
        with self.sessions.begin() as session:
            if ignored:
                record = _record(key, "ignored", ignored, source, message_id, digest, len(raw))
                session.add(record)
                queries.add_event(session, "ignored", reason=ignored, ingest_key=key)
                result = IngestResult(key, "ignored", ignored)
            else:
                result = self._store(session, mail, raw, source, key, digest)
        _failpoint("after-commit")
        log.info(
            "ingested key=%s outcome=%s ticket=%s", key, result.outcome, result.ticket_number or "-"
        )
        return result

    def _store(
        self, session: Session, mail: InboundMail, raw: bytes, source: str, key: str, digest: str
    ) -> IngestResult:
        assert mail.sender is not None
        ticket = queries.ticket_for_references(session, [*mail.references, *mail.in_reply_to])
        outcome: Outcome = "follow_up" if ticket else "ticket"
        if ticket is None:
            ticket = self._open_ticket(session, mail)
        message = Message(
            ticket=ticket,
            direction="in",
            kind="complaint" if outcome == "ticket" else "follow_up",
            sender=mail.sender.addr,
            sender_name=mail.sender.name[:200],
            subject=mail.subject,
            header_message_id=mail.message_id,
            in_reply_to=" ".join(mail.in_reply_to) or None,
            references=" ".join(mail.references) or None,
            raw_sha256=digest,
            raw_size=len(raw),
            visible_text=mail.text.strip(),
            full_text=mail.text,
        )
        session.add(message)
        session.add_all(queries.attachment_rows(message, mail.attachments))
        session.flush()
        ticket.updated_at = message.created_at
        session.add(_record(key, outcome, "", source, mail.message_id, digest, len(raw), ticket, message))
        queries.add_event(session, "created" if outcome == "ticket" else "follow_up", ticket,
                          actor=mail.sender.addr, ingest_key=key)
        return IngestResult(key, outcome, "", ticket.number)

    def _open_ticket(self, session: Session, mail: InboundMail) -> Ticket:
        assert mail.sender is not None
        found = classify(mail.subject, mail.text, self.policy.rules)
        language = detect_language(mail.subject, mail.text) or self.policy.default_language
        requester = queries.contact_for(session, mail.sender.addr, mail.sender.name[:200], language)
        return queries.create_ticket(
            session,
            subject=mail.subject[:1000],
            category=found.category,
            priority=found.priority,
            language=language,
            requester=requester,
        )

    def _ignore_reason(self, mail: InboundMail) -> str:
        if mail.sender is None:
            return "no sender address"
        if mail.sender.addr in self.policy.support_addresses:
            return "sent by our own address"
        if mail.header(LOOP_HEADER):
            return "carries our loop header"
        return ""

    def _already(self, key: str) -> IngestResult | None:
        with self.sessions() as session:
            record = queries.find_ingested(session, key)
            if record is None:
                return None
            number = session.get(Ticket, record.ticket_id).number if record.ticket_id else None
            return IngestResult(key, record.outcome, record.reason, number, duplicate=True)  # type: ignore[arg-type]

    def _quarantine(
        self, raw: bytes, source: str, key: str, message_id: str | None, digest: str, reason: str
    ) -> IngestResult:
        try:
            if raw:
                self.blobs.put_raw(raw)
            with self.sessions.begin() as session:
                session.add(_record(key, "quarantined", reason, source, message_id, digest, len(raw)))
                queries.add_event(session, "quarantined", reason=reason, ingest_key=key)
        except sa_exc.IntegrityError:
            return self._already(key) or IngestResult(key, "quarantined", reason)
        except (sa_exc.SQLAlchemyError, OSError) as err:
            raise TemporaryFailure(f"cannot record quarantine: {_first_line(err)}") from err
        log.warning("quarantined key=%s reason=%s", key, reason)
        return IngestResult(key, "quarantined", reason)


def _record(
    key: str,
    outcome: str,
    reason: str,
    source: str,
    message_id: str | None,
    digest: str,
    size: int,
    ticket: Ticket | None = None,
    message: Message | None = None,
) -> IngestRecord:
    return IngestRecord(
        ingest_key=key,
        outcome=outcome,
        reason=reason[:2000],
        source=source[:400],
        header_message_id=message_id,
        raw_sha256=digest,
        raw_size=size,
        ticket_id=ticket.id if ticket else None,
        message_id=message.id if message else None,
    )


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__


def _failpoint(name: str) -> None:
    """Crash on purpose at a named point, for the crash-recovery tests (TICKETD_FAILPOINT)."""
    if os.environ.get("TICKETD_FAILPOINT") == name:
        log.warning("failpoint %s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
