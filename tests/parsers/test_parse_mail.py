"""parse(): every field of InboundMail, on small hand-written mails."""

import base64
import random
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest
from mailparser import MailParser

from parsers import Address, InboundMail, RejectedMail, parse
from parsers.mail import _EnvelopeParser, _parsed_message
from parsers.model import Limits


def mail(headers: str, body: str = "Hello.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8")


SIMPLE = mail(
    """
From: "Ivan Petrov" <Ivan.Petrov@Example.RU>
To: support@example.com, "Desk, Second Line" <second@example.com>
Cc: <copy@example.com>
Reply-To: Ivan <ivan.reply@example.ru>
Subject: Where is my
 withdrawal?
Date: Mon, 03 Nov 2025 12:30:00 +0300
Message-ID: <abc.123@mail.example.ru>
In-Reply-To: <t-17@support.example.com> (message from Support on Sun)
References: <w-1@support.example.com>
 <t-17@support.example.com> <w-1@support.example.com>
""",
    "I asked for a withdrawal.\n",
)


def test_threading_ids_have_no_brackets_and_keep_order():
    parsed = parse(SIMPLE)
    assert parsed.message_id == "abc.123@mail.example.ru"
    assert parsed.in_reply_to == ("t-17@support.example.com",)
    assert parsed.references == ("w-1@support.example.com", "t-17@support.example.com")


def test_message_id_without_brackets_is_kept():
    parsed = parse(mail("From: a@example.com\nMessage-ID: bare-id@example.com"))
    assert parsed.message_id == "bare-id@example.com"


def test_in_reply_to_junk_is_tolerated():
    parsed = parse(
        mail("From: a@example.com\nIn-Reply-To: Your message of Monday <x@y.z>, <q@r.s>")
    )
    assert parsed.in_reply_to == ("x@y.z", "q@r.s")
    assert parse(mail("From: a@example.com\nIn-Reply-To: garbage")).in_reply_to == ()


def test_addresses():
    parsed = parse(SIMPLE)
    assert parsed.sender == Address("ivan.petrov@example.ru", "Ivan Petrov")
    assert parsed.to == (
        Address("support@example.com", ""),
        Address("second@example.com", "Desk, Second Line"),
    )
    assert parsed.cc == (Address("copy@example.com", ""),)
    assert parsed.reply_to == (Address("ivan.reply@example.ru", "Ivan"),)


def test_sender_name_in_rfc2047_and_in_raw_utf8():
    encoded = parse(mail("From: =?utf-8?B?0JjQstCw0L0=?= <ivan@example.ru>"))
    raw = parse("From: Иван <ivan@example.ru>\n\nx".encode())
    assert encoded.sender == Address("ivan@example.ru", "Иван")
    assert raw.sender == Address("ivan@example.ru", "Иван")


def test_quoted_encoded_word_in_a_name_is_decoded():
    parsed = parse(mail('From: "=?utf-8?B?0JjQstCw0L0=?=" <ivan@example.ru>'))
    assert parsed.sender.name == "Иван"


def test_sender_is_the_first_from_header_with_a_mailbox():
    parsed = parse(mail("From: [broken]\nFrom: Real <real@example.com>"))
    assert parsed.sender == Address("real@example.com", "Real")


def test_bounce_sender_without_domain_and_comment_names():
    bounce = parse(mail("From: MAILER-DAEMON (Mail Delivery System)"))
    assert bounce.sender == Address("mailer-daemon", "Mail Delivery System")
    commented = parse(mail("From: MAILER-DAEMON (Mail Delivery System) <postmaster@example.com>"))
    assert commented.sender == Address("postmaster@example.com", "MAILER-DAEMON")


def test_no_from_gives_no_sender():
    assert parse(mail("Subject: nobody")).sender is None


def test_subject_is_decoded_and_one_line():
    assert parse(SIMPLE).subject == "Where is my withdrawal?"
    odd = parse(
        mail("From: a@example.com\nSubject:  =?utf-8?Q?Re=3A_=D0=B2=0D=0A=D1=8B?=\tend\x07 ")
    )
    assert odd.subject == "Re: в  ы end"


