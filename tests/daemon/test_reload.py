"""SIGHUP as ops use it: `ticketd run` as a subprocess against real Dovecot and an SMTP server
that requires AUTH. A reload puts one new runtime value in force, whole: the rotated SMTP
password, new templates and a new display name, for the outbox and the SLA monitor alike; a
configuration that cannot be built is refused, systemd is told, and the old value runs on."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from tests.daemon.test_service import SECRET, wait_for
from tests.outbox.smtp_sink import PasswordSink, Received, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.mails import mail

pytestmark = [pytest.mark.dovecot, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]
LEAD = "lead@casino.test"


class NotifySocket:
    """The socket systemd listens on (sd_notify(3)); every datagram kept, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self._sock.recv(65536).decode())
            except TimeoutError:
                continue

    def after(self, index: int) -> list[str]:
        return self.messages[index:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class Desk:
    """A configuration with templates and a password file, and the daemon running it."""

    def __init__(self, tmp_path: Path, db_url: str, account, sink: SmtpServer) -> None:  # noqa: ANN001
        self.dir = tmp_path
        self.templates = tmp_path / "templates"
        (self.templates / "en").mkdir(parents=True)
        self.password = tmp_path / "smtp-password"
        self.password.write_text("old-password\n")
        self.password.chmod(0o600)  # a secret readable by others is refused
        self.write_templates("ONE")
        self.config = write_config(
            tmp_path, db_url, account,
            smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none", "username": "desk",
                  "password_file": str(self.password)},
            outbox={"interval": "1s"},
            responders={"templates_dir": str(self.templates)},
            # The first promise falls due soon, so that its escalations come after the reload.
            sla={"first_response": "20s", "interval": "1s", "warning_address": LEAD,
                 "team_lead_address": LEAD},
        )
        self.original = self.config.read_text()
        self.notify = NotifySocket(tmp_path / "notify.sock")
        env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET,
               "NOTIFY_SOCKET": str(self.notify.path)}
        self.log = tmp_path / "daemon.log"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "run"],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def write_templates(self, mark: str) -> None:
        (self.templates / "en" / "ack.txt.j2").write_text(f"Ticket {{{{ tag }}}}: ACK-{mark}\n")
        (self.templates / "en" / "escalation.txt.j2").write_text(
            f"{{{{ tag }}}} stage {{{{ stage }}}}: ESCALATION-{mark}\n")

    def text(self) -> str:
        return self.log.read_text()

    def reload(self, what: str) -> None:
        """SIGHUP, then wait until the daemon says it is done (READY=1 after RELOADING=1)."""
        seen = len(self.notify.messages)
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("READY=1" in m for m in self.notify.after(seen)), 15, what)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(30) == 0, self.text()
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
        self.notify.close()


@pytest.fixture
def password_sink():  # noqa: ANN201
    sink = PasswordSink("desk", "old-password")
    server = SmtpServer(sink, free_port(), **sink.server_options()).start()
    yield server
    server.stop()


def _mail(received: Received) -> tuple[str, str, str]:
    """(From display name, Subject, plain text) of a mail the server took."""
    msg = message_from_bytes(received.content, policy=default)
    body = msg.get_body(("plain",))
    assert body is not None
    return msg["From"].addresses[0].display_name, str(msg["Subject"]), body.get_content()


def _by_kind(sink: PasswordSink, mark: str) -> list[tuple[Received, str]]:
    """(mail, password used) of each mail whose text carries the template mark."""
    return [(r, used) for r, used in zip(sink.received, sink.used, strict=True)
            if mark.encode() in r.content]


def _first_ticket(sink: PasswordSink) -> list[Received]:
    """The escalations of ticket 10001, opened before the reload."""
    return [r for r, _ in _by_kind(sink, "ESCALATION-TWO") if "[#10001]" in _mail(r)[1]]


