"""Header safety: clean text, exactly one recipient, encoded display names."""

from __future__ import annotations

import email
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr

import pytest

from responders.headers import (
    UnsafeRecipient,
    clean_header_text,
    format_address,
    message_id_token,
    put_header,
    set_address_header,
    single_recipient,
)


def test_clean_header_text_removes_every_line_break_and_control() -> None:
    dirty = "Hello\r\nBcc: x@y\nA\rB\x00C\x85D\u2028E\u2029F\x0bG\x1bH\u202eI\ud800J"
    cleaned = clean_header_text(dirty)
    assert cleaned == "Hello Bcc: x@y A B C D E F G H I\ufffdJ"
    assert all(char not in cleaned for char in "\r\n\x00\x85\u2028\u2029")


def test_clean_header_text_collapses_and_truncates() -> None:
    assert clean_header_text("  a \t\t b  ") == "a b"
    cut = clean_header_text("слово " * 100, max_len=20)
    assert len(cut) == 20 and cut.endswith("…")
    assert clean_header_text(12345) == "12345"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.org", "alice@example.org"),
        ("<alice@example.org>", "alice@example.org"),
        ("Alice <alice@example.org>", "alice@example.org"),
        ("alice@example.org (Alice)", "alice@example.org"),
        ('"bob@evil.example" <alice@example.org>', "alice@example.org"),
        ('"Doe, John" <john@example.org>', "john@example.org"),
        ('"Say \\"hi\\"" <john@example.org>', "john@example.org"),
        ("Иван Петров <ivan@example.org>", "ivan@example.org"),
        ("=?utf-8?b?0JjQstCw0L0=?= <ivan@example.org>", "ivan@example.org"),
        ("=?utf-8?q?bob=40evil.example?= <alice@example.org>", "alice@example.org"),
        ("John Q. Public <jqp@example.org>", "jqp@example.org"),
        ("ivan@пример.рф", "ivan@xn--e1afmkfd.xn--p1ai"),
        ("Ivan <ivan@XN--E1AFMKFD.xn--p1ai>", "ivan@xn--e1afmkfd.xn--p1ai"),
        ("Alice\r\n <alice@example.org>", "alice@example.org"),
        ("Alice.Smith+tag@Example.ORG", "Alice.Smith+tag@example.org"),
    ],
)
def test_single_recipient_accepts_one_mailbox(value: str, expected: str) -> None:
    assert single_recipient(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.org)<bob@example.org>",  # CVE-2023-27043: parseaddr says bob
        "alice@example.org <bob@example.org>",
        "a@b.c, d@e.f",
        "Doe, John <john@example.org>",
        "<a@b.example>, <c@d.example>",
        "<a@b.example> <c@d.example>",
        "<alice@example.org> trailing",
        "undisclosed-recipients:;",
        "Friends: a@b.example;",
        '"unterminated <alice@example.org>',
        "(unbalanced alice@example.org",
        "<alice@example.org",
        "alice@example.org>",
        "bob@evil.example@alice.example.org",
        '"bob"@example.org',
        "alice@[127.0.0.1]",
        "alice@127.0.0.1",
        "иван@example.org",
        "=?utf-8?q?bob=40evil.example?=@example.org",
        "<@route:alice@example.org>",
        "alice@example..org",
        "alice@-example.org",
        "alice\n@example.org",
        "alice@example.org\nBcc: x@y.example",
        "",
        "   ",
        "a" * 65 + "@example.org",
    ],
)
def test_single_recipient_refuses_everything_else(value: str) -> None:
    assert single_recipient(value) is None


@pytest.mark.parametrize(
    "value",
    ["alice@example.org)<bob@example.org>", "alice@example.org <bob@example.org>", "a@b.c, d@e.f"],
)
def test_parseaddr_alone_would_accept_these(value: str) -> None:
    # Why single_recipient has a tokenizer of its own: parseaddr on this Python
    # (CVE-2023-27043) returns one address for a value that holds two.
    assert parseaddr(value)[1]
    assert single_recipient(value) is None


def _round_trip(name: str, addr: str) -> tuple[str, str]:
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "To", name, addr)
    raw = msg.as_bytes(policy=SMTP)
    assert raw.isascii()
    value = raw.decode("ascii").split(":", 1)[1].strip().replace("\r\n", "")
    encoded_name, parsed_addr = parseaddr(value)
    return str(make_header(decode_header(encoded_name))), parsed_addr


@pytest.mark.parametrize(
    "name",
    [
        'Иванов, Иван "Ваня"',
        'Doe, John "JD"',
        "Пётр (ВИП) <x@y.example>",
        "Алексей \\ Смирнов",
        "Иванов-Петров Александр Константинович, старший игрок клуба «Рояль»",
        "Plain Name",
        "=?utf-8?q?fake?=",
        "",
    ],
)
def test_format_address_round_trips(name: str) -> None:
    assert _round_trip(name, "ivan@example.org") == (name, "ivan@example.org")


def test_format_address_short_name_parses_back_with_the_header_registry() -> None:
    name = 'Иванов, Иван "Ваня"'
    msg = EmailMessage(policy=SMTP)
    put_header(msg, "To", format_address(name, "ivan@example.org"))
    parsed = email.message_from_bytes(msg.as_bytes(policy=SMTP), policy=SMTP)
    (mailbox,) = parsed["To"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (name, "ivan@example.org")


def test_format_address_is_rfc_2047_and_short_lined() -> None:
    value = format_address("Иванов Иван", "ivan@пример.рф")
    assert value.isascii() and value.startswith("=?utf-8?b?")
    assert value.endswith(" <ivan@xn--e1afmkfd.xn--p1ai>")
    assert format_address("", "a@b.example") == "a@b.example"
    assert format_address("Doe, John", "a@b.example") == '"Doe, John" <a@b.example>'
    assert format_address("Line\nBreak", "a@b.example") == "Line Break <a@b.example>"


def test_format_address_refuses_bad_addresses() -> None:
    too_long = "x" * 64 + "@example.org"  # valid, but "<addr>" would not fit on a line
    for addr in ("a@b.c, d@e.f", "alice@example.org)<bob@example.org>", "nobody", too_long):
        with pytest.raises(UnsafeRecipient):
            format_address("Name", addr)


def test_message_id_token() -> None:
    assert message_id_token("abc@mail.example") == "<abc@mail.example>"
    assert message_id_token("<abc@mail.example>") == "<abc@mail.example>"
    assert message_id_token("abc@[127.0.0.1]") == "<abc@[127.0.0.1]>"
    too_long = "a" * 80 + "@b.example"
    for bad in ("a b@c", "<a@b>\r\nBcc: x@y", "no-at-sign", "<a@b", too_long, "а@b.example"):
        assert message_id_token(bad) is None, bad


def test_put_header_refuses_raw_line_breaks_and_duplicates() -> None:
    msg = EmailMessage(policy=SMTP)
    for value in ("a\r\nBcc: x@y", "a\nb", "ä", "", " lead"):
        with pytest.raises(ValueError):
            put_header(msg, "Subject", value)
    with pytest.raises(ValueError):
        put_header(msg, "Bad Name", "x")
    put_header(msg, "Subject", "ok")
    with pytest.raises(ValueError, match="already set"):
        put_header(msg, "Subject", "again")
    with pytest.raises(ValueError, match="longer than a line"):
        put_header(msg, "References", "<" + "a" * 90 + "@example.org>")
