"""The acknowledgement, read back from its bytes with the standard library."""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from parsers.model import Address
from responders.compose import (
    REPLY_MARKERS,
    AckContext,
    Templates,
    UnsafeRecipient,
    acknowledgement,
)
from responders.identity import Identity
from responders.references import numbers_in_subject, verify_message_id

KEYS = (b"current key", b"previous key")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RU = AckContext(
    ticket_number=10234,
    language="ru",
    subject="Re: Не пришёл вывод средств",
    requester=Address("igrok@mail.example", 'Иванов, Иван "Ваня"'),
    category="refund",
    first_response=timedelta(hours=24),
    attachments=(("скрин.png", 150 * 1024), ("чек.pdf", 3)),
    faq_answer="Выводы обрабатываются до 3 рабочих дней.\nПроверьте папку «Спам».",
    in_reply_to="player-1@mail.example",
    references=("older@mail.example",),
)
EN = replace(
    RU, language="en", subject="Withdrawal <b>missing</b>",
    requester=Address("player@mail.example", "Jane Doe"), first_response=timedelta(hours=1),
    attachments=(("receipt.pdf", 1536),), faq_answer=None,
)


def _ack(ctx: AckContext, templates: Templates | None = None) -> EmailMessage:
    desk = Identity("support@casino.example", "Служба поддержки Casino", KEYS,
                    templates or Templates())
    return acknowledgement(ctx, desk, now=NOW)


