"""Storage on SQLite and PostgreSQL: schema, uniqueness, cursors, the attachment store."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import event, select
from sqlalchemy import exc as sa_exc

from storage import db, queries
from storage.blobs import BlobStore
from storage.models import TICKET_NUMBER_OFFSET, Contact, IngestRecord, Ticket


def test_migrated_database_is_at_head(db_url: str) -> None:
    engine = db.make_engine(db_url)
    db.check_schema(engine)
    assert db.current_revision(engine) == db.head_revision()


def test_database_without_schema_is_refused_with_the_command_to_run(tmp_path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(db.SchemaError, match="ticketd db upgrade"):
        db.check_schema(engine)


def test_ticket_numbers_are_public_and_unique(db_url: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        who = queries.contact_id(session, "p@mail.test", "P")
        first_id, first = queries.insert_ticket(session, subject="a", requester_id=who)
        _, second = queries.insert_ticket(session, subject="b", requester_id=who)
    assert first == first_id + TICKET_NUMBER_OFFSET
    assert second == first + 1
    with sessions() as session:
        assert queries.ticket_by_ref(session, f"#{second}").subject == "b"
        assert queries.ticket_by_ref(session, "nonsense") is None


def test_a_ticket_is_numbered_by_its_own_insert(db_url: str) -> None:
    """The public number is written with the row: no UPDATE follows the INSERT, and the row
    holds the number `insert_ticket` returns."""
    engine = db.make_engine(db_url)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _k, sql, *_: sent.append(sql))
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        who = queries.contact_id(session, "p@mail.test", "P")
        sent.clear()
        ticket_id, number = queries.insert_ticket(session, subject="a", requester_id=who,
                                                  linked_ticket_id=None, category="bonus")
    assert [sql.split()[0] for sql in sent] == ["INSERT"]
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        assert (ticket.number, ticket.subject, ticket.category, ticket.priority,
                ticket.status) == (number, "a", "bonus", "normal", "open")
        assert ticket.created_at.tzinfo is not None
    engine.dispose()


def test_a_new_tickets_times_are_utc_whatever_the_servers_time_zone(pg_url: str) -> None:
    """A server whose TimeZone is not UTC (initdb takes the host's) stores a new ticket's
    created_at and updated_at as given: the values go through the column's own conversion."""
    engine = db.make_engine(pg_url)
    event.listen(engine, "connect", lambda conn, _record: _berlin(conn))
    sessions = db.session_factory(engine)
    given = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    with sessions.begin() as session:
        who = queries.contact_id(session, "tz@mail.test", "T")
        ticket_id, _ = queries.insert_ticket(session, subject="tz", requester_id=who,
                                             linked_ticket_id=None, created_at=given,
                                             updated_at=given)
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        assert (ticket.created_at, ticket.updated_at) == (given, given)
    engine.dispose()


def _berlin(dbapi_connection) -> None:  # noqa: ANN001
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TimeZone = 'Europe/Berlin'")
    dbapi_connection.commit()


def test_tickets_of_overlapping_transactions_get_numbers_of_their_own(pg_url: str) -> None:
    """Two daemons create tickets at once: each takes its id, and so its number, from the
    sequence; the one that commits last neither waits for nor collides with the other."""
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        who = queries.contact_id(session, "p@mail.test", "P")
    first, second, dropped = sessions(), sessions(), sessions()
    for session in (first, second, dropped):
        session.begin()
    a = queries.insert_ticket(first, subject="a", requester_id=who)
    gone = queries.insert_ticket(dropped, subject="gone", requester_id=who)
    b = queries.insert_ticket(second, subject="b", requester_id=who)
    dropped.rollback()
    second.commit()
    first.commit()
    with sessions.begin() as session:
        c = queries.insert_ticket(session, subject="c", requester_id=who)
    with sessions() as session:
        rows = session.execute(select(Ticket.id, Ticket.number).order_by(Ticket.id)).all()
    assert [tuple(row) for row in rows] == [a, b, c]
    assert all(number == tid + TICKET_NUMBER_OFFSET for tid, number in rows)
    assert gone[1] not in {number for _, number in rows}  # a number is never handed out twice
    for session in (first, second, dropped):
        session.close()
    engine.dispose()


def test_contact_for_the_same_address_is_one_row(db_url: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        a = queries.contact_id(session, "p@mail.test", "P", "ru")
    with sessions.begin() as session:
        b = queries.contact_id(session, "p@mail.test", "Other name", "en")
        assert (a, session.get(Contact, b).language) == (b, "ru")


def test_second_record_with_the_same_ingest_key_is_refused(db_url: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    row = dict(ingest_key="k" * 64, outcome="ignored", raw_sha256="0" * 64)
    with sessions.begin() as session:
        session.add(IngestRecord(**row))
    with pytest.raises(sa_exc.IntegrityError):
        with sessions.begin() as session:
            session.add(IngestRecord(**row))


def test_cursor_reports_a_uidvalidity_change(db_url: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        assert queries.save_cursor(session, "box", 100, 5) is False
    with sessions.begin() as session:
        assert queries.save_cursor(session, "box", 100, 3) is False
        assert queries.get_cursor(session, "box").last_uid == 5
    with sessions.begin() as session:
        assert queries.save_cursor(session, "box", 200, 1) is True
        assert (queries.get_cursor(session, "box").uidvalidity,
                queries.get_cursor(session, "box").last_uid) == (200, 1)


def test_blob_store_is_content_addressed_and_byte_exact(tmp_path) -> None:
    store = BlobStore(tmp_path)
    raw = b"From: a@b\r\n\r\n\x00\xff binary"
    digest = store.put_raw(raw)
    assert store.put_raw(raw) == digest
    assert store.get_raw(digest) == raw
    assert store.raw_path(digest).read_bytes() != raw  # kept compressed
    payload = bytes(range(256)) * 10
    assert store.get_attachment(store.put_attachment(payload)) == payload
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_batch_names_its_files_only_when_published(tmp_path) -> None:
    store = BlobStore(tmp_path)
    batch = store.batch()
    digest = batch.put_attachment(b"receipt")
    batch.put_attachment(b"receipt")  # the same content twice in a batch: one file
    assert not store.attachment_path(digest).exists()  # written, not yet named
    batch.publish()
    assert store.get_attachment(digest) == b"receipt"
    with store.batch() as dropped:
        other = dropped.put_attachment(b"screenshot")
        dropped.discard()
    assert not store.attachment_path(other).exists()
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.parametrize("syncfs", [True, False], ids=["one flush per batch", "fsync per file"])
def test_a_durable_batch_names_every_file_with_its_content(tmp_path, monkeypatch, syncfs) -> None:
    """With syncfs(2) a batch is flushed twice whatever its size; without it (not Linux),
    each file and directory on its own: either way every file is named, whole."""
    from storage import blobs

    if syncfs and blobs._SYNCFS is None:
        pytest.skip("no syncfs(2) on this system")
    if not syncfs:
        monkeypatch.setattr(blobs, "_SYNCFS", None)
    store = BlobStore(tmp_path)
    assert store.flushes_per_batch is syncfs
    payloads = [bytes([n]) * (n + 1) * 1000 for n in range(20)]
    with store.batch() as batch:
        digests = [batch.put_attachment(p) for p in payloads]
        raw = batch.put_raw(b"From: a@b\r\n\r\nhi")
    assert [store.get_attachment(d) for d in digests] == payloads
    assert store.get_raw(raw) == b"From: a@b\r\n\r\nhi"
    assert not list(store.staging.iterdir())


def test_temporary_files_left_by_a_killed_process_are_swept_by_age(tmp_path) -> None:
    import os
    import time

    store = BlobStore(tmp_path)
    store.put_raw(b"From: a@b\r\n\r\nhi")  # makes the staging folder
    old, fresh = store.staging / ".tmp-old", store.staging / ".tmp-fresh"
    old.write_bytes(b"half a mail")
    fresh.write_bytes(b"a batch in flight")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    assert store.sweep() == 1
    assert not old.exists() and fresh.exists()


def test_the_migrations_build_exactly_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.models import Base
    from storage.search import include_object

    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_a_downgrade_and_upgrade_keep_the_full_text_search(db_url: str) -> None:
    """Down to before the search (0006) and back: no migration may drop the triggers that
    keep the index (a batch on SQLite recreates `tickets` without them)."""
    from alembic import command

    from storage.search import search

    engine = db.make_engine(db_url)
    command.downgrade(db.alembic_config(engine), "0006")
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        who = queries.contact_id(session, "p@mail.test", "P")
        ticket_id, _ = queries.insert_ticket(session, subject="Withdrawal stuck in review",
                                             requester_id=who)
    with sessions() as session:
        assert [hit.ticket_id for hit in search(session, "withdrawal review")] == [ticket_id]
