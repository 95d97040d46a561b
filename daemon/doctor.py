"""`ticketd doctor`: one line per check of what the daemon needs, and whether it holds.

A check only looks: it creates no folder, file or database. With `fix=True` (`doctor --fix`)
it creates what the daemon would need and can make: the storage directory and the IMAP
folders. Every line is free of secrets, whatever a driver puts in its error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from config import Settings
from config.redact import redact, safe_url, secrets_of
from daemon import app as app_mod
from responders.transport import SmtpTransport
from storage import db, dbcipher


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # works, but not as it should in production


class Warn(Exception):  # noqa: N818 - a check's outcome, not an error
    """Raised by a check that passes with a warning."""


STORAGE_MODE = 0o750


def run_checks(settings: Settings, *, fix: bool = False) -> list[Check]:
    # One line per mailbox: "imap" for [imap], "imap NAME" for each [[mailboxes]] entry.
    boxes = [box.name for box in settings.all_mailboxes] or ["imap"]
    checks: list[tuple[str, Callable[[Settings], str]]] = [
        ("database", _database), ("storage", partial(_storage, fix=fix)),
        *((f"imap {box}" if box != "imap" else "imap", partial(_imap, fix=fix, mailbox=box))
          for box in boxes),
        ("smtp", _smtp), ("signing key", _keys), ("encryption", _encryption),
    ]
    secrets = secrets_of(settings)
    results = []
    for name, check in checks:
        try:
            results.append(Check(name, True, redact(check(settings), secrets)))
        except Warn as warning:
            results.append(Check(name, True, redact(str(warning), secrets), warning=True))
        except Exception as err:  # noqa: BLE001 - every failure is a line of the report
            text = str(err).splitlines()[0][:400] if str(err) else ""
            line = f"{type(err).__name__}: {text}" if text else type(err).__name__
            results.append(Check(name, False, redact(line, secrets)))
    return results


def _database(settings: Settings) -> str:
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        # Connecting would create an empty file: a check changes nothing.
        raise FileNotFoundError(f"{url.database} does not exist: run 'ticketd db upgrade'")
    engine = _engine(settings)
    try:
        db.check_schema(engine)
        revision = db.current_revision(engine)
        return f"{safe_url(settings.database.url)} reachable, schema at {revision}"
    finally:
        engine.dispose()


def _storage(settings: Settings, *, fix: bool = False) -> str:
    path = Path(settings.storage.path)
    made = ""
    if not path.is_dir() and fix:
        path.mkdir(mode=STORAGE_MODE, parents=True)
        path.chmod(STORAGE_MODE)  # mkdir's mode passes through the umask
        made = "created; "
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist: 'ticketd doctor --fix' creates it "
                                f"(mode {STORAGE_MODE:04o})")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable by this user")
    mode = oct(path.stat().st_mode & 0o777)
    if path.stat().st_mode & 0o007:
        raise PermissionError(f"{path} is open to other users ({mode}); "
                              "raw mails are personal data")
    return f"{made}{path} writable, mode {mode}"


def _imap(settings: Settings, *, fix: bool = False, mailbox: str = "imap") -> str:
    imap = settings.mailbox(mailbox)
    if imap is None:
        return "not configured ([imap]): mail arrives only through 'ticketd ingest'"
    source = app_mod.imap_source(settings, mailbox=mailbox)
    source.connect(create_folders=fix)  # logs in and selects the folder
    try:
        missing = source.missing_folders()
        folders = (f"folders {imap.folder}, {imap.processed_folder}, {imap.quarantine_folder}, "
                   f"{imap.junk_folder}")
        if missing:
            folders += (f"; missing: {', '.join(missing)} (the daemon creates them at start, "
                        f"'ticketd doctor --fix' now)")
        capabilities = ' '.join(sorted(source.capabilities & {'IDLE', 'MOVE', 'UIDPLUS'}))
        brand = f"brand {imap.brand}; " if mailbox != "imap" else ""
        return (f"{brand}{imap.username} at {imap.host}:{imap.port} ({imap.tls}); {folders}; "
                f"{capabilities or 'no IDLE/MOVE'}")
    finally:
        source.close()


def _smtp(settings: Settings) -> str:
    if settings.smtp is None:
        return "not configured ([smtp]): nothing will be sent"
    transport = SmtpTransport.from_settings(settings.smtp)
    if settings.smtp.auth == "oauth2":
        from daemon.oauth import Keepers

        transport = replace(transport, oauth2_tokens=Keepers().keeper(settings, "smtp"))
    asyncio.run(_smtp_login(transport))
    return f"{settings.smtp.host}:{settings.smtp.port} ({settings.smtp.tls}) accepts a session"


async def _smtp_login(transport: SmtpTransport) -> None:
    async with transport.session() as session:
        await session.connect()


def _keys(settings: Settings) -> str:
    keys = settings.security.keys
    if not keys:
        if settings.smtp is not None:
            raise ValueError("no signing key: set [security] secret_file")
        return "none (not needed without [smtp])"
    return f"{len(keys)} key(s); the newest signs"


def _encryption(settings: Settings) -> str:
    """Off is a warning; on, the key file must open the stored data keys. (Loading the
    settings already refused a key file that others can read, as every secret file.)"""
    from storage.vault import Vault

    privacy = settings.privacy
    if not privacy.master_keys:
        raise Warn("off: raw mails, attachments and sent mail are stored in clear; set "
                   "[privacy] key_file")
    vault = app_mod.vault(settings)
    assert isinstance(vault, Vault)
    sealed = _database_sealing(settings)
    engine = _engine(settings)
    try:
        with db.session_factory(engine)() as session:
            counts = vault.check(session)  # raises when a key does not open its data keys
    finally:
        engine.dispose()
    newest = vault.masters.newest.id
    older = sum(n for master, n in counts.items() if master != newest)
    detail = (f"on: {len(vault.masters.keys)} master key(s), newest {newest}; "
              f"{sum(counts.values())} data keys open; {sealed}")
    if dbcipher.stale_key(settings.database.url, vault.masters):
        older += 1
    if older:
        raise Warn(f"{detail}; {older} still wrapped by an older master key: run "
                   "'ticketd privacy rotate-master'")
    return detail


def _engine(settings: Settings) -> Any:
    vault = app_mod.vault(settings)
    return db.make_engine(settings.database.url, masters=vault.masters if vault else None)


def _database_sealing(settings: Settings) -> str:
    """How the database itself is kept; raises when it is SQLite in clear beside sealed files
    (opening it would refuse too, with the command that fixes it)."""
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite":
        return ("database on PostgreSQL: not sealed by ticketd (its encryption at rest is the "
                "server's: an encrypted disk)")
    found = dbcipher.state(url.database or "")
    if found == "plain":
        raise ValueError(f"the database {url.database} is stored in clear: stop the daemon and "
                         "run 'ticketd privacy encrypt-db'")
    if found == "absent":
        raise FileNotFoundError(f"{url.database} does not exist: run 'ticketd db upgrade'")
    return "database sealed (SQLCipher)"


def exit_code(results: list[Check]) -> int:
    return 0 if all(r.ok for r in results) else 1


__all__ = ["Check", "exit_code", "run_checks"]
