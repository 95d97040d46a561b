"""`ticketd doctor`: one line per check of what the daemon needs, and whether it holds."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config import Settings
from daemon import app as app_mod
from responders.transport import SmtpTransport
from storage import db


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings) -> list[Check]:
    checks: list[tuple[str, Callable[[Settings], str]]] = [
        ("database", _database), ("storage", _storage), ("imap", _imap), ("smtp", _smtp),
        ("signing key", _keys),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(Check(name, True, check(settings)))
        except Exception as err:  # noqa: BLE001 - every failure is a line of the report
            text = str(err).splitlines()[0][:200] if str(err) else ""
            results.append(Check(name, False, f"{type(err).__name__}: {text}" if text else type(err).__name__))
    return results


def _database(settings: Settings) -> str:
    engine = db.make_engine(settings.database.url)
    try:
        db.check_schema(engine)
        where = engine.url.render_as_string(hide_password=True)
        return f"{where} reachable, schema at {db.current_revision(engine)}"
    finally:
        engine.dispose()


def _storage(settings: Settings) -> str:
    path = Path(settings.storage.path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
        pass
    mode = oct(path.stat().st_mode & 0o777)
    if path.stat().st_mode & 0o007:
        raise PermissionError(f"{path} is open to other users ({mode}); raw mails are personal data")
    return f"{path} writable, mode {mode}"


def _imap(settings: Settings) -> str:
    if settings.imap is None:
        return "not configured ([imap]): mail arrives only through 'ticketd ingest'"
    source = app_mod.imap_source(settings)
    source.connect()  # logs in, selects the folder, creates Processed/Quarantine if missing
    try:
        imap = settings.imap
        return (f"{imap.username} at {imap.host}:{imap.port} ({imap.tls}); folders {imap.folder}, "
                f"{imap.processed_folder}, {imap.quarantine_folder}; "
                f"{' '.join(sorted(source.capabilities & {'IDLE', 'MOVE', 'UIDPLUS'})) or 'no IDLE/MOVE'}")
    finally:
        source.close()


def _smtp(settings: Settings) -> str:
    if settings.smtp is None:
        return "not configured ([smtp]): nothing will be sent"
    transport = SmtpTransport.from_settings(settings.smtp)
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


def exit_code(results: list[Check]) -> int:
    return 0 if all(r.ok for r in results) else 1


__all__ = ["Check", "exit_code", "run_checks"]
