"""SIGHUP applies the intervals and the retention rules, not only identity and transport:
`ticketd run` as a subprocess (an SMTP sink, no mailbox: mail comes in through
`ticketd ingest`), reloaded from long pauses to short ones and from no rule to one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from storage import audit, db
from storage.models import Event
from tests.daemon.test_service import SECRET, Daemon, wait_for
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.mails import mail


def _config(tmp_path: Path, url: str, port: int, *, short: bool) -> Path:
    pause = "1s" if short else "1h"
    sections = {"smtp": {"host": "127.0.0.1", "port": port, "tls": "none"},
                "outbox": {"interval": pause}, "sla": {"interval": pause},
                "audit": {"seal_interval": pause}}
    if short:
        # One sweep at once (the first of the task), then none for an hour: each leaves an
        # event, which the next seal pass must find alone.
        sections["retention"] = {"rejected_mail": "30d", "interval": "1h"}
    return write_config(tmp_path, url, None, **sections)


def _ingest(config: Path, n: int) -> None:
    raw = mail(sender=f"p{n}@mail.test", subject=f"Refund {n}", body=f"Refund deposit {n}.",
               message_id=f"<reload-{n}@mail.test>")
    subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "ingest"],
                   input=raw, check=True, capture_output=True,
                   env={**os.environ, "TICKETD_SECURITY__SECRET": SECRET})


def test_a_reload_applies_outbox_audit_and_retention_intervals_and_rules(
        sqlite_url: str, tmp_path: Path) -> None:
    sink = SmtpServer(Sink(), free_port()).start()
    sessions = db.session_factory(db.make_engine(sqlite_url))

    def swept() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(Event)
                                  .where(Event.kind == "retention_swept")) or 0

    def unsealed() -> int:
        with sessions() as session:
            return audit.verify(session).unsealed

    config = _config(tmp_path, sqlite_url, sink.port, short=False)
    _ingest(config, 1)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:  # each loop makes one pass at start, then pauses for an hour
        wait_for(lambda: len(sink.handler.received) == 1 and unsealed() == 0, 30,
                 "the first passes")
        _ingest(config, 2)
        assert unsealed() > 0 and swept() == 0
        _config(tmp_path, sqlite_url, sink.port, short=True)
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: swept() >= 1, 30, "a retention sweep by the rule the reload added")
        wait_for(lambda: len(sink.handler.received) == 2, 30, "the reload wakes the sender")
        _ingest(config, 3)  # nothing wakes the sender for this one but its new interval
        wait_for(lambda: len(sink.handler.received) == 3, 30, "the next outbox pass")
        wait_for(lambda: unsealed() == 0, 30, "events sealed at the new interval")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.text()
    finally:
        daemon.close()
        sink.stop()
        sessions.kw["bind"].dispose()
