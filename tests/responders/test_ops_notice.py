"""The notice to operations, read back from its bytes: who, what, and marked automatic."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import make_msgid

import pytest

from parsers.automated import automated_reason
from parsers.mail import parse
from responders.ops_notice import mark_automatic, ops_notice

NOW = datetime(2026, 12, 6, 16, 37, 12, tzinfo=UTC)
MARKS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All",
         "Precedence": "bulk"}


def _notice(**changes: object) -> bytes:
    fields: dict = {"sender": "support@casino.test", "to": ("ops@casino.test",),
                    "subject": "ticketd: 2 acknowledgement(s) undeliverable",
                    "message_id": "<dead-acks.2026120616.ticketd@casino.test>", "now": NOW,
                    "text": "outbox row 7\noutbox row 9"}
    return ops_notice(**(fields | changes))


def test_the_notice_carries_the_envelope_headers_then_the_marks_in_that_order() -> None:
    raw = _notice(to=("ops@casino.test", "lead@casino.test"))
    parsed = email.message_from_bytes(raw, policy=default)
    assert [(name, str(value)) for name, value in parsed.items()][:8] == [
        ("From", "support@casino.test"),
        ("To", "ops@casino.test, lead@casino.test"),
        ("Subject", "ticketd: 2 acknowledgement(s) undeliverable"),
        ("Date", "Sun, 06 Dec 2026 16:37:12 +0000"),
        ("Message-ID", "<dead-acks.2026120616.ticketd@casino.test>"),
        *MARKS.items(),
    ]
    assert parsed.get_content().splitlines() == ["outbox row 7", "outbox row 9"]
    assert b"\n" not in raw.replace(b"\r\n", b"")  # as sent: CRLF line ends only


def test_a_long_subject_and_message_id_read_back_whole() -> None:
    """Longer than a line, yet never cut or encoded: the id stays one token for threading."""
    message_id = make_msgid(idstring="outbox-dead-123456789", domain="mail.casino.test")
    subject = ("ticketd: undeliverable webhook ticket_created_for_the_compliance_platform "
               "(outbox #123456789)")
    raw = _notice(subject=subject, message_id=message_id)
    parsed = email.message_from_bytes(raw, policy=default)
    assert str(parsed["Subject"]) == subject and parsed["Message-ID"] == message_id
    assert b"=?" not in raw


@pytest.mark.parametrize("kept", sorted(MARKS))
def test_each_mark_alone_makes_the_notice_automated_mail(kept: str) -> None:
    """Every one of the three is a header responders (ours too) take as "do not answer"."""
    parsed = email.message_from_bytes(_notice(), policy=default)
    for name in MARKS.keys() - {kept}:
        del parsed[name]
    reason = automated_reason(parse(parsed.as_bytes(policy=SMTP)))
    assert reason is not None and kept.lower() in reason.lower()


def test_a_message_is_marked_once() -> None:
    msg = EmailMessage(policy=SMTP)
    mark_automatic(msg)
    assert {name: msg[name] for name in MARKS} == MARKS
    with pytest.raises(ValueError, match="already set"):
        mark_automatic(msg)
