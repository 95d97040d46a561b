"""The transactional outbox (invariant 2): rows written with their cause, claimed by a sender,
settled with the server's answer.

`enqueue` runs inside the caller's transaction, so a mail exists exactly when the event that
caused it committed. A sender claims due rows for a lease; a sender that dies leaves its
rows to be claimed again when the lease has passed, which is why delivery is at-least-once
and the stored bytes (and so the Message-ID) never change between attempts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.crypto import DataKey, KeyProblem, open_sealed, seal
from storage.models import OutboxMessage, Ticket, utcnow
from storage.queries import insert_event, record_sent_mail, sent_mail_event, write_events
from storage.vault import vault_of

DEFAULT_LIFETIME = timedelta(days=5)  # as Mailman's deliver_until: then the mail is dead
RETRY_FLOOR = timedelta(minutes=1)
RETRY_BASE = timedelta(minutes=4)  # the first retry comes within 1-5 minutes
RETRY_CAP = timedelta(hours=1)
WEBHOOK = "webhook"  # the kind of a webhook row: `raw` is its JSON body, `recipients` its URL


@dataclass(frozen=True)
class ClaimedMail:
    """A row leased to one sender: what it needs to send it and to settle it."""

    id: int
    kind: str
    ticket_id: int | None
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes
    attempts: int  # including this one
    expires_at: datetime
    claimed_until: datetime
    last_error: str | None
    event: str | None = None  # a webhook's event type; None for mail

    @property
    def is_webhook(self) -> bool:
        return self.kind == WEBHOOK


@dataclass(frozen=True)
class OutboxRow:
    """A row as `ticketd outbox` shows it; the raw bytes are never loaded for this."""

    id: int
    state: str
    kind: str
    ticket: int | None  # the ticket's public number
    message_id: str
    recipients: list[str]
    accepted: list[str]
    refused: dict[str, str]
    attempts: int
    next_attempt_at: datetime
    expires_at: datetime
    claimed_until: datetime | None  # a sender holds it until then (or has died)
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    event: str | None = None  # a webhook's event type; None for mail

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of `ticketd outbox --json`; other tools read these names."""
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in asdict(self).items()}


def next_attempt(attempts: int, now: datetime, rng: random.Random | None = None) -> datetime:
    """When to try again after `attempts` tries: exponential backoff with full jitter above a
    one-minute floor, so that senders that failed together do not retry together."""
    ceiling = min(RETRY_CAP, RETRY_BASE * 2 ** min(max(attempts - 1, 0), 16))
    return now + RETRY_FLOOR + ceiling * (rng or random).random()


# The sender runs these for every mail: constant Core statements, compiled once.
_OUTBOX = OutboxMessage.__table__
_C = _OUTBOX.c
_INSERT = insert(_OUTBOX).returning(_C.id)
# Many rows at once (`enqueue_many`). SQLite: in one INSERT, the ids returned in the order
# the rows were given. PostgreSQL: without RETURNING, so that psycopg's own executemany sends
# one short statement per row (pipelined) instead of one statement of all the rows (thousands
# of parameters), which psycopg parses anew each time; the ids are then read back by the
# unique Message-IDs, one array parameter. Less than half the CPU for a batch of 200 mails.
# What is the same in every new mail row is written into these two statements as SQL, not
# sent and converted (two of them to JSON) once a row.
_NEW_MAIL: dict[str, Any] = {"state": "pending", "attempts": 0, "claimed_until": None,
                             "last_error": None, "accepted": [], "refused": {}, "sent_at": None}
_NEW_MAIL_SQL = {"state": literal_column("'pending'"), "attempts": literal_column("0"),
                 "claimed_until": null(), "last_error": null(),
                 "accepted": literal_column("'[]'"), "refused": literal_column("'{}'"),
                 "sent_at": null(), "event": null()}
_INSERT_MANY = insert(_OUTBOX).values(_NEW_MAIL_SQL).returning(
    _C.id, sort_by_parameter_order=True)
_INSERT_ROWS = insert(_OUTBOX).values(_NEW_MAIL_SQL)
_IDS_OF = select(_C.message_id, _C.id).where(_C.message_id == func.any(
    bindparam("message_ids", type_=postgresql.ARRAY(_C.message_id.type))))
