"""Mail our MTA's filter marked as spam: kept in ingest_log (outcome "spam", the verdict as
reason, the raw bytes in the blob store), listed, and released into the normal ingest."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.models import IngestRecord

SPAM = "spam"


def list_spam(session: Session, limit: int = 200) -> list[IngestRecord]:
    """The newest spam first."""
    query = (select(IngestRecord).where(IngestRecord.outcome == SPAM)
             .order_by(IngestRecord.id.desc()).limit(limit))
    return list(session.scalars(query))


def spam_record(session: Session, record_id: int) -> IngestRecord | None:
    record = session.get(IngestRecord, record_id)
    return record if record is not None and record.outcome == SPAM else None


def forget_spam(session: Session, key: str) -> bool:
    """Drop the spam record of a mail being released, so that it is ingested afresh under
    the same key in the same transaction; False when it is no spam record (any more)."""
    done = session.execute(delete(IngestRecord).where(IngestRecord.ingest_key == key,
                                                      IngestRecord.outcome == SPAM))
    return bool(done.rowcount)
