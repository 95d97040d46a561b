"""Mail in, one transaction: parse → classify → thread → store (DESIGN invariant 1 and 7).

`Ingestor.ingest_many` is the only place that joins the stages. It takes a
batch of mails (the runner's fetch; `ingest` is a batch of one), stores each
in its own savepoint of one transaction, and returns an outcome per mail that
the caller acts on (move the mail to Processed or Quarantine, or leave it in
the mailbox and try again later); it never lets one bad mail stop the loop,
and never records a mail it could not store. One commit per batch is what
makes a backlog fast: the durable commit, not the parse, was most of the cost.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from daemon import complaint_rules, complaints, rg_spam
from daemon.conversation import Decision, References, asks_for_appeal, decide
from daemon.failpoints import failpoint
from daemon.logs import failure_fields
from daemon.responsible import known_safeguarded, safeguard
from daemon.safety import Screener, Screening, check_only
from daemon.scan import ScannerUnavailable
from daemon.sla import (
    SlaOptions,
    clocks_for_appeal,
    clocks_for_follow_up,
    clocks_for_new_ticket,
)
from daemon.team import (
    TeamPolicy,
    handle_agent_mail,
    is_agent_mail,
    refuse_forward,
    route_and_notify,
)
from daemon.webhooks import queue_event
from parsers import (
    DEFAULT_RULES,
    InboundMail,
    Limits,
    RejectedMail,
    Rule,
    classify,
    detect_language,
    parse,
)
from parsers.authres import verify_sender
from parsers.automated import automated_reason, is_bounce, own_address, responder_reason
from parsers.bounce import bounce_info
from parsers.forward import forwarded_original, is_forward_subject
from parsers.ingest_key import content_digest, ingest_key
from parsers.language import DESK_LANGUAGES
from parsers.reply import visible_text
from parsers.rg import RG_CATEGORY, RgHit, responsible_gambling
from parsers.spam import SpamPolicy, spam_verdict
from responders.acks import AckPolicy, acknowledge
from responders.complaint_profiles import ComplaintProfile
from responders.identity import DEFAULT_BRAND
from responders.loops import LoopPolicy, responder_sign
from responders.references import (
    numbers_in_subject,
    strip_reply_prefixes,
    token_from_address,
    verify_message_id,
)
from responders.webhooks import TICKET_CREATED, WebhookEvents
from storage import complaints as complaint_records
from storage import erasure, queries
from storage import spam as spam_store
from storage.blobs import BlobBatch, BlobStore
from storage.crypto import DataKey, KeyProblem
from storage.db import vault_of_factory
from storage.models import Ticket, utcnow
from storage.queries import TicketFacts, TicketSummary

log = logging.getLogger(__name__)
RESPONDER_SIGN = "responder: "  # why a mail without Auto-Submitted is taken for a machine's

# "held": not stored, left in the mailbox to try again (clamd away, [scan] on_unavailable = hold)
Outcome = Literal["ticket", "follow_up", "ignored", "quarantined", "spam", "held"]
LOOP_HEADER = "x-ticketd-loop"


class TemporaryFailure(Exception):
    """Storing failed for a reason that may pass (database locked or down, disk full)."""


@dataclass(frozen=True)
class IngestPolicy:
    support_addresses: frozenset[str] = frozenset({"support@localhost"})
    default_language: str = "en"
    languages: tuple[str, ...] = DESK_LANGUAGES  # what a mail may be found to be written in
    limits: Limits = field(default_factory=Limits)
    rules: tuple[Rule, ...] = DEFAULT_RULES
    keys: tuple[bytes, ...] = field(default=(), repr=False)  # HMAC keys, newest first
    subject_tag: str = "[#{number}]"
    reopen_window: timedelta = timedelta(days=14)
    escalation_keywords: tuple[str, ...] = ("escalate", "appeal", "обжаловать", "жалоба на решение")
    ack: AckPolicy | None = None  # None: no acknowledgements (ingest-only set-ups, some tests)
    agents: frozenset[str] = frozenset()  # configured agents' addresses
    team: TeamPolicy | None = None  # notifications and agents' mail; None: no team configured
    sla: SlaOptions | None = None  # SLA clocks; None: no clocks (ingest-only set-ups, tests)
    authserv_id: str = ""  # our MTA's Authentication-Results id; "" trusts no agent mail
    spam: SpamPolicy | None = None  # our MTA's spam verdicts; None: no header is trusted
    rg_group: str = "responsible_gaming"  # where a responsible-gambling hit sends the ticket
    webhooks: WebhookEvents | None = None  # events queued for the platform; None: [webhooks] off
    complaints: ComplaintProfile = field(default_factory=ComplaintProfile)  # [complaints]
    adr_addresses: frozenset[str] = frozenset()  # an ADR body's mail is an enquiry
    loops: LoopPolicy | None = None  # responder signs in replies to our mail; None: not looked at
    brand: str = DEFAULT_BRAND  # the brand of the mailbox: what a ticket opened here is under

    @property
    def support_address(self) -> str:
        return min(self.support_addresses)


@dataclass(frozen=True)
class IngestResult:
    key: str
    outcome: Outcome
    reason: str = ""
    ticket_number: int | None = None
    duplicate: bool = False


@dataclass
class _Arrival:
    """One mail of a batch after the work that needs no database: its key, the parse, and
    why it would be ignored or quarantined."""

    raw: bytes
    source: str
    key: str
    message_id: str | None
    digest: str
    mail: InboundMail | None = None
    rejected: str = ""  # the parser's reason: the mail is quarantined
    ignored: str = ""
    automated: str = ""
    screening: Screening = field(default_factory=Screening)  # spam verdict, scan results
    released: bool = False  # `ticketd spam release`: ingest it whatever the spam verdict
    rg_intent: str = ""  # spam kept as spam with a responsible-gambling sentence: flagged
    rescued: str = ""  # why a spam verdict was set aside (daemon.rg_spam)
    held: str = ""  # why it is not stored now (the scanner is away); tried again later
    key_id: int | None = None  # the data key its files are sealed with; None: in clear
    content: str | None = None  # content_digest(raw): None for a mail never fetched
    delivered_at: datetime | None = None  # when our mailbox got it (IMAP INTERNALDATE)

    @property
    def record(self) -> dict:
        return {"ingest_key": self.key, "source": self.source[:400],
                "header_message_id": self.message_id, "raw_sha256": self.digest,
                "content_sha256": self.content, "raw_size": len(self.raw),
                "key_id": self.key_id}


class Ingestor:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, policy: IngestPolicy,
                 screener: Screener | None = None,
                 brands: Mapping[str, IngestPolicy] | None = None):
        self.sessions = sessions
        self.blobs = blobs
        self.policy = policy  # the mailbox's brand: what a new ticket opens under
        # brand -> its policy: a mail joining a ticket meets the ticket's brand's rules
        # (responsible-gambling group, complaint profile), whichever mailbox it came in at
        self.brands = brands or {}
        self.screener = screener  # None: no clamd; programs are still never forwarded
        self.vault = vault_of_factory(sessions)  # None: files are stored in clear

    def ingest(self, raw: bytes, source: str = "",
               delivered_at: datetime | None = None) -> IngestResult:
        """One mail; a mail held for the scanner is a TemporaryFailure (an MTA retries it)."""
        result = self.ingest_many([(raw, source, delivered_at)])[0]
        if result.outcome == "held":
            raise TemporaryFailure(result.reason)
        return result

    def ingest_many(self, mails: Sequence[tuple[bytes, str] | tuple[bytes, str, datetime | None]],
                    *, released: bool = False) -> list[IngestResult]:
        """Several mails, one transaction: one commit and one flush of the files for the
        batch. A mail whose storing fails on a bug is quarantined and the rest go on (the
        batch is stored again with a savepoint each); a temporary failure (database or disk)
        records none of them. Each mail is (raw, source) or (raw, source, when the mailbox
        got it: a complaint's receipt)."""
        try:
            results = self._ingest_batch(mails, released, hold=True)
        except TemporaryFailure:
            raise
        except Exception as err:  # noqa: BLE001 - the batch is stored again, row by row
            # One mail failed on a bug, or a held row failed as the batch ended: another
            # daemon stored one of these mails since the batch looked (its ingest record
            # clashes), or one mail's row is bad. All of it was rolled back. Stored again
            # with each mail in its own savepoint and its rows written there, the race is
            # that mail's duplicate and a bug or a bad row quarantines only its mail, as the
            # savepoints promise; a second failure is the caller's.
            log.warning("batch stored again row by row", extra={"fields": {
                "mails": len(mails), **failure_fields(err)}})
            results = self._ingest_batch(mails, released, hold=False)
        failpoint("after-commit")
        for result in results:
            if result.outcome == "quarantined" and not result.duplicate:
                log.warning("quarantined", extra={"fields": {"key": result.key,
                                                             "reason": result.reason}})
            else:
                log.info("ingested", extra={"fields": {"key": result.key, "outcome": result.outcome,
                                                       "ticket": result.ticket_number}})
        return results

    def _ingest_batch(self, mails: Sequence[tuple[bytes, str] | tuple[bytes, str, datetime | None]],
                      released: bool, hold: bool) -> list[IngestResult]:
        """`ingest_many`'s one try. With `hold` (the first), no mail has a savepoint of its
        own and the batch's events and ingest records are inserted as it ends
        (storage.queries.hold_rows): a key another daemon stored meanwhile clashes there and
        fails the try, as any other error does. Without, each mail is
        stored in its own savepoint with its rows, where a bug, a clash or a bad row is that
        mail's alone."""
        try:
            with self.blobs.batch() as files:
                # In clear, files are written while the next mails are parsed; sealed, once
                # the batch's transaction has found (or made) each sender's data key.
                early = files if self.vault is None else None
                arrivals = [self._arrive(raw, source, early, released, *delivered)
                            for raw, source, *delivered in mails]
                with self.sessions.begin() as session, queries.hold_rows(session, hold):
                    if self.vault is not None:
                        self._seal(session, arrivals, files)
                    known = _Known.of(session, arrivals)
                    results = [self._settle(session, arrival, known, guarded=not hold)
                               for arrival in arrivals]
                    queries.flush_held(session)
                    files.publish()  # named on disk before the rows that refer to them commit
        except TemporaryFailure:
            raise
        except sa_exc.IntegrityError as err:  # each mail's own clash is handled in its savepoint
            if hold:
                raise  # `ingest_many` stores the batch again, a savepoint a mail
            raise TemporaryFailure(f"IntegrityError: {_first_line(err)}") from err
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as err:
            raise TemporaryFailure(f"{type(err).__name__}: {_first_line(err)}") from err
        except KeyProblem as err:  # a key file that does not open the data keys: mail waits
            raise TemporaryFailure(f"encryption at rest: {err}") from err
        except OSError as err:  # the file store: full, read-only, gone
            raise TemporaryFailure(f"file store {self.blobs.root}: {type(err).__name__}: "
                                   f"{_first_line(err)}") from err
        return results

    def refuse_unfetched(self, source: str, size: int) -> IngestResult:
        """A mail too large to download: recorded as quarantined by where it was, not by content."""
        key = hashlib.sha256(f"unfetched\n{source}\n{size}".encode()).hexdigest()
        limit = self.policy.limits.max_message_bytes
        reason = f"message too large: {size:,} bytes > {limit:,}; left in the quarantine folder"
        arrival = _Arrival(b"", source, key, None, hashlib.sha256(b"").hexdigest(), rejected=reason)
        try:
            with self.sessions.begin() as session:
                result = self._settle(session, arrival)
        except sa_exc.SQLAlchemyError as err:
            raise TemporaryFailure(f"cannot record quarantine: {_first_line(err)}") from err
        log.warning("quarantined", extra={"fields": {"key": key, "reason": reason}})
        return result

    def _arrive(self, raw: bytes, source: str, files: BlobBatch | None,
                released: bool = False, delivered_at: datetime | None = None) -> _Arrival:
        key, message_id, digest = ingest_key(raw)
        arrival = _Arrival(raw, source, key, message_id, digest, released=released,
                           content=content_digest(raw), delivered_at=delivered_at)
        try:
            mail = parse(raw, self.policy.limits)
        except RejectedMail as rejected:  # parse() turns any error of its own into this
            arrival.rejected = rejected.reason
        else:
            arrival.mail = mail
            support = self.policy.support_addresses
            arrival.automated = automated_reason(mail, support, LOOP_HEADER) or ""
            ours = _our_own(mail, support)
            if ours:  # our own mail coming back: never stored on a ticket
                arrival.ignored = ours
            try:
                arrival.screening = self._screen(mail, released)
                if arrival.screening.spam and not arrival.automated:
                    self._gambling_in_spam(arrival, mail)
            except ScannerUnavailable as err:  # [scan] on_unavailable = "hold"
                arrival.held = f"attachments not scanned: {err}"
                return arrival  # nothing written: the mail stays in the mailbox
            if not arrival.screening.spam and not arrival.automated:
                # No one to answer or to file it under: a person reads it in the quarantine.
                # Junk with an odd From stays junk, and a machine's (a bounce's null sender,
                # a mailer daemon's report) is kept with its reason like any machine mail.
                arrival.rejected = _unreadable_sender(mail)
            elif not arrival.screening.spam and mail.sender is None and not arrival.ignored:
                arrival.ignored = "no sender address"  # a machine's: kept with its reason
        if files is not None:
            _write_files(arrival, files, None)
        return arrival

    def _gambling_in_spam(self, arrival: _Arrival, mail: InboundMail) -> None:
        """Spam that asks for exclusion or closure, or speaks of gambling harm (daemon.rg_spam):
        from a vouched-for sender it is ingested as a normal mail (its attachments scanned
        now), else it stays spam, flagged. ScannerUnavailable as `_screen`."""
        verdict = arrival.screening.spam
        hit = responsible_gambling(mail.subject, visible_text(mail.text, mail.html)) \
            if mail.sender is not None and verdict is not None else None
        if hit is None or verdict is None:
            return
        vouched = self._vouched(mail)
        if not vouched:
            arrival.rg_intent = hit.intent
            return
        arrival.screening = self._screen(mail, released=True)
        arrival.rescued = (f"spam verdict set aside ({verdict.reason[:300]}): "
                           f"responsible-gambling sentence ({hit.intent}) from {vouched}")

    def _vouched(self, mail: InboundMail) -> str:
        """Why the sender of a spam with a responsible-gambling sentence is believed: mail our
        MTA authenticated for its From domain, or an address that has asked us before."""
        assert mail.sender is not None
        if self.policy.authserv_id and verify_sender(mail, self.policy.authserv_id).ok:
            return "an authenticated sender"
        with self.sessions() as session:  # a read, before the batch's transaction
            if queries.has_tickets(session, mail.sender.addr):
                return "a known contact"
        return ""

    def _seal(self, session: Session, arrivals: list[_Arrival], files: BlobBatch) -> None:
        """Each mail's files sealed with the data key of the person it is about (contact and
        key made when new): see `_owner`. A mail with no readable sender takes the desk key."""
        assert self.vault is not None
        owners = {id(a): self._owner(session, a.mail, a.released) for a in arrivals
                  if a.mail is not None and a.mail.sender is not None}
        senders = [o for o in owners.values() if isinstance(o, tuple)]
        keys, new = self.vault.keys_of_senders(session, senders)
        for address, erased in erasure.erased_among(session, new).items():
            # Named by the erasure and the new contact, never by the address.
            queries.insert_event(session, "contact_returned_after_erasure", erasure=erased,
                                 contact=queries.contact_id(session, address))
        desk: DataKey | None = None
        for arrival in arrivals:
            owner = owners.get(id(arrival))
            if isinstance(owner, int):
                key: DataKey | None = self.vault.key_of_contact(session, owner)
            else:
                key = keys.get(owner[0]) if owner else None
            if key is None:
                desk = desk or self.vault.desk_key(session)
                key = desk
            arrival.key_id = key.id
            _write_files(arrival, files, key)

    def _owner(self, session: Session, mail: InboundMail,
               released: bool = False) -> tuple[str, str] | int:
        """Whose key seals a mail: its sender's (address, name); but an agent's mail on a
        ticket goes with the key of that ticket's requester (contact id), and an agent's
        forward of a player's mail with the player's, since both carry the player's words
        (a reply quotes them): erasing the player then shreds every copy, backups included."""
        assert mail.sender is not None
        sender = (mail.sender.addr, mail.sender.name)
        forwarded, forwarder = self._agent_forward(mail, released)
        if forwarder and forwarded.sender is not None:
            return (forwarded.sender.addr, forwarded.sender.name)
        if not is_agent_mail(self.policy.team, mail):
            return sender
        refs = self._references(session, mail)
        named = refs.signed or refs.stored or (refs.tagged[0] if refs.tagged else None) \
            or refs.forged
        requester = session.get(Ticket, named.id).requester_id if named is not None else None
        return requester if requester is not None else sender

    def _settle(self, session: Session, arrival: _Arrival,
                batch: _Known | None = None, guarded: bool = True) -> IngestResult:
        """Store one mail of the batch in its own savepoint; a bug quarantines it alone.
        Unguarded (a batch's first try), without one: any error fails the whole try, and
        `ingest_many` stores the batch again, guarded. A savepoint is two statements a mail,
        and a mail that fails is rare."""
        if batch is not None:
            known = batch.before(session, arrival)
        else:
            known = _stored_before(session, arrival.key) or _copy_stored_before(session, arrival)
        releasing = bool(known and arrival.released
                         and known.outcome in spam_store.RELEASABLE)
        if known and not releasing:
            return known
        if arrival.held:  # before the spam record is touched: a held release stays spam
            return IngestResult(arrival.key, "held", arrival.held)
        if known and releasing:
            spam_store.forget_spam(session, arrival.key)  # ingested afresh below, same commit
            kind = "spam_released" if known.outcome == "spam" else "quarantine_released"
            queries.insert_event(session, kind, ingest_key=arrival.key)
        if not guarded:
            return self._store_arrival(session, arrival)
        try:
            with session.begin_nested():
                return self._store_arrival(session, arrival)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError, TemporaryFailure):
            raise
        except sa_exc.IntegrityError:
            # Another worker stored the same key since our look-up: its outcome is ours.
            known = _stored_before(session, arrival.key)
            if known:
                return known
            reason = "conflict"
        except Exception as err:  # a bug on one mail must not stop the mailbox
            # Types and places only: the error's text would carry the mail (SQL parameters).
            log.error("ingest failed", extra={"fields": {"key": arrival.key,
                                                         **failure_fields(err)}})
            reason = f"internal error: {type(err).__name__}"
        arrival.rejected = reason
        with session.begin_nested():
            return self._store_arrival(session, arrival)

    def _store_arrival(self, session: Session, arrival: _Arrival) -> IngestResult:
        record, key, mail = arrival.record, arrival.key, arrival.mail
        if arrival.rejected or mail is None:
            reason = arrival.rejected[:2000]
            queries.insert_ingest_record(session, outcome="quarantined", reason=reason, **record)
            queries.insert_event(session, "quarantined", reason=reason, ingest_key=key)
            return IngestResult(key, "quarantined", reason)
        if arrival.ignored:
            reason = arrival.ignored
            queries.insert_ingest_record(session, outcome="ignored", reason=reason, **record)
            queries.insert_event(session, "ignored", reason=reason, ingest_key=key)
            return IngestResult(key, "ignored", reason)
        if arrival.screening.spam:
            result = _spam(session, record, arrival.screening.spam.reason, arrival.rg_intent)
            if arrival.rg_intent and self.policy.loops is not None:
                rg_spam.tell_operations(session, to=self.policy.loops.summary_to,
                                        sender=self.policy.loops.summary_from, now=utcnow())
            return result
        if arrival.automated and is_bounce(mail):
            return self._bounce(session, mail, record, arrival.automated)
        result = self._store(session, mail, record, arrival.automated, arrival.screening,
                             arrival.delivered_at, arrival.released)
        if arrival.rescued and result.ticket_number is not None:
            ticket = queries.ticket_by_ref(session, result.ticket_number)
            queries.insert_event(session, "spam_set_aside", ticket.id if ticket else None,
                                 reason=arrival.rescued[:500], ingest_key=key)
        return result

    def _store(self, session: Session, mail: InboundMail, record: dict, automated: str,
               screening: Screening | None = None,
               delivered_at: datetime | None = None, released: bool = False) -> IngestResult:
        assert mail.sender is not None
        key = record["ingest_key"]
        screening = screening or check_only(mail.attachments)
        mail, forwarder = self._agent_forward(mail, released) if not automated else (mail, "")
        distrust = self._forward_distrust(mail) if not automated and not forwarder else ""
        if distrust:
            return self._refuse_forward(session, mail, record, distrust)
        refs = self._references(session, mail)
        visible = visible_text(mail.text, mail.html)
        if not automated and not forwarder and is_agent_mail(self.policy.team, mail):
            done = self._agent_named(session, mail, record, refs, screening, visible)
            if done is not None:
                return done
        decision, adr, automated = self._thread(session, mail, refs, forwarder, automated, visible)
        if not forwarder and decision.action != "join" and self._staff(mail.sender.addr):
            return _staff_without_ticket(session, record, mail.sender.addr)
        if automated and decision.action != "join" and not adr:
            # A machine's mail that names no conversation of ours: kept, never a ticket (an
            # ADR body's case system is the exception: its enquiry has a deadline).
            reason = f"automated: {automated}"
            queries.insert_ingest_record(session, outcome="ignored", reason=reason, **record)
            queries.insert_event(session, "ignored", reason=reason, ingest_key=key)
            return IngestResult(key, "ignored", reason)
        opened: TicketSummary | None = None  # a new ticket's, as the acknowledgement needs it
        classified: RgHit | None = None  # a new ticket the classifier filed as self_exclusion
        # When the mailbox got it, once for every complaint clock this mail moves: a new
        # complaint's deadlines, a pause's end, an ADR enquiry's clock, the fast lane.
        received = complaint_rules.received_moment(delivered_at, mail.date, utcnow())
        rules = self.policy  # a new ticket's brand is the mailbox's
        if decision.action == "join":
            assert decision.ticket is not None
            ticket_id, number = decision.ticket.id, decision.ticket.number
            rules = self._ticket_policy(session, decision.ticket)
            if not automated and not adr:  # an out-of-office neither reopens nor appeals
                self._follow_up(session, rules, ticket_id, decision.reopen, visible,
                                mail.sender.addr, received)
        else:
            opened, classified = self._open_ticket(session, mail, decision, received, key,
                                                   complaint=not adr)
            ticket_id, number = opened.id, opened.number
        if adr:
            complaints.adr_enquiry(session, rules.complaints, ticket_id, mail.sender.addr,
                                   received)
        outcome: Outcome = "follow_up" if decision.action == "join" else "ticket"
        kind = "auto_reply" if automated and not adr else \
            "complaint" if outcome == "ticket" else "follow_up"
        message_id = queries.insert_message(
            session,
            ticket_id=ticket_id,
            direction="in",
            kind=kind,
            sender=mail.sender.addr,
            sender_name=mail.sender.name[:200],
            subject=mail.subject,
            header_message_id=mail.message_id,
            in_reply_to=" ".join(mail.in_reply_to) or None,
            references=" ".join(mail.references) or None,
            raw_sha256=record["raw_sha256"],
            raw_size=record["raw_size"],
            key_id=record["key_id"],
            visible_text=visible,
            full_text=mail.text,
        )
        queries.insert_attachments(session, message_id, screening.kept(mail.attachments))
        _record_screening(session, ticket_id, screening)
        # Every player message, whatever its kind (DESIGN: safety first). A mail only taken
        # for a responder's (no Auto-Submitted) may be a person's: it is checked too.
        if outcome == "ticket":  # asked under another brand, or on an earlier ticket
            known_safeguarded(session, ticket_id, self.policy.rg_group)
        if not automated or automated.startswith(RESPONDER_SIGN):
            safeguard(session, ticket_id, mail.subject, visible, mail.sender.addr,
                      rules.rg_group, rules.sla, webhooks=rules.webhooks,
                      profile=rules.complaints, cause=key, classified=classified,
                      received_at=received)
        queries.insert_ingest_record(
            session, outcome=outcome, ticket_id=ticket_id, message_id=message_id, **record
        )
        queries.insert_event(session, "created" if outcome == "ticket" else kind, ticket_id,
                             actor=mail.sender.addr, ingest_key=key)
        if forwarder:
            queries.insert_event(session, "forwarded_by_agent", ticket_id, actor=forwarder)
        if not automated and not forwarder:
            self._recover_bouncing(session, mail)  # before the acknowledgement below
        if self.policy.team is not None and (not automated or adr):
            forwarded = replace(mail, attachments=screening.forwardable(mail.attachments))
            route_and_notify(session, self.policy.team, ticket_id, forwarded, visible,
                             "new" if outcome == "ticket" else "follow_up")
        if opened is not None and self.policy.ack is not None and not automated:
            acknowledge(session, self.policy.ack, opened, screening.received(mail),
                        refused=tuple(r.filename for r in screening.refused))
        return IngestResult(key, outcome, f"automated: {automated}" if automated else "", number)

    def _refuse_forward(self, session: Session, mail: InboundMail, record: dict,
                        why: str) -> IngestResult:
        """An agent's forward our MTA did not authenticate: anyone can write an agent's From,
        so it opens no ticket; it goes to the quarantine with its reason, where operations
        see it, and the agent is told (a held notice, within its limits) that it was not
        accepted. Without a team there is no one to tell: the quarantine still shows it."""
        assert mail.sender is not None
        key = record["ingest_key"]
        reason = (f"forward from agent {mail.sender.addr} not authenticated ({why}): "
                  "no ticket opened")[:2000]
        log.warning("forward not trusted", extra={"fields": {"key": key, "reason": why}})
        queries.insert_ingest_record(session, outcome="quarantined", reason=reason, **record)
        queries.insert_event(session, "quarantined", reason=reason, ingest_key=key)
        queries.insert_event(session, "agent_mail_held", actor=mail.sender.addr,
                             reason=f"forward not authenticated: {why}"[:500], forward=True,
                             ingest_key=key)
        if self.policy.team is not None:
            refuse_forward(session, self.policy.team, mail.sender.addr)
        return IngestResult(key, "quarantined", reason)

    def _thread(self, session: Session, mail: InboundMail, refs: References, forwarder: str,
                automated: str, visible: str) -> tuple[Decision, bool, str]:
        """Which ticket the mail joins, whether an ADR body wrote it, and why a machine wrote
        it ("": a person did)."""
        decision, adr = self._decide(session, mail, refs, forwarder, automated)
        if not forwarder and decision.action == "join" and not automated:
            automated = self._responder(session, mail, decision.ticket, visible)
        if adr and automated and (automated.startswith(RESPONDER_SIGN)
                                  or responder_reason(mail)):
            adr = False  # an ADR body's out-of-office asks nothing: no enquiry, no clock
        return decision, adr, automated

    def _agent_named(self, session: Session, mail: InboundMail, record: dict, refs: References,
                     screening: Screening, visible: str) -> IngestResult | None:
        """An agent's mail naming a ticket, handled as theirs; None when it names none."""
        named = refs.signed or refs.stored or (refs.tagged[0] if refs.tagged else None) \
            or refs.forged
        if named is None:
            return None
        mail = replace(mail, attachments=screening.forwardable(mail.attachments))
        sign = self._responder(session, mail, refs.signed or refs.stored, visible, staff=True)
        return self._agent_mail(session, mail, record, named, sign)

    def _staff(self, address: str) -> bool:
        """An agent's, staff, group or operations address: never a player of ours."""
        loops = self.policy.loops
        return address in self.policy.agents or bool(loops and address in loops.team_addresses)

    def _responder(self, session: Session, mail: InboundMail, ticket: TicketFacts | None,
                   visible: str, *, staff: bool = False) -> str:
        """A reply on one of our tickets that a responder wrote without saying so: stored on
        the ticket as an auto-reply, answered by nobody (invariant 3). `staff`: an agent's or
        staff member's mail, whose repeated text is no sign."""
        if self.policy.loops is None or ticket is None:
            return ""
        sign = responder_sign(session, self.policy.loops, mail, ticket.id, visible, staff=staff)
        return f"{RESPONDER_SIGN}{sign}" if sign else ""

    def _agent_mail(self, session: Session, mail: InboundMail, record: dict,
                    named: TicketFacts, responder: str = "") -> IngestResult:
        assert self.policy.team is not None
        ticket = session.get(Ticket, named.id)
        assert ticket is not None
        visible = visible_text(mail.text, mail.html)
        done = handle_agent_mail(session, self.policy.team, mail, ticket, visible, record,
                                 self.policy.sla, responder=responder)
        reason = f"agent {done.kind}" + (f": {done.reason}" if done.reason else "")
        queries.insert_ingest_record(session, outcome="follow_up", reason=reason[:2000],
                                     ticket_id=ticket.id, **record)
        return IngestResult(record["ingest_key"], "follow_up", reason, ticket.number)

    def _bounce(self, session: Session, mail: InboundMail, record: dict, automated: str) -> IngestResult:
        """A bounce is matched to the mail of ours it returns, recorded there, never answered."""
        key = record["ingest_key"]
        info = bounce_info(mail)
        sent = queries.outbox_origin(session, info.original_message_id) if info else None
        if info is None or sent is None:
            reason = f"bounce not matching a mail we sent ({automated})"
            queries.insert_ingest_record(session, outcome="ignored", reason=reason, **record)
            return IngestResult(key, "ignored", reason)
        ticket_id, recipients = sent
        failed = [r for r in info.recipients if r in recipients] or recipients
        kind = "delivery_failed" if info.permanent else "delivery_delayed"
        queries.insert_event(session, kind, ticket_id, actor="mailer-daemon", recipients=failed,
                             status=info.status, message_id=info.original_message_id)
        if info.permanent:
            for address in failed:
                queries.mark_bouncing(session, address)
        reason = f"bounce of {info.original_message_id}: {kind}"
        queries.insert_ingest_record(session, outcome="ignored", reason=reason, ticket_id=ticket_id,
                                     **record)
        number = queries.ticket_number(session, ticket_id) if ticket_id else None
        return IngestResult(key, "ignored", reason, number)

    def _recover_bouncing(self, session: Session, mail: InboundMail) -> None:
        """A bouncing address that writes again, in mail our MTA authenticated for its
        domain, is reachable again: its flag is cleared, so this mail is acknowledged.
        Unauthenticated mail proves nothing (anyone can write any From)."""
        assert mail.sender is not None
        address = mail.sender.addr
        if not self.policy.authserv_id or not queries.contact_bouncing(session, address):
            return
        if verify_sender(mail, self.policy.authserv_id).ok:
            queries.clear_bouncing(session, address, actor=address, how="authenticated mail")

    def _forwarded(self, mail: InboundMail) -> InboundMail | None:
        """The player's mail an agent forwards (a `Fwd:` from an agent holding another's mail),
        authenticated or not; None when the mail is no such forward."""
        assert mail.sender is not None
        if mail.sender.addr not in self.policy.agents or not is_forward_subject(mail.subject):
            return None
        original = forwarded_original(mail)
        if original is None or original.sender.addr in self.policy.agents | self.policy.support_addresses:
            return None
        return original

    def _forward_distrust(self, mail: InboundMail, released: bool = False) -> str:
        """Why an agent's forward is not taken as theirs ("" when it is, or is no forward):
        our MTA did not authenticate it for the agent's domain. A forward released from the
        quarantine (`ticketd quarantine release`) is: a person checked it."""
        if released or self._forwarded(mail) is None:
            return ""
        verdict = verify_sender(mail, self.policy.authserv_id) if self.policy.authserv_id else None
        if verdict is None:
            return "no authserv_id configured"
        return "" if verdict.ok else verdict.reason or "not authenticated"

    def _agent_forward(self, mail: InboundMail,
                       released: bool = False) -> tuple[InboundMail, str]:
        """An authenticated (or released) agent's forward of a player's mail: (the player's
        mail, the agent)."""
        assert mail.sender is not None
        agent = mail.sender.addr
        original = self._forwarded(mail)
        if original is None or self._forward_distrust(mail, released):
            return mail, ""
        return replace(
            mail, sender=original.sender, subject=original.subject, text=original.text, html=None,
            attachments=original.attachments, in_reply_to=(), references=(), to=(), cc=(),
            message_id=original.message_id or mail.message_id,
        ), agent

    def _references(self, session: Session, mail: InboundMail) -> References:
        """What the mail points at, each reference checked against the database and our keys."""
        assert mail.sender is not None
        sender, ids = mail.sender.addr, [*mail.references, *mail.in_reply_to]
        stored = queries.ticket_facts(session, sender, message_ids=ids)
        signed, forged = self._signed_numbers(mail, ids)
        tagged = numbers_in_subject(mail.subject, self.policy.subject_tag)

        def first(numbers: list[int] | tuple[int, ...]) -> TicketFacts | None:
            found = queries.ticket_facts(session, sender, numbers=numbers) if numbers else []
            return found[0] if found else None

        return References(
            stored=stored[0] if stored else None,
            signed=first(signed),
            forged=first(forged),
            tagged=tuple(queries.ticket_facts(session, sender, numbers=tagged)) if tagged else (),
        )

    def _signed_numbers(self, mail: InboundMail, ids: list[str]) -> tuple[list[int], list[int]]:
        """Ticket numbers from our signed Message-IDs and reply addresses: (verified, forged)."""
        # Every brand's domain: a player may answer one brand's mail at another's address.
        domains = {a.rpartition("@")[2].lower() for a in self.policy.support_addresses}
        verified: list[int] = []
        forged: list[int] = []
        for msgid in ids:
            claimed = _our_shape(msgid, domains)
            if claimed is None:
                continue
            number = verify_message_id(msgid, self.policy.keys) if self.policy.keys else None
            (verified if number else forged).append(number or claimed)
        for rcpt in (*mail.to, *mail.cc):
            if "+" in rcpt.addr.partition("@")[0] and self.policy.keys:
                number = next(filter(None, (token_from_address(rcpt.addr, ours, self.policy.keys)
                                            for ours in sorted(self.policy.support_addresses))),
                              None)
                if number:
                    verified.append(number)
        return verified, forged

    def _ticket_policy(self, session: Session, ticket: TicketFacts) -> IngestPolicy:
        """The rules of a ticket's own brand; the mailbox's when that brand is not known."""
        brand = ticket.brand if ticket.brand is not None \
            else queries.ticket_brand(session, ticket.id)
        return self.brands.get(brand or "", self.policy)

    def _follow_up(self, session: Session, rules: IngestPolicy, ticket_id: int, reopen: bool,
                   text: str, sender: str, received: datetime) -> None:
        # The player answered: a complaint clock that waited on them runs on, under the
        # ticket's brand's profile, from when the mailbox got the answer.
        complaints.resume_clock(session, rules.complaints, ticket_id, sender, received)
        if reopen:
            queries.reopen_ticket(session, ticket_id)
            queries.insert_event(session, "reopened", ticket_id, actor=sender)
        else:
            queries.touch_ticket(session, ticket_id)
        word = asks_for_appeal(text, self.policy.escalation_keywords)
        if word:
            queries.mark_appeal(session, ticket_id)
            queries.insert_event(session, "appeal_requested", ticket_id, actor=sender, keyword=word)
            complaints.player_disagrees(session, ticket_id, utcnow(), sender)  # after #final
        if self.policy.sla is not None:
            if word:
                clocks_for_appeal(session, ticket_id, utcnow(), self.policy.sla)
            else:
                clocks_for_follow_up(session, ticket_id, utcnow(), self.policy.sla)

    def _decide(self, session: Session, mail: InboundMail, refs: References, forwarder: str,
                automated: str) -> tuple[Decision, bool]:
        """Join or open, and whether the mail is an ADR body's (True)."""
        assert mail.sender is not None
        if forwarder:
            return Decision("new"), False  # the original complaint opens its own ticket
        if mail.sender.addr not in self.policy.adr_addresses:
            return decide(refs, utcnow(), self.policy.reopen_window), False
        # An ADR body names the case by our number or its reference, not by taking part; its
        # case system's mail says Auto-Submitted and is an enquiry all the same.
        named = self._adr_case(session, mail)
        return (Decision("join", named) if named else Decision("new")), True

    def _adr_case(self, session: Session, mail: InboundMail) -> TicketFacts | None:
        """The ticket an ADR body's mail is about: our number in its subject, else the case
        reference recorded by #adr."""
        assert mail.sender is not None
        numbers = numbers_in_subject(mail.subject, self.policy.subject_tag)
        found = queries.ticket_facts(session, mail.sender.addr, numbers=numbers) if numbers else []
        if found:
            return found[0]
        row = complaint_records.by_reference(session, mail.subject)
        number = queries.ticket_number(session, row.ticket_id) if row else None
        found = queries.ticket_facts(session, mail.sender.addr, numbers=[number]) if number else []
        return found[0] if found else None

    def _open_ticket(self, session: Session, mail: InboundMail, decision: Decision,
                     received_at: datetime, cause: str, *,
                     complaint: bool = True) -> tuple[TicketSummary, RgHit | None]:
        """The new ticket, and the classifier's hit when it filed the mail as self_exclusion
        (the safeguard then escalates and announces it, once)."""
        assert mail.sender is not None
        found = classify(mail.subject, mail.text, self.policy.rules)
        detected = detect_language(mail.subject, mail.text, self.policy.languages)
        # The player's language, else the one they wrote in before, else the brand's.
        requester, remembered = queries.requester(session, mail.sender.addr,
                                                  mail.sender.name[:200], detected)
        language = remembered or self.policy.default_language
        linked = decision.ticket
        ticket_id, number = queries.insert_ticket(
            session,
            subject=strip_reply_prefixes(mail.subject)[:1000] if linked else mail.subject[:1000],
            category=found.category,
            priority=found.priority,
            language=language,
            requester_id=requester,
            linked_ticket_id=linked.id if linked else None,
            brand=self.policy.brand,
        )
        if self.policy.sla is not None:
            clocks_for_new_ticket(session, ticket_id, found.category, found.priority, utcnow(),
                                  self.policy.sla)
        if complaint:  # every player's ticket is a complaint on the record
            complaints.open_complaint(session, self.policy.complaints, ticket_id,
                                      found.category, received_at, utcnow())
        ours = self.policy.support_addresses
        queries.add_participants(session, ticket_id, [(mail.sender.addr, "requester")] + [
            (a.addr, "cc") for a in (*mail.to, *mail.cc) if a.addr not in ours and "+" not in a.addr
        ])
        if linked:
            queries.insert_event(session, "linked", ticket_id, actor=mail.sender.addr,
                                 linked_ticket=linked.number, reason=decision.reason)
        queue_event(session, self.policy.webhooks, TICKET_CREATED, ticket_id, cause=cause,
                    data={"language": language})
        filed = RgHit(RG_CATEGORY, found.keyword or RG_CATEGORY) \
            if found.category == RG_CATEGORY else None
        return TicketSummary(ticket_id, number, found.category, found.priority, language), filed

    def _screen(self, mail: InboundMail, released: bool) -> Screening:
        """Our MTA's spam verdict, then clamd's on each attachment (not for spam: it is
        neither stored as a ticket nor forwarded; a release scans it then)."""
        spam = None if released else self.policy.spam
        verdict = spam_verdict(mail, spam) if spam is not None else None
        if verdict is not None:
            return Screening(spam=verdict)
        if self.screener is None:
            return check_only(mail.attachments)
        return self.screener.screen(mail.attachments)  # ScannerUnavailable: hold the mail


