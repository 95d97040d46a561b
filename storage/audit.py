"""The event log as a hash chain: sealing rows into it, and checking it.

Events are written by many places (ingest in batches, the SLA monitor, agents' commands,
the CLI) and, on PostgreSQL, by several daemons at once. They are inserted unsealed, so that
writing one costs nothing more than before, and a sealing pass chains them afterwards.

Why the chain is right under concurrency. A sealer takes one lock (a PostgreSQL
transaction-level advisory lock; on SQLite, BEGIN IMMEDIATE already makes it the only
writer), reads the chain's head, and appends the unsealed rows it can see, in id order,
giving each the next `chain_seq`. The chain's order is therefore the order rows were
*sealed*, not their ids. That matters on PostgreSQL: ids come from a sequence when a row is
inserted, but rows become visible when their transaction commits, so row 10 may commit
after row 11 was already sealed. Chaining by id would then have to wait for every id below
the head to commit (and could never tell a slow transaction from a rolled-back one, which
leaves a gap for ever); chaining by sealing order needs no such wait: row 10 simply takes
the next place when it becomes visible. Two sealers never hand out the same place, because
the second one reads the head only after the first has committed and let go of the lock
(READ COMMITTED takes a fresh snapshot per statement), and a unique index on `chain_seq`
would refuse a duplicate anyway. Rows are immutable once committed (no code updates an
event but `redact`, which takes the sealer's lock too), so the only UPDATE an event sees is
its sealing, guarded by `chain_seq IS NULL`, and at most one redaction.

What the chain shows. Each sealed row's `hash` covers its place, id, ticket, kind, time,
the previous row's hash, and the digest of its actor and data (canonical JSON): through a
digest, so that personal data can be taken out of a row (`redact`, for retention and
erasure) and the digest kept in its place without breaking the chain. A redacted row must
hold exactly the redaction's placeholders, so the most a forger can do that way is blank a
row, which `verify` counts. `verify` recomputes the hashes row by row and names the first
row whose content was edited, whose predecessor was deleted or replaced (the place before
it is missing, or `prev_hash` does not match), or that was slipped in with a date far older
than the rows sealed before it (`LATE`). Deleting the newest rows
cannot be told from their never having existed: keep the head hash that `verify` prints
somewhere else (a ticket system, a mail) to anchor it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from storage.locks import lock_for_transaction
from storage.models import Event

GENESIS = "0" * 64  # the prev_hash of the first row
SEAL_BATCH = 2000  # rows chained per transaction: the lock is held for milliseconds
# A row sealed after one whose time is later than its own by more than this was written
# long after it says: no transaction of ticketd stays open that long, so it was inserted by
# hand with a date in the past. (Daemons on several hosts must keep their clocks closer.)
LATE = timedelta(minutes=10)
REDACTED_ACTOR = "redacted"  # what `redact` leaves in actor and data
REDACTED_DATA = {"redacted": True}
# The sealer's advisory lock (storage/locks.py): one sealer at a time among the daemons.
_SEAL_LOCK = "ticketd events seal"


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def content_digest(row: Any) -> str:
    """The digest of what may hold personal data (actor, data): the chain covers it through
    this digest, so that redacting them (`redact`) keeps the chain checkable."""
    if row.redacted_digest:
        return str(row.redacted_digest)
    return hashlib.sha256(_json([row.actor, row.data or {}])).hexdigest()


def canonical(row: Any) -> bytes:
    """The bytes a row's hash covers: its place, content and predecessor, as canonical JSON."""
    created: datetime = row.created_at
    return _json([row.chain_seq, row.id, row.ticket_id, row.kind, created.isoformat(),
                  row.prev_hash, content_digest(row)])


def row_hash(row: Any) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


@dataclass
class _Sealing:
    """The values sealing gives a row, shaped like a row for `canonical`."""

    id: int
    ticket_id: int | None
    kind: str
    actor: str
    data: dict[str, Any]
    created_at: datetime
    chain_seq: int
    prev_hash: str
    redacted_digest: str | None = None


_COLUMNS = (Event.id, Event.ticket_id, Event.kind, Event.actor, Event.data, Event.created_at)
_CHAIN = (Event.chain_seq, Event.prev_hash, Event.hash, Event.redacted_digest)
_SEAL = (update(Event.__table__)
         .where(Event.__table__.c.id == bindparam("row_id"), Event.__table__.c.chain_seq.is_(None))
         .values(chain_seq=bindparam("seq"), prev_hash=bindparam("prev"), hash=bindparam("h")))


