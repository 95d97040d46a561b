"""Engine and session set-up, and the schema version check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage import dbcipher
from storage.crypto import KeyProblem, MasterKeys

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The database is not one this version of ticketd can work on: its schema is another
    one, or it is sealed (SQLCipher) or in clear unlike what `[privacy]` says."""


POOL_SIZE = 5  # PostgreSQL connections kept for the work (SQLAlchemy's default)


def make_engine(url: str, *, echo: bool = False, masters: MasterKeys | None = None,
                held: int = 0) -> Engine:
    """The engine of `url`. Its errors never carry the statement's parameters: they hold mail
    text (a player's card number) and error text ends up in logs and quarantine reasons.
    With master keys, a SQLite database file is sealed with SQLCipher (storage/dbcipher.py);
    PostgreSQL is not under the storage path, and its encryption at rest is the server's.
    `held`: connections taken for as long as the daemon runs (each mailbox watcher's lease
    lock), on top of the pool the work shares, so many mailboxes do not starve it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, parsed.database, echo, masters)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True,
                         pool_size=POOL_SIZE + held)


def _sqlite_engine(url: str, database: str | None, echo: bool,
                   masters: MasterKeys | None) -> Engine:
    in_memory = not database or database == ":memory:" or database.startswith("file:")
    try:
        if masters is not None and database and database.startswith("file:"):
            # A URI may name a file on disk: it would be opened in clear, without a word.
            raise dbcipher.SealError("[privacy] key_file is set: give [database] url as a "
                                     "path (sqlite:////var/lib/ticketd/ticketd.db), not a "
                                     "file: URI")
        if masters is None or in_memory:
            if not in_memory:
                dbcipher.refuse_sealed(database)
            return create_engine(url, echo=echo, hide_parameters=True,
                                 connect_args={"timeout": 30})
        key = dbcipher.key_for(database, masters)
        return create_engine(url, echo=echo, hide_parameters=True, module=dbcipher.dbapi(),
                             creator=lambda: dbcipher.connect(database, key))
    except (dbcipher.SealError, KeyProblem) as err:
        raise SchemaError(str(err)) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (ticketd show, the monitor) run beside the writer;
    # synchronous=FULL makes a commit durable before the mail leaves the mailbox.
    dbapi_conn.isolation_level = None  # transactions are begun explicitly below
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN, so two writers queue on busy_timeout instead
    # of failing later with "database is locked" on lock upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine, vault: Any = None) -> sessionmaker[Session]:
    """Sessions of this engine; with a `storage.vault.Vault`, every session carries it in
    `info["vault"]` and what it stores of mail is sealed (encryption at rest)."""
    if vault is None:
        return sessionmaker(engine, expire_on_commit=False)
    return sessionmaker(engine, expire_on_commit=False, info={"vault": vault})


def vault_of_factory(sessions: sessionmaker[Session]) -> Any:
    """The vault a session factory hands its sessions; None when encryption is off."""
    return sessions.kw.get("info", {}).get("vault")


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(engine), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at this version's head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no ticketd schema" if current is None else f"is at revision {current}"
        raise SchemaError(
            f"database {where} {state}; this ticketd needs {head}: run 'ticketd db upgrade'"
        )
