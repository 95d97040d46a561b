"""Invariant 8 on the error paths: when storing a mail fails for real, on SQLite and on
PostgreSQL, nothing of the mail (a card number in the player's text) reaches the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon import logs
from daemon.ingest import Ingestor, IngestPolicy, TemporaryFailure
from storage import db
from storage.blobs import BlobStore
from tests.support.mails import mail

POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}))
CARD = "4111 1111 1111 1111"

# A real failure inside the database, on the insert of the message row that holds the text.
_REFUSE = {
    "postgresql": [
        "CREATE FUNCTION refuse_cards() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.full_text LIKE '%4111%' THEN RAISE EXCEPTION 'storage refused'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_cards BEFORE INSERT ON messages FOR EACH ROW "
        "EXECUTE FUNCTION refuse_cards()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_cards BEFORE INSERT ON messages "
        "WHEN NEW.full_text LIKE '%4111%' BEGIN SELECT RAISE(FAIL, 'storage refused'); END",
    ],
}


def test_a_failing_store_logs_no_trace_of_the_mail(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    engine = db.make_engine(db_url)
    with engine.begin() as conn:
        for statement in _REFUSE[engine.dialect.name]:
            conn.execute(text(statement))
    ingestor = Ingestor(db.session_factory(engine), BlobStore(tmp_path / "state"), POLICY)
    raw = mail(subject="Card", body=f"My card {CARD} was charged twice.")
    caplog.set_level(logging.DEBUG)
    try:
        result = ingestor.ingest(raw, "test")
    except TemporaryFailure as failure:
        told = str(failure)
    else:
        assert result.outcome == "quarantined"  # the store failed, the mail is kept aside
        told = result.reason
    formatter = logs.KeyValueFormatter()
    written = "\n".join(formatter.format(record) for record in caplog.records)
    assert caplog.records, "the failure was logged"
    for digits in ("4111", "charged twice"):
        assert digits not in written
        assert digits not in told


def test_the_engine_hides_statement_parameters(db_url: str) -> None:
    engine = db.make_engine(db_url)
    with pytest.raises(Exception) as failure, engine.connect() as conn:
        conn.execute(text("SELECT CAST(:value AS INTEGER) / 0 FROM missing_table"),
                     {"value": CARD})
    assert "4111" not in str(failure.value)
