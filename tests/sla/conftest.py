"""Fixtures of the SLA tests: tickets with clocks on a fresh database (SQLite and PostgreSQL),
a monitor, what the outbox and the event log hold, and the `ticketd sla` command line."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.sla import MonitorDesk, SlaMonitor, SlaOptions, clocks_for_new_ticket
from responders.identity import Identity
from responders.rendering import Templates
from storage import db, queries
from storage.models import Event, OutboxMessage, SlaClock
from tests.support.configs import write_config

# `ticketd` as daemon/cli.py will be once it calls register(main).
CLI = "from daemon.cli import main; from daemon.cli_sla import register; register(main); main()"
SECRET = "sla-test-key-0123456789abcdef"
KEYS = (SECRET.encode(),)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
LEAD, HEAD, DESK = "lead@casino.test", "head@casino.test", "desk@casino.test"
ADDRESSES = {"team_lead_address": LEAD, "head_of_support_address": HEAD,
             "warning_address": DESK}


def at(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(db_url)
    yield db.session_factory(engine)
    engine.dispose()


@pytest.fixture
def options() -> SlaOptions:
    return SlaOptions(warning_address=DESK, team_lead_address=LEAD, head_of_support_address=HEAD)


@pytest.fixture
def identity() -> Identity:
    return Identity("support@casino.test", "Casino Support", KEYS, Templates())


@pytest.fixture
def monitor(sessions: sessionmaker[Session], options: SlaOptions,
            identity: Identity) -> SlaMonitor:
    return SlaMonitor(sessions, MonitorDesk(options, identity))


NewTicket = Callable[..., int]


@pytest.fixture
def new_ticket(sessions: sessionmaker[Session], options: SlaOptions) -> NewTicket:
    """new_ticket(category=..., priority=..., text=..., at=T0) -> ticket id, clocks started."""
    serial = iter(range(1, 10**6))

    def create(category: str = "refund", priority: str = "normal", *, text: str = "",
               language: str = "en", subject: str = "Withdrawal missing",
               at: datetime = T0) -> int:
        with sessions.begin() as session:
            who = queries.contact_id(session, f"player{next(serial)}@players.test")
            ticket_id, _ = queries.insert_ticket(
                session, subject=subject, requester_id=who, category=category,
                priority=priority, language=language)
            if text:
                queries.insert_message(session, ticket_id=ticket_id, direction="in",
                                       kind="complaint", subject=subject, visible_text=text,
                                       full_text=text)
            clocks_for_new_ticket(session, ticket_id, category, priority, at, options)
        return ticket_id

    return create


class Look:
    """What the database holds now, read in a fresh session each time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def mails(self, ticket_id: int | None = None) -> list[tuple[int | None, list[str], bytes]]:
        """(ticket id, recipients, raw) of every escalation in the outbox, oldest first."""
        query = select(OutboxMessage.ticket_id, OutboxMessage.recipients, OutboxMessage.raw) \
            .where(OutboxMessage.kind == "escalation").order_by(OutboxMessage.id)
        if ticket_id is not None:
            query = query.where(OutboxMessage.ticket_id == ticket_id)
        with self._sessions() as session:
            return [(r[0], list(r[1]), r[2]) for r in session.execute(query)]

    def recipients(self, ticket_id: int | None = None) -> list[str]:
        return [to for _, rcpts, _ in self.mails(ticket_id) for to in rcpts]

    def events(self, ticket_id: int) -> list[tuple[str, dict[str, Any]]]:
        with self._sessions() as session:
            rows = session.execute(select(Event.kind, Event.data).where(
                Event.ticket_id == ticket_id, Event.kind.like("sla_%")).order_by(Event.id))
            return [(kind, data) for kind, data in rows]

    def clock(self, ticket_id: int, kind: str) -> SlaClock:
        with self._sessions() as session:
            found = session.scalar(
                select(SlaClock).where(SlaClock.ticket_id == ticket_id, SlaClock.kind == kind)
                .order_by(SlaClock.id.desc()))
            assert found is not None
            return found


@pytest.fixture
def look(sessions: sessionmaker[Session]) -> Look:
    return Look(sessions)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.fixture
def ticketd(tmp_path: Path, db_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """ticketd(*args, sla={...}) runs the command line in a child process on this database."""

    def run(*args: str, sla: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        config = write_config(tmp_path / "etc", db_url, sla={**ADDRESSES, **(sla or {})})
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("TICKETD_") or k == "TICKETD_TEST_PG_URL"}
        env = {**clean, "TICKETD_SECURITY__SECRET": SECRET, "TICKETD_LOGGING__LEVEL": "WARNING"}
        return subprocess.run([sys.executable, "-c", CLI, "--config", str(config), *args],
                              capture_output=True, text=True, timeout=120, env=env)

    return run
