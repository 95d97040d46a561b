"""`ticketd run` with auth = "oauth2" for both IMAP and SMTP, as ops run it: tokens that live
five seconds are refreshed while the daemon runs, a session the server kicks mid-IDLE comes
back, and a revoked login is told once: STATUS=, the metric, one ops mail per mailbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import db
from storage.models import OutboxMessage, Ticket
from storage.tokens import TokenRecord, TokenStore
from tests.support.configs import write_config
from tests.support.dovecot import Account, DovecotServer, free_ports
from tests.support.mails import mail
from tests.support.oauth_server import BearerSmtp, OAuthServer

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
SECRET = "oauth-test-secret-0123456789abcdef"


def wait_for(check, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


def _oauth_keys(idp: OAuthServer) -> dict[str, str]:
    return {"auth": "oauth2", "oauth2_provider": "custom", "oauth2_client_id": "ticketd-test",
            "oauth2_token_url": f"{idp.url}/token"}


def _configure(tmp_path: Path, db_url: str, idp: OAuthServer, mailbox: Account,
               smtp_port: int, metrics_port: int) -> Path:
    config = write_config(
        tmp_path, db_url, None,
        imap={"host": mailbox.host, "port": mailbox.port, "tls": "none",
              "username": mailbox.username, "idle_timeout": 30, **_oauth_keys(idp)},
        smtp={"host": "127.0.0.1", "port": smtp_port, "tls": "none",
              "username": mailbox.username, **_oauth_keys(idp)},
        outbox={"interval": "1s", "ops_address": "ops@casino.test"},
        metrics={"listen": f"127.0.0.1:{metrics_port}"})
    for name in ("imap", "smtp"):  # as `ticketd oauth login` leaves them
        TokenStore.in_state_directory(tmp_path / "state", name).save(
            TokenRecord(refresh_token=idp.issue_refresh_token()))
    return config


class Systemd:
    """The datagram socket systemd would listen on; collects what the daemon says."""

    def __init__(self, path: Path) -> None:
        import socket

        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0)

    def said(self) -> list[str]:
        while True:
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages


def _count(sessions, *where) -> int:  # noqa: ANN001
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Ticket).where(*where)) \
            if not where else session.scalar(select(func.count()).select_from(OutboxMessage)
                                             .where(*where))


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
            return page.read().decode()
    except OSError:
        return ""


def test_the_daemon_refreshes_comes_back_after_a_kick_and_reports_a_revocation_once(
        idp: OAuthServer, mailbox: Account, oauth_dovecot: DovecotServer, sqlite_url: str,
        tmp_path: Path) -> None:
    smtp = BearerSmtp(f"{idp.url}/introspect")
    (metrics_port,) = free_ports(1)
    config = _configure(tmp_path, sqlite_url, idp, mailbox, smtp.port, metrics_port)
    sessions = db.session_factory(db.make_engine(sqlite_url))
    systemd = Systemd(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    env |= {"TICKETD_SECURITY__SECRET": SECRET, "NOTIFY_SOCKET": str(systemd.path)}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _deliver(oauth_dovecot, mailbox, idp, "first")
        wait_for(lambda: _count(sessions) == 1, 30, "the first mail ingested")
        wait_for(lambda: len(smtp.sink.received) >= 1, 30, "its acknowledgement sent")
        refreshes = idp.state.refreshes
        wait_for(lambda: idp.state.refreshes >= refreshes + 2, 30,
                 "tokens refreshed before they expire")
        assert idp.state.inactive_introspections == 0  # no login ever tried an expired token

        idp.expire_access_tokens()  # the provider ends the tokens and the session with them
        oauth_dovecot.kick(mailbox)
        _deliver(oauth_dovecot, mailbox, idp, "second")
        wait_for(lambda: _count(sessions) == 2, 30, "the mail after the kick ingested")

        idp.revoke()  # an admin revoked the app: every refresh is refused from now on
        oauth_dovecot.kick(mailbox)  # and the next login needs a token it cannot get
        wait_for(lambda: "invalid_grant" in " ".join(systemd.said()), 30, "STATUS=")
        wait_for(lambda: _count(sessions, OutboxMessage.kind == "ops") == 2, 30,
                 "one ops mail per mailbox")
        wait_for(lambda: 'ticketd_oauth_refresh_failures_total{error="invalid_grant",'
                 'mailbox="imap"}' in _scrape(metrics_port), 10, "the metric")
        # A reload tries the mailbox again at once: refused, refreshed, refused again; and a
        # restarted daemon fails anew. Each failure counts; no second mail is queued.
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _failures(metrics_port) >= 2, 30, "a second failed refresh")
        assert _count(sessions, OutboxMessage.kind == "ops") == 2
        status = [m for m in systemd.said() if "STATUS=" in m][-1]
        assert "ticketd oauth login imap" in status
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with log.open("a") as out:
            proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config),
                                     "run"], stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: _failures(metrics_port) >= 1, 30, "the restarted daemon's failure")
        wait_for(lambda: "STOPPING=1" not in systemd.said()[-1]
                 and "invalid_grant" in systemd.said()[-1], 30, "STATUS= after the restart")
        assert _count(sessions, OutboxMessage.kind == "ops") == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        smtp.stop()
    text = log.read_text()
    assert not any(token in text for token in idp.state.access)  # no token in the log


def _failures(port: int) -> float:
    """ticketd_oauth_refresh_failures_total of the IMAP login refused with invalid_grant."""
    name = 'ticketd_oauth_refresh_failures_total{error="invalid_grant",mailbox="imap"} '
    for line in _scrape(port).splitlines():
        if line.startswith(name):
            return float(line[len(name):])
    return 0.0


def _deliver(dovecot: DovecotServer, mailbox: Account, idp: OAuthServer, subject: str) -> None:
    """Append a player's mail over IMAP, logged in with a token of the test's own."""
    from imapclient import IMAPClient

    grant = idp.issue_refresh_token()
    with idp.lock:
        answer = idp._refresh({"refresh_token": grant})[1]
    client = IMAPClient(mailbox.host, mailbox.port, ssl=False, timeout=10)
    try:
        client.oauth2_login(mailbox.username, answer["access_token"])
        client.append("INBOX", mail(sender=f"{subject}@mail.test", subject=subject,
                                    body="Where is my withdrawal?"))
    finally:
        client.logout()
