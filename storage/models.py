"""The tables of ticketd. Times are stored as naive UTC and read back as aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The public number players see is the row id plus this offset, so that the
# first ticket is not "#1" and numbers keep their width for a long time.
TICKET_NUMBER_OFFSET = 10000

STATUSES = ("open", "pending", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
OUTCOMES = ("ticket", "follow_up", "ignored", "quarantined", "spam")  # of ingest_log rows


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str | None] = mapped_column(String(8))
    bouncing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention
    # When the person first asked for exclusion or closure or spoke of gambling harm, under
    # any brand: one person is one contact, so every brand's ticket of theirs shows it.
    safeguarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    safeguard_intent: Mapped[str | None] = mapped_column(String(24))  # parsers.rg INTENTS
    safeguard_brand: Mapped[str | None] = mapped_column(String(40))  # where they asked


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int | None] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    category: Mapped[str] = mapped_column(String(40), default="other")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    language: Mapped[str] = mapped_column(String(8), default="en")
    requester_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    appeal_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the team the ticket is routed to, and an agent's address; `ticketd tickets` filters on both
    group: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(320))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a player's message first asked for exclusion or closure or spoke of gambling
    # harm: from then on no automatic close or survey touches the ticket.
    safeguarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its automatic mail ran away (a loop with a responder): from then on no automatic
    # mail about it goes out until a person (an agent's reply, note or command) acts.
    loop_stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The brand whose mailbox the ticket came in at ([[brands]] name; "default": [support]):
    # every mail about it speaks as that brand.
    brand: Mapped[str] = mapped_column(String(40), default="default", server_default="default")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention

    requester: Mapped[Contact] = relationship(lazy="joined")
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )

    # `ticketd tickets` filters on these and shows the newest first: (value, id) lets both
    # databases read the newest matching tickets straight from the index, so the listing
    # costs the same on a million tickets as on ten thousand. A group and a holder together
    # need their own index: with one of them alone, the other is read from each row.
    __table_args__ = (Index("ix_tickets_status_id", "status", "id"),
                      Index("ix_tickets_category_id", "category", "id"),
                      Index("ix_tickets_group_id", "group", "id"),
                      Index("ix_tickets_assignee_id", "assignee", "id"),
                      Index("ix_tickets_group_assignee_id", "group", "assignee", "id"))


class Participant(Base):
    """Who takes part in a ticket: only they may join it by its subject tag (invariant 4)."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    address: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))  # requester | cc | agent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("ticket_id", "address"),)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # "in" | "out"
    kind: Mapped[str] = mapped_column(String(24))  # complaint, follow_up, reply, note, ack ...
    sender: Mapped[str] = mapped_column(String(320), default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    header_message_id: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # The data key (contact_keys.id) that seals its raw mail and attachments; NULL: in clear.
    # No foreign key, as migration 0011 says why.
    key_id: Mapped[int | None] = mapped_column(Integer)
    visible_text: Mapped[str] = mapped_column(Text, default="")
    full_text: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages", foreign_keys=[ticket_id])
    attachments: Mapped[list[StoredAttachment]] = relationship(
        back_populates="message", order_by="StoredAttachment.id"
    )

    __table_args__ = (Index("ix_messages_header_message_id", "header_message_id"),)


class StoredAttachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    content_id: Mapped[str | None] = mapped_column(String(998))
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the file, by retention

    message: Mapped[Message] = relationship(back_populates="attachments")


class IngestRecord(Base):
    """One row per distinct incoming mail: the ingest key makes a second copy a no-op."""

    __tablename__ = "ingest_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ingest_key: Mapped[str] = mapped_column(String(64), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(400), default="")
    header_message_id: Mapped[str | None] = mapped_column(String(998))
    raw_sha256: Mapped[str] = mapped_column(String(64))
    # The bytes without trace fields (parsers.ingest_key.content_digest): a re-delivery of a
    # stored mail is a copy; NULL for rows older than 0015 and for mails never fetched.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    key_id: Mapped[int | None] = mapped_column(Integer)  # contact_keys.id sealing the raw mail
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention
    # Spam kept as spam although it carries a responsible-gambling sentence (its intent):
    # flagged in `ticketd spam list` and told to operations. NULL for everything else.
    rg_intent: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_ingest_log_outcome", "outcome"),
                      Index("ix_ingest_log_content_sha256", "content_sha256"))