def _spam(session: Session, record: dict, reason: str, rg_intent: str = "") -> IngestResult:
    """Kept (raw bytes and the verdict), no ticket, no answer, no clock, no one notified;
    flagged with the intent of a responsible-gambling sentence it carries."""
    queries.insert_ingest_record(session, outcome="spam", reason=reason[:2000],
                                 rg_intent=rg_intent or None, **record)
    queries.insert_event(session, "spam", reason=reason[:500], ingest_key=record["ingest_key"])
    if rg_intent:
        queries.insert_event(session, rg_spam.EVENT, intent=rg_intent,
                             ingest_key=record["ingest_key"])
    return IngestResult(record["ingest_key"], "spam", reason)


def _staff_without_ticket(session: Session, record: dict, address: str) -> IngestResult:
    """Mail from an agent's or staff address that names none of our tickets is not a
    player's complaint: opening one would make every responder answer of theirs a new
    ticket (and a new notification). Kept, listed with its reason, answered by nobody."""
    reason = "from an agent or staff address and names no ticket: no player ticket opened"
    queries.insert_ingest_record(session, outcome="ignored", reason=reason, **record)
    queries.insert_event(session, "staff_mail_without_ticket", actor=address,
                         ingest_key=record["ingest_key"])
    return IngestResult(record["ingest_key"], "ignored", reason)


