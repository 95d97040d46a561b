"""Hostile mail is refused quickly, with a reason, and never crashes the parser."""

import base64
import time

import pytest

from parsers import Limits, RejectedMail, parse


def nested_multipart(levels: int) -> bytes:
    """A root multipart holding a multipart ... ``levels`` deep, then one text part."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(levels)
    )
    closing = b"".join(b"--b%d--\n" % i for i in reversed(range(levels)))
    return b"From: a@example.com\n" + opening + b"Content-Type: text/plain\n\nhi\n" + closing


def nested_messages(levels: int) -> bytes:
    return (
        b"From: a@example.com\n"
        + b"Content-Type: message/rfc822\n\n" * levels
        + b"Subject: x\n\nbody\n"
    )


def many_parts(count: int) -> bytes:
    part = b"--XX\nContent-Type: text/plain\n\nx\n"
    return (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=XX\n\n"
        + part * count
        + b"--XX--\n"
    )


def with_attachment(payload: bytes, name: str = "scan.png") -> bytes:
    return (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=XX\n\n"
        b"--XX\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
        + f'Content-Disposition: attachment; filename="{name}"\n\n'.encode()
        + base64.encodebytes(payload)
        + b"--XX--\n"
    )


def rejection(raw: bytes, limits: Limits = Limits()) -> tuple[str, float]:  # noqa: B008
    started = time.perf_counter()
    with pytest.raises(RejectedMail) as caught:
        parse(raw, limits)
    assert type(caught.value) is RejectedMail
    return caught.value.reason, time.perf_counter() - started


def test_thousand_level_nesting_is_refused_without_recursion():
    reason, seconds = rejection(nested_multipart(1000))
    assert reason == "MIME nesting deeper than 30"
    assert seconds < 0.5


def test_thousand_nested_forwarded_messages_are_refused():
    assert rejection(nested_messages(1000))[0] == "MIME nesting deeper than 30"


def test_nesting_exactly_at_the_limit_is_accepted_and_one_more_is_not():
    assert parse(nested_multipart(29)).text == "hi"  # root + 28 containers + the text: depth 30
    assert rejection(nested_multipart(30))[0] == "MIME nesting deeper than 30"
    assert parse(nested_messages(29)).attachments
    assert rejection(nested_messages(30))[0] == "MIME nesting deeper than 30"


def test_recursion_in_the_stdlib_parser_becomes_a_rejection():
    # Limits so loose that the cheap checks pass: the parser's own recursion must be caught.
    loose = Limits(max_depth=1_000_000, max_parts=1_000_000)
    assert rejection(nested_multipart(5000), loose)[0] == "MIME nesting deeper than 1000000"


def test_hundred_thousand_parts_are_refused_quickly():
    reason, seconds = rejection(many_parts(100_000))
    assert reason == "more than 1000 MIME parts"
    assert seconds < 1.0


def test_part_count_at_the_limit():
    assert parse(many_parts(999)).text  # root + 999 parts
    assert rejection(many_parts(1000))[0] == "more than 1000 MIME parts"


def test_many_dash_lines_in_a_body_are_not_parts():
    signatures = b"-- \nsig\n----- Original Message -----\n" * 2000
    assert parse(b"From: a@example.com\n\n" + signatures).text.startswith("-- \nsig")


def test_fifty_megabyte_attachment_is_refused_from_its_size():
    raw = with_attachment(bytes(50 * 1024 * 1024))
    reason, seconds = rejection(raw)
    assert reason == f"message too large: {len(raw):,} bytes > 41,943,040"
    assert seconds < 0.5


def test_attachment_over_its_own_limit_is_refused_before_decoding():
    limits = Limits(max_attachment_bytes=1024 * 1024)
    assert rejection(with_attachment(bytes(2 * 1024 * 1024)), limits)[0] == (
        "attachment too large: scan.png 2 MB"
    )


def test_too_many_attachments():
    part = b"--XX\nContent-Type: image/png\n\nx\n"
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=XX\n\n"
        + part * 101
        + b"--XX--\n"
    )
    assert rejection(raw)[0] == "more than 100 attachments"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ('filename="../../etc/passwd"', "passwd"),
        ('filename="C:\\\\x\\\\evil.exe"', "evil.exe"),
        ("filename*=utf-8''re%00port%01.pdf", "report.pdf"),
        (f'filename="{"n" * 496}.pdf"', "n" * 146 + ".pdf"),
        ('filename=""', "attachment-1.png"),
        ("filename*=utf-8''%2E%2E%2F%2E%2E%2Fhidden", "hidden"),
    ],
)
def test_hostile_filenames_in_a_mail_are_sanitised(declared, expected):
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=XX\n\n"
        b"--XX\nContent-Type: image/png\n"
        + f"Content-Disposition: attachment; {declared}\n\nx\n--XX--\n".encode()
    )
    (attachment,) = parse(raw).attachments
    assert attachment.filename == expected
