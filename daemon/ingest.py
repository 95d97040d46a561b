"""One mail in, one transaction: parse → classify → thread → store (DESIGN invariant 1 and 7).

`Ingestor.ingest` is the only place that joins the stages. It returns an
outcome the caller acts on (move the mail to Processed or Quarantine, or
leave it in the mailbox and try again later); it never lets one bad mail
stop the loop, and never records a mail it could not store.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from daemon.failpoints import failpoint
from parsers import DEFAULT_RULES, InboundMail, Limits, RejectedMail, Rule, classify, detect_language, parse
from parsers.ingest_key import ingest_key
from storage import queries
from storage.blobs import BlobStore

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
        record = {"ingest_key": key, "source": source[:400], "header_message_id": message_id,
                  "raw_sha256": digest, "raw_size": len(raw)}
        with self.sessions.begin() as session:
            if ignored:
                queries.insert_ingest_record(session, outcome="ignored", reason=ignored, **record)
                queries.insert_event(session, "ignored", reason=ignored, ingest_key=key)
                result = IngestResult(key, "ignored", ignored)
            else:
                result = self._store(session, mail, record)
        failpoint("after-commit")
        log.info(
            "ingested key=%s outcome=%s ticket=%s", key, result.outcome, result.ticket_number or "-"
        )
        return result

    def _store(self, session: Session, mail: InboundMail, record: dict) -> IngestResult:
        assert mail.sender is not None
        found = queries.ticket_for_references(session, [*mail.references, *mail.in_reply_to])
        outcome: Outcome = "follow_up" if found else "ticket"
        ticket_id, number = found or self._open_ticket(session, mail)
        message_id = queries.insert_message(
            session,
            ticket_id=ticket_id,
            direction="in",
            kind="complaint" if outcome == "ticket" else "follow_up",
            sender=mail.sender.addr,
            sender_name=mail.sender.name[:200],
            subject=mail.subject,
            header_message_id=mail.message_id,
            in_reply_to=" ".join(mail.in_reply_to) or None,
            references=" ".join(mail.references) or None,
            raw_sha256=record["raw_sha256"],
            raw_size=record["raw_size"],
            visible_text=mail.text.strip(),
            full_text=mail.text,
        )
        queries.insert_attachments(session, message_id, mail.attachments)
        if found:
            queries.touch_ticket(session, ticket_id)
        queries.insert_ingest_record(
            session, outcome=outcome, ticket_id=ticket_id, message_id=message_id, **record
        )
        queries.insert_event(session, "created" if outcome == "ticket" else "follow_up", ticket_id,
                             actor=mail.sender.addr, ingest_key=record["ingest_key"])
        return IngestResult(record["ingest_key"], outcome, "", number)

    def _open_ticket(self, session: Session, mail: InboundMail) -> tuple[int, int]:
        assert mail.sender is not None
        found = classify(mail.subject, mail.text, self.policy.rules)
        language = detect_language(mail.subject, mail.text) or self.policy.default_language
        requester = queries.contact_id(session, mail.sender.addr, mail.sender.name[:200], language)
        return queries.insert_ticket(
            session,
            subject=mail.subject[:1000],
            category=found.category,
            priority=found.priority,
            language=language,
            requester_id=requester,
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
            known = queries.ingested_outcome(session, key)
        if known is None:
            return None
        outcome, reason, number = known
        return IngestResult(key, outcome, reason, number, duplicate=True)  # type: ignore[arg-type]

    def _quarantine(
        self, raw: bytes, source: str, key: str, message_id: str | None, digest: str, reason: str
    ) -> IngestResult:
        try:
            if raw:
                self.blobs.put_raw(raw)
            with self.sessions.begin() as session:
                queries.insert_ingest_record(
                    session, ingest_key=key, outcome="quarantined", reason=reason[:2000],
                    source=source[:400], header_message_id=message_id, raw_sha256=digest,
                    raw_size=len(raw),
                )
                queries.insert_event(session, "quarantined", reason=reason, ingest_key=key)
        except sa_exc.IntegrityError:
            return self._already(key) or IngestResult(key, "quarantined", reason)
        except (sa_exc.SQLAlchemyError, OSError) as err:
            raise TemporaryFailure(f"cannot record quarantine: {_first_line(err)}") from err
        log.warning("quarantined key=%s reason=%s", key, reason)
        return IngestResult(key, "quarantined", reason)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__