def _record_screening(session: Session, ticket_id: int, screening: Screening) -> None:
    for refused in screening.refused:
        queries.insert_event(session, "attachment_refused", ticket_id, filename=refused.filename,
                             sha256=refused.sha256, reason=refused.reason,
                             quarantined=refused.infected)
    if screening.unscanned:
        queries.insert_event(session, "attachments_unscanned", ticket_id,
                             sha256=sorted(screening.unscanned),
                             reason=screening.scanner_error or "no virus scanner configured")


def _write_files(arrival: _Arrival, files: BlobBatch, key: DataKey | None) -> None:
    """A mail's files, sealed with `key` when there is one; nothing for a mail held for the
    scanner, no attachment of spam, infected attachments to the quarantine store."""
    if arrival.held:
        return
    if arrival.mail is not None:
        for part in () if arrival.screening.spam else arrival.mail.attachments:
            if arrival.screening.infected(part):
                files.put_quarantined(part.payload, part.sha256, key)
            else:
                files.put_attachment(part.payload, part.sha256, key)
    if arrival.raw:
        files.put_raw(arrival.raw, key, arrival.digest)


@dataclass
class _Known:
    """What the mails of a batch were ingested as before, read in one statement when the
    batch's transaction begins. A mail whose key or content an earlier mail of the same
    batch had is looked up again (`_stored_before`, `_copy_stored_before`): what that mail
    wrote is in the transaction, not in the first read."""

    by_key: dict[str, tuple[str, str, int | None]]
    by_content: dict[str, tuple[str, str, int | None]]  # the first mail stored with it
    seen: set[str] = field(default_factory=set)  # keys and contents of the batch so far

    @classmethod
    def of(cls, session: Session, arrivals: Sequence[_Arrival]) -> _Known:
        keys = [a.key for a in arrivals]
        contents = [a.content for a in arrivals if a.content is not None]
        by_key: dict[str, tuple[str, str, int | None]] = {}
        by_content: dict[str, tuple[str, str, int | None]] = {}
        rows = queries.ingested_among(session, keys, contents)
        for key, content, outcome, reason, number in rows:
            by_key[key] = (outcome, reason, number)
            if content is not None:
                by_content.setdefault(content, (outcome, reason, number))
        return cls(by_key, by_content)

    def before(self, session: Session, arrival: _Arrival) -> IngestResult | None:
        """As `_stored_before` or else `_copy_stored_before` would answer for `arrival`."""
        again = arrival.key in self.seen or arrival.content in self.seen
        self.seen.add(arrival.key)
        if arrival.content is not None:
            self.seen.add(arrival.content)
        if again:
            return _stored_before(session, arrival.key) or _copy_stored_before(session, arrival)
        if arrival.key in self.by_key:
            outcome, reason, number = self.by_key[arrival.key]
            return IngestResult(arrival.key, outcome, reason, number,  # type: ignore[arg-type]
                                duplicate=True)
        if arrival.content is None or arrival.released or arrival.content not in self.by_content:
            return None
        outcome, reason, number = self.by_content[arrival.content]
        reason = reason or "a copy of a stored mail"
        return IngestResult(arrival.key, outcome, reason, number,  # type: ignore[arg-type]
                            duplicate=True)


