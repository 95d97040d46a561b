"""Bodies and wire bytes of responders.mime, read back by the standard library's parser."""

from __future__ import annotations

import email
import random
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP, default
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from parsers.model import Address
from parsers.outgoing import sent_text
from responders import compose
from responders.compose import AckContext, acknowledgement
from responders.escalation import EscalationContext, escalation
from responders.headers import clean_header_text, put_header, set_text_header
from responders.identity import Identity
from responders.mime import (
    File,
    header_text,
    header_value,
    message_id,
    quoted_printable,
    set_body,
    shown,
    wire_bytes,
)
from responders.references import verify_message_id

KEYS = (b"current key",)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LONG_RU = "Здравствуйте! " * 30  # one line of about 420 characters, 800 bytes of UTF-8
TRICKY = (
    f"{LONG_RU}\n"
    "Trailing spaces   \n"
    "Trailing tab\t\n"
    ".\n"
    "..\n"
    ". \n"
    "From the desk: a line an mbox would quote\n"
    "a=b, =?utf-8?q?not_a_word?= and == and =3D and =\n"
    "crlf\r\ncr\rlf\n"
    "\x00 nul, \x0b vt, \x0c ff, \x85 nel, \u2028 ls, 😀 emoji\n"
    "last line without a line end   "
)


def _message(text: str, html: str | None = None, files: tuple[File, ...] = ()) -> bytes:
    msg = EmailMessage(policy=SMTP)
    put_header(msg, "Subject", "test")
    set_body(msg, text, html, files)
    return wire_bytes(msg)


def _parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_wire(raw: bytes) -> None:
    """7-bit, CRLF only, lines of at most 998 (RFC 5322), nothing an MTA or mbox would change."""
    assert raw.isascii()
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)
    assert all(line != b"." and not line.startswith(b"From ") for line in lines)


def _check_qp(encoded: str) -> None:
    """RFC 2045 §6.7: lines of at most 76, no trailing whitespace, "=" only as an escape."""
    assert encoded.isascii()
    for line in encoded.split("\r\n"):
        assert len(line) <= 76, line
        assert not line.endswith((" ", "\t")), line
        assert re.fullmatch(r"(?:[^=]|=[0-9A-F]{2})*=?", line), line
        assert line != "." and not line.startswith("From "), line


# --- text --------------------------------------------------------------------------------

def test_tricky_text_round_trips() -> None:
    raw = _message(TRICKY)
    _check_wire(raw)
    parsed = _parse(raw)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert parsed["MIME-Version"] == "1.0"
    assert _lf(parsed.get_content()) == _lf(TRICKY)
    _check_qp(quoted_printable(TRICKY))


@pytest.mark.parametrize(
    "text",
    ["", "\n", "x", ".", "From ", "From x\n", " ", "=", "a\r\n", "\r", "line\n" * 3,
     "я" * 500, "a" * 75 + " ", "b" * 76 + "\n.", "From " + "c" * 72 + " \n", "\t" * 200],
)
def test_edge_texts_round_trip(text: str) -> None:
    encoded = quoted_printable(text)
    _check_qp(encoded)
    raw = _message(text)
    _check_wire(raw)
    assert _lf(_parse(raw).get_content()) == _lf(text)


def test_a_body_always_ends_with_a_line_end() -> None:
    assert quoted_printable("abc") == "abc=\r\n"  # a soft break: the text has no final line end
    assert quoted_printable("abc\n") == "abc\r\n"
    assert quoted_printable("") == ""


def test_lone_surrogates_become_replacement_characters() -> None:
    parsed = _parse(_message("bad \udcff byte\n"))
    assert parsed.get_content() == "bad \ufffd byte\r\n"


def test_text_and_html_alternative() -> None:
    html = "<p>Здравствуйте, <b>Иван</b>!</p>\n<p>" + "Длинная строка " * 20 + "</p>\n"
    raw = _message(TRICKY, html)
    _check_wire(raw)
    parsed = _parse(raw)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    plain, rich = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and rich is not None
    assert _lf(plain.get_content()) == _lf(TRICKY)
    assert _lf(rich.get_content()) == html


# --- files -------------------------------------------------------------------------------