def test_date_is_aware_utc():
    assert parse(SIMPLE).date == datetime(2025, 11, 3, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3 Nov 2025 12:30 GMT", datetime(2025, 11, 3, 12, 30, tzinfo=UTC)),
        ("Mon, 3 Nov 2025 12:30:00 -0000", datetime(2025, 11, 3, 12, 30, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
    ],
)
def test_dates_of_all_shapes(value, expected):
    assert parse(mail(f"From: a@example.com\nDate: {value}")).date == expected


ALTERNATIVE = mail(
    """
From: a@example.com
Content-Type: multipart/alternative; boundary="alt"
""",
    """--alt
Content-Type: text/plain; charset=utf-8

Plain version.
--alt
Content-Type: text/html; charset=utf-8

<p>HTML <b>version</b>.</p>
--alt--
""",
)


def test_alternative_gives_plain_text_and_html():
    parsed = parse(ALTERNATIVE)
    assert parsed.text == "Plain version."
    assert parsed.html == "<p>HTML <b>version</b>.</p>"
    assert parsed.attachments == ()


def test_html_only_mail_gets_readable_text():
    parsed = parse(
        mail("From: a@example.com\nContent-Type: text/html", "<p>Hi</p><p>there&nbsp;you</p>")
    )
    assert parsed.text == "Hi\n\nthere you"
    assert parsed.html == "<p>Hi</p><p>there&nbsp;you</p>"


def test_plain_mail_has_no_html():
    parsed = parse(SIMPLE)
    assert parsed.html is None
    assert parsed.text == "I asked for a withdrawal.\n"


MIXED = mail(
    """
From: a@example.com
Content-Type: multipart/mixed; boundary="mix"
""",
    """preamble
--mix
Content-Type: text/plain

First part.
--mix
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

attached notes
--mix
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html

<img src="cid:logo@x">
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--mix
Content-Type: message/rfc822

From: forwarded@example.com
Subject: The original complaint

Forwarded body must not join the text.
--mix
Content-Type: text/plain

Second part.
--mix
Content-Type: application/octet-stream; name="data.bin"
Content-Transfer-Encoding: x-uuencode

begin 644 data.bin
#86)C
`
end
--mix--
""",
)


def test_mixed_mail_text_parts_are_joined_in_order():
    assert parse(MIXED).text == "First part.\nSecond part."


def test_mixed_mail_attachments():
    attachments = parse(MIXED).attachments
    assert [(a.filename, a.content_type) for a in attachments] == [
        ("notes.txt", "text/plain"),
        ("logo@x" and "attachment-2.png", "image/png"),
        ("The original complaint.eml", "message/rfc822"),
        ("data.bin", "application/octet-stream"),
    ]
    notes, logo, forwarded, data = attachments
    assert notes.payload == b"attached notes"
    assert (logo.payload, logo.inline, logo.content_id) == (b"\x89PNG\r\n\x1a\n", True, "logo@x")
    assert forwarded.payload.startswith(b"From: forwarded@example.com\r\nSubject: The original")
    assert b"Forwarded body must not join the text." in forwarded.payload
    assert data.payload == b"abc"
    assert not notes.inline


def test_outlook_image_named_only_in_its_content_id():
    raw = mail(
        'From: a@example.com\nContent-Type: multipart/related; boundary="r"',
        "--r\nContent-Type: text/html\n\n<img src=cid:image001.png@01D4>\n"
        "--r\nContent-Type: image/png\nContent-ID: <image001.png@01D4>\n\nPNG\n--r--\n",
    )
    (image,) = parse(raw).attachments
    assert (image.filename, image.content_id, image.inline) == (
        "image001.png",
        "image001.png@01D4",
        True,
    )


def _base64_attachment(encoded: str) -> bytes:
    return mail(
        'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64 \n\n"
        f"{encoded}\n--b--\n",
    )


def test_base64_with_junk_and_missing_padding():
    body = base64.b64encode(b"exact bytes!!").decode().rstrip("=")
    raw = _base64_attachment(f"{body[:8]}\n  !{body[8:]}")
    assert parse(raw).attachments[0].payload == b"exact bytes!!"


def test_base64_with_a_dangling_character():
    body = base64.b64encode(b"exact bytes!").decode()
    assert parse(_base64_attachment(body + "Q")).attachments[0].payload == b"exact bytes!"


def test_quoted_printable_attachment_keeps_crlf_hard_breaks():
    raw = mail(
        'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: application/pdf; name=a.pdf\n"
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "%PDF=0A=\nline one\nline two=E2\n--b--\n",
    )
    assert parse(raw).attachments[0].payload == b"%PDF\nline one\r\nline two\xe2"


def test_rfc2231_and_8bit_filenames():
    raw = (
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: application/pdf\nContent-Disposition: attachment;"
        b" filename*=utf-8''%D0%A7%D0%B5%D0%BA.pdf\n\nx\n"
        b'--b\nContent-Type: application/pdf; name="' + "Счёт.pdf".encode("cp1251") + b'"\n\ny\n'
        b"--b--\n"
    )
    assert [a.filename for a in parse(raw).attachments] == ["Чек.pdf", "Счёт.pdf"]


def test_headers_are_all_kept_in_order_decoded_and_single_line():
    parsed = parse(SIMPLE)
    names = [name for name, _ in parsed.headers]
    assert names == [
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
    ]
    assert parsed.header("Subject") == "Where is my withdrawal?"
    assert parsed.header("references") == (
        "<w-1@support.example.com> <t-17@support.example.com> <w-1@support.example.com>"
    )
    encoded = parse(mail("From: a@example.com\nX-Note: =?utf-8?Q?=D0=B0?=\nX-Note: two"))
    assert encoded.header_all("x-note") == ("а", "two")


def test_defects_are_recorded_by_class_name():
    raw = mail(
        'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"', "--b\n\nno end\n"
    )
    assert "CloseBoundaryNotFoundDefect" in parse(raw).defects


def test_defects_inside_a_forwarded_message_are_recorded():
    raw = mail(
        'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: message/rfc822\n\n"
        'Content-Type: multipart/alternative; boundary="inner"\n\nno parts\n--b--\n',
    )
    assert "StartBoundaryNotFoundDefect" in parse(raw).defects


def test_parts_after_a_reused_boundary_are_recovered_from_the_epilogue():
    raw = mail(
        'From: a@example.com\nContent-Type: multipart/mixed; boundary="X"',
        '--X\nContent-Type: multipart/alternative; boundary="X"\n\n'
        "--X\nContent-Type: text/plain\n\nbody\n--X--\n"
        "--X\nContent-Type: application/pdf; name=late.pdf\n"
        "Content-Transfer-Encoding: base64\n\nJVBERg==\n--X--\n",
    )
    parsed = parse(raw)
    assert parsed.text == "body"
    assert [(a.filename, a.payload) for a in parsed.attachments] == [("late.pdf", b"%PDF")]


def test_multipart_without_boundary_is_read_as_text():
    raw = mail("From: a@example.com\nContent-Type: multipart/mixed", "just text\n")
    parsed = parse(raw)
    assert parsed.text == "just text\n"
    assert "NoBoundaryInMultipartDefect" in parsed.defects


def test_raw_size_is_the_input_length():
    assert parse(SIMPLE).raw_size == len(SIMPLE)


def test_crlf_and_cr_only_parse_like_lf():
    for variant in (SIMPLE.replace(b"\n", b"\r\n"), SIMPLE.replace(b"\n", b"\r")):
        assert _without_size(parse(variant)) == _without_size(parse(SIMPLE))
    assert _without_size(parse(MIXED.replace(b"\n", b"\r"))) == _without_size(parse(MIXED))


def _without_size(parsed: InboundMail) -> InboundMail:
    import dataclasses

    return dataclasses.replace(parsed, raw_size=0)


def test_junk_line_before_headers_is_skipped():
    parsed = parse(
        b"---- Original email message ----\r\nFrom: a@example.com\r\nSubject: hi\r\n\r\nx"
    )
    assert (parsed.sender.addr, parsed.subject) == ("a@example.com", "hi")
    assert "JunkBeforeHeadersDefect" in parsed.defects


def test_unindented_continuation_does_not_end_the_headers():
    raw = mail(
        "X-Tracker: H4sIAAAA\nIg5drOCwmrVzP5sD\nFrom: a@example.com\nSubject: still a header"
    )
    parsed = parse(raw)
    assert parsed.subject == "still a header"
    assert parsed.header("x-tracker") == "H4sIAAAA Ig5drOCwmrVzP5sD"
    assert "StrayHeaderLineDefect" in parsed.defects


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \n\n",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500),  # an Outlook .msg (OLE2)
        b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n",
        b"Hello,\nthis is only a body.\n",
    ],
)
def test_non_messages_are_rejected(raw):
    with pytest.raises(RejectedMail) as caught:
        parse(raw)
    assert caught.value.reason in ("empty message", "not an RFC 5322 message")


