"""One conversation end to end with the daemon as a subprocess, a real Dovecot and a real SMTP
server: player → acknowledgement + notification → agent reply (Thunderbird) → the player gets
only the new text from the support address → player answers → agent notified → internal note
(Outlook) that never reaches the player."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
from email.policy import default
from pathlib import Path

import pytest

from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.agents import AUTHSERV, reply_to_notification
from tests.support.configs import write_config
from tests.support.mails import mail

pytestmark = pytest.mark.dovecot
SECRET = "e2e-agents-secret-0123456789abcdef"


def wait_for(check, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")


def test_a_whole_conversation_between_a_player_and_an_agent(dovecot, sqlite_url: str,  # noqa: ANN001
                                                            tmp_path: Path) -> None:
    sink = SmtpServer(Sink(), free_port()).start()
    account = dovecot.new_account()
    config = write_config(tmp_path, sqlite_url, account,
                          smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none"},
                          outbox={"interval": "1s"}, security={"authserv_id": AUTHSERV})
    config.write_text(config.read_text() + (
        '\n[[team.agents]]\naddress = "anna@casino.test"\nname = "Anna Smirnova"\n'
        'groups = ["payments"]\n'))
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                              stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "TICKETD_SECURITY__SECRET": SECRET})

    def to(address: str) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(r.content, policy=default)
                for r in sink.handler.received if address in r.rcpt_tos]

    try:
        dovecot.append(account, mail(subject="Refund of my deposit", message_id="<q1@mail.test>",
                                     body="Please refund my deposit of 100 EUR."))
        wait_for(lambda: to("player@mail.test") and to("anna@casino.test"), 30, "ack + notification")
        [note] = to("anna@casino.test")
        answer = "Hello! Your deposit was refunded today."
        dovecot.append(account, reply_to_notification(note.as_bytes(), answer))
        wait_for(lambda: len(to("player@mail.test")) == 2, 30, "the relayed answer")
        ack, relayed = to("player@mail.test")
        text = relayed.get_body(("plain",)).get_content()
        assert answer in text and "Please refund my deposit" not in text
        assert relayed["From"].addresses[0].addr_spec == "support@casino.test"
        assert relayed["In-Reply-To"] == "<q1@mail.test>"
        raw = next(r.content for r in sink.handler.received if b"refunded today" in r.content)
        assert b"anna@casino.test" not in raw
        dovecot.append(account, mail(subject=str(relayed["Subject"]), body="Not arrived yet.",
                                     in_reply_to=str(relayed["Message-ID"])))
        wait_for(lambda: len(to("anna@casino.test")) == 2, 30, "the agent notified again")
        second_note = to("anna@casino.test")[1]
        assert "Not arrived yet." in second_note.get_body(("plain",)).get_content()
        secret = "Provider says the refund bounced; do not tell the player yet."
        dovecot.append(account, reply_to_notification(second_note.as_bytes(), f"#note\n{secret}",
                                                      layout="outlook"))
        wait_for(lambda: not dovecot.uids(account, "INBOX"), 30, "the note ingested")
        time.sleep(2)  # a wrongly relayed note would go out within the 1 s outbox interval
        assert not any(secret.encode() in r.content for r in sink.handler.received)
        assert len(to("player@mail.test")) == 2
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        sink.stop()
        log.close()
    shown = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "show", "10001"],
                           capture_output=True, text=True, env={**os.environ, "TICKETD_SECURITY__SECRET": SECRET})
    assert "note" in shown.stdout and "[internal, never sent to the player]" in shown.stdout
