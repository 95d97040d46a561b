"""Agent notifications, relayed replies, refusals and held notices, read back from their bytes."""

from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from parsers.model import Address, Attachment
from parsers.reply import REPLY_MARKERS, visible_text
from responders.agents import (
    NotificationContext,
    RelayContext,
    command_refused,
    held_notice,
    notification,
    relay,
)
from responders.headers import UnsafeRecipient
from responders.identity import Identity
from responders.references import numbers_in_subject, token_from_address, verify_message_id
from responders.rendering import Templates

KEYS = (b"current key", b"previous key")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SUPPORT = "support@casino.example"
AGENT_ADDRESS = "anna.private@gmail.test"
PNG = Attachment("скрин.png", "image/png", b"\x89PNG" + b"\x00" * 2000)
PDF = Attachment("receipt.pdf", "application/pdf", b"%PDF-1.4" + b"x" * 3000)
NOTE = NotificationContext(
    ticket_number=10234,
    player=Address("igrok@mail.example", "Иван Петров"),
    subject="Re: Не пришёл вывод средств",
    visible_text="Добрый день!\r\nДеньги так и не пришли, прошло 5 дней.",
    category="refund",
    priority="high",
    status="open",
    sla_due=NOW + timedelta(hours=2),
    earlier_tickets=3,
    attachments=(PNG, PDF),
    player_message_id="player-2@mail.example",
    recipients=(Address("payments-team@casino.example", "Payments team"),),
    event="follow_up",
)
RELAY = RelayContext(
    ticket_number=10234,
    language="ru",
    player=Address("igrok@mail.example", "Иван Петров"),
    subject="Не пришёл вывод средств",
    agent_name="Анна",
    text="Иван, добрый день!\nВыплата отправлена сегодня.\n\nАнна\nanna.private@gmail.test",
    attachments=(PDF,),
    in_reply_to="player-2@mail.example",
    references=("t10234.abc.aaaaaaaaaaaaaaaa@casino.example", "player-1@mail.example"),
    agent_addresses=(AGENT_ADDRESS,),
)


def _notify(ctx: NotificationContext = NOTE, **options: object) -> EmailMessage:
    return notification(ctx, Identity(SUPPORT, "Casino Support", KEYS, Templates()), now=NOW,
                        **options)  # type: ignore[arg-type]


def _relay(ctx: RelayContext = RELAY, **options: object) -> EmailMessage:
    return relay(ctx, Identity(SUPPORT, "Служба поддержки Casino", KEYS, Templates()), now=NOW,
                 **options)  # type: ignore[arg-type]


def _raw(msg: EmailMessage) -> bytes:
    raw = msg.as_bytes(policy=SMTP)
    assert raw.isascii()  # 7-bit: no SMTPUTF8, no 8BITMIME needed
    return raw


def _read(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _text(parsed: EmailMessage, subtype: str = "plain") -> str:
    part = parsed.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def _display_name(raw: bytes, name: bytes = b"From") -> str:
    """The display name as RFC 2047 §6.2 reads it: no space between adjacent encoded words.

    The stdlib's address parser on this Python keeps that space ("Casi no"), so the
    name is read by ``email.header`` from the raw, unfolded header instead.
    """
    found = re.search(rb"(?m)^" + name + rb": ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", raw)
    assert found is not None
    value = found.group(1).decode("ascii").replace("\r\n", "")
    decoded = str(make_header(decode_header(value)))
    assert decoded.endswith(">")
    return decoded.rpartition(" <")[0]


def _header_names(raw: bytes) -> list[str]:
    """The header names of the top level, as an MTA reads them from the bytes."""
    block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in block.replace(b"\r\n", b"") and b"\r" not in block.replace(b"\r\n", b"")
    lines = block.split(b"\r\n")
    assert all(line[:1] in b" \t" or b":" in line for line in lines)
    starts = [line for line in lines if line[:1] not in b" \t"]
    return [line.split(b":", 1)[0].decode("ascii").lower() for line in starts]


# --- notification -------------------------------------------------------------------------

def test_notification_headers() -> None:
    parsed = _read(_raw(_notify()))
    (sender,) = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Casino Support", SUPPORT)
    (recipient,) = parsed["To"].addresses
    assert recipient.addr_spec == "payments-team@casino.example"
    (reply_to,) = parsed["Reply-To"].addresses
    assert token_from_address(reply_to.addr_spec, SUPPORT, KEYS) == 10234
    assert token_from_address(reply_to.addr_spec, SUPPORT, (b"another key",)) is None
    assert verify_message_id(str(parsed["Message-ID"]), KEYS) == 10234
    assert str(parsed["Subject"]) == "[#10234] Не пришёл вывод средств"
    assert numbers_in_subject(str(parsed["Subject"])) == (10234,)
    assert str(parsed["In-Reply-To"]) == "<player-2@mail.example>"
    assert str(parsed["References"]) == "<player-2@mail.example>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Ticketd-Loop"] == SUPPORT
    assert parsed["Date"] == "Fri, 20 Nov 2026 12:00:00 +0000"