def test_random_mutations_never_raise_anything_but_rejected_mail():
    rng = random.Random(4711)
    seeds = [SIMPLE, MIXED, ALTERNATIVE]
    for _ in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 12)):
            position = rng.randrange(len(data))
            data[position : position + rng.randint(0, 5)] = rng.randbytes(rng.randint(0, 6))
        try:
            assert isinstance(parse(bytes(data)), InboundMail)
        except RejectedMail as rejected:
            assert rejected.reason


def test_an_encoded_display_name_never_becomes_the_sender_address() -> None:
    """An encoded word is only ever a name: decoding it must not change the header's structure
    (else "=?us-ascii?q?a:victim@evil.example;?=" would make victim@ the sender)."""
    from parsers import parse

    raw = (b"From: =?us-ascii?q?a:victim@evil.example;?= <player@mail.example>\r\n"
           b"To: support@casino.test\r\nSubject: x\r\n\r\nbody\r\n")
    assert parse(raw).sender.addr == "player@mail.example"
    bare = b"From: =?us-ascii?q?victim@evil.example?=\r\nSubject: x\r\n\r\nbody\r\n"
    assert parse(bare).sender is None or parse(bare).sender.addr != "victim@evil.example"


ENVELOPES = [
    SIMPLE,
    mail('From: =?utf-8?q?a:victim@evil.example;?= <x@y.example>\nTo: a@b.example,,\n'
         'Cc: "unterminated <c@d.example>\nDate: 31 Feb 2025 25:61:00 +9999'),
    mail("From: MAILER-DAEMON (Mail Delivery System)\nTo: undisclosed-recipients:;\n"
         "Reply-To: =?bogus?x?zz?= <r@s.example>\nDate: yesterday"),
    *(path.read_bytes() for path in sorted(
        (Path(__file__).parents[1] / "fixtures" / "mail").glob("*.eml"))),
]