class MailboxCursor(Base):
    __tablename__ = "mailbox_cursors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(400), unique=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(Base):
    """Append-only history: what happened to a ticket or the mailbox, and who did it.

    Rows are written unsealed (the chain columns NULL) by whoever records an event, and
    chained afterwards by storage.audit.seal, one sealer at a time, in the order it finds
    them committed: `chain_seq` is the row's place in the chain, `prev_hash` the hash of the
    row before it there, `hash` the hash of its own content and place (storage.audit).
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320), default="system")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    # Set when personal data was taken out of actor and data (storage.audit.redact): the
    # digest of what they held, which the chain's hash covers in their place.
    redacted_digest: Mapped[str | None] = mapped_column(String(64))

    # Rate limits count an actor's recent events of one kind.
    # Reports (storage.reports) and the weekly digest read the events of some kinds in a
    # period.
    __table_args__ = (Index("ix_events_kind_actor_created_at", "kind", "actor", "created_at"),
                      Index("ix_events_kind_created_at", "kind", "created_at"))


# The chain's order, and the few rows not yet in it (partial: sealed rows leave the index).
Index("uq_events_chain_seq", Event.chain_seq, unique=True,
      postgresql_where=Event.chain_seq.is_not(None), sqlite_where=Event.chain_seq.is_not(None))
Index("ix_events_unsealed", Event.id,
      postgresql_where=Event.chain_seq.is_(None), sqlite_where=Event.chain_seq.is_(None))


__all__ = [
    "Base",
    "Contact",
    "Event",
    "IngestRecord",
    "MailboxCursor",
    "OutboxMessage",
    "Participant",
    "Message",
    "StoredAttachment",
    "Ticket",
    "utcnow",
]


OUTBOX_STATES = ("pending", "sent", "dead")


class OutboxMessage(Base):
    """One outgoing mail, written in the transaction of its cause and sent later (invariant 2).

    `raw` is the exact bytes of every attempt, so the Message-ID never changes; `recipients`
    shrinks to those still to be tried, while `accepted` and `refused` keep the outcome.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # ack, notification, ..., ops, webhook
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    envelope_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[int | None] = mapped_column(Integer)  # contact_keys.id sealing `raw`
    state: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a sender's lease
    last_error: Mapped[str | None] = mapped_column(Text)
    accepted: Mapped[list[str]] = mapped_column(JSON, default=list)
    refused: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # address -> "550 ..."
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raw_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention
    # A webhook row's event type (kind "webhook", `raw` its JSON body); NULL for mail.
    event: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),)


SLA_KINDS = ("first_response", "next_response", "resolution")
# What a clock's escalation has reached; each step is taken once (DESIGN invariant 6).
SLA_STAGES = ("running", "warned", "breached", "level2")  # 0: nothing sent ... 3: level 2 sent


class SlaClock(Base):
    """One promise of one ticket (first response, next response, resolution) and how far its
    escalation has gone, so that a restart or a second monitor changes nothing.

    A ticket has at most one running clock of a kind: the unique index covers the rows not
    stopped, and stopped rows stay as history (a next_response clock starts again with each
    unanswered follow-up). `next_action_at` is when the monitor has something to do: NULL
    while paused, once stopped, and after level 2. Only rows with a value are in its index,
    so the monitor's query is one short range scan however many tickets there are.
    """

    __tablename__ = "sla_clocks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(16))  # one of SLA_KINDS
    policy: Mapped[str] = mapped_column(String(40))  # name of the responders.sla.Policy
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # NULL while paused
    warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # NULL while paused
    # Working seconds left: as of the last start or resume while running, as of the pause
    # while paused (a pause keeps the time owed, not the instant).
    remaining: Mapped[int] = mapped_column(Integer)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stage: Mapped[int] = mapped_column(Integer, default=0)  # index into SLA_STAGES
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the due time it missed