def test_notification_to_several_recipients_once_each() -> None:
    ctx = replace(NOTE, recipients=(
        Address("anna@casino.example", "Анна Смирнова"), Address("team@casino.example", "Team"),
        Address("Anna@Casino.example", "Anna again"),
    ))
    parsed = _read(_raw(_notify(ctx)))
    addresses = parsed["To"].addresses
    assert [a.addr_spec for a in addresses] == ["anna@casino.example", "team@casino.example"]
    assert addresses[0].display_name == "Анна Смирнова"


@pytest.mark.parametrize(
    "recipients",
    [(), (Address(SUPPORT),), (Address("support+t1.x@casino.example"),),
     (Address("a@casino.example, b@evil.example"),), (Address("x@evil.example\r\nBcc: y@e.x"),)],
)
def test_notification_refuses_bad_recipients(recipients: tuple[Address, ...]) -> None:
    with pytest.raises(UnsafeRecipient):
        _notify(replace(NOTE, recipients=recipients))


def test_notification_body_has_text_and_facts() -> None:
    parsed = _read(_raw(_notify()))
    text, html = _text(parsed), _text(parsed, "html")
    assert text.startswith(REPLY_MARKERS[0] + "\n")
    assert "Добрый день!\nДеньги так и не пришли, прошло 5 дней." in text
    for fact in ("Category: refund", "Priority: high", "Status: open",
                 "Response due: 2026-11-20 14:00 UTC (in 2 hours)",
                 "Requester: Иван Петров <igrok@mail.example>",
                 "Earlier tickets from this requester: 3",
                 "start with #note for an internal note", "#status open|pending|resolved|closed",
                 "#assign me|ADDRESS", "#merge NUMBER"):
        assert fact in text, fact
    assert "wrote again on ticket [#10234]" in text
    assert "http" not in text.lower() and "href" not in html.lower()
    assert "Деньги так и не пришли" in html and "Requester:" in html


def test_notification_of_a_new_ticket_in_russian_with_an_overdue_sla() -> None:
    ctx = replace(NOTE, language="ru-RU", event="new", sla_due=NOW - timedelta(minutes=90))
    text = _text(_read(_raw(_notify(ctx))))
    assert text.startswith(REPLY_MARKERS[1])
    assert "Новое обращение [#10234] от Иван Петров:" in text
    assert "Срок ответа: 2026-11-20 10:30 UTC (просрочен на 1 час 30 минут)" in text


def test_notification_without_sla_or_name() -> None:
    ctx = replace(NOTE, sla_due=None, player=Address("igrok@mail.example"), attachments=())
    text = _text(_read(_raw(_notify(ctx))))
    assert "Response due: not set" in text
    assert "Requester: <igrok@mail.example>" in text
    assert "Attachments" not in text


def test_an_agent_reply_above_the_marker_is_all_that_is_visible() -> None:
    text = _text(_read(_raw(_notify())))
    reply = "#status pending\nWe are checking.\n\n" + "\n".join("> " + line for line in
                                                             text.splitlines())
    assert visible_text(reply) == "#status pending\nWe are checking."
    assert visible_text("#note\nInternal.\n\n" + text) == "#note\nInternal."