def test_an_unreadable_date_is_a_defect_and_an_obsolete_year_is_read() -> None:
    """The envelope readings the mail-parser floor in pyproject stands for: its reset reads
    the Date header, reports what it cannot read, and takes a three-digit year as 1900 plus
    it (RFC 5322 §4.3)."""
    bad = parse(mail("From: a@b.example\nDate: Pn, 29 paX 2007 21:13:00 +0100"))
    assert "DateHeaderDefect" in bad.defects
    obsolete = parse(mail("From: a@b.example\nDate: Mon,  2 Apr 101 04:20:10 +0000"))
    assert obsolete.date == datetime(2001, 4, 2, 4, 20, 10, tzinfo=UTC)
    assert "DateHeaderDefect" not in parse(SIMPLE).defects


@pytest.mark.parametrize("raw", ENVELOPES)
def test_the_envelope_reads_what_a_whole_mail_parser_parse_reads(raw: bytes) -> None:
    """mail-parser is asked only for its readings of the address and date headers; they and
    their defects are those its whole parse gives (if an upgrade moved them, this fails)."""
    message, _ = _parsed_message(raw, Limits())
    view = Message()
    for name, value in message.raw_items():
        if name.lower() in {"from", "to", "cc", "reply-to", "date"} and name not in view:
            view[name] = str(value)
    view.set_payload("")

    def reading(parser: MailParser) -> tuple[object, ...]:
        return (parser.from_, parser.to, parser.cc, parser.reply_to, parser.date,
                {"AddressHeaderDefect", "DateHeaderDefect"} & set(parser.defects_categories))

    assert reading(_EnvelopeParser(view)) == reading(MailParser(view))
