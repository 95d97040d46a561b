"""`ticketd run` as ops run it: a subprocess against real Dovecot and SMTP servers, stopped,
killed, reloaded and run three at a time; nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import db
from storage.models import OutboxMessage, Ticket
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.mails import mail

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
SECRET = "service-test-secret-0123456789abcdef"


@pytest.fixture
def sink():  # noqa: ANN201
    server = SmtpServer(Sink(), free_port()).start()
    yield server
    server.stop()


def configure(tmp_path: Path, db_url: str, account, sink: SmtpServer, **sections) -> Path:  # noqa: ANN001, ANN003
    return write_config(
        tmp_path, db_url, account,
        smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none"},
        outbox={"interval": "1s", "lease": "10s"},  # a killed sender's claims expire soon
        **sections,
    )


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}
        with log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(config), "run"],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(check, seconds: float, what: str) -> float:  # noqa: ANN001
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")


def count(sessions, model) -> int:  # noqa: ANN001
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def backlog(dovecot, account, n: int) -> None:  # noqa: ANN001
    with dovecot.client(account) as client:
        for i in range(n):
            client.append("INBOX", mail(sender=f"player{i}@mail.test", subject=f"Refund {i}",
                                        body=f"Please refund deposit {i}.",
                                        message_id=f"<backlog-{i}@mail.test>"))


def assert_each_mail_once_with_one_ack(sessions, sink: SmtpServer, n: int, max_resent: int) -> None:  # noqa: ANN001
    assert count(sessions, Ticket) == n
    with sessions() as session:
        acks = Counter(session.scalars(
            select(OutboxMessage.ticket_id).where(OutboxMessage.kind == "ack")))
    assert len(acks) == n and set(acks.values()) == {1}
    delivered = Counter(r.message_id for r in sink.handler.received)
    assert len(delivered) == n  # every acknowledgement arrived
    assert sum(c - 1 for c in delivered.values()) <= max_resent  # same Message-ID if twice


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL],
                         ids=["sigterm", "sigkill"])
def test_a_stop_in_the_middle_of_a_backlog_loses_and_doubles_nothing(
        dovecot, sqlite_url: str, tmp_path: Path, sink: SmtpServer, stop_signal: int) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    config = configure(tmp_path, sqlite_url, account, sink)
    sessions = db.session_factory(db.make_engine(sqlite_url))
    backlog(dovecot, account, 500)
    first = Daemon(config, tmp_path / "first.log")
    try:
        wait_for(lambda: count(sessions, Ticket) >= 60, 60, "first tickets")
        first.signal(stop_signal)
        code = first.wait(30)
    finally:
        first.close()
    assert code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL), first.text()
    assert count(sessions, Ticket) < 500  # it really stopped in the middle
    second = Daemon(config, tmp_path / "second.log")
    try:
        wait_for(lambda: count(sessions, Ticket) == 500 and len(sink.handler.received) >= 500
                 and not dovecot.uids(account, "INBOX"), 120, "the rest of the backlog")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.text()
    finally:
        second.close()
    assert_each_mail_once_with_one_ack(sessions, sink, 500,
                                       max_resent=0 if stop_signal == signal.SIGTERM else 1)


def test_sighup_applies_a_new_template_and_refuses_a_broken_config(
        dovecot, sqlite_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    config = configure(tmp_path, sqlite_url, account, sink)
    templates = tmp_path / "templates" / "en"
    templates.mkdir(parents=True)
    (templates / "ack.txt.j2").write_text("Ticket {{ tag }}: TEMPLATE-TWO\n")
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        dovecot.append(account, mail(sender="a@mail.test", subject="First", body="Refund one"))
        wait_for(lambda: len(sink.handler.received) == 1, 30, "first acknowledgement")
        assert b"TEMPLATE-TWO" not in sink.handler.received[0].content
        original = config.read_text()
        config.write_text(original + f'\n[responders]\ntemplates_dir = "{templates.parent}"\n')
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.text(), 10, "reload")
        dovecot.append(account, mail(sender="b@mail.test", subject="Second", body="Refund two"))
        wait_for(lambda: len(sink.handler.received) == 2, 30, "second acknowledgement")
        assert b"TEMPLATE-TWO" in sink.handler.received[1].content
        config.write_text(original + "\n[imap]\nport = 99999\n")  # broken: a duplicate, bad table
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in daemon.text(), 10, "refusal")
        dovecot.append(account, mail(sender="c@mail.test", subject="Third", body="Refund three"))
        wait_for(lambda: len(sink.handler.received) == 3, 30, "third acknowledgement")
        assert b"TEMPLATE-TWO" in sink.handler.received[2].content  # the old config still runs
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.close()


def test_three_daemons_share_one_mailbox_and_take_over_from_a_killed_holder(
        dovecot, pg_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    config = configure(tmp_path, pg_url, account, sink)
    sessions = db.session_factory(db.make_engine(pg_url))
    backlog(dovecot, account, 1000)
    daemons = [Daemon(config, tmp_path / f"d{i}.log") for i in range(3)]
    try:
        wait_for(lambda: count(sessions, Ticket) >= 200, 90, "first tickets")
        [holder] = [d for d in daemons if "mailbox lease taken" in d.text()]
        holder.signal(signal.SIGKILL)
        holder.wait(10)
        killed_at = time.monotonic()
        others = [d for d in daemons if d is not holder]
        took = wait_for(lambda: any("mailbox lease taken" in d.text() for d in others), 10,
                        "another daemon takes the mailbox")
        assert took <= 10 and time.monotonic() - killed_at <= 10
        wait_for(lambda: count(sessions, Ticket) == 1000 and len(sink.handler.received) >= 1000
                 and not dovecot.uids(account, "INBOX"), 180, "the whole backlog")
        for d in others:
            d.signal(signal.SIGTERM)
            assert d.wait(30) == 0, d.text()
    finally:
        for d in daemons:
            d.close()
    assert_each_mail_once_with_one_ack(sessions, sink, 1000, max_resent=1)


def test_the_daemon_tells_systemd_ready_status_watchdog_and_stopping(
        dovecot, sqlite_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    import socket

    account = dovecot.new_account()
    config = configure(tmp_path, sqlite_url, account, sink)
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(20)
    env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET, "NOTIFY_SOCKET": str(path),
           "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    seen: list[str] = []
    try:
        while sum("WATCHDOG=1" in m for m in seen) < 2:  # pings repeat, every second here
            seen.append(listener.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in seen):
            seen.append(listener.recv(4096).decode())
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert any("READY=1" in m for m in seen)
    assert any("STATUS=" in m for m in seen)


def test_metrics_count_ingested_mail_deliveries_and_tickets(
        dovecot, sqlite_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    import urllib.request

    port = free_port()
    account = dovecot.new_account()
    config = configure(tmp_path, sqlite_url, account, sink, metrics={"listen": f"127.0.0.1:{port}"})
    dovecot.append(account, mail(subject="Refund please", body="Refund my deposit"))
    dovecot.append(account, b"\x00 not a mail \xff" * 20)
    daemon = Daemon(config, tmp_path / "daemon.log")

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
                return page.read().decode()
        except OSError:
            return ""

    try:
        wait_for(lambda: 'ticketd_deliveries_total{result="sent"} 1.0' in scrape()
                 and 'ticketd_tickets{status="open"} 1.0' in scrape(), 30, "metrics")
        page = scrape()
        daemon.signal(signal.SIGTERM)
        daemon.wait(30)
    finally:
        daemon.close()
    assert 'ticketd_messages_ingested_total{outcome="ticket"} 1.0' in page
    assert 'ticketd_messages_ingested_total{outcome="quarantined"} 1.0' in page
    assert "ticketd_quarantined_total 1.0" in page
    assert "ticketd_ingest_seconds_count 2.0" in page
    assert 'ticketd_tickets{status="open"} 1.0' in page


def test_doctor_says_ok_for_each_part_and_names_what_fails(
        dovecot, sqlite_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    config = configure(tmp_path, sqlite_url, account, sink)
    (tmp_path / "state").mkdir(mode=0o750, exist_ok=True)
    env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}
    run = [sys.executable, "-m", "daemon", "--config", str(config), "doctor"]
    good = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    for part in ("database", "storage", "imap", "smtp", "signing key"):
        assert any(line.startswith("ok") and part in line
                   for line in good.stdout.splitlines()), part
    (tmp_path / "imap-password").write_text("wrong\n")
    bad = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1
    [imap] = [line for line in bad.stdout.splitlines() if " imap " in line]
    assert imap.startswith("FAIL") and "wrong" not in imap


class NotifySocket:
    """The datagram socket systemd would listen on ($NOTIFY_SOCKET): what the daemon said."""

    def __init__(self, path: Path) -> None:
        import socket

        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def listen(self, seconds: float) -> list[str]:
        """Everything said in the next `seconds`; also kept in self.messages."""
        heard = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(left)
            try:
                heard.append(self._sock.recv(4096).decode())
            except TimeoutError:
                break
        self.messages += heard
        return heard

    def close(self) -> None:
        self._sock.close()


def test_a_refused_imap_login_is_reported_and_not_retried_in_a_loop_until_a_reload(
        dovecot, sqlite_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    account = dovecot.new_account()
    config = configure(tmp_path, sqlite_url, account, sink)
    wrong = "wrong-Pa55word-for-the-test"
    (tmp_path / "imap-password").write_text(wrong + "\n")
    dovecot.append(account, mail(sender="p@mail.test", subject="Refund", body="Refund please"))
    sessions = db.session_factory(db.make_engine(sqlite_url))
    systemd = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET, "NOTIFY_SOCKET": str(systemd.path),
           "WATCHDOG_USEC": "2000000"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)

    def refusals() -> list[str]:
        return [line for line in log.read_text().splitlines() if "mailbox refused" in line]

    try:
        wait_for(lambda: refusals(), 20, "the refusal in the log")
        # A bounded window: a retry loop with backoff would log in 3 or 4 times in it.
        heard = systemd.listen(8)
        assert proc.poll() is None  # the daemon lives on: outbox and SLA need no mailbox
        [refused] = refusals()
        assert "level=error" in refused and "ImapAuthError" in refused and wrong not in refused
        logins = [line for line in dovecot.log_path.read_text().splitlines()
                  if account.username in line and "auth failed" in line]
        assert len(logins) == 1, logins
        statuses = [m for m in heard if "STATUS=" in m]
        told = [i for i, m in enumerate(statuses) if "mailbox: ImapAuthError" in m]
        assert told and len(statuses) - told[0] >= 3
        assert all("mailbox: ImapAuthError" in m for m in statuses[told[0]:])  # and stays
        assert sum("WATCHDOG=1" in m for m in heard) >= 3  # the main loop still pings
        (tmp_path / "imap-password").write_text(account.password + "\n")
        proc.send_signal(signal.SIGHUP)  # the fixed password is tried at once
        wait_for(lambda: count(sessions, Ticket) == 1, 20, "the mail ingested after the reload")
        after = systemd.listen(2.5)
        assert after and not any("mailbox:" in m for m in after if "STATUS=" in m)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        systemd.close()
    assert wrong not in log.read_text() and not any(wrong in m for m in systemd.messages)