BINARY = bytes(range(256)) * 40 + b"\r\n\r\n.\r\nFrom \n\r" + random.Random(7).randbytes(5000)
NAMES = [
    "скрин.png",
    "Выписка по счёту за ноябрь 2026 года для службы поддержки, очень длинное имя.pdf",
    "receipt.pdf",
    "My receipt (1).pdf",
    'quote " and \\ back.txt',
    "percent %41 and =?utf-8?b?eA==?=.txt",
    "résumé.docx",
    "a" * 100,
    "日本語のファイル名.txt",
    "😀.gif",
]


def test_files_keep_their_names_and_bytes() -> None:
    files = tuple(File(name, "application/pdf", BINARY[: 100 * n]) for n, name in enumerate(NAMES))
    raw = _message("See the files.\n", "<p>See the files.</p>\n", files)
    _check_wire(raw)
    parsed = _parse(raw)
    assert parsed.get_content_type() == "multipart/mixed"
    body, *attached = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [part.get_filename() for part in attached] == NAMES
    assert [part.get_content() for part in attached] == [file.payload for file in files]
    for part in attached:
        assert part.get_content_disposition() == "attachment"
        assert part["Content-Transfer-Encoding"] == "base64"
        fallback = part["Content-Type"].params["name"]  # for readers without RFC 2231
        assert fallback.isascii() and fallback.isprintable() and fallback.strip()


def test_plain_names_stay_readable_and_others_use_rfc_2231() -> None:
    raw = _message("x\n", files=(File("receipt.pdf", "application/pdf", b"%PDF"),
                                  File("скрин.png", "image/png", b"\x89PNG")))
    assert b'filename="receipt.pdf"' in raw
    assert b"filename*=utf-8''%D1%81%D0%BA%D1%80%D0%B8%D0%BD.png" in raw
    assert b'name="attachment.png"' in raw  # nothing of a Cyrillic name survives in ASCII
    assert b'name="resume.pdf"' in _message("x\n", files=(File("résumé.pdf", "a/b", b""),))


def test_long_names_are_cut_between_characters() -> None:
    raw = _message("x\n", files=(File("ж" * 100, "image/png", b"x"),))
    continuations = re.findall(rb"filename\*(\d+)\*=(?:utf-8'')?([^;\r]+)", raw)
    assert len(continuations) > 1
    for _, segment in continuations:  # each one decodes on its own
        assert re.fullmatch(rb"(?:%D0%B6)+", segment)


def test_a_type_we_cannot_vouch_for_travels_as_bytes() -> None:
    files = (File("a.eml", "message/rfc822", b"From: x\r\n\r\nhi"),
             File("b", "multipart/mixed", b"--x"), File("c", "text/plain\r\nX: y", b"c"),
             File("d.png", "IMAGE/PNG", b"d"))
    parsed = _parse(_message("x\n", files=files))
    types = [part.get_content_type() for part in parsed.iter_attachments()]
    assert types == ["application/octet-stream"] * 3 + ["image/png"]
    assert [part.get_content() for part in parsed.iter_attachments()] == [
        file.payload for file in files]


def test_text_without_html_but_with_files() -> None:
    parsed = _parse(_message("only text\n", files=(File("a.txt", "text/plain", b""),)))
    assert [part.get_content_type() for part in parsed.iter_parts()] == [
        "text/plain", "text/plain"]
    (attached,) = parsed.iter_attachments()
    assert attached.get_content() == ""


def test_boundaries_are_random_and_not_in_any_body() -> None:
    raw = _message(TRICKY, TRICKY, (File("x.bin", "application/octet-stream", BINARY),))
    boundaries = re.findall(rb'boundary="([^"]+)"', raw)
    assert len(set(boundaries)) == 2
    for boundary in boundaries:
        assert boundary.startswith(b"=_")
        assert raw.count(b"--" + boundary) == 3  # two parts each: two openings, one close


# --- property tests ----------------------------------------------------------------------

TRICKY_PIECES = st.sampled_from(
    ["From ", "From", ".", " ", "\t", "=", "=3D", "\r", "\n", "\r\n", "я", "😀", "a", "\x00"])


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(TRICKY_PIECES, max_size=200).map("".join))
def test_any_text_round_trips(text: str) -> None:
    encoded = quoted_printable(text)
    _check_qp(encoded)
    raw = _message(text)
    _check_wire(raw)
    assert _lf(_parse(raw).get_content()) == _lf(text)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=150), st.binary(max_size=3000))
def test_any_file_round_trips(name: str, payload: bytes) -> None:
    name = clean_header_text(name, 100) or "attachment"  # as responders.agents does
    raw = _message("x\n", files=(File(name, "application/octet-stream", payload),))
    _check_wire(raw)
    (attached,) = _parse(raw).iter_attachments()
    assert _filename(attached) == name
    assert attached.get_content() == payload


