"""A desk configured as in production (a TOML file, secret files, `daemon.app.build`), with
or without `[privacy] key_file`, on SQLite and PostgreSQL; and its command line in-process."""

from __future__ import annotations

import base64
import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import LargeBinary, MetaData, String, Text, select
from sqlalchemy.engine import make_url
from sqlalchemy.types import JSON

from config import load_settings
from daemon import app as app_mod
from daemon.cli import main
from storage import dbcipher
from storage.models import Message, OutboxMessage
from storage.outbox import plain_raw
from tests.safety.conftest import clamd  # noqa: F401 - a private clamd, for the quarantine
from tests.support.mails import mail

SUPPORT = "support@casino.test"
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
KEY_WRONG = base64.b64encode(b"w" * 32).decode()


@dataclass
class Desk:
    config: Path
    state: Path  # the storage path: raw mails and attachments live under it
    app: app_mod.App

    def ingest(self, raw: bytes) -> int | None:
        return self.app.ingestor.ingest(raw, "test").ticket_number

    def cli(self, *args: str, input: str | None = None) -> Result:  # noqa: A002
        return CliRunner().invoke(main, ["--config", str(self.config), *args], input=input,
                                  catch_exceptions=False)

    def rebuilt(self, keys: list[str] | None) -> Desk:
        """The same desk with another key file (rotation, a wrong key)."""
        write_key_file(self.config.parent / "master-key", keys)
        settings = load_settings(self.config, environ={})
        return Desk(self.config, self.state, app_mod.build(settings))

    def outbox_plain(self) -> list[bytes]:
        with self.app.sessions() as session:
            rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
            return [plain_raw(session, r.raw, r.key_id, r.message_id) for r in rows]


def write_key_file(path: Path, keys: list[str] | None) -> None:
    if keys is None:
        path.unlink(missing_ok=True)
        return
    path.write_text("\n".join(keys) + "\n")
    path.chmod(0o600)


def make_desk(tmp_path: Path, db_url: str | None, keys: list[str] | None = None) -> Desk:
    """Acknowledgements are queued (an [smtp] section; nothing is sent in these tests).
    Without a URL the database takes its default place, `ticketd.db` under the storage path,
    made by `ticketd db upgrade`; a SQLite file in clear given with keys is sealed first
    (`ticketd privacy encrypt-db`), as an upgrade from a desk without a key file."""
    state = tmp_path / "state"
    state.mkdir(mode=0o750, exist_ok=True)
    (tmp_path / "secret").write_text("signing-key-0123456789abcdef0123\n")
    (tmp_path / "secret").chmod(0o600)
    write_key_file(tmp_path / "master-key", keys)
    privacy = f'[privacy]\nkey_file = "{tmp_path / "master-key"}"\n' if keys is not None else ""
    database = f'[database]\nurl = "{db_url}"\n' if db_url else ""
    config = tmp_path / "ticketd.toml"
    config.write_text(f"""
[support]
address = "{SUPPORT}"
{database}[storage]
path = "{state}"
[smtp]
host = "127.0.0.1"
port = 2525
tls = "none"
[security]
secret_file = "{tmp_path / 'secret'}"
{privacy}""")
    settings = load_settings(config, environ={})
    url = make_url(settings.database.url)
    if db_url is None:
        result = CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
        assert result.exit_code == 0, result.output
    elif keys and url.get_backend_name() == "sqlite" and dbcipher.state(url.database) == "plain":
        result = CliRunner().invoke(main, ["--config", str(config), "privacy", "encrypt-db"])
        assert result.exit_code == 0, result.output
    return Desk(config, state, app_mod.build(settings))


@pytest.fixture
def desk_factory(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Desk]]:
    made: list[Desk] = []

    def factory(keys: list[str] | None = None, where: str = "desk") -> Desk:
        folder = tmp_path / where
        folder.mkdir(exist_ok=True)
        desk = make_desk(folder, db_url if not made else _same_db(made[0]), keys)
        made.append(desk)
        return desk

    yield factory
    for desk in made:
        desk.app.engine.dispose()


def _same_db(desk: Desk) -> str:
    return desk.app.settings.database.url


def stored_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under a folder, and for a gzip file its content too."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            data = path.read_bytes()
            yield path, data
            if data[:2] == b"\x1f\x8b":
                yield path, gzip.decompress(data)


def found_in_files(root: Path, needles: list[bytes]) -> set[bytes]:
    return {n for _, data in stored_bytes(root) for n in needles if n in data}


def dump_database(app: app_mod.App) -> str:
    """Every text, JSON and binary value of every table, as one text to search in."""
    meta = MetaData()
    meta.reflect(app.engine)
    parts = []
    with app.engine.connect() as conn:
        for table in meta.sorted_tables:
            columns = [c for c in table.columns
                       if isinstance(c.type, String | Text | JSON | LargeBinary)
                       or c.type.__class__.__name__ in ("JSON", "JSONB", "BYTEA")]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        parts.append(str(value))
    return "\n".join(parts)


def complaint(sender: str, subject: str, body: str, *, message_id: str,
              attachments: tuple[tuple[str, str, bytes], ...] = (),
              in_reply_to: str | None = None) -> bytes:
    return mail(sender=sender, subject=subject, body=body, message_id=message_id,
                attachments=attachments, in_reply_to=in_reply_to, references=in_reply_to)


def message_ids(app: app_mod.App) -> list[int]:
    with app.sessions() as session:
        return list(session.scalars(select(Message.id)))