def test_a_reload_changes_password_templates_and_name_for_outbox_and_sla_together(
        dovecot, sqlite_url: str, tmp_path: Path, password_sink: SmtpServer) -> None:  # noqa: ANN001
    sink: PasswordSink = password_sink.handler  # type: ignore[assignment]
    account = dovecot.new_account()
    desk = Desk(tmp_path, sqlite_url, account, password_sink)
    try:
        dovecot.append(account, mail(sender="a@mail.test", subject="First", body="Refund one"))
        wait_for(lambda: _by_kind(sink, "ACK-ONE"), 30, "the first acknowledgement")
        # Rotation: the server knows only the new password now, the file says it, and the
        # templates and the display name change; then one SIGHUP.
        sink.password = "new-password"
        desk.password.write_text("new-password\n")
        desk.write_templates("TWO")
        desk.config.write_text(desk.original.replace('name = "Casino Support"',
                                                     'name = "Casino Help"')
                               .replace("idle_timeout = 30", "idle_timeout = 25"))
        seen = len(desk.notify.messages)
        desk.reload("the reload")
        assert "configuration reloaded" in desk.text()
        # [imap] changed too: the watcher connects again with the new settings.
        wait_for(lambda: "mailbox settings changed by a reload, reconnecting" in desk.text(),
                 10, "the mailbox reconnects")
        dovecot.append(account, mail(sender="b@mail.test", subject="Second", body="Refund two"))
        wait_for(lambda: _by_kind(sink, "ACK-TWO"), 30, "the second acknowledgement")
        # The first ticket's clock started before the reload; its escalations are composed
        # after it, by the SLA monitor, with the new template and name.
        wait_for(lambda: len(_first_ticket(sink)) >= 2, 60, "the first ticket's warning and breach")
        notified = desk.notify.after(seen)
    finally:
        desk.stop()
    [(first_ack, first_password)] = _by_kind(sink, "ACK-ONE")
    assert first_password == "old-password"
    assert _mail(first_ack)[0] == "Casino Support"
    after = _by_kind(sink, "ACK-TWO") + _by_kind(sink, "ESCALATION-TWO")
    assert {used for _, used in after} == {"new-password"}  # the old one is refused now
    assert {_mail(received)[0] for received, _ in after} == {"Casino Help"}
    assert _by_kind(sink, "ESCALATION-ONE") == []  # no escalation on the old value
    assert {tuple(r.rcpt_tos) for r in _first_ticket(sink)} == {(LEAD,)}
    # systemd heard: reloading (with the monotonic time), then ready again.
    reloading = next(i for i, m in enumerate(notified) if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in notified[reloading]
    assert any("READY=1" in m for m in notified[reloading + 1:])


def test_a_config_that_cannot_be_built_is_refused_said_in_status_and_the_old_one_runs_on(
        dovecot, sqlite_url: str, tmp_path: Path, password_sink: SmtpServer) -> None:  # noqa: ANN001
    sink: PasswordSink = password_sink.handler  # type: ignore[assignment]
    account = dovecot.new_account()
    desk = Desk(tmp_path, sqlite_url, account, password_sink)
    try:
        dovecot.append(account, mail(sender="a@mail.test", subject="First", body="Refund one"))
        wait_for(lambda: len(sink.received) >= 1, 30, "the first acknowledgement")
        # A key with a bad value: refused, STATUS= names the file, the key and the reason.
        seen = len(desk.notify.messages)
        desk.config.write_text(desk.original.replace('"1s"', '"soon"', 1))
        desk.reload("a refused reload")
        refused = [m for m in desk.notify.after(seen) if "STATUS=" in m and "refused" in m]
        assert refused, desk.notify.after(seen)
        status = refused[0].split("STATUS=", 1)[1].splitlines()[0]
        assert f"reload refused: {desk.config}: outbox.interval: " in status, status
        # A template that does not compile: the settings load, the runtime value cannot be
        # built, and that is refused the same way, naming the template and its line.
        desk.config.write_text(desk.original)
        good_ack = (desk.templates / "en" / "ack.txt.j2").read_text()
        (desk.templates / "en" / "ack.txt.j2").write_text("Ticket {{ tag }}: {% if %}\n")
        seen = len(desk.notify.messages)
        desk.reload("a refused template")
        refused = [m for m in desk.notify.after(seen) if "STATUS=" in m and "refused" in m]
        assert refused and "responders.templates_dir: template en/ack.txt.j2 line 1" in \
            refused[0], desk.notify.after(seen)
        assert desk.text().count("reload refused") == 2
        # The running value goes on: the old template and password, mail still delivered.
        dovecot.append(account, mail(sender="b@mail.test", subject="Second", body="Refund two"))
        wait_for(lambda: len(_by_kind(sink, "ACK-ONE")) >= 2, 30, "mail after the refusals")
        # New master keys need a restart: the vault that wraps new data keys is built at start.
        (desk.templates / "en" / "ack.txt.j2").write_text(good_ack)
        key_file = tmp_path / "master-key"
        key_file.write_text(base64.b64encode(b"k" * 32).decode() + "\n")
        key_file.chmod(0o600)
        desk.config.write_text(desk.original + f'\n[privacy]\nkey_file = "{key_file}"\n')
        seen = len(desk.notify.messages)
        desk.reload("refused master keys")
        refused = [m for m in desk.notify.after(seen) if "STATUS=" in m and "refused" in m]
        assert refused and "privacy.key_file: master keys changed: restart to apply" in \
            refused[0], desk.notify.after(seen)
    finally:
        desk.stop()
    assert SECRET not in desk.text() and "old-password" not in desk.text()
