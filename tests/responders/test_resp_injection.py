"""CVE-2024-6923 on this Python: encoded newlines in a player's header must not become headers.

Assertions are on the raw bytes, since that is what an MTA reads.
"""

from __future__ import annotations

import email
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP, default

import pytest

from parsers.mail import parse
from parsers.model import Address, InboundMail
from responders.compose import AckContext, acknowledgement
from responders.identity import Identity

OUR_HEADERS = {
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
    "auto-submitted", "x-auto-response-suppress", "x-ticketd-loop", "mime-version", "content-type",
}
INJECTED = [
    b"=?utf-8?q?Hello=0ABcc:_victim@evil.example?=",
    b"=?utf-8?q?Hello=0D=0ABcc:_victim@evil.example?=",
    b"=?utf-8?q?Hello=0DBcc:_victim@evil.example?=",
    b"=?utf-8?b?SGVsbG8KQmNjOiB2aWN0aW1AZXZpbC5leGFtcGxl?=",  # base64 of "Hello\nBcc: ..."
    b"=?utf-8?q?Hello=E2=80=A8Bcc:_victim@evil.example?=",  # U+2028
    b"=?utf-8?q?Hello=C2=85Bcc:_victim@evil.example?=",  # U+0085
    b"=?utf-8?q?Hello=0A=0AX-Injected-Body?=",
]


def _incoming(subject: bytes, from_name: bytes = b"Player") -> bytes:
    return (
        b"From: " + from_name + b" <player@mail.example>\r\n"
        b"To: support@casino.example\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Message-ID: <m1@mail.example>\r\n"
        b"Date: Fri, 20 Nov 2026 12:00:00 +0000\r\n"
        b"\r\n"
        b"Please help.\r\n"
    )


def _ack_for(mail: InboundMail, subject: object = None) -> bytes:
    assert mail.sender is not None
    ctx = AckContext(
        ticket_number=10234, language="en",
        subject=subject if subject is not None else mail.subject,  # type: ignore[arg-type]
        requester=mail.sender, category="refund", first_response=timedelta(hours=24),
        attachments=(), faq_answer=None, in_reply_to=mail.message_id, references=mail.references,
    )
    msg = acknowledgement(ctx, Identity("support@casino.example", "Support", (b"key",)),
                          now=datetime(2026, 11, 20, tzinfo=UTC))
    return msg.as_bytes(policy=SMTP)


def _header_names(raw: bytes) -> list[str]:
    block = raw.split(b"\r\n\r\n", 1)[0]
    lines = block.split(b"\r\n")
    assert b"\n" not in block.replace(b"\r\n", b"") and b"\r" not in block.replace(b"\r\n", b"")
    assert all(line[:1] in b" \t" or b":" in line for line in lines)
    starts = [line for line in lines if line[:1] not in b" \t"]
    return [line.split(b":", 1)[0].decode("ascii").lower() for line in starts]


def _assert_only_our_headers(raw: bytes) -> None:
    names = _header_names(raw)
    assert not any(re.match(rb"(?im)^bcc:", line) for line in raw.split(b"\r\n"))
    assert "bcc" not in names and "x-injected-body" not in names
    assert sorted(names) == sorted(OUR_HEADERS)  # each exactly once


@pytest.mark.parametrize("subject", INJECTED)
def test_encoded_newline_in_subject_does_not_inject_headers(subject: bytes) -> None:
    mail = parse(_incoming(subject))
    raw = _ack_for(mail)
    _assert_only_our_headers(raw)
    parsed = email.message_from_bytes(raw, policy=SMTP)
    assert "Bcc" not in parsed and "victim@evil.example" not in (parsed.get_all("To") or [""])[0]


@pytest.mark.parametrize("subject", INJECTED[:2])
def test_raw_stdlib_header_object_is_cleaned_too(subject: bytes) -> None:
    # The CVE's own path: a header object from the stdlib parser, newline and all.
    header = email.message_from_bytes(_incoming(subject), policy=default)["Subject"]
    assert "\n" in str(header) or "\r" in str(header)
    raw = _ack_for(parse(_incoming(b"x")), subject=header)
    _assert_only_our_headers(raw)
    assert b"Hello Bcc: victim@evil.example" in _decoded_subject(raw).encode()


def _decoded_subject(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=SMTP)["Subject"])


@pytest.mark.parametrize(
    "name", ["Eve\r\nBcc: victim@evil.example", "Eve\u2028Bcc: victim@evil.example"]
)
def test_line_break_in_display_name_does_not_inject_headers(name: str) -> None:
    mail = parse(_incoming(b"Hi", from_name=b"=?utf-8?q?Eve=0D=0ABcc=3A_v?="))
    assert mail.sender is not None
    mail = replace(mail, sender=replace(mail.sender, name=name))
    raw = _ack_for(mail)
    _assert_only_our_headers(raw)
    (recipient,) = email.message_from_bytes(raw, policy=SMTP)["To"].addresses
    assert recipient.display_name == "Eve Bcc: victim@evil.example"
    assert recipient.addr_spec == "player@mail.example"


def test_the_stdlib_on_this_python_really_would_inject() -> None:
    """Documents why the cleaning exists; passes either way on a fixed Python."""
    header = email.message_from_bytes(_incoming(INJECTED[0]), policy=default)["Subject"]
    out = EmailMessage(policy=SMTP)
    out["Subject"] = header
    try:
        raw = out.as_bytes(policy=SMTP)
    except Exception:  # 3.11.10+ refuses (verify_generated_headers)
        return
    if sys.version_info[:3] <= (3, 11, 9):
        assert b"\nBcc: victim@evil.example" in raw


def test_requester_address_with_injection_is_refused() -> None:
    from responders.compose import UnsafeRecipient

    ctx = AckContext(10234, "en", "x", Address("player@mail.example\r\nBcc: v@evil.example", ""),
                     "refund", timedelta(hours=1), (), None, None, ())
    with pytest.raises(UnsafeRecipient):
        acknowledgement(ctx, Identity("support@casino.example", "S", (b"k",)))
