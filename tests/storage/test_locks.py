"""Advisory locks (storage/locks.py): a name held by one transaction on PostgreSQL is not
to be had by another until that transaction ends; on SQLite taking it is a no-op."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session

from storage import db
from storage.locks import lock_for_transaction, lock_key


def test_a_name_gives_the_key_the_daemons_already_use() -> None:
    # The sealer's key before the locks had a module of their own: old and new daemons
    # must still exclude each other during an upgrade.
    before = int.from_bytes(hashlib.sha256(b"ticketd events seal").digest()[:8], "big",
                            signed=True)
    assert lock_key("ticketd events seal") == before
    assert -(2 ** 63) <= lock_key("any mailbox") < 2 ** 63


def _free(session: Session, name: str) -> bool:
    """Whether another session could take `name` now (and, if so, gives it back at once)."""
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                {"k": lock_key(name)}).scalar())


def test_a_held_lock_is_refused_to_another_transaction_until_commit(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    try:
        with Session(engine) as holder, Session(engine) as other:
            lock_for_transaction(holder, "ticketd test lock")
            assert not _free(other, "ticketd test lock")
            assert _free(other, "ticketd another lock")
            other.rollback()
            holder.commit()
            assert _free(other, "ticketd test lock")
            other.rollback()
    finally:
        engine.dispose()


def test_on_sqlite_taking_a_lock_does_nothing(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    try:
        with Session(engine) as first, Session(engine) as second:
            lock_for_transaction(first, "ticketd test lock")
            lock_for_transaction(second, "ticketd test lock")  # would block if it did
            assert first.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
