"""sent_text: what a mail we composed says, read back from its bytes."""

from __future__ import annotations

from email.message import EmailMessage

from parsers.outgoing import sent_text
from responders import mime
from responders.headers import set_text_header


def test_reads_the_subject_and_the_text_part_of_our_alternative_mail() -> None:
    msg = EmailMessage()
    set_text_header(msg, "Subject", "Ваш запрос [#10001]")
    mime.set_body(msg, "Здравствуйте!\nFrom now on: =41 line\n", html="<p>Здравствуйте!</p>",
                  files=[mime.File("a.txt", "text/plain", b"attachment text")])
    assert sent_text(mime.wire_bytes(msg)) == (
        "Ваш запрос [#10001]", "Здравствуйте!\nFrom now on: =41 line\n")


def test_a_mail_without_text_or_subject_gives_empty_strings() -> None:
    raw = b"Content-Type: text/html\r\n\r\n<p>hi</p>\r\n"
    assert sent_text(raw) == ("", "")


def test_a_broken_encoded_word_is_kept_as_it_is() -> None:
    raw = b"Subject: =?x-unknown?q?abc?=\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    subject, text = sent_text(raw)
    assert "abc" in subject and text == "body\n"