def test_attachments_under_the_limit_are_attached() -> None:
    parsed = _read(_raw(_notify()))
    attached = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert set(attached) == {"скрин.png", "receipt.pdf"}
    assert attached["скрин.png"].get_content() == PNG.payload
    assert attached["скрин.png"].get_content_type() == "image/png"
    assert attached["receipt.pdf"].get_content() == PDF.payload
    assert "Attachments (attached to this mail):" in _text(parsed)


def test_attachments_over_the_limit_are_listed_with_sizes() -> None:
    parsed = _read(_raw(_notify(max_attachment_bytes=4000)))
    assert list(parsed.iter_attachments()) == []
    text = _text(parsed)
    assert "not attached: together larger than 3.9 KB" in text
    assert "  - скрин.png (2.0 KB)" in text
    assert "  - receipt.pdf (2.9 KB)" in text


def test_a_strange_attachment_type_travels_as_bytes() -> None:
    odd = Attachment("mail.eml", "message/rfc822", b"From: x\r\n\r\nhi")
    bad = Attachment("x\r\nBcc: v@evil.example.txt", "text/plain\r\nX: y", b"hello")
    parsed = _read(_raw(_notify(replace(NOTE, attachments=(odd, bad)))))
    parts = list(parsed.iter_attachments())
    assert [part.get_content_type() for part in parts] == ["application/octet-stream"] * 2
    assert parts[1].get_filename() == "x Bcc: v@evil.example.txt"
    assert parts[0].get_content() == odd.payload


def test_notification_html_escapes_the_player() -> None:
    ctx = replace(NOTE, visible_text="<script>alert(1)</script>",
                  player=Address("igrok@mail.example", "<b>Ivan</b>"))
    html = _text(_read(_raw(_notify(ctx))), "html")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>Ivan" not in html


# --- relay --------------------------------------------------------------------------------

def test_relay_never_shows_the_agent_address() -> None:
    raw = _raw(_relay())
    assert AGENT_ADDRESS.encode() not in raw.lower()
    assert b"anna.private" not in raw.lower()
    decoded = _text(_read(raw)) + _text(_read(raw), "html")
    assert AGENT_ADDRESS not in decoded
    assert f"Анна\n{SUPPORT}" in decoded  # the signature's address became ours


def test_relay_agent_name_with_an_address_loses_it() -> None:
    ctx = replace(RELAY, agent_name=f"Anna <{AGENT_ADDRESS}>", agent_addresses=(),
                  text="See you.")
    raw = _raw(_relay(ctx))
    assert b"anna.private" not in raw.lower()
    (sender,) = _read(raw)["From"].addresses
    assert _display_name(raw) == "Anna, Служба поддержки Casino"
    assert sender.addr_spec == SUPPORT


