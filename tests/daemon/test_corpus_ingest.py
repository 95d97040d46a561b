"""Every message of the shared corpus through the whole ingest pipeline, on SQLite and PostgreSQL:
none crashes it, each is stored, ignored or quarantined with a reason, and a second pass doubles nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from daemon.ingest import IngestPolicy, Ingestor
from parsers.ingest_key import content_digest, ingest_key
from storage import db
from storage.blobs import BlobStore
from storage.models import IngestRecord
from tests.support.corpus import message_files, require_corpus


def test_every_corpus_message_is_stored_or_quarantined_with_a_reason(db_url: str, tmp_path: Path) -> None:
    root = require_corpus()
    sessions = db.session_factory(db.make_engine(db_url))
    ingestor = Ingestor(sessions, BlobStore(tmp_path), IngestPolicy())
    files = list(message_files(root))
    assert len(files) > 1000
    outcomes: Counter[str] = Counter()
    unreadable = 0  # a person's mail with no sender to answer: quarantined for a person
    for path in files:
        result = ingestor.ingest(path.read_bytes(), source=str(path.relative_to(root)))
        outcomes[result.outcome] += 1
        unreadable += result.reason.startswith("no readable sender")
        if result.outcome in ("quarantined", "ignored"):
            assert result.reason, path
            assert not result.reason.startswith("internal error"), (path, result.reason)
        else:
            assert result.ticket_number, path
    print(f"\ncorpus ingest: {len(files)} files: {dict(outcomes)}")
    # Most of the corpus is bounces and auto-replies: kept with their reason, never a ticket.
    assert outcomes["ticket"] > 150 and outcomes["ignored"] > 900
    # A machine's mail without a sender (a bounce's null From) is kept as such, not here.
    assert outcomes["quarantined"] - unreadable <= 2 and unreadable <= 6
    with sessions() as session:
        distinct = session.scalar(select(func.count()).select_from(IngestRecord))
    # Copies in the corpus are one mail: the same ingest key, or the same author's headers
    # and body under other trace headers (a re-delivery), give one record, never more.
    keys = {ingest_key(path.read_bytes())[0] for path in files}
    copies = {content_digest(path.read_bytes()) for path in files}
    assert len(copies) <= distinct <= len(keys)
    again = [ingestor.ingest(p.read_bytes(), "again") for p in files[:200]]
    assert all(r.duplicate for r in again)