def _stored_before(session: Session, key: str) -> IngestResult | None:
    """The outcome of a mail already ingested under this key, as a duplicate's result."""
    known = queries.ingested_outcome(session, key)
    if known is None:
        return None
    outcome, reason, number = known
    return IngestResult(key, outcome, reason, number, duplicate=True)  # type: ignore[arg-type]


def _copy_stored_before(session: Session, arrival: _Arrival) -> IngestResult | None:
    """A mail stored before with the same content and other trace fields (a re-delivery), as
    a duplicate's result. Two mails that only share a Message-ID differ here and are both
    kept; so are mails whose earlier copy predates the content digest (nothing is lost)."""
    if arrival.content is None or arrival.released:
        return None
    known = queries.ingested_copy(session, arrival.content)
    if known is None:
        return None
    outcome, reason, number, _ = known
    return IngestResult(arrival.key, outcome, reason or "a copy of a stored mail", number,  # type: ignore[arg-type]
                        duplicate=True)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__


_OUR_ID = re.compile(r"t(\d{1,12})\.[^@\s]+@(.+)", re.IGNORECASE)


def _our_shape(msgid: str, domains: set[str]) -> int | None:
    """The ticket number a Message-ID of our own shape claims (signed or not), else None."""
    found = _OUR_ID.fullmatch(msgid)
    if found and found.group(2).lower() in domains:
        return int(found.group(1))
    return None


# contacts.address and messages.sender hold 320 characters (RFC 5321: 64 + 1 + 255).
_MAX_ADDRESS = 320


def _unreadable_sender(mail: InboundMail) -> str:
    """Why the mail has no sender we could file or answer it under, or "". Never the Sender,
    Reply-To or Return-Path instead: none of them is who wrote it, and none is answered."""
    if mail.sender is not None:
        if len(mail.sender.addr) > _MAX_ADDRESS:
            return f"no readable sender: From address longer than {_MAX_ADDRESS} characters"
        return ""
    written = mail.header("from")
    if written is None:
        return "no readable sender: no From header"
    if not written.strip():
        return "no readable sender: empty From"
    if written.rstrip().endswith(";") and ":" in written:
        return "no readable sender: From is an empty group (such as undisclosed-recipients:;)"
    return "no readable sender: no address in From"


def _our_own(mail: InboundMail, support: frozenset[str]) -> str:
    """Why this is our own mail coming back (our loop header or address), or ""."""
    if mail.header(LOOP_HEADER) is not None:
        return f"our own {LOOP_HEADER} header"
    return own_address(mail, support) or ""
