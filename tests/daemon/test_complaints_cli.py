"""The complaint deadline guard from the command line, as an operator runs it: `ticketd
ingest`, then `ticketd sla --once --now` eight weeks on, then `ticketd deliver --once` to a
real SMTP server: the player receives one final-response letter naming the ADR entity in
their language, and a second pass sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from tests.daemon.test_cli import ticketd
from tests.outbox.smtp_sink import HOST, Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.mails import mail

ENV = {"TICKETD_SECURITY__SECRET": "complaints-cli-key-0123456789"}
COMPLAINTS = {"profile": "ukgc", "adr_entity": "Fair Play Adjudication",
              "adr_url": "https://adr.test", "adr_translations": {
                  "ru": {"entity": "Служба честной игры"}}}


def test_sla_once_eight_weeks_on_sends_one_letter_in_the_players_language(
        db_url: str, tmp_path: Path) -> None:
    server = SmtpServer(Sink(), free_port()).start()
    try:
        config = str(write_config(
            tmp_path, db_url, complaints=COMPLAINTS,
            sla={"head_of_support_address": "head@casino.test"},
            smtp={"host": HOST, "port": server.port, "tls": "none"}))
        raw = mail(sender="Сергей <sergey@players.test>", subject="Где мой выигрыш?",
                   body="Здравствуйте, мой выигрыш так и не пришёл на карту, прошу проверить.",
                   message_id="<c-1@players.test>")
        assert ticketd("--config", config, "ingest", stdin=raw, env=ENV).returncode == 0
        later = (datetime.now(UTC) + timedelta(weeks=8, minutes=5)).isoformat()
        first = ticketd("--config", config, "sla", "--once", "--now", later, "--apply", env=ENV)
        assert first.returncode == 0, first.stderr
        assert b"#10001 complaint deadline" in first.stdout
        again = ticketd("--config", config, "sla", "--once", "--now", later, "--apply", env=ENV)
        assert b"complaint deadline" not in again.stdout
        sent = ticketd("--config", config, "deliver", "--once", env=ENV)
        assert sent.returncode == 0, sent.stderr
    finally:
        server.stop()
    letters = [r for r in server.handler.received if "sergey@players.test" in r.rcpt_tos
               and b"Auto-Submitted: auto-generated" in r.content]
    assert len(letters) == 1
    body = message_from_bytes(letters[0].content, policy=default).get_body(("plain",)) \
        .get_content()
    assert "Служба честной игры" in body and "https://adr.test" in body
    assert "Fair Play" not in body and "If you do not agree" not in body
