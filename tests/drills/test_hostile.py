"""Hostile-input drill: every mail in ``tests.drills.hostile`` goes through the whole ingest.

Each mail must end as a stored ticket or a quarantine with a reason, never an
exception, within fixed, generous bounds on wall time and traced memory (they
catch hangs and blow-ups, they do not measure speed); the raw mail is always
kept, and no stored attachment name can act as a path or hide characters.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.ingest import Ingestor, IngestPolicy
from storage import db
from storage.blobs import BlobStore
from storage.models import IngestRecord, Message, Participant, StoredAttachment, Ticket
from tests.drills.hostile import CASES, HostileCase, zip_bomb, zip_bomb_payload

MAX_SECONDS = 20.0
MAX_TRACED_BYTES = 1536 * 1024 * 1024  # 1.5 GB
# Each case takes at most a few seconds (tracemalloc included); all of them well under 2 minutes.
pytestmark = pytest.mark.timeout(60)

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@pytest.fixture
def ingestor(sqlite_url: str, tmp_path: Path) -> Iterator[Ingestor]:
    engine = db.make_engine(sqlite_url)
    yield Ingestor(db.session_factory(engine), BlobStore(tmp_path / "blobs", fsync=False),
                   IngestPolicy())
    engine.dispose()


def _params() -> list:
    return [
        pytest.param(case, id=case.name,
                     marks=[pytest.mark.xfail(reason=case.known_bug, strict=True)]
                     if case.known_bug else [])
        for case in CASES
    ]


def _unsafe_filename(name: str) -> list[str]:
    problems = [c for c in name if c in "/\\\x00" or unicodedata.category(c) == "Cc" or c in _BIDI]
    if not name.strip() or len(name.encode("utf-8", "surrogatepass")) > 255:
        problems.append("empty or longer than 255 bytes")
    return problems


@pytest.mark.parametrize("case", _params())
def test_a_hostile_mail_is_stored_or_quarantined_within_bounds(
    case: HostileCase, ingestor: Ingestor
) -> None:
    raw = case.build()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = ingestor.ingest(raw, f"drill/{case.name}")
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert elapsed < MAX_SECONDS, f"{case.name}: {elapsed:.1f} s"
    assert peak < MAX_TRACED_BYTES, f"{case.name}: {peak / 2**20:,.0f} MiB traced"
    assert result.outcome in ("ticket", "quarantined"), result
    if result.outcome == "quarantined":
        assert result.reason.strip(), result

    with ingestor.sessions() as session:
        record = session.scalar(select(IngestRecord).where(IngestRecord.ingest_key == result.key))
        names = session.scalars(select(StoredAttachment.filename)).all()
        participants = session.scalars(select(Participant.address)).all()
        subjects = session.scalars(select(Ticket.subject)).all()
        messages = session.execute(select(Message.subject, Message.sender_name)).all()
    # The raw mail is kept: its record, and its bytes on disk (an empty file has none).
    assert record is not None and record.outcome == result.outcome
    assert (record.raw_sha256, record.raw_size) == (hashlib.sha256(raw).hexdigest(), len(raw))
    if raw:
        assert ingestor.blobs.get_raw(record.raw_sha256) == raw

    bad = {name: _unsafe_filename(name) for name in names if _unsafe_filename(name)}
    assert not bad, f"unsafe stored attachment names: {bad!r}"

    for address in case.forbidden_addresses:
        assert address not in participants, participants
    for text in [*subjects, *(s for m in messages for s in m)]:
        assert not set(text) & set("\r\n\x00"), text[:200]

    # What a careful desk does with it; a safety-net quarantine ("internal error",
    # "unparseable") of a mail that should have been a ticket is a bug.
    assert (result.outcome, record.outcome) == (case.expect, case.expect), result.reason
    assert not result.reason.startswith(("internal error", "unparseable")), result.reason


def test_the_zip_bomb_is_stored_as_the_small_archive_it_is(ingestor: Ingestor) -> None:
    raw, archive = zip_bomb(), zip_bomb_payload()
    result = ingestor.ingest(raw, "drill/zip-bomb")
    assert result.outcome == "ticket", result
    with ingestor.sessions() as session:
        [att] = session.scalars(select(StoredAttachment)).all()
    assert (att.filename, att.content_type) == ("logs.zip", "application/zip")
    assert att.size == len(archive) < 5 * 1024 * 1024
    assert ingestor.blobs.get_attachment(att.sha256) == archive
