"""Mail our MTA's filter marked as spam: kept in ingest_log (outcome "spam", the verdict as
reason, the raw bytes in the blob store), listed, and released into the normal ingest. The
quarantine (outcome "quarantined") is kept, listed and released the same way."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.models import IngestRecord
from storage.queries import flush_held

SPAM = "spam"
QUARANTINED = "quarantined"
RELEASABLE = (SPAM, QUARANTINED)


def list_spam(session: Session, limit: int = 200, outcome: str = SPAM) -> list[IngestRecord]:
    """The newest spam (or quarantined mail) first."""
    query = (select(IngestRecord).where(IngestRecord.outcome == outcome)
             .order_by(IngestRecord.id.desc()).limit(limit))
    return list(session.scalars(query))


def spam_record(session: Session, record_id: int, outcome: str = SPAM) -> IngestRecord | None:
    record = session.get(IngestRecord, record_id)
    return record if record is not None and record.outcome == outcome else None


def forget_spam(session: Session, key: str) -> bool:
    """Drop the spam (or quarantine) record of a mail being released, so that it is ingested
    afresh under the same key in the same transaction; False when there is none (any more)."""
    flush_held(session)  # a record held by the batch is one
    done = session.execute(delete(IngestRecord).where(IngestRecord.ingest_key == key,
                                                      IngestRecord.outcome.in_(RELEASABLE)))
    return bool(done.rowcount)
