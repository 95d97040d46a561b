"""The fault drills' common parts: `ticketd run` as a child process, and what must hold after
every drill (each mail in exactly one ticket, each acknowledgement delivered once, or twice
only after an interruption between the server's 250 and our commit, with one Message-ID)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage.models import IngestRecord, Message, OutboxMessage, Ticket
from tests.outbox.smtp_sink import Sink

CONNECTED = "mailbox connected"  # the daemon is up and its watcher in the mailbox
SECRET = "drill-secret-0123456789abcdef0123"


class Daemon:
    """`ticketd --config CONFIG run` in a child process; each start logs to its own file."""

    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        # Only the file configures it: TICKETD_* from the caller's environment would override.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
        self.env = {**clean, "TICKETD_SECURITY__SECRET": SECRET}
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"daemon-{self.starts}.log"

    def log(self) -> str:
        """What the latest start has logged so far."""
        path = self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> subprocess.Popen[bytes]:
        assert not self.running(), "the daemon is already running"
        self.starts += 1
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "run"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env)
        return self.process

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another ticketd command with the same configuration, e.g. command("db", "upgrade")."""
        return subprocess.run([sys.executable, "-m", "daemon", "--config", str(self.config),
                               *args], capture_output=True, text=True, env=self.env, timeout=120)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and the exit status (killed after `timeout`, which then fails the caller)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def clean_up(self) -> None:
        if self.running():
            self.kill()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def count_tickets(sessions: sessionmaker[Session]) -> int | None:
    """Tickets stored now; None while the database does not answer (a drill stopped it)."""
    try:
        with sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Ticket)) or 0)
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        return None


def all_delivered(sessions: sessionmaker[Session], sink: Sink, mails: int) -> bool:
    """Every mail a ticket, every acknowledgement received and recorded as sent (a resend
    after an interruption may still be due when the server already has every Message-ID)."""
    if count_tickets(sessions) != mails or len(set(sink.message_ids())) != mails:
        return False
    try:
        with sessions() as session:
            sent = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.kind == "ack", OutboxMessage.state == "sent"))
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        return False
    return sent == mails


def assert_one_ticket_and_one_ack_per_mail(sessions: sessionmaker[Session], sink: Sink,
                                           message_ids: list[str], interruptions: int,
                                           max_deliveries: int = 2) -> None:
    """After a drill: each mail (by Message-ID) in exactly one ticket of its own, one ack row
    per ticket, each ack delivered once, or twice only where an interruption fell between
    the server's 250 and the commit (so at most `interruptions` resends), same Message-ID.
    A drill that interrupts again and again may catch one mail twice: `max_deliveries`."""
    with sessions() as session:
        rows = session.execute(select(Message.header_message_id, Message.ticket_id)
                               .where(Message.direction == "in")).all()
        tickets = session.scalar(select(func.count()).select_from(Ticket))
        quarantined = session.scalar(select(func.count()).select_from(IngestRecord)
                                     .where(IngestRecord.outcome == "quarantined"))
        acks = session.execute(select(OutboxMessage.ticket_id, OutboxMessage.message_id,
                                      OutboxMessage.state)
                               .where(OutboxMessage.kind == "ack")).all()
    inbound = Counter(mid for mid, _ in rows)
    wanted = {mid.strip("<>") for mid in message_ids}
    assert {mid.strip("<>") for mid in inbound} == wanted, "a mail is missing or unknown"
    assert set(inbound.values()) == {1}, "a mail was stored twice"
    assert tickets == len(message_ids) == len({ticket for _, ticket in rows}), "tickets shared"
    assert quarantined == 0
    assert len(acks) == len(message_ids), "not one acknowledgement per ticket"
    assert len({ticket for ticket, _, _ in acks}) == len(message_ids)
    assert {state for _, _, state in acks} == {"sent"}
    delivered = Counter(mid.strip().strip("<>") for mid in sink.message_ids())
    assert set(delivered) == {message_id for _, message_id, _ in acks}, "an ack was not sent"
    assert max(delivered.values()) <= max_deliveries, delivered.most_common(3)
    resent = sum(count - 1 for count in delivered.values())
    assert resent <= interruptions, f"{resent} resends after {interruptions} interruptions"