def test_relay_headers() -> None:
    raw = _raw(_relay())
    parsed = _read(raw)
    (sender,) = parsed["From"].addresses
    assert sender.addr_spec == SUPPORT
    assert _display_name(raw) == "Анна, Служба поддержки Casino"  # a Cyrillic name, encoded
    assert re.search(rb"(?m)^From: =\?utf-8\?b\?", raw)
    (recipient,) = parsed["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("Иван Петров", "igrok@mail.example")
    assert "Cc" not in parsed and "Bcc" not in parsed and "Reply-To" not in parsed
    assert str(parsed["Subject"]) == "Re: Не пришёл вывод средств [#10234]"
    assert verify_message_id(str(parsed["Message-ID"]), KEYS) == 10234
    assert str(parsed["In-Reply-To"]) == "<player-2@mail.example>"
    assert str(parsed["References"]) == (
        "<t10234.abc.aaaaaaaaaaaaaaaa@casino.example> <player-1@mail.example> "
        "<player-2@mail.example>"
    )
    assert "Auto-Submitted" not in parsed  # a person wrote it
    assert parsed["X-Ticketd-Loop"] == SUPPORT


def test_relay_in_english_shows_via_or_only_the_agent() -> None:
    ctx = replace(RELAY, language="en", agent_name="Anna Smith")
    desk = Identity(SUPPORT, "Casino Support", KEYS, Templates())
    (sender,) = _read(_raw(relay(ctx, desk, now=NOW)))["From"].addresses
    assert sender.display_name == "Anna Smith via Casino Support"
    (only,) = _read(_raw(_relay(ctx, name_with_support=False)))["From"].addresses
    assert (only.display_name, only.addr_spec) == ("Anna Smith", SUPPORT)


def test_relay_body_and_attachments() -> None:
    parsed = _read(_raw(_relay()))
    text = _text(parsed)
    assert text.startswith(REPLY_MARKERS[1] + "\n\nИван, добрый день!\nВыплата отправлена сегодня.")
    assert "[#10234]" in text
    (attached,) = parsed.iter_attachments()
    assert attached.get_filename() == "receipt.pdf"
    assert attached.get_content() == PDF.payload


def test_relay_only_to_the_player() -> None:
    raw = _raw(_relay())
    names = _header_names(raw)
    assert names.count("to") == 1 and "cc" not in names and "bcc" not in names
    assert len(_read(raw)["To"].addresses) == 1


@pytest.mark.parametrize("player", [Address(SUPPORT), Address("a@x.example, b@y.example")])
def test_relay_refuses_a_recipient_that_is_not_one_player(player: Address) -> None:
    with pytest.raises(UnsafeRecipient):
        _relay(replace(RELAY, player=player))


# --- injection ----------------------------------------------------------------------------

INJECTIONS = [
    "Hello\r\nBcc: victim@evil.example",
    "Hello\nBcc: victim@evil.example",
    "Hello\rBcc: victim@evil.example",
    "Hello\u2028Bcc: victim@evil.example",
    "Hello\x85Bcc: victim@evil.example",
    "Hello\r\n\r\nX-Injected-Body",
    "=?utf-8?q?Hello=0D=0ABcc:_victim@evil.example?=",
]
NOTIFICATION_HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "auto-submitted", "x-auto-response-suppress", "x-ticketd-loop", "mime-version",
    "content-type",
}
RELAY_HEADERS = NOTIFICATION_HEADERS - {"reply-to", "auto-submitted", "x-auto-response-suppress"}


def _only(raw: bytes, expected: set[str]) -> None:
    names = _header_names(raw)
    assert sorted(names) == sorted(expected)  # each exactly once, nothing added
    assert not re.search(rb"(?im)^(bcc|x-injected-body)\s*:", raw)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_player_subject_and_name_cannot_add_headers_to_a_notification(evil: str) -> None:
    ctx = replace(NOTE, subject=evil, player=Address("igrok@mail.example", evil),
                  recipients=(Address("team@casino.example", evil),))
    _only(_raw(_notify(ctx)), NOTIFICATION_HEADERS)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_agent_name_and_player_cannot_add_headers_to_a_relay(evil: str) -> None:
    ctx = replace(RELAY, agent_name=evil, subject=evil, player=Address("igrok@mail.example", evil))
    raw = _raw(_relay(ctx))
    _only(raw, RELAY_HEADERS)
    (recipient,) = _read(raw)["To"].addresses
    assert recipient.addr_spec == "igrok@mail.example"


def test_injected_message_ids_are_dropped() -> None:
    ctx = replace(RELAY, in_reply_to="x@y\r\nBcc: v@evil.example",
                  references=("a@b.example>\r\nBcc: v@evil.example", "good@mail.example"))
    parsed = _read(_raw(_relay(ctx)))
    assert "In-Reply-To" not in parsed
    assert str(parsed["References"]) == "<good@mail.example>"


# --- refusal and held notice ------------------------------------------------------------

AGENT = Address("anna@casino.example", "Anna")
ERRORS = ('unknown command "#stauts"',
          '#priority needs one of low, normal, high, urgent (got "asap")')


def _refused(**options: object) -> EmailMessage:
    return command_refused(AGENT, ERRORS, Identity(SUPPORT, "Casino Support", KEYS, Templates()),
                           now=NOW, **options)  # type: ignore[arg-type]