def head(session: Session) -> tuple[int, str]:
    """(place, hash) of the newest sealed row; (0, GENESIS) for an empty chain."""
    row = session.execute(select(Event.chain_seq, Event.hash).where(Event.chain_seq.is_not(None))
                          .order_by(Event.chain_seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def seal_batch(session: Session, limit: int = SEAL_BATCH) -> int:
    """Chain up to `limit` unsealed rows in the caller's transaction; how many. The caller
    commits soon: the lock is held until then, and other sealers wait on it."""
    lock_for_transaction(session, _SEAL_LOCK)
    seq, prev = head(session)
    rows = session.execute(select(*_COLUMNS).where(Event.chain_seq.is_(None))
                           .order_by(Event.id).limit(limit)).all()
    params = []
    for row in rows:
        seq += 1
        sealing = _Sealing(*row, chain_seq=seq, prev_hash=prev)
        prev = row_hash(sealing)
        params.append({"row_id": row.id, "seq": seq, "prev": sealing.prev_hash, "h": prev})
    if params:
        session.connection().execute(_SEAL, params)
    return len(params)


def seal(sessions: Any, limit: int = SEAL_BATCH) -> int:
    """Chain every row unsealed now, one short transaction per batch; how many."""
    total = 0
    while True:
        with sessions.begin() as session:
            done = seal_batch(session, limit)
        total += done
        if done < limit:
            return total


@dataclass(frozen=True)
class Break:
    """The first row where the chain does not hold, and what is wrong with it."""

    event_id: int
    chain_seq: int
    reason: str


@dataclass(frozen=True)
class Verdict:
    checked: int  # sealed rows checked
    unsealed: int  # rows not yet chained (written since the last sealing)
    head_seq: int
    head_hash: str
    broken: Break | None
    redacted: int = 0  # rows whose personal data was taken out (still checked by digest)


def _sealed_rows(session: Session, page: int) -> Iterator[Any]:
    """Every sealed row in chain order, a page at a time: bounded memory for any log."""
    after = 0
    while True:
        rows = session.execute(select(*_COLUMNS, *_CHAIN)
                               .where(Event.chain_seq > after)
                               .order_by(Event.chain_seq).limit(page)).all()
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].chain_seq


def check_row(row: Any, seq: int, prev_hash: str, prev_time: datetime | None) -> str | None:
    """Why this row breaks the chain after (seq, prev_hash, prev_time); None when it holds."""
    if row.chain_seq != seq + 1:
        missing = (f"place {seq + 1}" if row.chain_seq == seq + 2
                   else f"places {seq + 1}-{row.chain_seq - 1}")
        return f"deleted: {missing} of the chain, just before this row, is missing"
    if row.prev_hash != prev_hash:
        return "the row before it was replaced or deleted: its prev_hash does not match"
    if row_hash(row) != row.hash:
        return "edited: its content does not match its hash"
    if row.redacted_digest and (row.actor, row.data) != (REDACTED_ACTOR, REDACTED_DATA):
        return "edited: it was redacted, yet holds content"
    if prev_time is not None and row.created_at < prev_time - LATE:
        return (f"inserted: dated {row.created_at.isoformat()}, long before the row sealed "
                f"ahead of it ({prev_time.isoformat()})")
    return None


def verify(session: Session, page: int = 5000) -> Verdict:
    """Walk the chain from its first row; stop at the first break."""
    seq, prev, prev_time, checked, redacted = 0, GENESIS, None, 0, 0
    for row in _sealed_rows(session, page):
        why = check_row(row, seq, prev, prev_time)
        if why is not None:
            return Verdict(checked, _unsealed(session), seq, prev,
                           Break(row.id, row.chain_seq, why), redacted)
        seq, prev, prev_time = row.chain_seq, row.hash, max(prev_time or row.created_at,
                                                            row.created_at)
        checked += 1
        redacted += row.redacted_digest is not None
    return Verdict(checked, _unsealed(session), seq, prev, None, redacted)




def redact(session: Session, event_ids: list[int]) -> int:
    """Take personal data out of these events (actor and data), in the caller's transaction;
    how many were changed. A sealed row keeps the digest of what it held, which its hash
    covers, so the chain still verifies; a row not yet sealed is simply rewritten. Holds the
    sealer's lock until the caller commits, so no row is sealed half-way through.

    A row edited before its redaction keeps the digest of the edited content, which its hash
    does not cover: `verify` still names it. Redaction never launders, and so never has to
    refuse (erasure is owed even when the log was tampered with)."""
    if not event_ids:
        return 0
    lock_for_transaction(session, _SEAL_LOCK)
    rows = session.execute(select(*_COLUMNS, *_CHAIN).where(
        Event.id.in_(event_ids), Event.actor != REDACTED_ACTOR)).all()
    for row in rows:
        digest = content_digest(row) if row.chain_seq is not None else None
        session.execute(update(Event).where(Event.id == row.id)
                        .execution_options(synchronize_session=False)
                        .values(actor=REDACTED_ACTOR, data=REDACTED_DATA,
                                redacted_digest=digest))
    return len(rows)


def _unsealed(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Event)
                          .where(Event.chain_seq.is_(None))) or 0
