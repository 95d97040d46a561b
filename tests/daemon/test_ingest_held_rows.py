"""A batch's events and ingest records go to the database together as the batch ends
(storage.queries.hold_rows), on SQLite and PostgreSQL: one statement per table, the event
chain intact, no savepoint per mail on a batch's first try, a failed mail's rows dropped
and no one else's, and a key another daemon stored meanwhile still stored once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from daemon.ingest import IngestPolicy, Ingestor
from storage import audit, db, queries
from storage.blobs import BlobStore
from storage.models import Event, IngestRecord, Ticket
from tests.support.mails import mail

POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}))


class _FailingIngestor(Ingestor):
    """The real ingest, with a bug planted on mails whose subject says BUG, after their rows
    are written; FLUSH first sends what the batch holds to the database, in that savepoint."""

    def _store(self, session, mail, record, automated, *rest):  # noqa: ANN001, ANN002, ANN202
        result = super()._store(session, mail, record, automated, *rest)
        if "FLUSH" in mail.subject:
            queries.flush_held(session)
        if "BUG" in mail.subject:
            raise KeyError("a bug in storing this mail")
        return result


def _inserts(engine) -> list[str]:  # noqa: ANN001
    """The tables of the INSERT statements sent to `engine` from now on, one per statement,
    and "SAVEPOINT" for each savepoint taken."""
    sent: list[str] = []

    def seen(_conn, _cursor, statement: str, *_rest) -> None:  # noqa: ANN001, ANN002
        if statement.startswith("INSERT INTO "):
            sent.append(statement.split()[2])
        elif statement.startswith("SAVEPOINT "):
            sent.append("SAVEPOINT")

    event.listen(engine, "before_cursor_execute", seen)
    return sent


def _created_keys(session) -> list[str]:  # noqa: ANN001
    return [data["ingest_key"] for data in session.scalars(
        select(Event.data).where(Event.kind == "created").order_by(Event.id))]


def test_a_batch_writes_its_events_and_records_in_one_statement_each_and_the_chain_holds(
        db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    ingestor = Ingestor(sessions, BlobStore(tmp_path / "state"), POLICY)
    mails = [(mail(sender=f"p{n}@mail.test", message_id=f"<m{n}@mail.test>"), f"b;uid={n}")
             for n in range(6)]
    sent = _inserts(engine)
    results = ingestor.ingest_many(mails)
    assert [r.outcome for r in results] == ["ticket"] * 6
    assert sent.count("events") == 1 and sent.count("ingest_log") == 1
    assert "SAVEPOINT" not in sent  # a savepoint a mail only when the batch is stored again
    assert audit.seal(sessions) > 6
    with sessions() as session:
        assert _created_keys(session) == [r.key for r in results]  # ids in the order written
        verdict = audit.verify(session)
    assert (verdict.broken, verdict.unsealed) == (None, 0)


def test_a_failed_mail_drops_its_held_rows_and_keeps_those_of_the_mails_before_it(
        db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    ingestor = _FailingIngestor(sessions, BlobStore(tmp_path / "state"), POLICY)
    sent = _inserts(engine)
    # The bad mail flushes the first mail's rows, then fails the batch's first try: all of
    # it rolls back, and the batch is stored again with a savepoint a mail, where only the
    # bad mail's rows are dropped.
    results = ingestor.ingest_many([
        (mail(sender="a@mail.test"), "1"),
        (mail(sender="c@mail.test", subject="FLUSH then BUG"), "2"),
        (mail(sender="b@mail.test"), "3")])
    assert [r.outcome for r in results] == ["ticket", "quarantined", "ticket"]
    assert sent.count("SAVEPOINT") >= 3  # the second try's
    with sessions() as session:
        assert _created_keys(session) == [results[0].key, results[2].key]
        quarantined = session.scalars(select(Event.data["ingest_key"].as_string())
                                      .where(Event.kind == "quarantined")).all()
        assert quarantined == [results[1].key]
        records = dict(session.execute(select(IngestRecord.ingest_key, IngestRecord.outcome)).all())
    assert records == {results[0].key: "ticket", results[1].key: "quarantined",
                       results[2].key: "ticket"}


def test_a_mail_another_daemon_stores_meanwhile_is_stored_once(
        pg_url: str, tmp_path: Path) -> None:
    """Two daemons fetch the same mail: the second has looked it up and is storing its batch
    when the first commits it. Its records clash only as the batch ends: the batch is
    stored again and finds the mail stored."""
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    other = Ingestor(db.session_factory(db.make_engine(pg_url)), BlobStore(tmp_path / "other"),
                     POLICY)
    ours = Ingestor(sessions, BlobStore(tmp_path / "ours"), POLICY)
    raw = mail(sender="p@mail.test", message_id="<same@mail.test>")
    theirs: list = []

    def after_our_look_up(_conn, _cursor, statement: str, *_rest) -> None:  # noqa: ANN001, ANN002
        if statement.startswith("SELECT ingest_log.ingest_key") and not theirs:
            worker = threading.Thread(target=lambda: theirs.extend(
                other.ingest_many([(raw, "other;uid=1")])))
            worker.start()
            worker.join(60)

    event.listen(engine, "after_cursor_execute", after_our_look_up)
    [result] = ours.ingest_many([(mail(sender="q@mail.test"), "ours;uid=1"), (raw, "ours;uid=2")])[1:]
    assert [r.outcome for r in theirs] == ["ticket"]
    assert result.duplicate and result.ticket_number == theirs[0].ticket_number
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 2
        assert session.scalar(select(func.count()).select_from(IngestRecord)) == 2


class _BadRowIngestor(Ingestor):
    """The real ingest, with a bug planted on mails whose subject says BADROW: an event whose
    data cannot be written, which fails only when the held rows reach the database."""

    def _store(self, session, mail, record, automated, *rest):  # noqa: ANN001, ANN002, ANN202
        result = super()._store(session, mail, record, automated, *rest)
        if "BADROW" in mail.subject:
            queries.write_events(session, [{"kind": "planted", "data": {"x": object()}}])
        if "FLUSH" in mail.subject:
            queries.flush_held(session)
        return result


@pytest.mark.parametrize("last", ["plain", "FLUSH"])
def test_a_mails_bad_held_row_quarantines_that_mail_alone(
        db_url: str, tmp_path: Path, last: str) -> None:
    """A row held for the batch's end that the database refuses sinks neither the batch nor a
    later mail that reads the held tables first (FLUSH): the batch is stored again with each
    mail's rows in its own savepoint, and only the bad mail is quarantined."""
    sessions = db.session_factory(db.make_engine(db_url))
    ingestor = _BadRowIngestor(sessions, BlobStore(tmp_path / "state"), POLICY)
    results = ingestor.ingest_many([
        (mail(sender="a@mail.test"), "1"),
        (mail(sender="c@mail.test", subject="BADROW"), "2"),
        (mail(sender="b@mail.test", subject=last), "3")])
    assert [r.outcome for r in results] == ["ticket", "quarantined", "ticket"]
    with sessions() as session:
        assert _created_keys(session) == [results[0].key, results[2].key]
        assert session.scalar(select(func.count()).select_from(Event)
                              .where(Event.kind == "planted")) == 0
        records = dict(session.execute(select(IngestRecord.ingest_key, IngestRecord.outcome)).all())
    assert records == {results[0].key: "ticket", results[1].key: "quarantined",
                       results[2].key: "ticket"}