# A row made once whatever the number of daemons: a concurrent insert waits, then does nothing.
_INSERT_ONCE = {dialect.__name__.rpartition(".")[2]: dialect.insert(_OUTBOX)
                .on_conflict_do_nothing(index_elements=["message_id"])
                for dialect in (postgresql, sqlite)}
# SKIP LOCKED lets several senders on PostgreSQL claim disjoint rows without waiting on
# each other; SQLite has no row locks (nor the clause), there BEGIN IMMEDIATE serialises.
def _claim(*only: ColumnElement[bool]) -> Any:
    due = (
        select(_C.id)
        .where(_C.state == "pending", _C.next_attempt_at <= bindparam("now"),
               or_(_C.claimed_until.is_(None), _C.claimed_until <= bindparam("now")), *only)
        .order_by(_C.next_attempt_at, _C.id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        update(_OUTBOX)
        .where(_C.id.in_(due.scalar_subquery()))
        .values(claimed_until=bindparam("until"), attempts=_C.attempts + 1)
        .returning(_C.id, _C.kind, _C.ticket_id, _C.message_id, _C.envelope_from,
                   _C.recipients, _C.raw, _C.key_id, _C.attempts, _C.expires_at,
                   _C.claimed_until, _C.last_error, _C.event)
    )


# (mail, webhooks) -> the claim of a sender that delivers those: one without [webhooks]
# leaves webhook rows alone, one without [smtp] leaves the mail.
_CLAIMS = {(True, True): _claim(), (True, False): _claim(_C.kind != WEBHOOK),
           (False, True): _claim(_C.kind == WEBHOOK)}
_OUTCOME = select(_C.ticket_id, _C.kind, _C.message_id, _C.accepted, _C.refused).where(
    _C.id == bindparam("oid"))
_OUTCOMES = select(_C.id, _C.ticket_id, _C.kind, _C.message_id, _C.accepted, _C.refused).where(
    _C.id.in_(bindparam("ids", expanding=True)))
_SETTLE = update(_OUTBOX).where(_C.id == bindparam("oid"))
_RELEASE = (update(_OUTBOX).where(_C.id.in_(bindparam("ids", expanding=True)))
            .values(claimed_until=None, attempts=_C.attempts - 1))


def enqueue(
    session: Session,
    *,
    raw: bytes,
    message_id: str,
    envelope_from: str,
    recipients: Sequence[str],
    kind: str,
    ticket_id: int | None = None,
    now: datetime | None = None,
    lifetime: timedelta = DEFAULT_LIFETIME,
    shown: tuple[str, str] | None = None,
) -> int:
    """Add a mail to send, in the caller's transaction; returns the row id.

    `message_id` is the Message-ID header value of `raw` (unique). An empty `envelope_from`
    is the null sender. A second row with the same Message-ID raises IntegrityError.
    `shown` is what the ticket keeps of the mail, (subject, text), when the composer hands
    it (`responders.mime.shown`): else it is read back from `raw`.
    """
    if not isinstance(raw, bytes) or not raw:
        raise ValueError("raw must be the non-empty bytes of the mail")
    if not recipients:
        raise ValueError("an outgoing mail needs at least one recipient")
    for address in (message_id, envelope_from, *recipients):
        _no_line_breaks(address)
    outbox_id = _insert(session, raw=raw, message_id=message_id, envelope_from=envelope_from,
                        recipients=recipients, kind=kind, ticket_id=ticket_id,
                        now=now or utcnow(), lifetime=lifetime, event=None)
    if ticket_id is not None:  # the ticket keeps what it was told (ticketd show)
        record_sent_mail(session, ticket_id, outbox_id=outbox_id, kind=kind,
                         message_id=message_id, recipients=recipients, raw=raw, shown=shown)
    return outbox_id


@dataclass(frozen=True)
class Outgoing:
    """One mail for `enqueue_many`: what `enqueue` takes."""

    raw: bytes
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    kind: str
    ticket_id: int | None = None
    now: datetime | None = None
    shown: tuple[str, str] | None = None  # (subject, text) as composed; None: read from raw


def enqueue_many(session: Session, mails: Sequence[Outgoing],
                 lifetime: timedelta = DEFAULT_LIFETIME) -> list[int]:
    """`enqueue` for each mail, in the caller's transaction, as two executemany statements
    (the rows, then what each ticket keeps of its mail) instead of two per mail: for a
    monitor that queues thousands in one pass. The row ids, in the order of `mails`."""
    if not mails:
        return []
    rows = []
    for mail in mails:
        if not isinstance(mail.raw, bytes) or not mail.raw:
            raise ValueError("raw must be the non-empty bytes of the mail")
        if not mail.recipients:
            raise ValueError("an outgoing mail needs at least one recipient")
        for address in (mail.message_id, mail.envelope_from, *mail.recipients):
            _no_line_breaks(address)
        rows.append(_mail_values(session, raw=mail.raw, message_id=mail.message_id,
                                 envelope_from=mail.envelope_from, recipients=mail.recipients,
                                 kind=mail.kind, ticket_id=mail.ticket_id,
                                 now=mail.now or utcnow(), lifetime=lifetime))
    ids = _insert_rows(session, rows)
    events = [sent_mail_event(mail.ticket_id, outbox_id=oid, kind=mail.kind,
                              message_id=mail.message_id, recipients=mail.recipients,
                              raw=mail.raw, shown=mail.shown)
              for oid, mail in zip(ids, mails, strict=True) if mail.ticket_id is not None]
    write_events(session, events)
    return ids


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert new outbox rows; their ids, in the order of `rows`."""
    if session.get_bind().dialect.name != "postgresql":
        return list(session.execute(_INSERT_MANY, rows).scalars())
    session.execute(_INSERT_ROWS, rows)
    ids = {message_id: row_id for message_id, row_id in session.execute(
        _IDS_OF, {"message_ids": [row["message_id"] for row in rows]})}
    return [ids[row["message_id"]] for row in rows]


def enqueue_webhook(session: Session, *, body: bytes, delivery_id: str, event: str, url: str,
                    ticket_id: int | None = None, now: datetime | None = None,
                    lifetime: timedelta = DEFAULT_LIFETIME) -> int:
    """Add a webhook to post, in the caller's transaction, like a mail: the same claim,
    schedule and dead state. `delivery_id` is its stable id (the unique Message-ID column);
    `url` is recorded as its recipient, the one posted to is the one in force when sent."""
    if not body:
        raise ValueError("a webhook needs a body")
    _no_line_breaks(delivery_id)
    outbox_id = _insert(session, raw=body, message_id=delivery_id, envelope_from="",
                        recipients=[url], kind=WEBHOOK, ticket_id=ticket_id,
                        now=now or utcnow(), lifetime=lifetime, event=event)
    if ticket_id is not None:  # its history says what was told, not to whom in which words
        insert_event(session, "webhook_queued", ticket_id, outbox_id=outbox_id, event=event,
                     delivery=delivery_id)
    return outbox_id


def webhook_row(session: Session, delivery_id: str) -> int | None:
    """The row of the webhook with this delivery id, if one was queued."""
    return session.scalar(select(_C.id).where(_C.message_id == delivery_id,
                                              _C.kind == WEBHOOK))


def enqueue_once(session: Session, *, raw: bytes, message_id: str, envelope_from: str,
                 recipients: Sequence[str], kind: str, now: datetime, due: datetime,
                 lifetime: timedelta = DEFAULT_LIFETIME) -> int:
    """Add a mail of no ticket, due at `due`, unless the row of its Message-ID exists (a
    concurrent daemon's included: no IntegrityError aborts the caller's transaction).
    Returns that row's id, locked until commit on PostgreSQL so the caller may rewrite it."""
    for address in (message_id, envelope_from, *recipients):
        _no_line_breaks(address)
    key = _key_for(session, None)
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    session.execute(_INSERT_ONCE[dialect].values(
        ticket_id=None, kind=kind, message_id=message_id, envelope_from=envelope_from,
        recipients=list(recipients),
        raw=raw if key is None else seal(key.secret, raw, _associated(message_id)),
        key_id=key.id if key else None, state="pending", attempts=0, next_attempt_at=due,
        expires_at=now + lifetime, claimed_until=None, last_error=None, accepted=[],
        refused={}, created_at=now, sent_at=None, event=None))
    return session.execute(select(_C.id).where(_C.message_id == message_id)
                           .with_for_update()).scalar_one()


def rewrite_untried(session: Session, outbox_id: int, raw: bytes) -> None:
    """New bytes for a row not tried yet, sealed with the key the row was sealed with (a row
    in clear stays in clear): a tried row keeps what was sent."""
    row = session.execute(select(_C.key_id, _C.message_id).where(_C.id == outbox_id)).one()
    if row.key_id is not None:
        vault = vault_of(session)
        if vault is None:
            raise RuntimeError("sealed outgoing mail and no [privacy] key_file to seal it")
        raw = seal(vault.key(session, row.key_id).secret, raw, _associated(row.message_id))
    session.execute(update(_OUTBOX).where(_C.id == outbox_id, _C.state == "pending",
                                          _C.attempts == 0).values(raw=raw))


def _insert(session: Session, *, raw: bytes, message_id: str, envelope_from: str,
            recipients: Sequence[str], kind: str, ticket_id: int | None, now: datetime,
            lifetime: timedelta, event: str | None) -> int:
    return session.execute(_INSERT, _values(
        session, raw=raw, message_id=message_id, envelope_from=envelope_from,
        recipients=recipients, kind=kind, ticket_id=ticket_id, now=now, lifetime=lifetime,
        event=event)).scalar_one()


def _values(session: Session, *, raw: bytes, message_id: str, envelope_from: str,
            recipients: Sequence[str], kind: str, ticket_id: int | None, now: datetime,
            lifetime: timedelta, event: str | None) -> dict[str, Any]:
    """A new pending row, its bytes sealed when encryption at rest is on."""
    return {**_mail_values(session, raw=raw, message_id=message_id,
                           envelope_from=envelope_from, recipients=recipients, kind=kind,
                           ticket_id=ticket_id, now=now, lifetime=lifetime),
            **_NEW_MAIL, "event": event}


def _mail_values(session: Session, *, raw: bytes, message_id: str, envelope_from: str,
                 recipients: Sequence[str], kind: str, ticket_id: int | None, now: datetime,
                 lifetime: timedelta) -> dict[str, Any]:
    """What differs between new mail rows: `_INSERT_ROWS` and `_INSERT_MANY` write the rest."""
    key = _key_for(session, ticket_id)
    return {
        "ticket_id": ticket_id, "kind": kind, "message_id": message_id,
        "envelope_from": envelope_from, "recipients": list(recipients),
        "raw": raw if key is None else seal(key.secret, raw, _associated(message_id)),
        "key_id": key.id if key else None,
        "next_attempt_at": now, "expires_at": now + lifetime, "created_at": now,
    }


def _key_for(session: Session, ticket_id: int | None) -> DataKey | None:
    """With encryption at rest, the data key of the ticket's requester: what we send about a
    person is theirs, and goes with their key at erasure. Mail of no ticket: the desk key."""
    vault = vault_of(session)
    if vault is None:
        return None
    requester = session.scalar(select(Ticket.requester_id).where(Ticket.id == ticket_id)) \
        if ticket_id is not None else None
    return vault.key_of_contact(session, requester) if requester else vault.desk_key(session)


def _associated(message_id: str) -> bytes:
    """A sealed row opens only as the mail of its own Message-ID."""
    return f"outbox/{message_id}".encode()


def plain_raw(session: Session, raw: bytes, key_id: int | None, message_id: str) -> bytes:
    """The bytes of an outgoing mail as sent, opened when sealed."""
    if key_id is None:
        return raw
    vault = vault_of(session)
    if vault is None:
        raise RuntimeError("sealed outgoing mail and no [privacy] key_file to open it")
    return open_sealed(vault.key(session, key_id).secret, raw, _associated(message_id))


def _no_line_breaks(value: str) -> None:
    # These values end up in SMTP commands: CR/LF there would inject commands (invariant 8).
    if any(c in value for c in "\r\n\x00"):
        raise ValueError("addresses and Message-IDs must not contain CR, LF or NUL")


def claim_due(session: Session, now: datetime, limit: int, lease: timedelta, *,
              mail: bool = True, webhooks: bool = True) -> list[ClaimedMail]:
    """Lease up to `limit` due rows to the caller until now + lease; counts the attempt.
    `mail` and `webhooks` say which rows the caller can deliver (at least one).

    The caller commits right away: the lease, not a held transaction, keeps others off.
    """
    claim = _CLAIMS[(mail, webhooks)]
    rows = session.execute(claim, {"now": now, "limit": limit, "until": now + lease}).all()
    claimed = []
    for r in rows:
        raw = _sendable(session, r, now)
        if raw is not None:
            claimed.append(ClaimedMail(r.id, r.kind, r.ticket_id, r.message_id, r.envelope_from,
                                       tuple(r.recipients), raw, r.attempts, r.expires_at,
                                       r.claimed_until, r.last_error, r.event))
    return sorted(claimed, key=lambda mail: mail.id)


def _sendable(session: Session, row: Any, now: datetime) -> bytes | None:
    """The bytes to send, or None when they can never be sent again (emptied by retention or
    erasure, or sealed with a key that is gone): that row goes dead, alone, instead of failing
    every claim that would include it and so stopping all outgoing mail."""
    if not row.raw:
        mark_dead(session, row.id, "the stored mail was removed (retention or erasure)", now)
        return None
    try:
        return plain_raw(session, row.raw, row.key_id, row.message_id)
    except KeyProblem as err:
        mark_dead(session, row.id, f"the stored mail cannot be opened: {type(err).__name__}", now)
        return None


def release(session: Session, ids: Sequence[int]) -> None:
    """Give back claimed rows that were not tried, uncounted, for any sender to take."""
    if ids:
        session.execute(_RELEASE, {"ids": list(ids)})


def hold(session: Session, ids: Sequence[int], until: datetime, error: str,
         now: datetime) -> None:
    """Give claimed rows back uncounted, due again at `until`, their expiry moved by the
    same pause: the sender could not try them for a reason of its own (no OAuth token),
    and that must neither use up their attempts nor their `[outbox] lifetime`."""
    if not ids:
        return
    pause = until - now
    rows = session.execute(select(_C.id, _C.expires_at).where(
        _C.id.in_(list(ids)), _C.state == "pending")).all()
    for row in rows:
        session.execute(update(_OUTBOX).where(_C.id == row.id).values(
            claimed_until=None, attempts=_C.attempts - 1, next_attempt_at=until,
            expires_at=row.expires_at + pause, last_error=error[:2000]))


def mark_sent(session: Session, outbox_id: int, accepted: Sequence[str],
              refused: Mapping[str, str], now: datetime) -> None:
    """The server took the mail for `accepted`; `refused` were refused for good (5xx), which
    is recorded on the ticket."""
    row = _settle(session, outbox_id, accepted, refused,
                  state="sent", sent_at=now, last_error=None)
    if refused:
        _failed(session, outbox_id, row, "some recipients refused", refused, now)


def mark_sent_many(session: Session,
                   sent: Sequence[tuple[int, Sequence[str], Mapping[str, str], datetime]]) -> None:
    """`mark_sent` for many rows, (id, accepted, refused, when) each: one query reads what the
    rows hold, one executemany settles them (the refused are recorded on the tickets as
    there)."""
    if not sent:
        return
    rows = {row.id: row for row in session.execute(_OUTCOMES, {"ids": [s[0] for s in sent]})}
    session.execute(_SETTLE, [{
        "oid": outbox_id, "claimed_until": None, "state": "sent", "sent_at": now,
        "last_error": None,
        "accepted": [*rows[outbox_id].accepted,
                     *(a for a in accepted if a not in rows[outbox_id].accepted)],
        "refused": {**rows[outbox_id].refused, **refused},
    } for outbox_id, accepted, refused, now in sent])
    for outbox_id, _, refused, now in sent:
        if refused:
            _failed(session, outbox_id, rows[outbox_id], "some recipients refused", refused, now)


def mark_retry(session: Session, outbox_id: int, error: str, next_at: datetime, *,
               remaining: Sequence[str] | None = None, accepted: Sequence[str] = (),
               refused: Mapping[str, str] | None = None) -> None:
    """Try again at `next_at`. After a partial acceptance, `remaining` are the recipients
    still to try (the accepted ones are kept apart and never sent again)."""
    values: dict[str, Any] = {"last_error": error[:2000], "next_attempt_at": next_at}
    if remaining is not None:
        values["recipients"] = list(remaining)
    row = _settle(session, outbox_id, accepted, refused or {}, **values)
    if refused:
        _failed(session, outbox_id, row, "some recipients refused", refused, None)


def mark_dead(session: Session, outbox_id: int, error: str, now: datetime, *,
              refused: Mapping[str, str] | None = None) -> None:
    """Stop trying, and record why on the ticket (a `delivery_failed` event)."""
    row = _settle(session, outbox_id, (), refused or {}, state="dead", last_error=error[:2000])
    _failed(session, outbox_id, row, error, refused or {}, now, dead=True)


def _failed(session: Session, outbox_id: int, row: Any, error: str,
            refused: Mapping[str, str], now: datetime | None, dead: bool = False) -> None:
    """A `delivery_failed` event on the mail's ticket (or on none, for mail of no ticket)."""
    write_events(session, [{
        "ticket_id": row.ticket_id, "kind": "delivery_failed", "actor": "system",
        "created_at": now or utcnow(),
        "data": {"outbox_id": outbox_id, "kind": row.kind, "message_id": row.message_id,
                 "error": error[:2000], "refused": dict(refused), "dead": dead},
    }])


def _settle(session: Session, outbox_id: int, accepted: Sequence[str],
            refused: Mapping[str, str], **values: Any) -> Any:
    row = session.execute(_OUTCOME, {"oid": outbox_id}).one()
    session.execute(_SETTLE, {
        "oid": outbox_id, "claimed_until": None,
        "accepted": [*row.accepted, *(a for a in accepted if a not in row.accepted)],
        "refused": {**row.refused, **refused}, **values,
    })
    return row


def requeue(session: Session, outbox_id: int, now: datetime | None = None,
            lifetime: timedelta = DEFAULT_LIFETIME) -> bool:
    """Give a dead row a new life from now; False when there is no dead row with this id, or
    its bytes were removed (there is nothing left to send)."""
    now = now or utcnow()
    done = session.execute(
        update(_OUTBOX).where(_C.id == outbox_id, _C.state == "dead",
                              _C.raw_removed_at.is_(None)).values(
            state="pending", attempts=0, next_attempt_at=now, expires_at=now + lifetime,
            claimed_until=None).returning(_C.ticket_id)
    ).first()
    if done is None:
        return False
    insert_event(session, "delivery_requeued", done.ticket_id, outbox_id=outbox_id)
    return True


def list_rows(session: Session, state: str | None = None, limit: int = 500) -> list[OutboxRow]:
    """Rows newest first, optionally of one state."""
    query = (
        select(_C.id, _C.state, _C.kind, Ticket.number, _C.message_id, _C.recipients,
               _C.accepted, _C.refused, _C.attempts, _C.next_attempt_at, _C.expires_at,
               _C.claimed_until, _C.last_error, _C.created_at, _C.sent_at, _C.event)
        .outerjoin(Ticket, Ticket.id == _C.ticket_id)
        .order_by(_C.id.desc())
        .limit(limit)
    )
    if state:
        query = query.where(_C.state == state)
    return [OutboxRow(*row) for row in session.execute(query)]


def oldest_due(session: Session, now: datetime) -> datetime | None:
    """When the longest-waiting pending row fell due; None when nothing is due."""
    return session.scalar(select(func.min(_C.next_attempt_at))
                          .where(_C.state == "pending", _C.next_attempt_at <= now))


def count_by_state(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(_C.state, func.count()).group_by(_C.state)).all())
    return {state: counts.get(state, 0) for state in ("pending", "sent", "dead")}
