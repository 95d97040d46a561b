"""Fixtures of the outbox tests: SMTP servers on loopback, a clock the test moves, mails
in the outbox, and the ticketd command line with the outbox commands registered."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage import db, outbox, queries
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.mails import mail

# `ticketd` as daemon/cli.py will be once it calls register(main).
CLI = "from daemon.cli import main; from daemon.cli_outbox import register; register(main); main()"


class Clock:
    """The sender's `now`: stands still until the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(db_url)
    yield db.session_factory(engine)
    engine.dispose()


@pytest.fixture
def ticket_id(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        who = queries.contact_id(session, "player@mail.test", "Player")
        return queries.insert_ticket(session, subject="Refund", requester_id=who)[0]


@pytest.fixture
def queue(sessions: sessionmaker[Session], clock: Clock) -> Callable[..., tuple[int, str]]:
    """queue(to=[...], kind=..., ticket_id=..., lifetime=...) -> (row id, Message-ID)."""
    serial = iter(range(1, 10**6))

    def queue(to: Sequence[str] = ("player@mail.test",), *, kind: str = "ack",
              ticket_id: int | None = None, lifetime: timedelta = timedelta(days=5)
              ) -> tuple[int, str]:
        message_id = f"<out-{next(serial)}-{id(clock)}@casino.test>"
        raw = mail(sender="Casino Support <support@casino.test>", to=", ".join(to),
                   subject="Your ticket", body="We received your mail.", message_id=message_id)
        with sessions.begin() as session:
            row = outbox.enqueue(session, raw=raw, message_id=message_id,
                                 envelope_from="support@casino.test", recipients=list(to),
                                 kind=kind, ticket_id=ticket_id, now=clock(), lifetime=lifetime)
        return row, message_id

    return queue


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """smtp_server(handler=None, port=None, **aiosmtpd options) -> a started server."""
    started: list[SmtpServer] = []

    def start(handler: Sink | None = None, port: int | None = None, **options: Any) -> SmtpServer:
        server = SmtpServer(handler or Sink(), port or free_port(), **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Look:
    """What the database holds now, read in a fresh session each time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def rows(self, state: str | None = None) -> list[outbox.OutboxRow]:
        with self._sessions() as session:
            return sorted(outbox.list_rows(session, state), key=lambda r: r.id)

    def row(self, row_id: int) -> outbox.OutboxRow:
        return next(r for r in self.rows() if r.id == row_id)

    def events(self, kind: str) -> list[Any]:
        with self._sessions() as session:
            return queries.list_events(session, kind=kind)


@pytest.fixture
def look(sessions: sessionmaker[Session]) -> Look:
    return Look(sessions)


@pytest.fixture
def ticketd() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """ticketd(*args, env={...}) runs the command line in a child process."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("TICKETD_") or k == "TICKETD_TEST_PG_URL"}
        return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True,
                              timeout=120, env={**clean, **(env or {})})

    return run