Index("ix_sla_clocks_next_action_at", SlaClock.next_action_at,
      postgresql_where=SlaClock.next_action_at.is_not(None),
      sqlite_where=SlaClock.next_action_at.is_not(None))
Index("uq_sla_clocks_ticket_id_kind_running", SlaClock.ticket_id, SlaClock.kind, unique=True,
      postgresql_where=SlaClock.stopped_at.is_(None), sqlite_where=SlaClock.stopped_at.is_(None))

__all__ += ["SLA_KINDS", "SLA_STAGES", "SlaClock"]


COMPLAINT_STATES = ("complaint", "final", "dispute", "adr", "merged")


class Complaint(Base):
    """The regulated side of a player's ticket: its deadlines and how it ended.

    One row per ticket (a table rather than columns on `tickets`: most of these are empty on
    most tickets, and the guard's partial index stays small). `next_action_at` is when the
    deadline guard has something to do (a reminder, the final deadline, an ADR enquiry
    falling due); NULL once there is nothing. `stage` counts the guard's steps taken: it is
    only moved by an UPDATE naming the stage it moves from, so each reminder and the letter
    go once, whichever monitor gets there (as sla_clocks.stage).
    """

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    profile: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="complaint")  # COMPLAINT_STATES
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ack_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    final_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    final_by: Mapped[str | None] = mapped_column(String(254))  # an agent's address, or "guard"
    letter_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the deadline letter
    disputed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    adr_entity: Mapped[str | None] = mapped_column(String(200))
    adr_reference: Mapped[str | None] = mapped_column(String(100))
    adr_referred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    adr_outcome: Mapped[str | None] = mapped_column(String(24))
    adr_outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enquiry_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # an ADR body's
    enquiry_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # once, at due
    # The clock stopped while the player is asked for information (a pausing profile, #status
    # pending): since when, and the seconds it stood still before (final_due_at already
    # moved by them). NULL: running.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stage: Mapped[int] = mapped_column(Integer, default=0)
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


Index("ix_complaints_next_action_at", Complaint.next_action_at,
      postgresql_where=Complaint.next_action_at.is_not(None),
      sqlite_where=Complaint.next_action_at.is_not(None))

__all__ += ["COMPLAINT_STATES", "Complaint"]


class LegalHold(Base):
    """A record that must be kept: erasure and retention leave what it covers alone.

    A hold names a ticket or a contact (then every ticket the contact requested or took part
    in is covered). Released holds stay as history; only rows with `released_at` NULL count.
    """

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(320))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(320))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


__all__ += ["LegalHold"]


class ContactKey(Base):
    """A contact's data key (or the desk's, `contact_id` NULL), wrapped by a master key that
    is never in the database. Erasure destroys it: `wrapped` NULL, `destroyed_at` set."""

    __tablename__ = "contact_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), unique=True)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_key_id: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Erasure(Base):
    """The tombstone of an erased contact: a keyed hash of the address, never the address,
    so that a second request or a later mail from it is recognised."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    erased_by: Mapped[str] = mapped_column(String(320))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


__all__ += ["ContactKey", "Erasure"]


class AutoMail(Base):
    """One recipient of one automatic mail sent because a mail came in (acknowledgement,
    notification, relay, held notice, refusal): what the loop limits count (DESIGN
    invariant 3). A row with no outbox_id marks a sender's answer dated within seconds of
    our mail (kind quick_answer), counted per sender. Rows older than the longest window
    are useless; the daemon's records task prunes them."""

    __tablename__ = "auto_mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL for mail that must not count against a ticket (a held notice: a forger could
    # otherwise silence a real ticket by naming it)
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(24))
    outbox_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_auto_mails_address_created_at", "address", "created_at"),
                      Index("ix_auto_mails_ticket_id_created_at", "ticket_id", "created_at"),
                      Index("ix_auto_mails_created_at", "created_at"))


__all__ += ["AutoMail"]
