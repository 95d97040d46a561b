"""SQLite sealed with SQLCipher when encryption at rest is on (`[privacy] key_file`).

With the default layout the database lives under the storage path, and it holds what search
and `ticketd show` need in clear: subjects, texts, addresses. SQLCipher encrypts every page
of the database file and of its write-ahead log (AES-256, an HMAC per page), and FTS5 works
inside it as in plain SQLite.

The database key is 32 random bytes, kept beside the database (`<database>.key`) only
wrapped by a master key, like a contact's data key: `privacy rotate-master` re-wraps it, and
neither the database nor the key file holds anything that opens it without the key file of
`[privacy]`. It is a raw key (no passphrase derivation): opening a connection costs no
PBKDF2 rounds, and the key is already random.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

from storage.crypto import KEY_BYTES, KeyProblem, MasterKeys, new_data_key, unwrap, wrap

KEY_SUFFIX = ".key"
PLAIN_HEADER = b"SQLite format 3\x00"  # SQLCipher files start with random salt instead
OWNER = "database"  # bound to the wrapped key, so a contact's wrapped key does not fit


class SealError(RuntimeError):
    """The database and the configuration disagree about encryption; the message says what
    to do."""


def dbapi() -> ModuleType:
    try:
        import sqlcipher3
    except ImportError:
        raise SealError("[privacy] key_file is set and the database is SQLite, but SQLCipher "
                        "(the Python package sqlcipher3) is not installed") from None
    return sqlcipher3


def key_path(database: str | Path) -> Path:
    return Path(f"{database}{KEY_SUFFIX}")


def state(database: str | Path) -> str:
    """"absent" (no file, or an empty one), "plain" (SQLite in clear) or "sealed"."""
    try:
        with open(database, "rb") as fh:
            head = fh.read(len(PLAIN_HEADER))
    except FileNotFoundError:
        return "absent"
    if not head:
        return "absent"
    return "plain" if head == PLAIN_HEADER else "sealed"


def key_for(database: str, masters: MasterKeys) -> bytes:
    """The key of this database; a new one (and its key file) for a database not made yet.
    Refuses a database in clear: it needs `ticketd privacy encrypt-db` first."""
    found, path = state(database), key_path(database)
    if found == "plain":
        raise SealError(f"the database {database} is stored in clear while [privacy] key_file "
                        "is set: stop the daemon and run 'ticketd privacy encrypt-db'")
    if path.exists():
        return read_key(path, masters)
    if found == "sealed":
        raise SealError(f"the database {database} is encrypted but its key file {path} is "
                        "missing: restore it from the backup of the state directory")
    return write_new_key(path, masters)


def refuse_sealed(database: str) -> None:
    """Without master keys, a sealed database cannot be opened: say so rather than let
    SQLite report "file is not a database"."""
    if state(database) == "sealed" and key_path(database).exists():
        raise SealError(f"the database {database} is encrypted (SQLCipher): set [privacy] "
                        "key_file to the key file it was made with")


def read_key(path: Path, masters: MasterKeys) -> bytes:
    try:
        doc = json.loads(path.read_text())
        wrapped, master_id = base64.b64decode(doc["wrapped"]), doc["master_key_id"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise KeyProblem(f"{path} is not a database key file: {type(err).__name__}") from None
    master = masters.by_id(master_id)
    if master is None:
        raise KeyProblem(f"the database key {path} is wrapped by master key {master_id}, which "
                         "is not in the key file")
    return unwrap(master, wrapped, OWNER)


def write_key(path: Path, masters: MasterKeys, key: bytes) -> None:
    """Atomically, mode 0600, synced: losing this file loses the database."""
    newest = masters.newest
    doc = {"master_key_id": newest.id,
           "wrapped": base64.b64encode(wrap(newest, key, OWNER)).decode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)
    _sync_dir(path.parent)


def write_new_key(path: Path, masters: MasterKeys) -> bytes:
    """A new database key, unless another process made one first: then that one. The file
    appears whole and only once (a hard link fails when the name exists), so two processes
    starting on a new database never seal it with two keys and keep the wrong one."""
    key = new_data_key()
    newest = masters.newest
    doc = {"master_key_id": newest.id,
           "wrapped": base64.b64encode(wrap(newest, key, OWNER)).decode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.new")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(part, path)
    except FileExistsError:
        return read_key(path, masters)
    finally:
        part.unlink(missing_ok=True)
    _sync_dir(path.parent)
    return key


def rewrap(database: str, masters: MasterKeys) -> bool:
    """Wrap the database key with the newest master key; whether it was wrapped by another."""
    path = key_path(database)
    if not path.exists():
        return False
    key = read_key(path, masters)
    if json.loads(path.read_text()).get("master_key_id") == masters.newest.id:
        return False
    try:
        write_key(path, masters, key)
    except OSError as err:
        raise KeyProblem(f"could not re-wrap the database key {path}: {err.strerror}") from None
    if read_key(path, masters) != key:  # what is on disk must open the same database
        raise KeyProblem(f"the re-wrapped database key {path} does not read back")
    return True


def connect(database: str, key: bytes) -> Any:
    """A SQLCipher connection, keyed before anything reads the file."""
    assert len(key) == KEY_BYTES
    conn = dbapi().connect(database, timeout=30, check_same_thread=False)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn


def encrypt(database: str, masters: MasterKeys) -> int:
    """Turn a database in clear into a sealed one (SQLCipher's `sqlcipher_export`); the
    number of bytes of the plain file. Crash-safe: the key file is written first, the sealed
    copy replaces the plain file in one rename, and a run after a crash starts again."""
    if state(database) != "plain":
        raise SealError(f"the database {database} is not a SQLite database in clear")
    path = key_path(database)
    key = read_key(path, masters) if path.exists() else write_new_key(path, masters)
    plain = sqlite3.connect(database)
    plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    plain.close()
    size = os.path.getsize(database)
    sealed = f"{database}.sealing"
    for leftover in (sealed, f"{sealed}-journal"):
        Path(leftover).unlink(missing_ok=True)
    conn = dbapi().connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # a consistent copy; the daemon is stopped (README)
        conn.execute("ATTACH DATABASE ? AS sealed KEY ?", (sealed, f"x'{key.hex()}'"))
        conn.execute("SELECT sqlcipher_export('sealed')")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA sealed.user_version = {int(version)}")
        conn.execute("COMMIT")  # writes only to the copy; a database detaches outside one
        conn.execute("DETACH DATABASE sealed")
    finally:
        conn.close()
    with open(sealed, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(sealed, database)
    for side in ("-wal", "-shm"):
        Path(f"{database}{side}").unlink(missing_ok=True)
    _sync_dir(Path(database).parent)
    return size


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stale_key(url: str, masters: MasterKeys) -> bool:
    """Whether a SQLite database's key is wrapped by a master key other than the newest."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return False
    path = key_path(parsed.database)
    if not path.exists():
        return False
    return bool(json.loads(path.read_text()).get("master_key_id") != masters.newest.id)