def _read(msg: EmailMessage) -> EmailMessage:
    raw = msg.as_bytes(policy=SMTP)
    assert raw.isascii()  # 7-bit: no SMTPUTF8, no 8BITMIME needed
    parsed = email.message_from_bytes(raw, policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _bodies(parsed: EmailMessage) -> tuple[str, str]:
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and html is not None
    # get_content() keeps the wire's CRLF; compare text by lines.
    return (text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n"))


def test_russian_acknowledgement_headers() -> None:
    parsed = _read(_ack(RU))
    (sender,) = parsed["From"].addresses
    (recipient,) = parsed["To"].addresses
    assert sender.display_name == "Служба поддержки Casino"
    assert sender.addr_spec == "support@casino.example"
    assert recipient.display_name == 'Иванов, Иван "Ваня"'
    assert recipient.addr_spec == "igrok@mail.example"
    assert str(parsed["Subject"]) == "Ваше обращение принято: Не пришёл вывод средств [#10234]"
    assert numbers_in_subject(str(parsed["Subject"])) == (10234,)
    assert verify_message_id(str(parsed["Message-ID"]), KEYS) == 10234
    assert str(parsed["In-Reply-To"]) == "<player-1@mail.example>"
    assert str(parsed["References"]) == "<older@mail.example> <player-1@mail.example>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["X-Ticketd-Loop"] == "support@casino.example"
    assert parsed["Date"].datetime == NOW
    assert "Precedence" not in parsed  # RFC 3834 §3.1.8


def test_russian_acknowledgement_bodies() -> None:
    text, html = _bodies(_read(_ack(RU)))
    for body in (text, html):
        assert body.count(REPLY_MARKERS[1]) == 1
        assert "[#10234]" in body
        assert "Срок первого ответа: 24 часа." in body
        assert "скрин.png (150 КБ)" in body and "чек.pdf (3 байта)" in body
        assert "Выводы обрабатываются до 3 рабочих дней." in body
        assert "обжаловать" in body
        assert "платежи и возвраты" in body
    assert text.startswith(REPLY_MARKERS[1] + "\n")
    assert "Здравствуйте, Иванов, Иван \"Ваня\"!" in text
    assert "&laquo;обжаловать&raquo;" in html and "&#34;Ваня&#34;" in html


def test_one_hour_in_russian_is_one_chas() -> None:
    text, html = _bodies(_read(_ack(replace(RU, first_response=timedelta(hours=1)))))
    assert "Срок первого ответа: 1 час." in text and "Срок первого ответа: 1 час." in html


def test_english_acknowledgement() -> None:
    parsed = _read(_ack(EN))
    assert str(parsed["Subject"]) == "We received your request: Withdrawal <b>missing</b> [#10234]"
    assert parsed["To"].addresses[0].display_name == "Jane Doe"
    text, html = _bodies(parsed)
    assert text.startswith(REPLY_MARKERS[0] + "\n")
    assert "We will reply within 1 hour." in text and "We will reply within 1 hour." in html
    assert "receipt.pdf (1.5 KB)" in text
    assert 'reply with the word "appeal"' in text
    assert "keep [#10234] in the subject" in text
    assert "may already answer" not in text
    assert '"Withdrawal <b>missing</b>"' in text
    assert "Withdrawal &lt;b&gt;missing&lt;/b&gt;" in html and "<b>missing" not in html


def test_missing_language_falls_back_to_english() -> None:
    parsed = _read(_ack(replace(EN, language="fr")))  # no French templates
    assert str(parsed["Subject"]).startswith("We received your request")
    assert _bodies(parsed)[0].startswith(REPLY_MARKERS[0])


def test_override_dir_changes_the_acknowledgement(tmp_path: Path) -> None:
    (tmp_path / "ru").mkdir()
    override = "Номер {{ tag }}, ответ: {{ first_response }}\n"
    (tmp_path / "ru" / "ack.txt.j2").write_text(override, "utf-8")
    text, html = _bodies(_read(_ack(RU, Templates(str(tmp_path)))))
    assert text == "Номер [#10234], ответ: 24 часа\n"
    assert "Срок первого ответа" in html  # the HTML part was not overridden


def test_subject_keeps_one_tag_and_drops_foreign_ones() -> None:
    for subject in ("Re: Вывод [#10234]", "Fwd: Вывод [#999]", "AW: [#10234] Вывод [#10234]"):
        parsed = _read(_ack(replace(RU, subject=subject)))
        assert str(parsed["Subject"]) == "Ваше обращение принято: Вывод [#10234]", subject
    parsed = _read(_ack(replace(RU, subject="")))
    assert str(parsed["Subject"]) == "Ваше обращение принято [#10234]"


def test_custom_subject_format() -> None:
    desk = Identity("support@casino.example", "Support", KEYS,
                    subject_format="[Ticket #{number}]")
    msg = acknowledgement(EN, desk, now=NOW)
    assert str(_read(msg)["Subject"]).endswith("[Ticket #10234]")


def test_unusable_thread_ids_are_dropped() -> None:
    ctx = replace(RU, in_reply_to="bad id\r\nBcc: x@evil.example",
                  references=("a b", "ok@mail.example"))
    parsed = _read(_ack(ctx))
    assert "In-Reply-To" not in parsed
    assert str(parsed["References"]) == "<ok@mail.example>"
    parsed = _read(_ack(replace(RU, in_reply_to=None, references=())))
    assert "In-Reply-To" not in parsed and "References" not in parsed


def test_long_reference_chains_keep_the_first_and_newest() -> None:
    ids = tuple(f"m{n}@mail.example" for n in range(30))
    parsed = _read(_ack(replace(RU, references=ids, in_reply_to="last@mail.example")))
    chain = str(parsed["References"]).split()
    assert len(chain) == 10
    assert chain[0] == "<m0@mail.example>" and chain[-1] == "<last@mail.example>"


@pytest.mark.parametrize(
    "addr",
    ["", "not an address", "a@b.example, c@d.example", "alice@example.org)<bob@example.org>",
     "support@casino.example", "Support+t1.abc@casino.example"],
)
def test_unsafe_requester_is_refused(addr: str) -> None:
    with pytest.raises(UnsafeRecipient):
        _ack(replace(RU, requester=Address(addr, "X")))


def test_bad_support_address_or_keys_are_errors() -> None:
    with pytest.raises(ValueError):
        acknowledgement(RU, Identity("a@b.c, d@e.f", "S", KEYS), now=NOW)
    with pytest.raises(ValueError, match="signing key"):
        acknowledgement(RU, Identity("support@casino.example", "S", ()), now=NOW)
