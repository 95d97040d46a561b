"""A bouncing address recovers, on SQLite and PostgreSQL: when the player writes again in
mail our MTA authenticated, or by `ticketd contact clear-bounce ADDRESS`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.ingest import Ingestor, IngestPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.rendering import Templates
from storage import db, queries
from storage.blobs import BlobStore
from storage.models import Contact, Event, OutboxMessage
from tests.support.configs import write_config
from tests.support.mails import mail

SUPPORT = "support@casino.test"
AUTHSERV = "mx.casino.test"
KEYS = (b"bounce-test-key-0123456789abcdef",)
PLAYER = "player@mail.test"


def _bouncing(sessions, address: str = PLAYER) -> bool:  # noqa: ANN001
    with sessions() as session:
        return bool(session.scalar(select(Contact.bouncing).where(Contact.address == address)))


def _mark(sessions, address: str = PLAYER) -> None:  # noqa: ANN001
    with sessions.begin() as session:
        queries.contact_id(session, address, "Player")
        queries.mark_bouncing(session, address)


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    desk = Identity(SUPPORT, "Casino Support", KEYS, Templates())
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS,
                          ack=AckPolicy(desk), authserv_id=AUTHSERV)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


def _acks(ingestor: Ingestor) -> int:
    with ingestor.sessions() as session:
        return len(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack"))
                   .all())


def test_the_player_writing_again_in_authenticated_mail_clears_the_flag(
        ingestor: Ingestor) -> None:
    _mark(ingestor.sessions)
    forged = mail(subject="First", message_id="<a1@mail.test>")  # anyone can write this From
    assert ingestor.ingest(forged, "t").outcome == "ticket"
    assert _bouncing(ingestor.sessions) and _acks(ingestor) == 0
    authenticated = b"".join([
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=mail.test\r\n".encode(),
        mail(subject="Second", message_id="<a2@mail.test>")])
    assert ingestor.ingest(authenticated, "t").outcome == "ticket"
    assert not _bouncing(ingestor.sessions)
    assert _acks(ingestor) == 1  # acknowledged again
    with ingestor.sessions() as session:
        [event] = session.scalars(select(Event).where(Event.kind == "bounce_cleared")).all()
    assert event.data["how"] == "authenticated mail"


def _ticketd(*args: str) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("TICKETD_") or k == "TICKETD_TEST_PG_URL"}
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
                          timeout=120, env=clean)


def test_contact_clear_bounce_lifts_the_flag_once(db_url: str, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, db_url))
    sessions = db.session_factory(db.make_engine(db_url))
    _mark(sessions)
    done = _ticketd("--config", config, "contact", "clear-bounce", "Player@Mail.test")
    assert done.returncode == 0, done.stderr
    assert b"bouncing cleared" in done.stdout
    assert not _bouncing(sessions)
    again = _ticketd("--config", config, "contact", "clear-bounce", PLAYER)
    assert again.returncode == 0 and b"was not bouncing" in again.stdout
    unknown = _ticketd("--config", config, "contact", "clear-bounce", "nobody@mail.test")
    assert unknown.returncode == 1 and b"no contact" in unknown.stderr
    with sessions() as session:
        events = session.scalars(select(Event).where(Event.kind == "bounce_cleared")).all()
    assert [(e.actor, e.data["how"]) for e in events] == [("cli", "command")]
