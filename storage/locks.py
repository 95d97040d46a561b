"""Advisory locks: one holder at a time of a named piece of work, among several daemons.

On PostgreSQL a name becomes a 64-bit key (the first 8 bytes of its SHA-256, so that every
daemon derives the same key without a registry of numbers). On SQLite there is no such lock
and none is needed: one daemon owns the database file, and BEGIN IMMEDIATE already makes a
writing transaction the only writer.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["lock_key", "lock_for_transaction", "try_lock_for_transaction"]


def lock_key(name: str) -> int:
    """The advisory-lock key of `name`: a signed 64-bit integer, as PostgreSQL takes it."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_for_transaction(session: Session, name: str) -> None:
    """Wait for, then hold until the caller's transaction ends, the lock called `name`
    (PostgreSQL); nothing on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})


def try_lock_for_transaction(session: Session, name: str) -> bool:
    """Take the lock called `name` until the caller's transaction ends if nobody holds it
    (True), or leave it to its holder (False); always True on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"),
                               {"k": lock_key(name)}))
