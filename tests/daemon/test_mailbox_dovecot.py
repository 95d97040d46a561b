"""From a real Dovecot mailbox to stored tickets, with the daemon run as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import db
from storage.models import Complaint
from tests.support.configs import write_config
from tests.support.mails import PNG, mail

pytestmark = pytest.mark.dovecot


def ticketd(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def tickets(config: Path) -> list[dict]:
    done = ticketd(config, "tickets", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def setup(dovecot, db_url: str, tmp_path: Path):  # noqa: ANN001, ANN201
    account = dovecot.new_account()
    config = write_config(tmp_path, db_url, account)
    return dovecot, account, config


def test_appended_mails_become_tickets_and_leave_the_inbox(setup) -> None:  # noqa: ANN001
    dv, account, config = setup
    dv.append(account, mail(subject="Refund please", attachments=(("s.png", "image/png", PNG),)))
    dv.append(account, mail(sender="b@mail.test", subject="Bet settled wrongly",
                            body="My bet was settled wrongly"))
    done = ticketd(config, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert "stored=2" in done.stdout
    assert sorted(t["subject"] for t in tickets(config)) == ["Bet settled wrongly", "Refund please"]
    assert dv.uids(account, "INBOX") == []
    assert len(dv.uids(account, "Processed")) == 2


def test_a_broken_mail_goes_to_quarantine_and_the_rest_goes_on(setup) -> None:  # noqa: ANN001
    dv, account, config = setup
    dv.append(account, b"\x00\x01 not a mail \xff" * 30)
    dv.append(account, mail(subject="After the broken one"))
    done = ticketd(config, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert "quarantined=1" in done.stdout
    assert [t["subject"] for t in tickets(config)] == ["After the broken one"]
    assert len(dv.uids(account, "Quarantine")) == 1
    assert dv.uids(account, "INBOX") == []


def test_a_kill_between_commit_and_move_leaves_exactly_one_ticket(setup) -> None:  # noqa: ANN001
    dv, account, config = setup
    dv.append(account, mail(subject="Killed in the middle"))
    crashed = ticketd(config, "run", "--once", env={"TICKETD_FAILPOINT": "after-commit"})
    assert crashed.returncode == -signal.SIGKILL
    assert len(dv.uids(account, "INBOX")) == 1  # committed, not yet moved
    assert len(tickets(config)) == 1
    again = ticketd(config, "run", "--once")
    assert again.returncode == 0, again.stderr
    assert "duplicates=1" in again.stdout
    assert len(tickets(config)) == 1
    assert dv.uids(account, "INBOX") == []


def test_a_uidvalidity_change_resyncs_without_duplicates_or_misses(setup, tmp_path) -> None:  # noqa: ANN001
    dv, account, config = setup
    dv.append(account, mail(subject="Before the change"))
    crashed = ticketd(config, "run", "--once", env={"TICKETD_FAILPOINT": "after-commit"})
    assert crashed.returncode == -signal.SIGKILL
    dv.reset_uidvalidity(account, "INBOX")
    dv.append(account, mail(subject="After the change"))
    done = ticketd(config, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert sorted(t["subject"] for t in tickets(config)) == ["After the change", "Before the change"]
    assert dv.uids(account, "INBOX") == []
    events = ticketd(config, "events", "--kind", "uidvalidity_changed")
    assert events.returncode == 0 and "uidvalidity_changed" in events.stdout


def test_the_running_daemon_picks_up_new_mail_by_idle(setup, tmp_path) -> None:  # noqa: ANN001
    dv, account, config = setup
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config), "run"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: "mailbox connected" in log.read_text(), 20)
        dv.append(account, mail(subject="Arrives while idle"))
        _wait_for(lambda: any(t["subject"] == "Arrives while idle" for t in tickets(config)), 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    assert dv.uids(account, "INBOX") == []


def _wait_for(check, seconds: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {seconds} s")


def _headers_only(*lines: str) -> bytes:
    return ("\r\n".join([*lines, "To: support@casino.test", "Subject: Where is my money",
                         "Date: Fri, 20 Nov 2026 12:00:00 +0000"])
            + "\r\n\r\nI deposited 100 EUR.\r\n").encode()


def test_mail_whose_sender_cannot_be_read_reaches_the_quarantine_never_processed(
        setup) -> None:  # noqa: ANN001
    dv, account, config = setup
    for unreadable in (("From: ",), ("From: undisclosed-recipients:;",), ()):
        dv.append(account, _headers_only(*unreadable))
    dv.append(account, b"\xef\xbb\xbf" + mail(subject="Behind a byte-order mark"))
    done = ticketd(config, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert "quarantined=3" in done.stdout
    assert [t["subject"] for t in tickets(config)] == ["Behind a byte-order mark"]
    assert len(dv.uids(account, "Quarantine")) == 3
    assert len(dv.uids(account, "Processed")) == 1
    assert dv.uids(account, "INBOX") == []


def test_a_complaint_is_received_when_the_mailbox_got_it_not_when_read(
        dovecot, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    """The 8 weeks run from the IMAP server's INTERNALDATE: a daemon that was down for three
    days does not give the desk three more."""
    account = dovecot.new_account()
    config = write_config(tmp_path, db_url, account, complaints={
        "profile": "ukgc", "adr_entity": "Fair Play Adjudication"})
    delivered = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    dovecot.append(account, mail(subject="Missing withdrawal", body="Still not paid."),
                   delivered_at=delivered)
    done = ticketd(config, "run", "--once")
    assert done.returncode == 0, done.stderr
    engine = db.make_engine(db_url)
    try:
        with db.session_factory(engine)() as session:
            row = session.scalars(select(Complaint)).one()
    finally:
        engine.dispose()
    assert row.received_at == delivered and row.final_due_at == delivered + timedelta(weeks=8)