def _filename(part: EmailMessage) -> str:
    """The filename parameter as the header carries it. Not get_filename(): it unquotes the
    decoded value once more, so a name written in quotes ('"a"', '""') loses them."""
    value = part.get_param("filename", header="content-disposition")
    assert isinstance(value, str)
    return value


def test_a_filename_in_quotes_keeps_them() -> None:
    for name in ('""', '"a"', 'плохой "файл"'):
        raw = _message("x\n", files=(File(name, "application/octet-stream", b"1"),))
        (attached,) = _parse(raw).iter_attachments()
        assert _filename(attached) == name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_header_text_reads_subjects_as_the_stdlib_does(subject: str) -> None:
    assume(clean_header_text(subject, 1000))  # put_header refuses an empty value
    msg = EmailMessage(policy=SMTP)
    set_text_header(msg, "Subject", subject, max_len=1000)
    assert header_text(msg, "Subject") == str(msg["Subject"])
    assert header_text(msg, "Subject") == str(_parse(wire_bytes(msg))["Subject"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text() | st.lists(TRICKY_PIECES, max_size=200).map("".join),
       st.booleans(), st.booleans())
def test_shown_is_what_sent_text_reads_from_the_bytes(subject: str, text: str, html: bool,
                                                      files: bool) -> None:
    """The ticket's record of a mail, handed by the composer, is the one its bytes give."""
    msg = EmailMessage(policy=SMTP)
    if clean_header_text(subject, 1000):
        set_text_header(msg, "Subject", subject, max_len=1000)
    attached = (File("note.txt", "text/plain", b"not the body"),) if files else ()
    set_body(msg, text, "<p>html</p>" if html else None, attached)
    assert shown(msg) == sent_text(wire_bytes(msg))


def test_shown_of_the_composed_mails_is_what_their_bytes_say() -> None:
    ctx = EscalationContext(
        ticket_number=7, stage=2, clock_kind="first_response", policy="standard",
        promised=timedelta(hours=4), started_at=NOW.replace(hour=8),
        due_at=NOW.replace(hour=11), now=NOW, subject="Вывод " * 40, question=TRICKY,
    )
    for msg in (_ack(), escalation(ctx, Identity("support@casino.example", "S", KEYS,
                                                  language="ru"), to="lead@casino.example")):
        assert shown(msg) == sent_text(wire_bytes(msg))
        assert shown(msg)[1]


def test_shown_reads_a_mail_not_built_by_set_body_from_its_bytes() -> None:
    msg = EmailMessage(policy=SMTP)
    put_header(msg, "Subject", "ops")
    msg.set_raw("Content-Type", "text/plain; charset=us-ascii")
    msg.set_payload("plain\r\n")
    assert shown(msg) == ("ops", "plain\n") == sent_text(wire_bytes(msg))


# --- wire bytes and reading back ---------------------------------------------------------

def test_wire_bytes_are_what_the_stdlib_generator_writes() -> None:
    msg = EmailMessage(policy=SMTP)
    set_text_header(msg, "Subject", "Очень длинная тема письма, которая не помещается в строку")
    set_body(msg, TRICKY, "<p>x</p>", (File("скрин.png", "image/png", BINARY),))
    assert wire_bytes(msg) == msg.as_bytes(policy=SMTP)


def test_wire_bytes_refuse_headers_not_stored_raw() -> None:
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = "set through the header registry"
    with pytest.raises(ValueError, match="Subject"):
        wire_bytes(msg)
    for name, value in [("Subject", "a\nBcc: victim@example.org"), ("Subject", "a\r\n \r\n b"),
                        ("Subject", "ünicode"), ("Bcc: x@y.example\r\nSubject", "x")]:
        msg = EmailMessage(policy=SMTP)
        msg.set_raw(name, value)
        with pytest.raises(ValueError, match="Subject"):
            wire_bytes(msg)


def test_a_body_is_set_once() -> None:
    msg = EmailMessage(policy=SMTP)
    set_body(msg, "x")
    with pytest.raises(ValueError, match="already"):
        set_body(msg, "y")


def test_reading_our_headers_back() -> None:
    msg = EmailMessage(policy=SMTP)
    put_header(msg, "Message-ID", "<t1.abc.def@casino.example>")
    put_header(msg, "References", " ".join(f"<m{n}@mail.example>" for n in range(6)))
    set_text_header(msg, "Subject", "Ваше обращение принято: Не пришёл вывод [#10234]")
    assert message_id(msg) == "t1.abc.def@casino.example"
    assert header_value(msg, "references") == " ".join(f"<m{n}@mail.example>" for n in range(6))
    assert header_text(msg, "Subject") == "Ваше обращение принято: Не пришёл вывод [#10234]"
    assert header_value(msg, "X-Missing") is None and header_text(msg, "X-Missing") is None
    with pytest.raises(ValueError):
        message_id(EmailMessage(policy=SMTP))


# --- the acknowledgement, before and after -----------------------------------------------

def _old_bodies(msg: EmailMessage, identity: Identity, language: str,
                variables: dict[str, Any]) -> None:
    """How compose._bodies wrote the bodies before responders.mime: the content manager
    (the same texts, the brand's signature included)."""
    text = identity.templates.render("ack.txt.j2", language, **variables)
    html = identity.templates.render("ack.html.j2", language, **variables)
    msg.set_content(identity.signed(text), subtype="plain", charset="utf-8",
                    cte="quoted-printable")
    msg.add_alternative(identity.signed_html(html), subtype="html", charset="utf-8",
                        cte="quoted-printable")


RU = AckContext(
    ticket_number=10234, language="ru", subject="Re: Не пришёл вывод средств",
    requester=Address("igrok@mail.example", 'Иванов, Иван "Ваня"'), category="refund",
    first_response=timedelta(hours=24), attachments=(("скрин.png", 150 * 1024), ("чек.pdf", 3)),
    faq_answer="Выводы обрабатываются до 3 рабочих дней.\nПроверьте папку «Спам».",
    in_reply_to="player-1@mail.example", references=("older@mail.example",),
)


def _ack() -> EmailMessage:
    desk = Identity("support@casino.example", "Служба поддержки Casino", KEYS)
    return acknowledgement(RU, desk, now=NOW)


def _tree(raw: bytes) -> list[tuple[list[tuple[str, str]], str, dict[str, str], str | None]]:
    """Each part: its headers as the stdlib reads them, type, parameters, decoded body."""
    parts = []
    for index, part in enumerate(_parse(raw).walk()):
        skip = {"content-type", "message-id"} | ({"mime-version"} if index else set())
        headers = [(name.lower(), str(value)) for name, value in part.items()
                   if name.lower() not in skip]
        params = {k: v for k, v in part["Content-Type"].params.items() if k != "boundary"}
        body = None if part.is_multipart() else part.get_content()
        parts.append((headers, part.get_content_type(), params, body))
    return parts


def test_acknowledgement_bytes_mean_what_the_old_path_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = _ack()
    new_raw = wire_bytes(new)
    monkeypatch.setattr(compose, "_bodies", _old_bodies)
    old = _ack()
    old_raw = old.as_bytes()
    new_parsed, old_parsed = _parse(new_raw), _parse(old_raw)
    # Same top-level headers in the same order, with the same values (the Message-ID's
    # nonce is random: both are ours for the same ticket).
    assert [name for name, _ in new_parsed.items()] == [name for name, _ in old_parsed.items()]
    assert verify_message_id(message_id(new), KEYS) == 10234
    assert verify_message_id(str(old_parsed["Message-ID"]), KEYS) == 10234
    # Same structure, headers, parameters and decoded bodies, to the character; the old
    # path's html part also had a MIME-Version, which belongs to the top level only.
    assert _tree(new_raw) == _tree(old_raw)
    assert header_text(new, "Subject") == str(old["Subject"])  # what acks.py stores


def test_escalation_body_is_quoted_printable_text() -> None:
    ctx = EscalationContext(
        ticket_number=7, stage=2, clock_kind="first_response", policy="standard",
        promised=timedelta(hours=4), started_at=NOW.replace(hour=8),
        due_at=NOW.replace(hour=11), now=NOW, subject="Вывод", question="Где мои деньги?\n.",
    )
    msg = escalation(ctx, Identity("support@casino.example", "S", KEYS, language="ru"),
                     to="lead@casino.example")
    raw = wire_bytes(msg)
    _check_wire(raw)
    assert raw == msg.as_bytes(policy=SMTP)
    parsed = _parse(raw)
    assert parsed.get_content_type() == "text/plain"
    assert "Где мои деньги?" in parsed.get_content()
    assert verify_message_id(message_id(msg), KEYS) == 7