def test_command_refused() -> None:
    raw = _raw(_refused(ticket_number=10234, subject="Re: [#10234] Withdrawal missing",
                        in_reply_to="agent-1@casino.example"))
    parsed = _read(raw)
    (recipient,) = parsed["To"].addresses
    assert recipient.addr_spec == "anna@casino.example"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert str(parsed["Subject"]) == "Commands not applied: Withdrawal missing [#10234]"
    assert verify_message_id(str(parsed["Message-ID"]), KEYS) == 10234
    (reply_to,) = parsed["Reply-To"].addresses
    assert token_from_address(reply_to.addr_spec, SUPPORT, KEYS) == 10234
    assert str(parsed["In-Reply-To"]) == "<agent-1@casino.example>"
    text = _text(parsed)
    assert "nothing was changed and nothing was sent to the player" in text
    for error in ERRORS:
        assert f"  - {error}" in text
    assert "#escalate" in text


def test_command_refused_without_a_ticket_in_russian() -> None:
    parsed = _read(_raw(_refused(language="ru", subject="Вывод")))
    assert str(parsed["Subject"]) == "Команды не выполнены: Вывод"
    assert verify_message_id(str(parsed["Message-ID"]), KEYS) is None
    assert "Reply-To" not in parsed and "In-Reply-To" not in parsed
    assert "ничего не изменено" in _text(parsed)


def test_command_refused_error_lines_cannot_add_headers_or_lines() -> None:
    raw = _raw(command_refused(
        AGENT, ['unknown command "#x"\r\nBcc: v@evil.example'],
        Identity(SUPPORT, "S\r\nBcc: v@evil.example"), now=NOW))
    assert "bcc" not in _header_names(raw)
    assert '  - unknown command "#x" Bcc: v@evil.example\n' in _text(_read(raw))


def test_held_notice_says_only_the_address_the_time_and_the_count() -> None:
    raw = _raw(held_notice("anna@casino.example", Identity(SUPPORT, "Casino Support"),
                           agent_name="Anna\r\nBcc: v@evil.example", count=2,
                           received_at=NOW, now=NOW))
    parsed = _read(raw)
    (recipient,) = parsed["To"].addresses
    assert recipient.addr_spec == "anna@casino.example"
    assert str(parsed["Subject"]) == "A mail in your name was held"  # nothing of the held mail
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert "bcc" not in _header_names(raw)
    assert "In-Reply-To" not in parsed and "References" not in parsed and "Reply-To" not in parsed
    assert verify_message_id(str(parsed["Message-ID"]), KEYS) is None
    text = _text(parsed)
    assert text.startswith("A mail claiming to be from you (anna@casino.example) was held at "
                           "2026-11-20 12:00 UTC: it was not authenticated as yours.\n")
    assert "It is mail number 2 of this kind in the last hour." in text
    assert "Subject" not in text
    assert "nothing was sent to the player" in text


def test_the_last_held_notice_of_an_hour_says_so() -> None:
    text = _text(_read(_raw(held_notice("anna@casino.example", Identity(SUPPORT, "S"), count=4,
                                        received_at=NOW, last=True, now=NOW))))
    assert text.startswith("4 mails claiming to be from you (anna@casino.example) were held in "
                           "the last hour, the latest at 2026-11-20 12:00 UTC.\n")
    assert "before 2026-11-20 13:00 UTC" in text


def test_held_notice_in_russian_and_never_to_ourselves() -> None:
    msg = held_notice("anna@casino.example", Identity(SUPPORT, "Поддержка"), language="ru",
                      received_at=NOW, now=NOW)
    parsed = _read(_raw(msg))
    assert str(parsed["Subject"]) == "Письмо от вашего имени задержано"
    assert _text(parsed).startswith("Письмо, отправленное якобы от вас (anna@casino.example), "
                                    "задержано 2026-11-20 12:00 UTC")
    with pytest.raises(UnsafeRecipient):
        held_notice(SUPPORT, Identity(SUPPORT, "S"))
